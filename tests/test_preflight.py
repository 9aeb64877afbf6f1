"""The pre-flight gate end to end, on real legacy MS5.0 databases in a throwaway cluster."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from testbed.legacy import fingerprints

from tsmigrate.findings import BLOCKING
from tsmigrate.fingerprint import compare
from tsmigrate.timescale import APACHE, server_timescaledb

PROJECT = Path(__file__).resolve().parents[1]


def test_project_migrations_on_legacy_database_are_go(legacy_db, run_suite, tmp_path):
    before = fingerprints(legacy_db)
    result = run_suite("suites/preflight", "--dsn", legacy_db.conninfo)
    record = json.loads((tmp_path / "reports" / "latest.json").read_text())
    assert (result.returncode, record["verdict"]) == (0, "GO"), result.stdout[-4000:]
    assert [f for f in record["findings"] if f["severity"] == "blocking"] == []
    assert compare(before, fingerprints(legacy_db)) == []
    with legacy_db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()[0] == 0
        assert conn.execute("SELECT to_regnamespace('tsmigrate')").fetchone()[0] is None


# Each hazard as a migration file written for the test: (file text, code, line, table).
HAZARDS = {
    "key without time column": (
        """
CREATE TABLE IF NOT EXISTS factory_telemetry.sensor_log (
    id bigserial PRIMARY KEY,
    ts timestamptz NOT NULL,
    value double precision
);
SELECT create_hypertable('factory_telemetry.sensor_log', 'ts');
""",
        "TS001",
        3,
        "sensor_log",
    ),
    "nullable time column": (
        """-- a time-series table whose time column may be NULL
CREATE TABLE IF NOT EXISTS factory_telemetry.sensor_log (
    ts timestamptz,
    value double precision
);
SELECT create_hypertable('factory_telemetry.sensor_log', 'ts');
""",
        "TS002",
        3,
        "sensor_log",
    ),
    "partial index with now()": (
        """
CREATE INDEX IF NOT EXISTS idx_recent_oee
    ON factory_telemetry.oee_calculations (line_id, calculation_time)
    WHERE calculation_time > now() - interval '7 days';
""",
        "TS003",
        4,
        "oee_calculations",
    ),
    "concurrent index in a transaction": (
        """

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_energy_time ON factory_telemetry.energy_consumption (consumption_time);
""",
        "TS004",
        3,
        "energy_consumption",
    ),
    "create_hypertable without migrate_data on rows": (
        """
SELECT create_extension_placeholder();
""",
        None,
        None,
        None,
    ),
    "foreign key into a future hypertable": (
        """
CREATE TABLE IF NOT EXISTS factory_telemetry.metric_annotations (
    id bigserial PRIMARY KEY,
    metric_hist_id bigint REFERENCES factory_telemetry.metric_hist (id),
    note text
);
SELECT create_hypertable('factory_telemetry.metric_hist', 'ts', migrate_data => true);
""",
        "TS008",
        4,
        "metric_hist",
    ),
}
HAZARDS["create_hypertable without migrate_data on rows"] = (
    """CREATE EXTENSION IF NOT EXISTS timescaledb;

SELECT create_hypertable('factory_telemetry.energy_consumption', 'consumption_time');
""",
    "PF032",
    3,
    "energy_consumption",
)


@pytest.mark.parametrize("hazard", list(HAZARDS))
def test_each_hazard_is_no_go_naming_file_line_and_table(hazard, legacy_db, run_suite, tmp_path):
    text, code, line, table = HAZARDS[hazard]
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    hazard_file = migrations / "001_hazard.sql"
    hazard_file.write_text(text)
    before = fingerprints(legacy_db)

    result = run_suite(
        "suites/preflight", "--dsn", legacy_db.conninfo, "--migrations", str(migrations), "--no-rehearse"
    )
    out = result.stdout
    assert result.returncode == 1, out[-4000:]
    banner = out[out.rindex("NO-GO") :]
    assert f"{hazard_file}:{line}" in banner, banner
    assert code in banner and table in banner
    assert "fix:" in banner
    assert compare(before, fingerprints(legacy_db)) == [], "the pre-flight must not change the target"


def test_rehearsal_reports_the_first_failing_statement(legacy_db, run_suite, tmp_path):
    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    (migrations / "011_broken.sql").write_text(
        "-- fine so far\nSELECT 1;\n\nALTER TABLE factory_telemetry.no_such_table\n  ADD COLUMN x int;\n"
    )
    before = fingerprints(legacy_db)
    result = run_suite("suites/preflight", "--dsn", legacy_db.conninfo, "--migrations", str(migrations))
    assert result.returncode == 1
    banner = result.stdout[result.stdout.rindex("NO-GO") :]
    assert "PF040" in banner and "011_broken.sql:4" in banner and "SQLSTATE 42P01" in banner
    assert compare(before, fingerprints(legacy_db)) == []


@pytest.mark.parametrize("allow", [False, True])
def test_apache_edition_against_a_plan_that_needs_compression(allow, apache_legacy_db, run_suite, tmp_path):
    with apache_legacy_db.connect() as conn:
        assert server_timescaledb(conn).edition == APACHE  # on the community build too (tests/testbed/apache.py)
    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    plan = migrations / "plan.toml"
    plan.write_text(
        plan.read_text().replace("allow_apache_edition = true", f"allow_apache_edition = {str(allow).lower()}")
    )
    result = run_suite(
        "suites/preflight", "--dsn", apache_legacy_db.conninfo, "--migrations", str(migrations), "--no-rehearse"
    )
    if allow:
        assert result.returncode == 0, result.stdout[-3000:]
        assert "PF004 advisory" in result.stdout and "apache edition" in result.stdout
    else:
        assert result.returncode == 1
        banner = result.stdout[result.stdout.rindex("NO-GO") :]
        assert "PF004" in banner and "apache edition" in banner and "compression" in banner


def test_no_target_is_refused_before_any_test_runs(run_suite, monkeypatch):
    for var in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGSERVICE", "PGHOSTADDR", "PGSERVICEFILE"):
        monkeypatch.delenv(var, raising=False)
    result = run_suite("suites/preflight")
    assert result.returncode == 4
    assert "no target database" in result.stderr and "--dsn" in result.stderr
    assert "passed" not in result.stdout and "failed" not in result.stdout


def test_invalid_plan_is_refused_before_any_test_runs(legacy_db, run_suite, tmp_path):
    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    (migrations / "plan.toml").write_text('[hypertables.metric_hist]\ntime_column = "ts"\nchunk_interval = "often"\n')
    result = run_suite("suites/preflight", "--dsn", legacy_db.conninfo, "--migrations", str(migrations))
    assert result.returncode == 4
    assert "plan.toml" in result.stderr and "hypertables.metric_hist.chunk_interval" in result.stderr


@pytest.mark.finding("PF081", BLOCKING)
def test_every_problem_of_an_invalid_plan_is_told_and_recorded_as_findings(legacy_db, run_suite, tmp_path):
    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    plan = migrations / "plan.toml"
    plan.write_text(
        '[plan]\nonline_above_rows = -1\n\n[hypertables.metric_hist]\ntime_column = "ts"\n'
        'chunk_interval = "often"\ncolour = "blue"\n'
    )
    result = run_suite("suites/preflight", "--dsn", legacy_db.conninfo, "--migrations", str(migrations))
    assert result.returncode == 4, result.stdout[-3000:] + result.stderr[-3000:]
    for where in (
        f"{plan}:2: [plan.online_above_rows]",
        f"{plan}:6: [hypertables.metric_hist.chunk_interval]",
        f"{plan}:7: [hypertables.metric_hist.colour]",
    ):
        assert where in result.stderr, result.stderr[-3000:]
    record = json.loads((tmp_path / "reports" / "latest.json").read_text())
    found = sorted((f["code"], f["severity"], f["path"], f["line"]) for f in record["findings"])
    assert found == [("PF081", "blocking", str(plan), line) for line in (2, 6, 7)], record["findings"]
    assert record["verdict"] in ("NO-GO", "STOPPED") and record["exit_code"] == 4, record["verdict"]


def test_preflight_without_rehearsal_takes_seconds(legacy_db, run_suite, tmp_path):
    """Quick enough to run on every change to the migrations: under 10 s on the tiny legacy database, by the
    run's own clock (the record's duration, from the session's start to its end)."""
    limit_s = 10.0
    result = run_suite("suites/preflight", "--dsn", legacy_db.conninfo, "--no-rehearse")
    record = json.loads((tmp_path / "reports" / "latest.json").read_text())
    assert (result.returncode, record["verdict"]) == (0, "GO"), result.stdout[-3000:]
    assert record["duration_seconds"] < limit_s, f"the pre-flight took {record['duration_seconds']:.1f} s"


def test_verdict_inputs_notice_a_changed_file_or_plan(legacy_db, tmp_path):
    from tsmigrate.preflight.verdict import changed_since, verdict_inputs

    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    with legacy_db.connect(options="-c default_transaction_read_only=on") as conn:
        at_go = verdict_inputs(conn, migrations)
        assert changed_since(at_go, verdict_inputs(conn, migrations)) == []
        edited = migrations / "009_database_optimization.sql"
        edited.write_text(edited.read_text() + "\n-- edited after the GO\n")
        (migrations / "plan.toml").write_text((migrations / "plan.toml").read_text() + "\n# edited\n")
        changed = changed_since(at_go, verdict_inputs(conn, migrations))
    assert [c.split(":")[0] for c in changed] == ["migrations_sha256", "plan_sha256"]


# Edits a migration file at the moment between the pre-flight's GO and the first migration step, as a person
# editing the directory during the run would: the only way to make "changed since the GO" happen on cue.
EDIT_AFTER_THE_GO = """
from pathlib import Path

import pytest

EDITED = Path({path!r})


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.get_closest_marker("execute") is not None and not EDITED.read_text().endswith("-- edited after the GO\\n"):
        EDITED.write_text(EDITED.read_text() + "\\n-- edited after the GO\\n")
"""


def test_execute_refuses_a_file_changed_since_the_go_whatever_k_deselects(legacy_db, run_suite, tmp_path):
    """The verdict inputs are recorded by a session fixture, and a run that migrates runs every pre-flight check:
    deselecting the verdict's own check (-k) turns off neither."""
    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    edited = migrations / "009_database_optimization.sql"
    (tmp_path / "edit_after_the_go.py").write_text(EDIT_AFTER_THE_GO.format(path=str(edited)))
    before = fingerprints(legacy_db)
    result = run_suite(
        "suites/execute",
        "-k",
        "not verdict",
        "-p",
        "edit_after_the_go",
        "--dsn",
        legacy_db.conninfo,
        "--migrations",
        str(migrations),
        "--no-rehearse",
        env={"PYTHONPATH": str(tmp_path)},
    )
    record = json.loads((tmp_path / "reports" / "latest.json").read_text())
    assert result.returncode == 2, result.stdout[-3000:]
    ran = [case.get("name") for case in ET.parse(next((tmp_path / "reports").glob("*.xml"))).iter("testcase")]
    assert "test_the_verdict_judges_migration_files" in ran and "test_server_version" in ran, ran
    assert record["verdict"] == "STOPPED" and record["steps"] == [] and record["backup"] is None
    assert record["stopped"].startswith(
        "the run is refused, nothing was changed: since the pre-flight GO, migrations_sha256: "
    ), record["stopped"]
    assert edited.read_text().endswith("-- edited after the GO\n"), "the edit happened, after the GO"
    assert compare(before, fingerprints(legacy_db)) == []
    with legacy_db.connect() as conn:
        assert conn.execute("SELECT to_regnamespace('tsmigrate')").fetchone()[0] is None, "no ledger was created"


def test_k_cannot_migrate_without_the_whole_preflight(legacy_db, run_suite, tmp_path):
    """`pytest suites/execute -k 001` selects one step, and no pre-flight check by name: the checks run anyway,
    so a blocking finding (here a key without the time column, in a file the -k did not select) stops it."""
    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    text, code, line, table = HAZARDS["key without time column"]
    (migrations / "011_sensor_log.sql").write_text(text)
    before = fingerprints(legacy_db)
    result = run_suite(
        "suites/execute", "-k", "001", "--dsn", legacy_db.conninfo, "--migrations", str(migrations), "--no-rehearse"
    )
    record = json.loads((tmp_path / "reports" / "latest.json").read_text())
    assert result.returncode == 1, result.stdout[-3000:]
    assert record["verdict"] == "NO-GO" and record["steps"] == [] and record["backup"] is None
    assert [
        (f["code"], Path(f["path"]).name, f["line"], f["table"])
        for f in record["findings"]
        if f["severity"] == "blocking"
    ] == [(code, "011_sensor_log.sql", line, f"factory_telemetry.{table}")]
    assert "deselected pre-flight check(s) run anyway" in result.stdout
    assert compare(before, fingerprints(legacy_db)) == []
    with legacy_db.connect() as conn:
        assert conn.execute("SELECT to_regnamespace('tsmigrate')").fetchone()[0] is None, "no ledger was created"


def test_a_partial_preflight_is_not_a_go(legacy_db, run_suite, tmp_path):
    """Looking at one check is fine, but the gate's exit 0 must mean every check ran and passed."""
    result = run_suite("suites/preflight", "-k", "server_version", "--dsn", legacy_db.conninfo, "--no-rehearse")
    record = json.loads((tmp_path / "reports" / "latest.json").read_text())
    ran = [case.get("name") for case in ET.parse(next((tmp_path / "reports").glob("*.xml"))).iter("testcase")]
    assert ran == ["test_server_version"], ran
    assert record["tests"]["failed"] == 0 and record["tests"]["passed"] == 1
    assert (result.returncode, record["verdict"]) == (1, "NO-GO"), result.stdout[-3000:]
    assert "pre-flight checks were deselected" in record["stopped"] and "not a GO" in record["stopped"]
