"""The ``tsmigrate`` command: the whole tool under one name, options anywhere, the documented exit codes.

Run as a user runs it (the console script ``make setup`` installs, in a subprocess) against real databases:
an online conversion kept with its legacy table, a backup restored over a changed database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import click
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tsmigrate.backup import take_backup
from tsmigrate.cli import tsmigrate
from tsmigrate.convert.online import conversion_state, convert_online
from tsmigrate.db import is_hypertable
from tsmigrate.janitor import ScratchDatabase, drop_database
from tsmigrate.plan import parse_plan
from tsmigrate.target import Target

PROJECT = Path(__file__).resolve().parents[1]
TSMIGRATE = Path(sys.executable).parent / "tsmigrate"
ROWS = 3_000


def leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found.append((*prefix, name))
            found += leaf_commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


COMMANDS = leaf_commands(tsmigrate)


def without_pg_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def cli(*args: str, env: dict | None = None, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(TSMIGRATE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env if env is not None else without_pg_env(),
        cwd=kw.pop("cwd", PROJECT),
        **kw,
    )


def shell(command: str, dsn: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """A command as README.md prints it, in bash, with $DSN set (tests/test_docs.py checks the text is here)."""
    return subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=PROJECT,
        env={**without_pg_env(), "DSN": dsn},
    )


# -- the command line itself ----------------------------------------------------------------------------


def test_python_m_tsmigrate_is_the_same_command():
    result = subprocess.run([sys.executable, "-m", "tsmigrate", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("tsmigrate, version ")


def test_the_console_script_lists_every_subcommand():
    result = cli("--help")
    assert result.returncode == 0, result.stderr
    listed = {
        line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines() if line.strip()[:1].isalpha()
    }
    expected = {"preflight", "migrate", "online", "backup", "codes", "report", "bench", "sweep", "soak"}
    assert expected <= listed, listed


def test_every_group_lists_its_actions():
    for group, actions in {
        "online": {"status", "verify", "swap-back", "drop-legacy"},
        "backup": {"new-key", "list", "verify", "decrypt", "database-sql", "compare", "restore"},
        "report": {"schema"},
    }.items():
        assert set(tsmigrate.commands[group].commands) == actions  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_subcommands_help_has_an_example_of_itself(command):
    result = cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    examples = result.stdout.split("Examples:")[1] if "Examples:" in result.stdout else ""
    assert f"tsmigrate {' '.join(command)}" in examples, result.stdout


@pytest.mark.parametrize("command", [c for c in COMMANDS if len(c) == 2 or c[0] in ("codes",)], ids=" ".join)
def test_every_action_says_its_exit_codes(command):
    assert "Exit 0" in cli(*command, "--help").stdout


def test_a_wrong_command_line_exits_2_and_says_what_is_wrong():
    result = cli("online", "swap-back", "--dsn", "postgresql://nobody@127.0.0.1:1/x")
    assert result.returncode == 2 and "Missing argument 'TABLE'" in result.stderr
    result = cli("online", "undo", "metric_hist")
    assert result.returncode == 2 and "No such command 'undo'" in result.stderr
    assert cli("backup", "verify").returncode == 2


def test_no_target_is_said_and_exits_2():
    result = cli("online", "status")
    assert result.returncode == 2
    assert "tsmigrate online status:" in result.stderr and "Traceback" not in result.stderr


def test_an_unreachable_target_exits_2_without_a_traceback_or_its_password():
    result = cli("online", "status", "--dsn", "postgresql://migrator:s3cret-pw@127.0.0.1:1/factory_telemetry")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout


def test_codes_and_the_report_schema_print_what_their_modules_hold():
    from tsmigrate.codes import table_lines
    from tsmigrate.report.record import RUN_RECORD_SCHEMA

    codes = cli("codes")
    assert codes.returncode == 0 and codes.stdout.splitlines() == table_lines()
    schema = cli("report", "schema")
    assert schema.returncode == 0
    import json

    assert json.loads(schema.stdout) == RUN_RECORD_SCHEMA
    old = subprocess.run(
        [sys.executable, "-m", "tsmigrate.report", "schema"], capture_output=True, text=True, cwd=PROJECT
    )
    assert old.returncode == 0 and json.loads(old.stdout) == RUN_RECORD_SCHEMA
    old = subprocess.run([sys.executable, "-m", "tsmigrate.codes"], capture_output=True, text=True, cwd=PROJECT)
    assert old.returncode == 0 and old.stdout.splitlines() == table_lines()


def test_codes_into_a_file_without_the_table_exits_1(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# nothing here\n")
    result = cli("codes", str(readme))
    assert result.returncode == 1 and "no table of codes" in result.stderr


def test_preflight_passes_every_option_to_pytest_and_exits_with_its_code(tmp_path):
    # No target at all: pytest's own exit 4 (README: The gate in CI), through the wrapper.
    result = cli("preflight", "-q", "--reports", str(tmp_path), timeout=300)
    assert result.returncode == 4, result.stdout[-2000:] + result.stderr[-2000:]
    assert "no target database" in result.stderr
    # An option pytest does not know is pytest's usage error (4), not the wrapper's.
    assert cli("migrate", "--no-such-option").returncode == 4


def test_the_tools_are_reached_through_the_command():
    result = cli("sweep", "--points", "0", "--no-such-flag")
    assert result.returncode == 2 and "--no-such-flag" in result.stderr


# -- backups --------------------------------------------------------------------------------------------


@pytest.fixture
def small_db(local_server):
    with ScratchDatabase(local_server.conninfo(), f"cli_{uuid.uuid4().hex[:8]}") as name:
        target = Target(local_server.conninfo(name), f"test database {name}")
        with target.connect() as conn:
            conn.execute("CREATE TABLE things (id int PRIMARY KEY, what text)")
            conn.execute("INSERT INTO things SELECT i, 'thing ' || i FROM generate_series(1, 500) i")
            conn.commit()
        yield target


def test_backup_list_verify_and_a_restore_that_brings_the_rows_back(small_db, tmp_path):
    backups = tmp_path / "backups"
    backup = take_backup(small_db, backups)
    listed = cli("backup", "list", str(backups))
    assert listed.returncode == 0 and str(backup.path) in listed.stdout and "500 rows" in listed.stdout
    assert cli("backup", "verify", str(backup.path)).returncode == 0
    with small_db.connect() as conn:
        conn.execute("DELETE FROM things WHERE id > 100")
        conn.commit()
    differs = cli("backup", "compare", str(backup.path), "--dsn", small_db.conninfo)
    assert differs.returncode == 1 and "differs from the backup" in differs.stderr
    # As docs/rollback.md prints it ("In one command"): the connection from libpq's PG* variables.
    server = conninfo_to_dict(small_db.conninfo)
    pg_env = {f"PG{k.upper()}": str(server[k]) for k in ("host", "port", "user", "password") if server.get(k)}
    restored = subprocess.run(
        ["bash", "-c", '"$PY" -m tsmigrate backup restore "$BACKUP"'],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT,
        env={**without_pg_env(), **pg_env, "PY": sys.executable, "BACKUP": str(backup.path)},
    )
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.startswith("RESTORED: ")
    with small_db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM things").fetchone()[0] == 500
        kept = [
            row[0]
            for row in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{conn.info.dbname}_failed_%",)
            )
        ]
    assert kept != [], "the database replaced is kept renamed"
    with psycopg.connect(small_db.with_dbname("postgres").conninfo, autocommit=True) as admin:
        for name in kept:
            drop_database(admin, name)
    # Options before the argument, as after it.
    assert cli("backup", "compare", "--dsn", small_db.conninfo, str(backup.path)).returncode == 0


def test_backup_verify_of_a_directory_that_is_no_backup_exits_1(tmp_path):
    result = cli("backup", "verify", str(tmp_path))
    assert result.returncode == 1 and "is not a backup" in result.stderr
    old = subprocess.run(
        [sys.executable, "-m", "tsmigrate.backupctl", "verify", str(tmp_path)], capture_output=True, text=True
    )
    assert old.returncode == 1 and "is not a backup" in old.stderr


# -- online conversions ---------------------------------------------------------------------------------


@pytest.fixture
def kept_online_conversion(local_server):
    """A database whose factory_telemetry.metric_hist was converted online, the legacy table kept."""
    with ScratchDatabase(local_server.conninfo(), f"cli_online_{uuid.uuid4().hex[:8]}") as name:
        conninfo = local_server.conninfo(name)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION timescaledb")
            conn.execute("CREATE SCHEMA factory_telemetry")
            conn.execute(
                "CREATE TABLE factory_telemetry.metric_hist (id bigserial PRIMARY KEY, "
                "ts timestamptz NOT NULL, value double precision)"
            )
            conn.execute(
                "INSERT INTO factory_telemetry.metric_hist (ts, value) "
                "SELECT timestamptz '2026-01-01' + i * interval '1 minute', i FROM generate_series(1, %s) i",
                (ROWS,),
            )
            entry = parse_plan(
                {
                    "hypertables": {
                        "metric_hist": {"time_column": "ts", "chunk_interval": "1 day", "keep_unique": ["id"]}
                    }
                }
            ).hypertables[0]
            convert_online(
                lambda: psycopg.connect(conninfo, autocommit=True),
                conn,
                "factory_telemetry",
                entry,
                has_compression=False,
                own_xids=set(),
                batch_rows=1_000,
            )
            assert conversion_state(conn, "factory_telemetry", "metric_hist") is not None
            yield conninfo, conn


def test_the_readmes_online_commands_work_as_printed(kept_online_conversion):
    """README.md prints these lines (tsmigrate/online's undo path): each runs as printed, --dsn before the table."""
    dsn, conn = kept_online_conversion
    status = shell('.venv/bin/tsmigrate online status      --dsn "$DSN"', dsn)
    assert status.returncode == 0, status.stderr
    assert "legacy table kept as factory_telemetry.metric_hist_legacy" in status.stdout
    verified = shell('.venv/bin/tsmigrate online verify      --dsn "$DSN" metric_hist', dsn)
    assert verified.returncode == 0, verified.stderr
    assert f"{ROWS} rows compared with the legacy table, 0 differ" in verified.stdout
    conn.execute("INSERT INTO factory_telemetry.metric_hist (ts, value) VALUES ('2026-01-02 12:00+00', -1)")
    back = shell('.venv/bin/tsmigrate online swap-back   --dsn "$DSN" metric_hist', dsn)
    assert back.returncode == 0, back.stderr
    assert not is_hypertable(conn, "factory_telemetry", "metric_hist")
    # The row the application wrote after the swap is in the table that took the name back.
    assert conn.execute("SELECT count(*) FROM factory_telemetry.metric_hist").fetchone()[0] == ROWS + 1
    assert conn.execute("SELECT to_regclass('factory_telemetry.metric_hist_legacy')").fetchone()[0] is None
    again = shell('.venv/bin/tsmigrate online drop-legacy --dsn "$DSN" metric_hist', dsn)
    assert again.returncode == 2 and "no online conversion of this table is kept" in again.stderr


def test_drop_legacy_ends_it_with_options_anywhere_and_the_python_m_form(kept_online_conversion):
    dsn, conn = kept_online_conversion
    # The group's options before the action, the action's after the table: the same command.
    assert cli("online", "--dsn", dsn, "verify", "metric_hist").returncode == 0
    assert cli("online", "verify", "metric_hist", "--schema", "factory_telemetry", "--dsn", dsn).returncode == 0
    missing = cli("online", "verify", "--dsn", dsn, "--schema", "public", "metric_hist")
    assert missing.returncode == 2 and "public.metric_hist: no online conversion" in missing.stderr
    # The form the README printed before this command existed (issue 19): --dsn first, then the table.
    dropped = subprocess.run(
        [sys.executable, "-m", "tsmigrate.online", "drop-legacy", "--dsn", dsn, "metric_hist"],
        capture_output=True,
        text=True,
        timeout=120,
        env=without_pg_env(),
    )
    assert dropped.returncode == 0, dropped.stderr
    assert conn.execute("SELECT to_regclass('factory_telemetry.metric_hist_legacy')").fetchone()[0] is None
    assert is_hypertable(conn, "factory_telemetry", "metric_hist")
    status = cli("online", "status", "--dsn", dsn)
    assert status.returncode == 0 and status.stdout.strip() == "no online conversion keeps a legacy table"
