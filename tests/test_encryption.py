"""Backups encrypted at rest (encryption.py): transparent to verification, restore and the post-flight's baseline;
no plaintext left on disk; a missing or wrong key refused before anything is restored."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import zlib
from pathlib import Path
from xml.etree import ElementTree

import psycopg
import pytest

from tsmigrate.backup import Backup, BackupError, take_backup, verify_backup
from tsmigrate.baseline import load_explicit
from tsmigrate.encryption import KeyFileError, load_key, new_key
from tsmigrate.fingerprint import compare, fingerprint_database
from tsmigrate.janitor import ScratchDatabase
from tsmigrate.plan import PlanError, parse_plan
from tsmigrate.restore import restore_backup
from tsmigrate.target import Target

PROJECT = Path(__file__).resolve().parents[1]
# In a row and in a table comment: the one lands in a compressed data file, the other in toc.dat as it is.
MARKER = "confidential-recipe-7F3A9C"


@pytest.fixture
def secret_db(local_server):
    with ScratchDatabase(local_server.conninfo(), "sealed_subject") as name:
        target = Target(local_server.conninfo(name), "test")
        with target.connect() as conn:
            conn.execute("CREATE EXTENSION timescaledb")
            conn.execute("CREATE TABLE batches (ts timestamptz NOT NULL, line int, recipe text)")
            conn.execute("SELECT create_hypertable('batches', by_range('ts', interval '1 day'))")
            conn.execute(
                "INSERT INTO batches SELECT timestamptz '2026-01-01' + i * interval '1 hour', i %% 4, "
                "CASE WHEN i = 77 THEN %s ELSE 'standard' END FROM generate_series(1, 300) i",
                (MARKER,),
            )
            conn.execute(f"COMMENT ON TABLE batches IS 'see {MARKER}'")
        yield target


@pytest.fixture
def key(tmp_path):
    (tmp_path / "keys").mkdir(mode=0o700)
    return new_key(tmp_path / "keys" / "backup.key")


def _found_in_files(directory: Path, text: str) -> list[str]:
    """Files holding ``text`` as they are or once gunzipped (pg_dump compresses its data files)."""
    needle, found = text.encode(), []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        data = path.read_bytes()
        try:
            data += gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            pass
        if needle in data:
            found.append(str(path.relative_to(directory)))
    return found


def _restore_copies(server, dbname: str) -> list[str]:
    with psycopg.connect(server.conninfo(), autocommit=True) as admin:
        return [
            r[0]
            for r in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1", (dbname + "_%",))
        ]


def test_an_encrypted_backup_holds_no_plaintext_and_restores_identical(secret_db, key, tmp_path):
    plain = take_backup(secret_db, tmp_path / "plain")
    # The check below can fail: in a plain backup the marker is found in the data and in the table of contents.
    assert len(_found_in_files(plain.path, MARKER)) >= 2

    before = fingerprint_database(secret_db.connect())
    sealed = take_backup(secret_db, tmp_path / "sealed", key=key)
    assert sealed.encrypted and sealed.manifest["encryption"]["recipient"] == key.recipient
    assert _found_in_files(sealed.path, MARKER) == []
    on_disk = sorted(str(p.relative_to(sealed.path)) for p in sealed.path.rglob("*") if p.is_file())
    assert on_disk == sorted([*sealed.manifest["files"], "manifest.json"])
    assert all(name.endswith(".age") for name in sealed.manifest["files"])
    assert set(sealed.manifest["encryption"]["files"]) == set(plain.manifest["files"])
    manifest_text = (sealed.path / "manifest.json").read_text()
    assert "AGE-SECRET-KEY" not in manifest_text and str(key.identity) not in manifest_text

    with secret_db.connect() as conn:
        conn.execute("DELETE FROM batches WHERE line = 2")
        conn.execute("UPDATE batches SET recipe = 'changed' WHERE recipe = %s", (MARKER,))
    outcome = restore_backup(secret_db, Backup.load(sealed.path, load_key(key.path)), keep_failed=False)
    assert outcome.complete  # it returned: the restored copy matched the backup's fingerprints
    with secret_db.connect() as conn:
        assert compare(before, fingerprint_database(conn)) == []
        assert conn.execute("SELECT count(*) FROM batches WHERE recipe = %s", (MARKER,)).fetchone()[0] == 1
    assert [p.name for p in sealed.path.parent.iterdir()] == [sealed.path.name], "no decrypted copy is left behind"


def test_a_wrong_or_missing_key_restores_nothing_and_says_which_key(secret_db, key, tmp_path, local_server):
    sealed = take_backup(secret_db, tmp_path / "sealed", key=key)
    with secret_db.connect() as conn:
        conn.execute("DELETE FROM batches WHERE line = 1")
    damaged = fingerprint_database(secret_db.connect())
    other = new_key(tmp_path / "keys" / "other.key")

    with pytest.raises(KeyFileError) as wrong:
        restore_backup(secret_db, Backup.load(sealed.path, other))
    message = str(wrong.value)
    assert str(other.path) in message and key.recipient in message and other.recipient in message
    assert str(key.path) in message and "nothing was decrypted or restored" in message

    with pytest.raises(BackupError) as missing:
        restore_backup(secret_db, Backup.load(sealed.path))
    assert "is encrypted" in str(missing.value) and "key_file under [backup] in plan.toml" in str(missing.value)

    assert _restore_copies(local_server, secret_db.dbname) == []
    assert compare(damaged, fingerprint_database(secret_db.connect())) == [], "the database was left as it was"
    assert [p.name for p in sealed.path.parent.iterdir()] == [sealed.path.name]


def test_a_changed_encrypted_file_is_refused_even_with_a_manifest_to_match(secret_db, key, tmp_path):
    sealed = take_backup(secret_db, tmp_path / "sealed", key=key)
    toc = sealed.path / "dump" / "toc.dat.age"
    data = bytearray(toc.read_bytes())
    data[-20] ^= 0x01
    toc.write_bytes(bytes(data))
    assert any("dump/toc.dat.age differs from the manifest" in p for p in verify_backup(sealed))

    # Someone who rewrites the manifest's checksum as well is stopped by age's authentication.
    manifest = json.loads((sealed.path / "manifest.json").read_text())
    manifest["files"]["dump/toc.dat.age"]["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    (sealed.path / "manifest.json").write_text(json.dumps(manifest))
    problems = verify_backup(Backup.load(sealed.path, key))
    assert len(problems) == 1 and "toc.dat.age does not decrypt with" in problems[0] and "damaged" in problems[0]


def test_the_baseline_reads_an_encrypted_dump_and_removes_its_copy(secret_db, key, tmp_path):
    sealed = take_backup(secret_db, tmp_path / "sealed", key=key)
    baseline = load_explicit(sealed.path, key)
    assert baseline.has_dump
    assert any(o.kind == "EXTENSION" and o.tag == "timescaledb" for o in baseline.objects())
    copies = [p for p in sealed.path.parent.iterdir() if p.name.startswith(f".{sealed.path.name}.plain-")]
    assert len(copies) == 1 and (copies[0] / "dump" / "toc.dat").is_file()
    baseline.close()
    assert not copies[0].exists()
    with pytest.raises(Exception, match="is encrypted"):
        load_explicit(sealed.path).objects()


def test_key_files_are_checked_when_the_plan_is_read(tmp_path, key):
    plan_file = tmp_path / "migrations" / "plan.toml"
    plan_file.parent.mkdir()
    relative = Path("..") / "keys" / "backup.key"
    plan = parse_plan({"backup": {"key_file": str(relative)}}, plan_file)
    assert plan.backup.key_file == plan_file.parent / relative
    assert plan.backup.key().recipient == key.recipient

    with pytest.raises(PlanError, match=r"\[backup.key_file\] .*does not exist"):
        parse_plan({"backup": {"key_file": "/nonexistent/backup.key"}}, plan_file)
    with pytest.raises(PlanError, match="never put the key in the plan"):
        parse_plan({"backup": {"key_file": str(key.identity)}}, plan_file)
    key.path.chmod(0o640)
    with pytest.raises(PlanError, match=f"readable by others .*chmod 600 {key.path}"):
        parse_plan({"backup": {"key_file": str(key.path)}}, plan_file)
    key.path.chmod(0o600)
    (tmp_path / "keys" / "junk.key").write_text("not a key\n")
    (tmp_path / "keys" / "junk.key").chmod(0o600)
    with pytest.raises(PlanError, match="not an age key file"):
        parse_plan({"backup": {"key_file": str(tmp_path / "keys" / "junk.key")}}, plan_file)
    with pytest.raises(KeyFileError, match="exists already"):
        new_key(key.path)


def _migrations_with_key(tmp_path: Path, key) -> Path:
    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    plan = migrations / "plan.toml"
    plan.write_text(plan.read_text().replace("[backup]\n", f'[backup]\nkey_file = "{key.path}"\n'))
    return migrations


def test_a_full_run_with_a_key_compares_the_postflight_with_its_encrypted_backup(legacy_db, run_suite, tmp_path, key):
    """Execute and post-flight in one session: the integrity checks read the encrypted dump (objects, grants,
    rows) through a decrypted copy, which is gone when the run ends."""
    migrations = _migrations_with_key(tmp_path, key)
    result = run_suite(
        "suites/execute",
        "suites/postflight",
        "--dsn",
        legacy_db.conninfo,
        "--migrations",
        str(migrations),
        "--no-rehearse",
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert json.loads((tmp_path / "reports" / "latest.json").read_text())["verdict"] == "SUCCESS"
    # The checks that read the dump itself ran and passed (a baseline that cannot be read fails or skips them).
    (junit,) = (tmp_path / "reports").glob("full-*.xml")
    cases = {c.get("name"): c for c in ElementTree.parse(junit).iter("testcase")}
    for check in ("test_no_view_function_or_trigger_missing", "test_every_table_keeps_its_content"):
        ran = [c for name, c in cases.items() if name.startswith(check)]
        assert ran and all(
            len(c) == 0 or all(e.tag in ("system-out", "system-err", "properties") for e in c) for c in ran
        ), check
    (backup_dir,) = (tmp_path / "backups").iterdir()  # and no decrypted copy beside it
    assert Backup.load(backup_dir).encrypted


def test_a_failed_run_restores_from_its_encrypted_backup(legacy_db, run_suite, tmp_path, key):
    """The whole execute suite with a key in the plan: its backup is encrypted, and the restore after a failed
    step reads it without being told anything more."""
    migrations = _migrations_with_key(tmp_path, key)
    third = sorted(migrations.glob("003_*.sql"))[0]
    third.write_text(third.read_text() + "\n\nSELECT 1 / 0;  -- injected by the test\n")
    before = fingerprint_database(legacy_db.connect())

    result = run_suite("suites/execute", "--dsn", legacy_db.conninfo, "--migrations", str(migrations), "--no-rehearse")
    assert result.returncode == 1, result.stdout[-4000:]
    last = [line for line in result.stdout.splitlines() if line.strip()][-1]
    assert "RESTORED" in last and "identical" in last, result.stdout[-4000:]
    assert compare(before, fingerprint_database(legacy_db.connect())) == []
    (backup_dir,) = (tmp_path / "backups").iterdir()
    backup = Backup.load(backup_dir)
    assert backup.encrypted and backup.manifest["encryption"]["recipient"] == key.recipient
    assert all(name.endswith(".age") for name in backup.manifest["files"])
