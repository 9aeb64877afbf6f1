"""docs/rollback.md, followed to the letter: its shell blocks run as written (only the settings block is
ours) against a real server, after a real backup of a database with a hypertable, a role and database
settings, and real damage. The database must end equal to the backup's recorded fingerprints."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from fixtures.servers import server_fixture
from tsmigrate.backup import Backup, take_backup
from tsmigrate.cli import main as tsmigrate_command
from tsmigrate.convert import convert_table
from tsmigrate.db import is_hypertable
from tsmigrate.encryption import new_key
from tsmigrate.fence import Fence
from tsmigrate.fingerprint import compare, fingerprint_database
from tsmigrate.janitor import ScratchDatabase
from tsmigrate.plan import parse_plan
from tsmigrate.servers.local import pg_bindir
from tsmigrate.target import Target

PROJECT = Path(__file__).resolve().parents[1]
DOC = PROJECT / "docs" / "rollback.md"
DB = "plant_rollback_subject"
APP_ROLE = "rollback_doc_app"
_BLOCK = re.compile(r"^```sh\n(?P<body>.*?)^```$", re.DOTALL | re.MULTILINE)
_MARKER = re.compile(r"^# rollback (?:settings|step (?P<n>\d+)(?P<encrypted> \(encrypted backups only\))?: .+)$")

# Its own cluster: the steps run roles.sql, which touches the server's roles.
rollback_server = server_fixture(scope="module", kind="local")


def documented_steps(encrypted: bool) -> tuple[str, list[str]]:
    """The settings block, and the step blocks in order (those for encrypted backups only when asked)."""
    settings, steps, numbers = None, [], []
    for match in _BLOCK.finditer(DOC.read_text()):
        body = match["body"]
        marker = _MARKER.match(body.splitlines()[0])
        assert marker, f"a sh block of {DOC.name} without a '# rollback ...' marker: {body.splitlines()[0]!r}"
        if marker["n"] is None:
            settings = body
        else:
            numbers.append(int(marker["n"]))
            if encrypted or not marker["encrypted"]:
                steps.append(body)
    assert settings is not None and numbers == list(range(1, len(numbers) + 1)), numbers
    return settings, steps


def settings_names(settings: str) -> set[str]:
    names = set()
    for line in settings.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "export":
            words = words[1:]
        names.update(w.split("=", 1)[0] for w in words if "=" in w)
    return names


@pytest.fixture
def plant(rollback_server):
    """A database like MS5.0 after its conversion: a hypertable, a plain table it references, a view,
    an application role with grants, and a database setting."""
    with ScratchDatabase(rollback_server.conninfo(), DB) as name:
        target = Target(rollback_server.conninfo(name), "test")
        with target.connect() as conn:
            conn.execute("CREATE EXTENSION timescaledb")
            conn.execute(f"""
                CREATE SCHEMA factory_telemetry;
                CREATE TABLE factory_telemetry.metric_def (id serial PRIMARY KEY, metric_key text NOT NULL);
                CREATE TABLE factory_telemetry.metric_hist (
                    id bigserial PRIMARY KEY, ts timestamptz NOT NULL,
                    metric_def_id int NOT NULL REFERENCES factory_telemetry.metric_def (id), value double precision);
                CREATE VIEW factory_telemetry.latest AS
                    SELECT DISTINCT ON (metric_def_id) metric_def_id, ts, value
                      FROM factory_telemetry.metric_hist ORDER BY metric_def_id, ts DESC;
                INSERT INTO factory_telemetry.metric_def (metric_key) SELECT 'm' || i FROM generate_series(1, 6) i;
                INSERT INTO factory_telemetry.metric_hist (ts, metric_def_id, value)
                    SELECT timestamptz '2026-11-01' + i * interval '10 minutes', 1 + i % 6, i * 0.5
                      FROM generate_series(1, 3000) i;
                DROP ROLE IF EXISTS {APP_ROLE};
                CREATE ROLE {APP_ROLE} LOGIN;
                GRANT USAGE ON SCHEMA factory_telemetry TO {APP_ROLE};
                GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA factory_telemetry TO {APP_ROLE};
                GRANT CONNECT ON DATABASE {name} TO {APP_ROLE};
                ALTER DATABASE {name} SET work_mem = '12MB';""")
        with target.connect(autocommit=False) as conn:
            plan = parse_plan(
                {
                    "hypertables": {
                        "metric_hist": {"time_column": "ts", "chunk_interval": "1 day", "keep_unique": ["id"]}
                    }
                }
            ).hypertables[0]
            convert_table(conn, "factory_telemetry", plan, has_compression=False)
            conn.commit()
        yield target
    with psycopg.connect(rollback_server.conninfo(), autocommit=True) as admin:
        admin.execute(f"DROP ROLE IF EXISTS {APP_ROLE}")


def damage(server, target: Target) -> None:
    """What a bad night does: rows gone and changed, a view dropped, the application's role dropped."""
    with target.connect() as conn:
        conn.execute("DELETE FROM factory_telemetry.metric_hist WHERE metric_def_id = 3")
        conn.execute("UPDATE factory_telemetry.metric_hist SET value = -1 WHERE id < 100")
        conn.execute("DROP VIEW factory_telemetry.latest")
        conn.execute(f"DROP OWNED BY {APP_ROLE}")
    with psycopg.connect(server.conninfo(), autocommit=True) as admin:
        admin.execute(f"REVOKE ALL ON DATABASE {DB} FROM {APP_ROLE}")
        admin.execute(f"DROP ROLE {APP_ROLE}")


def follow_the_doc(server, backup: Path, key: Path | None, workdir: Path) -> subprocess.CompletedProcess:
    settings, steps = documented_steps(encrypted=key is not None)
    ours = {
        "BACKUP": str(backup),
        "DB": DB,
        "PY": sys.executable,
        "KEY": str(key or "/nonexistent/key"),
        "PGHOST": server.host,
        "PGPORT": str(server.port),
        "PGUSER": server.user,
    }
    assert settings_names(settings) == set(ours), "the settings block and this test must name the same values"
    lines = [f"{name}={shlex.quote(value)}" for name, value in ours.items() if not name.startswith("PG")]
    lines.append("export " + " ".join(f"{n}={shlex.quote(v)}" for n, v in ours.items() if n.startswith("PG")))
    script = "set -euo pipefail\n" + "\n".join(lines) + "\n" + "\n".join(steps)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGPASSWORD=server.password, PATH=f"{pg_bindir()}:{env.get('PATH', '')}", PYTHONPATH=str(PROJECT))
    return subprocess.run(["bash", "-c", script], cwd=workdir, env=env, capture_output=True, text=True, timeout=300)


def _databases(server) -> list[str]:
    with psycopg.connect(server.conninfo(), autocommit=True) as admin:
        return [
            r[0] for r in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1", (DB + "%",))
        ]


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_the_documented_manual_rollback_brings_the_backup_back(encrypted, rollback_server, plant, tmp_path):
    key = None
    if encrypted:
        (tmp_path / "keys").mkdir(mode=0o700)
        key = new_key(tmp_path / "keys" / "backup.key")
    # As in a real run, the backup is taken inside the fence: its roles.sql must still give the role LOGIN back.
    with plant.connect() as conn, Fence(conn, [APP_ROLE]) as fence:
        assert (
            fence.fenced
            and not conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone()[0]
        )
        backup = take_backup(plant, tmp_path / "backups", key=key)
    assert backup.encrypted == encrypted
    damage(rollback_server, plant)
    with plant.connect() as conn:
        assert compare(backup.fingerprints, fingerprint_database(conn)) != [], "the damage must show"

    result = follow_the_doc(rollback_server, backup.path, key and key.path, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    with plant.connect() as conn:
        assert compare(Backup.load(backup.path).fingerprints, fingerprint_database(conn)) == []
        assert is_hypertable(conn, "factory_telemetry", "metric_hist")
        chunks = conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'metric_hist'"
        ).fetchone()[0]
        assert chunks >= 20
        assert conn.execute("SELECT count(*) FROM factory_telemetry.latest").fetchone()[0] == 6
        assert conn.execute(
            "SELECT has_table_privilege(%s, 'factory_telemetry.metric_hist', 'INSERT')", (APP_ROLE,)
        ).fetchone()[0]
        assert conn.execute(
            "SELECT rolcanlogin, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (APP_ROLE,)
        ).fetchone() == (True, None), "as before the fence: LOGIN, no fence record"
        assert conn.execute("SELECT has_database_privilege(%s, current_database(), 'CONNECT')", (APP_ROLE,)).fetchone()[
            0
        ]
        settings = conn.execute(
            "SELECT setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
            "WHERE d.datname = current_database() AND s.setrole = 0"
        ).fetchone()[0]
        assert "work_mem=12MB" in settings
        restoring = conn.execute("SELECT current_setting('timescaledb.restoring')").fetchone()[0]
        assert restoring == "off", "timescaledb_post_restore() ran"
    assert _databases(rollback_server) == [DB, f"{DB}_failed_manual"]
    with psycopg.connect(rollback_server.conninfo(f"{DB}_failed_manual")) as failed:
        assert (
            failed.execute("SELECT count(*) FROM factory_telemetry.metric_hist WHERE metric_def_id = 3").fetchone()[0]
            == 0
        )
    leftovers = sorted(p.name for p in backup.path.parent.iterdir())
    assert leftovers == [backup.path.name], "no decrypted copy is left behind"
    if encrypted:
        assert "decrypted into" in result.stdout


def test_a_wrong_key_stops_the_documented_rollback_before_any_change(rollback_server, plant, tmp_path):
    (tmp_path / "keys").mkdir(mode=0o700)
    key, other = new_key(tmp_path / "keys" / "backup.key"), new_key(tmp_path / "keys" / "other.key")
    backup = take_backup(plant, tmp_path / "backups", key=key)
    damage(rollback_server, plant)
    with plant.connect() as conn:
        damaged = fingerprint_database(conn)

    result = follow_the_doc(rollback_server, backup.path, other.path, tmp_path)
    assert result.returncode != 0
    assert f"the key file {other.path} does not open the backup" in result.stderr
    assert key.recipient in result.stderr
    assert _databases(rollback_server) == [DB]
    with plant.connect() as conn:
        assert compare(damaged, fingerprint_database(conn)) == [], "nothing was restored"
    assert sorted(p.name for p in backup.path.parent.iterdir()) == [backup.path.name]


def test_the_proof_steps_fail_on_a_database_that_is_not_the_backup(rollback_server, plant, tmp_path, capsys):
    """Steps 7 and 9 (backupctl compare) are what stops a wrong copy from taking the database's name."""
    backup = take_backup(plant, tmp_path / "backups")
    dsn = plant.conninfo
    assert tsmigrate_command(["backup", "compare", str(backup.path), "--dsn", dsn]) == 0
    with plant.connect() as conn:
        conn.execute("UPDATE factory_telemetry.metric_def SET metric_key = 'changed' WHERE id = 2")
    capsys.readouterr()
    assert tsmigrate_command(["backup", "compare", str(backup.path), "--dsn", dsn]) == 1
    err = capsys.readouterr().err
    assert "factory_telemetry.metric_def" in err and "differs from the backup" in err
    assert rollback_server.password not in err
    assert (
        tsmigrate_command(["backup", "decrypt", str(backup.path), str(tmp_path / "copy"), "--key-file", "/nonexistent"])
        == 1
    )
    assert "/nonexistent does not exist" in capsys.readouterr().err
