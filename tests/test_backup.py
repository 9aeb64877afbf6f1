"""Backups: manifest verification, permissions, pruning, and restores (plain and TimescaleDB)."""

from __future__ import annotations

import gzip
import hashlib
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tsmigrate.backup import Backup, BackupError, prune_backups, take_backup, verify_backup
from tsmigrate.dumps import tool, tool_major
from tsmigrate.fingerprint import compare, fingerprint_database
from tsmigrate.janitor import ScratchDatabase
from tsmigrate.restore import restore_backup
from tsmigrate.target import Target


@pytest.fixture
def small_db(local_server):
    with ScratchDatabase(local_server.conninfo(), "backup_subject") as name:
        target = Target(local_server.conninfo(name), "test")
        with target.connect() as conn:
            conn.execute(
                "CREATE TABLE readings (id bigserial PRIMARY KEY, ts timestamptz NOT NULL, v double precision)"
            )
            conn.execute(
                "INSERT INTO readings (ts, v) SELECT now() - i * interval '1 minute', i FROM generate_series(1, 500) i"
            )
        yield target


@pytest.fixture
def backup(small_db, tmp_path):
    return take_backup(small_db, tmp_path / "backups")


def test_backup_has_manifest_fingerprints_and_owner_only_files(backup, small_db):
    m = backup.manifest
    assert m["database"] == "backup_subject" and m["server_version_num"] >= 150000
    assert m["fingerprints"]["public.readings"]["rows"] == 500
    assert any(name.startswith("dump/") for name in m["files"])
    assert verify_backup(backup) == []
    for path in [backup.path, *backup.path.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is readable by others ({oct(mode)})"
    assert small_db.conninfo.split("password=")[-1].split()[0] not in (backup.path / "manifest.json").read_text()


# The backup fixture is shared by the examples on purpose: each example puts its byte back.
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_changed_byte_is_detected(backup, data):
    files = sorted(p for p in backup.path.rglob("*") if p.is_file() and p.name != "manifest.json")
    path = data.draw(st.sampled_from(files))
    content = bytearray(path.read_bytes())
    if not content:
        return
    index = data.draw(st.integers(min_value=0, max_value=len(content) - 1))
    original = content[index]
    content[index] = (original + data.draw(st.integers(min_value=1, max_value=255))) % 256
    path.write_bytes(bytes(content))
    try:
        problems = verify_backup(backup)
        assert any(str(path.relative_to(backup.path)) in p for p in problems)
    finally:
        content[index] = original
        path.write_bytes(bytes(content))
    assert verify_backup(backup) == []


def test_missing_and_extra_files_are_detected(backup):
    victim = next(p for p in (backup.path / "dump").iterdir() if p.is_file())
    data = victim.read_bytes()
    victim.unlink()
    (backup.path / "dump" / "stray.dat").write_text("x")
    problems = verify_backup(backup)
    assert any("is missing" in p for p in problems) and any("stray.dat is not in the manifest" in p for p in problems)
    victim.write_bytes(data)
    (backup.path / "dump" / "stray.dat").unlink()


def test_not_a_backup_is_a_clear_error(tmp_path):
    with pytest.raises(BackupError, match=r"has no manifest\.json"):
        Backup.load(tmp_path)


def test_restore_swaps_in_an_identical_copy_and_keeps_the_failed_one(backup, small_db, local_server):
    before = fingerprint_database(small_db.connect())
    with small_db.connect() as conn:
        conn.execute("DELETE FROM readings WHERE id % 7 = 0")
        conn.execute("UPDATE readings SET v = -1 WHERE id = 3")
    outcome = restore_backup(small_db, backup, keep_failed=True)
    assert outcome.complete and outcome.database == "backup_subject"
    with small_db.connect() as conn:
        assert compare(before, fingerprint_database(conn)) == []
    with psycopg.connect(local_server.conninfo("postgres"), autocommit=True) as admin:
        kept = [
            r[0] for r in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE 'backup_subject_failed_%'")
        ]
    assert kept == [outcome.kept_failed_as]
    with psycopg.connect(local_server.conninfo(outcome.kept_failed_as)) as failed:
        assert failed.execute("SELECT count(*) FROM readings").fetchone()[0] < 500


def test_a_restored_copy_that_differs_from_the_backup_is_refused_and_the_database_left_as_it_is(backup, small_db):
    """The proof behind every restore: the copy's fingerprints against the backup's. No server makes a dump that
    restores other rows than it fingerprinted, so one value of the dump's data is changed here and the
    manifest's checksums rewritten to match, as if pg_dump had written it so: only the proof can notice."""
    data = max(backup.dump_dir.glob("*.dat.gz"), key=lambda p: p.stat().st_size)
    lines = gzip.decompress(data.read_bytes()).decode().splitlines(keepends=True)
    row_id, ts, _ = lines[0].rstrip("\n").split("\t")
    lines[0] = f"{row_id}\t{ts}\t-12345\n"
    data.write_bytes(gzip.compress("".join(lines).encode()))
    manifest = json.loads((backup.path / "manifest.json").read_text())
    manifest["files"][str(data.relative_to(backup.path))] = {
        "size": data.stat().st_size,
        "sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
    }
    (backup.path / "manifest.json").write_text(json.dumps(manifest))
    altered = Backup.load(backup.path)
    assert verify_backup(altered) == [], "the checksums hold: only the fingerprints can tell"
    with small_db.connect() as conn:
        conn.execute("DELETE FROM readings WHERE id <= 10")  # the state a failed step left
        before = fingerprint_database(conn)

    with pytest.raises(
        BackupError,
        match=r"the restored copy backup_subject_restore_\d+ does not match the backup: "
        r".*public\.readings.*backup_subject was left as it is",
    ):
        restore_backup(small_db, altered)
    with small_db.connect() as conn:
        assert compare(before, fingerprint_database(conn)) == []
        assert (
            conn.execute(
                "SELECT datname FROM pg_database WHERE datname ~ '^backup_subject_(restore|failed)_'"
            ).fetchall()
            == []
        )


def test_restore_of_a_timescaledb_database(small_db, tmp_path):
    with small_db.connect() as conn:
        conn.execute("CREATE EXTENSION timescaledb")
        conn.execute("CREATE TABLE series (ts timestamptz NOT NULL, v int)")
        conn.execute("SELECT create_hypertable('series', by_range('ts', interval '1 hour'))")
        conn.execute("INSERT INTO series SELECT now() - i * interval '5 minutes', i FROM generate_series(1, 200) i")
    backup = take_backup(small_db, tmp_path / "backups")
    assert backup.manifest["timescaledb_version"]
    with small_db.connect() as conn:
        conn.execute("DELETE FROM series WHERE v > 100")
    outcome = restore_backup(small_db, backup, keep_failed=False)
    assert outcome.kept_failed_as is None
    with small_db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM series").fetchone()[0] == 200
        chunks = conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'series'"
        ).fetchone()[0]
        assert chunks >= 16


def test_prune_keeps_newest_and_recent_backups(tmp_path):
    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    ages = [0, 1, 3, 8, 9, 30]
    for days in ages:
        (tmp_path / f"factory_telemetry-{now - timedelta(days=days):%Y%m%dT%H%M%SZ}").mkdir()
    (tmp_path / f"other_db-{now - timedelta(days=40):%Y%m%dT%H%M%SZ}").mkdir()
    removed = prune_backups(tmp_path, "factory_telemetry", keep_days=7, keep_count=2, now=now)
    assert sorted(p.name for p in removed) == sorted(
        f"factory_telemetry-{now - timedelta(days=d):%Y%m%dT%H%M%SZ}" for d in (8, 9, 30)
    )
    assert len(list(tmp_path.iterdir())) == 4  # 3 recent ones and the other database's


def test_fingerprints_recorded_by_md5_in_older_backups_are_compared_the_way_they_were_taken(small_db):
    """Backups before hashtextextended recorded md5-based fingerprints without naming the algorithm."""
    from tsmigrate.fingerprint import TableFingerprint, fingerprint_table
    from tsmigrate.integrity.content import fingerprints_as_before

    with small_db.connect() as conn:
        old = fingerprint_table(conn, "public", "readings", algorithm="md5-60").to_dict()
        del old["algorithm"]  # as an older manifest has it
        recorded = {"public.readings": TableFingerprint.from_dict(old)}
        now, problems = fingerprints_as_before(conn, recorded)
        assert problems == [] and compare(recorded, now) == []
        assert now["public.readings"].algorithm == "md5-60"
        assert fingerprint_table(conn, "public", "readings").digest != recorded["public.readings"].digest
        conn.execute("UPDATE readings SET v = -1 WHERE id = 3")
        now, _ = fingerprints_as_before(conn, recorded)
        assert [d.table for d in compare(recorded, now)] == ["public.readings"]


def test_client_programs_come_from_tsmigrate_pg_bindir_when_it_has_them(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "pg_dump").write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 15.99'\n")
    (bindir / "pg_dump").chmod(0o755)
    monkeypatch.setenv("TSMIGRATE_PG_BINDIR", str(bindir))
    assert tool("pg_dump") == str(bindir / "pg_dump")
    assert tool_major("pg_dump") == 15
    # A program the directory lacks comes from where it would without the variable.
    assert Path(tool("pg_restore")).parent != bindir
