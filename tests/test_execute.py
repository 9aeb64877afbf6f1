"""The execute suite end to end, on real legacy MS5.0 databases in a throwaway cluster."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from testbed.legacy import fingerprints, fingerprints_as_before

from tsmigrate import ledger
from tsmigrate.db import is_hypertable
from tsmigrate.findings import BLOCKING
from tsmigrate.fingerprint import compare
from tsmigrate.janitor import ScratchDatabase
from tsmigrate.plan import load_plan

PROJECT = Path(__file__).resolve().parents[1]
HYPERTABLES = ("metric_hist", "oee_calculations", "energy_consumption", "production_kpis", "production_context_history")


def ledger_rows(target):
    """(step, outcome) of every attempt, in order; none before the first run made the ledger."""
    with target.connect() as conn:
        if conn.execute("SELECT to_regclass('tsmigrate.ledger')").fetchone()[0] is None:
            return []
        return conn.execute("SELECT step, outcome FROM tsmigrate.ledger ORDER BY attempt").fetchall()


def record_of(tmp_path: Path) -> dict:
    """The JSON record of the last run that run_suite made (its reports go under tmp_path)."""
    return json.loads((tmp_path / "reports" / "latest.json").read_text())


def test_full_run_converts_legacy_without_losing_a_row(legacy_db, run_suite, tmp_path):
    before = fingerprints(legacy_db)
    with legacy_db.connect() as conn:
        nulls = conn.execute(
            "SELECT count(*) FROM factory_telemetry.production_kpis WHERE created_at IS NULL"
        ).fetchone()[0]
    assert nulls > 0, "the legacy builder should leave NULL time values to handle"

    result = run_suite("suites/execute", "--dsn", legacy_db.conninfo)
    record = record_of(tmp_path)
    assert (result.returncode, record["verdict"]) == (0, "SUCCESS"), result.stdout[-4000:] + result.stderr[-2000:]
    assert {s["status"] for s in record["steps"]} == {"applied"}

    after = fingerprints_as_before(legacy_db, before)
    assert compare(before, after) == []
    plan = load_plan(PROJECT / "migrations")
    with legacy_db.connect() as conn:
        for h in plan.hypertables:
            assert is_hypertable(conn, "factory_telemetry", h.table)
            column, interval = conn.execute(
                "SELECT column_name, time_interval FROM timescaledb_information.dimensions WHERE hypertable_name = %s",
                (h.table,),
            ).fetchone()
            assert column == h.time_column
            assert interval.total_seconds() == h.chunk_interval.seconds
        assert conn.execute("SELECT count(*) FROM tsmigrate.time_fills").fetchone()[0] >= nulls
        steps = {r[0] for r in conn.execute("SELECT step FROM tsmigrate.ledger WHERE outcome = 'applied'")}
    assert {f"convert:{t}" for t in HYPERTABLES} <= steps
    assert {f.name.split("_")[0] for f in (PROJECT / "migrations").glob("*.sql")} <= steps

    second = run_suite("suites/execute", "--dsn", legacy_db.conninfo)
    record = record_of(tmp_path)
    assert (second.returncode, record["verdict"]) == (0, "SUCCESS"), second.stdout[-3000:]
    assert {s["status"] for s in record["steps"]} == {"already applied"}, record["steps"]
    assert compare(before, fingerprints_as_before(legacy_db, before)) == []


def test_a_failing_step_restores_the_database_identically(legacy_db, run_suite, tmp_path):
    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    # Inject a failure into the 5th file, after its own statements ran.
    fifth = sorted(migrations.glob("005_*.sql"))[0]
    fifth.write_text(fifth.read_text() + "\n\nSELECT 1 / 0;  -- injected by the test\n")
    before = fingerprints(legacy_db)

    result = run_suite("suites/execute", "--dsn", legacy_db.conninfo, "--migrations", str(migrations), "--no-rehearse")
    record = record_of(tmp_path)
    assert (result.returncode, record["verdict"]) == (1, "RESTORED"), result.stdout[-4000:]
    out = result.stdout
    assert f"{fifth.name}:" in out and "division by zero" in out and "SQLSTATE 22012" in out
    statuses = [(s["label"], s["status"]) for s in record["steps"]]
    assert statuses[-1] == (fifth.name, "failed") and {status for _, status in statuses[:-1]} == {"applied"}, statuses
    later = len(list(migrations.glob("*.sql"))) - len(statuses) + len(HYPERTABLES)
    not_run = re.findall(
        rf"^SKIPPED \[(\d+)\] .*: not run: {re.escape(fifth.name)} failed before it$", out, re.MULTILINE
    )
    assert sum(map(int, not_run)) == later, f"every later step is skipped, naming the failed one:\n{out[-3000:]}"
    assert record["restore"]["identical"] is True and record["restore"]["complete"] is True
    last = [line for line in out.splitlines() if line.strip()][-1].strip()
    assert last.startswith("RESTORED: ") and "is identical to the backup" in last, last
    # The verdict line says what the database now is (issue 19): back to the backup of that time, the steps this run
    # applied rolled back with it, and what others did since (nothing here); never "N steps applied".
    restore, rolled = record["restore"], [label for label, _ in statuses[:-1]]
    nothing = "no rows were committed or deleted by others after the backup"
    assert restore["backup_taken_at"] == record["backup"]["taken_at"] is not None, restore
    assert (restore["rolled_back"], restore["carried_over"]) == (rolled, nothing), restore
    verdict_line = re.findall(r"^=+ (RESTORED: .*?) =+$", out, re.MULTILINE)
    assert verdict_line == [
        f"RESTORED: {record['target']}: back to the backup taken {restore['backup_taken_at']}; "
        f"rolled back with it: {', '.join(rolled)}; {nothing}"
    ], out[-3000:]

    assert compare(before, fingerprints(legacy_db)) == []
    with legacy_db.connect() as conn:
        assert conn.execute("SELECT to_regclass('tsmigrate.ledger')").fetchone()[0] is None
        kept = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (legacy_db.dbname + "_failed_%",)
        ).fetchall()
    assert len(kept) == 1, "the failed database is kept for inspection"


def test_no_restore_leaves_the_failure_in_place(legacy_db, run_suite, tmp_path):
    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    (migrations / "002_plc_equipment_users.sql").write_text("SELECT 1 / 0;\n")
    result = run_suite(
        "suites/execute", "--dsn", legacy_db.conninfo, "--migrations", str(migrations), "--no-restore", "--no-rehearse"
    )
    assert result.returncode == 1
    assert "NOT RESTORED (--no-restore)" in result.stdout
    rows = ledger_rows(legacy_db)
    assert ("001", "applied") in rows and ("002", "failed") in rows


def test_changed_applied_file_stops_before_any_change(legacy_db, run_suite, tmp_path):
    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    first = run_suite("suites/execute", "--dsn", legacy_db.conninfo, "--migrations", str(migrations))
    assert first.returncode == 0, first.stdout[-3000:]
    edited = migrations / "003_production_management.sql"
    edited.write_text(edited.read_text() + "\n-- edited after it was applied\n")
    rows_before = ledger_rows(legacy_db)
    second = run_suite("suites/execute", "--dsn", legacy_db.conninfo, "--migrations", str(migrations))
    assert second.returncode == 1, "the pre-flight that execute runs first says NO-GO"
    assert "BLOCKING PF022" in second.stdout and "003_production_management.sql" in second.stdout
    assert "execute skipped: the pre-flight said NO-GO" in second.stdout
    assert ledger_rows(legacy_db) == rows_before


def test_a_second_concurrent_run_is_refused(legacy_db, run_suite):
    with legacy_db.connect(application_name="the first run") as holder:
        ledger.acquire_lock(holder)
        pid = holder.info.backend_pid
        result = run_suite("suites/execute", "--dsn", legacy_db.conninfo)
    assert result.returncode == 2
    assert "another migration run holds the lock" in result.stdout + result.stderr
    assert f"backend pid {pid}" in result.stdout + result.stderr
    with legacy_db.connect() as conn:
        assert conn.execute("SELECT to_regclass('tsmigrate.ledger')").fetchone()[0] is None


def run_sessions(target) -> list[tuple[int, str]]:
    """(pid, application_name) of the sessions a run keeps on the target (its own and its pre-flight's)."""
    with psycopg.connect(target.with_dbname("postgres").conninfo, autocommit=True) as admin:
        return admin.execute(
            "SELECT pid, application_name FROM pg_stat_activity WHERE datname = %s "
            "AND application_name LIKE 'tsmigrate%%'",
            (target.dbname,),
        ).fetchall()


def kill_the_run_during(target, migrations: Path, step: str, tmp_path: Path) -> None:
    """Start `pytest suites/execute`, SIGKILL it once the ledger shows ``step`` started, and wait until the
    server has ended its sessions (it notices the dead client within client_connection_check_interval)."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "suites/execute",
        "--dsn",
        target.conninfo,
        "--migrations",
        str(migrations),
        "--backups",
        str(tmp_path / "killed-backups"),
        "--reports",
        str(tmp_path / "killed-reports"),
        "--no-rehearse",
        "--write-sample=0",
        "-p",
        "no:cacheprovider",
    ]
    proc = subprocess.Popen(command, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while (step, "started") not in ledger_rows(target):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"the run never reached step {step} (exit {proc.poll()})")
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    deadline = time.monotonic() + 30
    while left := run_sessions(target):
        if time.monotonic() > deadline:
            pytest.fail(f"the killed run's sessions stay on the server: {left}")
        time.sleep(0.1)


def test_a_run_killed_mid_step_is_detected_and_resolved(legacy_db, run_suite, tmp_path):
    """Crash rule: a transactional step left 'started' by a killed run is marked interrupted and runs again."""
    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    slow = migrations / "004_advanced_production.sql"
    slow.write_text(slow.read_text() + "\nSELECT pg_sleep(3);\n")
    kill_the_run_during(legacy_db, migrations, "004", tmp_path)
    assert ("004", "started") in ledger_rows(legacy_db)

    second = run_suite("suites/execute", "--dsn", legacy_db.conninfo, "--migrations", str(migrations))
    assert second.returncode == 0, second.stdout[-4000:]
    rows = ledger_rows(legacy_db)
    assert ("004", "interrupted") in rows and ("004", "applied") in rows
    assert ("001", "applied") in rows and ("convert:metric_hist", "applied") in rows


# Non-transactional: each statement commits on its own, so a run killed in the pg_sleep leaves the table made
# and its row written. Written to be rerun (IF NOT EXISTS, ON CONFLICT), as such a file must be.
HALF_DONE_STEP = """-- tsmigrate:no-transaction
CREATE TABLE IF NOT EXISTS factory_telemetry.resolve_probe (n int PRIMARY KEY);
INSERT INTO factory_telemetry.resolve_probe VALUES (1) ON CONFLICT DO NOTHING;
SELECT pg_sleep(3);
"""


@pytest.mark.finding("PF024", BLOCKING)
def test_a_non_transactional_step_left_half_done_waits_for_resolve_interrupted(legacy_db, run_suite, tmp_path):
    before = fingerprints(legacy_db)
    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    (migrations / "011_resolve_probe.sql").write_text(HALF_DONE_STEP)
    kill_the_run_during(legacy_db, migrations, "011", tmp_path)
    with legacy_db.connect() as conn:
        assert conn.execute("SELECT n FROM factory_telemetry.resolve_probe").fetchall() == [(1,)], "half done"

    refused = run_suite("suites/execute", "--dsn", legacy_db.conninfo, "--migrations", str(migrations), "--no-rehearse")
    record = record_of(tmp_path)
    assert (refused.returncode, record["verdict"]) == (1, "NO-GO"), refused.stdout[-3000:]
    assert [(f["severity"], f["path"]) for f in record["findings"] if f["code"] == "PF024"] == [
        ("blocking", str(migrations / "011_resolve_probe.sql"))
    ]
    rows = ledger_rows(legacy_db)
    assert ("011", "started") in rows and ("011", "applied") not in rows, "nothing ran after the NO-GO"

    resolved = run_suite(
        "suites/execute",
        "--dsn",
        legacy_db.conninfo,
        "--migrations",
        str(migrations),
        "--no-rehearse",
        "--resolve-interrupted",
    )
    record = record_of(tmp_path)
    assert (resolved.returncode, record["verdict"]) == (0, "SUCCESS"), resolved.stdout[-3000:]
    assert [f["severity"] for f in record["findings"] if f["code"] == "PF024"] == ["advisory"]
    rows = ledger_rows(legacy_db)
    assert ("011", "interrupted") in rows and ("011", "applied") in rows and ("011", "started") not in rows
    assert {f"convert:{t}" for t in HYPERTABLES} <= {step for step, outcome in rows if outcome == "applied"}
    with legacy_db.connect() as conn:
        assert conn.execute("SELECT n FROM factory_telemetry.resolve_probe").fetchall() == [(1,)]
    assert compare(before, fingerprints_as_before(legacy_db, before)) == []


def test_no_room_for_the_backup_stops_before_any_change(legacy_db, run_suite, tiny_filesystem):
    """The pre-flight that `suites/execute` runs first sees it: NO-GO, nothing changed."""
    before = fingerprints(legacy_db)
    result = run_suite(
        "suites/execute", "--dsn", legacy_db.conninfo, "--backups", str(tiny_filesystem / "backups"), "--no-rehearse"
    )
    assert result.returncode == 1
    assert "BLOCKING PF013" in result.stdout and "execute skipped: the pre-flight said NO-GO" in result.stdout
    assert compare(before, fingerprints(legacy_db)) == []
    with legacy_db.connect() as conn:
        assert conn.execute("SELECT to_regclass('tsmigrate.ledger')").fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()[0] == 0


def test_full_run_with_no_go_preflight_changes_nothing(legacy_db, run_suite, tmp_path):
    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    (migrations / "011_hazard.sql").write_text(
        "CREATE INDEX IF NOT EXISTS idx_recent ON factory_telemetry.metric_hist (ts) "
        "WHERE ts > now() - interval '1 day';\n"
    )
    before = fingerprints(legacy_db)
    result = run_suite("suites", "--dsn", legacy_db.conninfo, "--migrations", str(migrations), "--no-rehearse")
    assert result.returncode == 1
    assert "pre-flight said NO-GO" in result.stdout
    assert "NO-GO" in result.stdout[result.stdout.rindex("passed") if "passed" in result.stdout else 0 :]
    assert compare(before, fingerprints(legacy_db)) == []
    with legacy_db.connect() as conn:
        assert conn.execute("SELECT to_regclass('tsmigrate.ledger')").fetchone()[0] is None


def test_full_run_on_an_empty_database_then_nothing_to_do(local_server, run_suite):
    with ScratchDatabase(local_server.conninfo(), "empty_site") as name:
        dsn = local_server.conninfo(name)
        first = run_suite("suites", "--dsn", dsn)
        assert first.returncode == 0, first.stdout[-4000:]
        with psycopg.connect(dsn) as conn:
            tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'factory_telemetry'").fetchone()[0]
            assert tables == 49
            assert conn.execute("SELECT count(*) FROM timescaledb_information.hypertables").fetchone()[0] == 5
            # The application inserts as before: no id given, the sequence supplies it.
            conn.execute("SET ROLE ms5_user_production")
            metric = conn.execute("""INSERT INTO factory_telemetry.metric_def
                                            (equipment_code, metric_key, value_type, description)
                                     VALUES ('BP01.PACK', 'speed', 'REAL', 'line speed') RETURNING id""").fetchone()[0]
            new_id = conn.execute(
                "INSERT INTO factory_telemetry.metric_hist (metric_def_id, ts, value_real) "
                "VALUES (%s, now(), 1.5) RETURNING id",
                (metric,),
            ).fetchone()[0]
            assert new_id is not None
            conn.rollback()
        second = run_suite("suites", "--dsn", dsn)
        assert second.returncode == 0, second.stdout[-3000:]
        assert "0 steps applied" in second.stdout


def test_after_conversion_views_return_rows_and_the_application_writes_as_before(legacy_db, run_suite):
    result = run_suite("suites/execute", "--dsn", legacy_db.conninfo)
    assert result.returncode == 0, result.stdout[-3000:]
    with legacy_db.connect(autocommit=False) as conn:
        for view in (
            "public.v_oee_summary",
            "public.v_equipment_latest",
            "public.v_production_performance",
            "factory_telemetry.mv_oee_summary",
        ):
            assert conn.execute(f"SELECT count(*) FROM {view}").fetchone()[0] > 0, f"{view} returns no rows"
        conn.execute("SET ROLE ms5_user_production")
        metric = conn.execute("SELECT id FROM factory_telemetry.metric_def LIMIT 1").fetchone()[0]
        before_max = conn.execute("SELECT max(id) FROM factory_telemetry.metric_hist").fetchone()[0]
        new_id = conn.execute(
            "INSERT INTO factory_telemetry.metric_hist (metric_def_id, ts, value_real) "
            "VALUES (%s, now(), 42) RETURNING id",
            (metric,),
        ).fetchone()[0]
        assert new_id > before_max
        conn.rollback()


def test_a_rerun_compares_with_its_own_backup_where_an_earlier_run_filled_null_times(legacy_db, run_suite, tmp_path):
    """A run that stopped after a conversion filled NULL times (killed, or a plan converting fewer tables) leaves
    the fills in the database; the next run's backup holds them, so its post-flight must not undo them."""
    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    plan = migrations / "plan.toml"
    full = plan.read_text()
    sections = full.split("\n[")
    plan.write_text(
        "\n[".join(
            s for s in sections if not s.startswith("hypertables.") or s.startswith("hypertables.production_kpis]")
        )
    )
    before = fingerprints(legacy_db)
    first = run_suite("suites/execute", "--dsn", legacy_db.conninfo, "--migrations", str(migrations), "--no-rehearse")
    assert first.returncode == 0, first.stdout[-3000:]
    with legacy_db.connect() as conn:
        assert (
            conn.execute("SELECT count(*) FROM tsmigrate.time_fills WHERE table_name = 'production_kpis'").fetchone()[0]
            > 0
        ), "the first run should have filled NULL times"

    plan.write_text(full)
    second = run_suite(
        "suites",
        "--dsn",
        legacy_db.conninfo,
        "--migrations",
        str(migrations),
        "--no-rehearse",
        f"--reports={tmp_path / 'second'}",
    )
    assert second.returncode == 0, second.stdout[-3000:]
    assert compare(before, fingerprints_as_before(legacy_db, before)) == []


def test_the_run_as_a_context_manager_restores_after_a_failed_step_in_its_block(legacy_db, tmp_path):
    from tsmigrate.run import MigrationRun, StepFailed

    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    second = sorted(migrations.glob("002_*.sql"))[0]
    second.write_text(second.read_text() + "\nSELECT 1 / 0;\n")
    before = fingerprints(legacy_db)
    with pytest.raises(StepFailed, match="division by zero"):
        with MigrationRun(legacy_db, migrations, load_plan(migrations), tmp_path / "backups") as run:
            for step in run.steps:
                run.apply(step)
    assert run.closed and run.failed is not None and run.restore_outcome is not None
    assert compare(before, fingerprints(legacy_db)) == []
    with MigrationRun(legacy_db, migrations, load_plan(migrations), tmp_path / "backups") as again:
        assert again.pending()[0].label == sorted(migrations.glob("001_*.sql"))[0].name, "the lock was released"
