"""The post-flight suite end to end, on a legacy MS5.0 database migrated by the execute suite in a
throwaway cluster: it passes after a full run; each kind of damage makes the matching check fail
with a message that names the object; the benchmarks leave every row (and sequence) as it was.
Then the checks of tsmigrate.integrity one by one, on a copy of the migrated database."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tsmigrate import access, bench
from tsmigrate.baseline import resolve_baseline
from tsmigrate.fingerprint import fingerprint_database
from tsmigrate.integrity import content, objects, structure
from tsmigrate.janitor import ScratchDatabase, create_database, drop_database_and_copies, freeze
from tsmigrate.target import Target
from tsmigrate.timescale import server_timescaledb

PROJECT = Path(__file__).resolve().parents[1]
NAME = "ms5_postflight"
POSTFLIGHT = "suites/postflight"
CHECK_FILES = [
    f"{POSTFLIGHT}/test_integrity.py",
    f"{POSTFLIGHT}/test_timescaledb.py",
    f"{POSTFLIGHT}/test_application_access.py",
]  # all but the benchmarks


@dataclass
class Run:
    returncode: int
    stdout: str
    outcomes: dict[str, tuple[str, str]]  # "file.py::test[param]" -> (passed/failed/skipped/error, message)

    def with_outcome(self, outcome: str) -> dict[str, str]:
        return {k: m for k, (o, m) in self.outcomes.items() if o == outcome}

    def tail(self) -> str:
        return self.stdout[-5000:]


def run_pytest(*args: str, workdir: Path, backups: Path) -> Run:
    """``pytest <args>`` in the project, as an operator runs it; outcomes read from its JUnit XML."""
    workdir.mkdir(parents=True, exist_ok=True)
    junit = workdir / "junit.xml"
    command = [
        sys.executable,
        "-m",
        "pytest",
        *args,
        "--reports",
        str(workdir / "reports"),
        "--backups",
        str(backups),
        "--junitxml",
        str(junit),
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
    ]
    result = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    outcomes = {}
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            test = f"{case.get('classname', '').rsplit('.', 1)[-1]}.py::{case.get('name')}"
            outcome, message = "passed", ""
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    outcome = {"failure": "failed"}.get(child.tag, child.tag)
                    message = f"{child.get('message', '')}\n{child.text or ''}"
            outcomes[test] = (outcome, message)
    return Run(result.returncode, result.stdout + result.stderr, outcomes)


def _admin(server) -> psycopg.Connection:
    return psycopg.connect(server.conninfo(), autocommit=True)


def _clone(server, source: str, name: str) -> Target:
    with _admin(server) as admin:
        create_database(admin, name, template=source)
    return Target(server.conninfo(name), f"test database {name}")


@dataclass
class Migrated:
    target: Target
    backups: Path  # the --backups directory of the execute run
    backup: Path  # the backup it took before its first change
    full_run: Run  # pytest suites/execute suites/postflight
    pristine: str  # a frozen copy of the migrated database, to clone from
    workdir: Path


@pytest.fixture(scope="module")
def migrated(local_server, legacy_template, tmp_path_factory):
    """A legacy MS5.0 database after a full run (execute then post-flight in one session)."""
    workdir = tmp_path_factory.mktemp("postflight")
    target = _clone(local_server, legacy_template, NAME)
    backups = workdir / "backups"
    full = run_pytest("suites/execute", POSTFLIGHT, "--dsn", target.conninfo, workdir=workdir / "full", backups=backups)
    found = sorted(backups.glob(f"{NAME}-*"))
    assert full.returncode == 0 and len(found) == 1, full.tail()
    pristine = f"{NAME}_pristine"
    _clone(local_server, NAME, pristine)
    with _admin(local_server) as admin:
        freeze(admin, pristine)
    yield Migrated(target, backups, found[0], full, pristine, workdir)
    with _admin(local_server) as admin:
        drop_database_and_copies(admin, NAME)


@pytest.fixture
def copy_of_migrated(request, local_server, migrated) -> Target:
    """A fresh copy of the migrated database for one test, dropped afterwards."""
    name = f"{NAME}_{abs(hash(request.node.nodeid)) % 10**6}"
    with ScratchDatabase(local_server.conninfo(), name, template=migrated.pristine):
        yield Target(local_server.conninfo(name), f"test database {name}")


def _state(target: Target) -> tuple[dict, dict]:
    """Every user table's fingerprint (all columns) and every sequence's position."""
    with target.connect() as conn:
        tables = fingerprint_database(conn)
        sequences = {}
        for schema, name in conn.execute(
            "SELECT schemaname, sequencename FROM pg_sequences "
            "WHERE schemaname NOT LIKE '\\_timescaledb%%' ORDER BY 1, 2"
        ).fetchall():
            sequences[f"{schema}.{name}"] = conn.execute(
                sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(schema, name))
            ).fetchone()
    return tables, sequences


# -- the whole suite -----------------------------------------------------------------------------


def test_a_full_run_passes_every_postflight_check(migrated):
    run = migrated.full_run
    postflight = {
        k: v
        for k, v in run.outcomes.items()
        if k.startswith(("test_integrity", "test_timescaledb", "test_benchmarks", "test_application"))
    }
    assert postflight and not run.with_outcome("failed") and not run.with_outcome("error"), run.tail()
    # The execute run's own backup is the baseline: the integrity checks ran, none skipped.
    assert "the backup this run's execute suite took before its first change" in run.stdout
    integrity_tests = {k: o for k, (o, _) in postflight.items() if k.startswith("test_integrity")}
    online_check = "test_integrity.py::test_online_conversions_match_their_legacy_tables"
    assert integrity_tests.pop(online_check) == "skipped", "no table of this run converts online"
    assert integrity_tests and set(integrity_tests.values()) == {"passed"}, integrity_tests
    for test, (outcome, message) in postflight.items():
        if outcome == "skipped":  # only what the apache edition lacks, chunks of the tiny history too small to
            # judge compression by (community), and the online comparison
            assert (
                "apache" in message
                or "the plan" in message
                or test == online_check
                or "chunks too small to judge compression" in message
            ), (test, message)
    # Every benchmark beside its limit: in the terminal, and in the HTML report.
    assert "post-flight benchmarks: each figure beside its limit" in run.stdout
    for name in (
        "metric_hist ingest, COPY",
        "metric_hist ingest, batched INSERT",
        "latest values per equipment, p95",
        "OEE per line over a shift, p95",
        "energy per hour over a day, p95",
        "faults active, p95",
        "storage per month, projected",
    ):
        assert name in run.stdout
    html = (migrated.workdir / "full" / "reports" / "latest.html").read_text()
    assert "metric_hist ingest, COPY" in html and "<svg" in html


def test_a_postflight_on_its_own_finds_the_backup_and_leaves_every_row_as_it_was(migrated):
    tables, sequences = _state(migrated.target)
    run = run_pytest(
        POSTFLIGHT, "--dsn", migrated.target.conninfo, workdir=migrated.workdir / "alone", backups=migrated.backups
    )
    assert run.returncode == 0, run.tail()
    assert f"the newest backup of {NAME} in {migrated.backups}" in run.stdout
    assert run.outcomes["test_benchmarks.py::test_ingest_through_copy"][0] == "passed"
    after_tables, after_sequences = _state(migrated.target)
    assert after_tables == tables, "the benchmarks left rows behind"
    assert after_sequences == sequences, "the benchmarks or access checks moved a sequence"


def test_without_a_baseline_the_integrity_checks_skip_and_say_how_to_give_one(migrated, copy_of_migrated, tmp_path):
    run = run_pytest(
        f"{POSTFLIGHT}/test_integrity.py",
        "--dsn",
        copy_of_migrated.conninfo,
        workdir=tmp_path,
        backups=tmp_path / "none",
    )
    assert run.returncode == 0, run.tail()
    skipped = run.with_outcome("skipped")
    for test in (
        "test_integrity.py::test_every_table_keeps_its_rows",
        "test_integrity.py::test_every_table_keeps_its_content",
        "test_integrity.py::test_no_view_function_or_trigger_missing",
    ):
        assert "no baseline to compare with" in skipped[test] and "--baseline DIR" in skipped[test], skipped.get(test)
    assert run.outcomes["test_integrity.py::test_foreign_keys_hold"][0] == "passed"


def test_a_baseline_that_is_not_a_backup_is_refused_before_any_check(migrated, tmp_path):
    run = run_pytest(
        POSTFLIGHT,
        "--dsn",
        migrated.target.conninfo,
        "--baseline",
        str(migrated.backups),
        workdir=tmp_path,
        backups=migrated.backups,
    )
    assert run.returncode == 4, run.tail()
    assert "is not a backup directory" in run.stdout and migrated.backup.name in run.stdout
    assert not run.outcomes


# -- damage, and the check that names it ----------------------------------------------------------------

REVERT_TO_PLAIN_TABLE = """
    ALTER SEQUENCE factory_telemetry.energy_consumption_id_seq OWNED BY NONE;
    CREATE TABLE factory_telemetry.energy_plain (LIKE factory_telemetry.energy_consumption INCLUDING ALL);
    INSERT INTO factory_telemetry.energy_plain SELECT * FROM factory_telemetry.energy_consumption;
    DROP TABLE factory_telemetry.energy_consumption;
    ALTER TABLE factory_telemetry.energy_plain RENAME TO energy_consumption;
    ALTER SEQUENCE factory_telemetry.energy_consumption_id_seq OWNED BY factory_telemetry.energy_consumption.id;
    GRANT SELECT, INSERT, UPDATE, DELETE ON factory_telemetry.energy_consumption
       TO ms5_user_production, ms5_user_staging;
"""

# damage: (SQL, {failing test: fragments of its message}); with the community edition a reverted
# hypertable also fails its compression and policy checks (COMMUNITY_ALSO).
DAMAGE = {
    "row deleted": (
        "DELETE FROM factory_telemetry.energy_consumption "
        "WHERE id = (SELECT min(id) FROM factory_telemetry.energy_consumption)",
        {
            "test_integrity.py::test_every_table_keeps_its_rows": [
                "factory_telemetry.energy_consumption",
                "(-1)",
                "1 row of the baseline gone or changed",
                "id=1",
            ]
        },
    ),
    "value changed": (
        "UPDATE factory_telemetry.metric_hist SET value_real = coalesce(value_real, 0) + 1 "
        "WHERE id = (SELECT max(id) FROM factory_telemetry.metric_hist)",
        {
            "test_integrity.py::test_every_table_keeps_its_content": [
                "factory_telemetry.metric_hist",
                "same row count",
                "1 row differs",
            ]
        },
    ),
    "hypertable reverted": (
        REVERT_TO_PLAIN_TABLE,
        {
            "test_timescaledb.py::test_hypertable_as_planned[energy_consumption]": [
                "factory_telemetry.energy_consumption is a plain table, not a hypertable on consumption_time",
                "create_hypertable",
            ],
            "test_timescaledb.py::test_chunks_cover_the_data[energy_consumption]": [
                "factory_telemetry.energy_consumption is not a hypertable"
            ],
        },
    ),
    "view dropped": (
        "DROP VIEW public.v_oee_summary",
        {
            "test_integrity.py::test_no_view_function_or_trigger_missing": [
                "view public.v_oee_summary existed before the migration",
                "is gone",
                "pg_restore --schema-only -n public -t v_oee_summary",
            ]
        },
    ),
    "policy removed": (
        "SELECT remove_retention_policy('factory_telemetry.metric_hist')",
        {
            "test_timescaledb.py::test_retention_policy_scheduled[metric_hist]": [
                "factory_telemetry.metric_hist has no retention policy",
                "add_retention_policy",
            ]
        },
    ),
}
COMMUNITY_ALSO = {
    "hypertable reverted": {
        f"test_timescaledb.py::{test}[energy_consumption]": ["factory_telemetry.energy_consumption"]
        for test in (
            "test_compression_settings_as_planned",
            "test_compression_policy_scheduled",
            "test_retention_policy_scheduled",
        )
    },
}


@pytest.mark.parametrize("damage", list(DAMAGE), ids=[d.replace(" ", "_") for d in DAMAGE])
def test_damage_makes_the_matching_check_fail_and_name_it(damage, migrated, copy_of_migrated, tmp_path):
    statement, expected = DAMAGE[damage]
    with copy_of_migrated.connect() as conn:
        community = server_timescaledb(conn).has_compression
        if damage == "policy removed" and not community:
            pytest.skip(
                "the apache edition of TimescaleDB on this machine has no policies to remove "
                "(the community edition has them)"
            )
        conn.execute(statement)
    if community:
        expected = {**expected, **COMMUNITY_ALSO.get(damage, {})}
    run = run_pytest(
        *CHECK_FILES,
        "--dsn",
        copy_of_migrated.conninfo,
        "--baseline",
        str(migrated.backup),
        workdir=tmp_path,
        backups=tmp_path / "backups",
    )
    failed = run.with_outcome("failed")
    assert set(failed) == set(expected), f"{damage}: failed {sorted(failed)}, expected {sorted(expected)}\n{run.tail()}"
    for test, fragments in expected.items():
        for fragment in fragments:
            assert fragment in failed[test], f"{damage}: {test} should say {fragment!r}; it says:\n{failed[test]}"
    assert "Traceback" not in "".join(failed.values())


# -- the checks one by one, on a copy of the migrated database ------------------------------------------


@pytest.fixture
def conn(copy_of_migrated):
    with copy_of_migrated.connect() as c:
        yield c


def test_a_sequence_behind_its_column_is_named_with_the_fix(conn):
    assert structure.sequences_behind(conn) == []
    conn.execute("SELECT setval('factory_telemetry.oee_calculations_id_seq', 3)")
    [problem] = structure.sequences_behind(conn)
    assert problem.startswith(
        "sequence factory_telemetry.oee_calculations_id_seq gives 4 next, "
        "but factory_telemetry.oee_calculations.id already holds"
    )
    assert "SELECT setval('factory_telemetry.oee_calculations_id_seq', (SELECT max(id) FROM " in problem


def test_a_constraint_left_not_valid_is_named(conn):
    assert structure.constraints_not_valid(conn) == []
    conn.execute(
        "ALTER TABLE factory_telemetry.metric_def ADD CONSTRAINT def_has_key CHECK (metric_key <> '') NOT VALID"
    )
    assert structure.constraints_not_valid(conn) == [
        "constraint def_has_key on factory_telemetry.metric_def is NOT VALID (existing rows were never checked): "
        "run ALTER TABLE factory_telemetry.metric_def VALIDATE CONSTRAINT def_has_key"
    ]


def test_an_orphan_row_breaks_its_foreign_key(conn):
    assert structure.foreign_key_orphans(conn) == []
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")  # what a careless bulk load does
        conn.execute(
            "INSERT INTO factory_telemetry.metric_hist (metric_def_id, ts, value_real) "
            "VALUES ('00000000-0000-0000-0000-000000000001', now(), 1)"
        )
    [problem] = structure.foreign_key_orphans(conn)
    assert "on factory_telemetry.metric_hist (metric_def_id) -> factory_telemetry.metric_def (id): 1 row" in problem
    assert "metric_def_id=00000000-0000-0000-0000-000000000001" in problem


def test_a_view_that_does_not_answer_and_a_function_that_no_longer_fits_are_named(conn):
    views, problems = objects.broken_views(conn)
    assert views >= 14 and problems == []
    functions, problems = objects.broken_functions(conn)
    assert functions >= 15 and problems == []
    conn.execute("REFRESH MATERIALIZED VIEW factory_telemetry.mv_oee_summary WITH NO DATA")
    conn.execute("ALTER TABLE factory_telemetry.report_generation_jobs RENAME COLUMN progress_percentage TO progress")
    _, problems = objects.broken_views(conn)
    assert any(
        p.startswith("materialized view factory_telemetry.mv_oee_summary does not answer")
        and "REFRESH MATERIALIZED VIEW factory_telemetry.mv_oee_summary" in p
        for p in problems
    ), problems
    conn.execute("""CREATE FUNCTION factory_telemetry.jobs_progress(p_id uuid) RETURNS integer LANGUAGE plpgsql AS $$
                    BEGIN RETURN (SELECT progress_percentage FROM factory_telemetry.report_generation_jobs
                                  WHERE id = p_id); END $$""")
    _, problems = objects.broken_functions(conn)
    assert problems == [
        "function factory_telemetry.jobs_progress(uuid) no longer fits the schema: column "
        '"progress_percentage" does not exist (SQLSTATE 42703); fix the object it names or recreate '
        "the function"
    ]


def test_content_differences_count_the_rows_exactly(conn, migrated):
    baseline = resolve_baseline(explicit=migrated.backup, in_run=None, backups_dir=migrated.backups, dbname=NAME)
    assert content.content_differences(conn, baseline) == []
    conn.execute(
        "UPDATE factory_telemetry.production_context_history SET change_reason = 'edited' "
        "WHERE id IN (SELECT id FROM factory_telemetry.production_context_history ORDER BY id LIMIT 3)"
    )
    conn.execute("INSERT INTO factory_telemetry.fault_event (equipment_code, bit_index, ts_on) VALUES ('X', 1, now())")
    found = {d.table: d for d in content.content_differences(conn, baseline)}
    assert set(found) == {"factory_telemetry.production_context_history", "factory_telemetry.fault_event"}
    changed = found["factory_telemetry.production_context_history"]
    assert changed.kind == "content" and "but 3 rows differ (for example id=1" in changed.message
    added = found["factory_telemetry.fault_event"]
    assert added.kind == "grown" and "1 row written after the backup (id above" in added.message, (
        "a row added above the backup's highest id is reported as written since, not as a loss"
    )
    conn.execute(
        "DELETE FROM factory_telemetry.fault_event WHERE id = (SELECT min(id) FROM factory_telemetry.fault_event)"
    )
    conn.execute("INSERT INTO factory_telemetry.fault_event (equipment_code, bit_index, ts_on) VALUES ('X', 2, now())")
    lost = {d.table: d for d in content.content_differences(conn, baseline)}["factory_telemetry.fault_event"]
    assert lost.kind == "rows" and "1 row of the baseline gone or changed" in lost.message, (
        "growth does not hide a row of the backup that is gone"
    )


def test_benchmarks_leave_rows_and_sequences_as_they_were(copy_of_migrated, conn):
    tables, sequences = _state(copy_of_migrated)
    copy = bench.ingest_copy(conn, "factory_telemetry", "metric_hist", "ts", rows=3_000)
    batched = bench.ingest_batched(conn, "factory_telemetry", "metric_hist", "ts", rows=3_000, batch=500)
    assert copy.rows == batched.rows == 3_000 and copy.rows_per_second > 0
    for query in bench.load_dashboard_queries(PROJECT / "migrations" / "benchmarks" / "dashboard_queries.sql"):
        result = bench.run_dashboard_query(conn, "factory_telemetry", query, repeats=3)
        assert len(result.samples_ms) == 3 and result.plan
    assert _state(copy_of_migrated) == (tables, sequences)


def test_a_privilege_the_application_role_lost_is_named_with_the_grant(conn):
    role, table = "ms5_user_production", "oee_calculations"
    outcome = access.exercise_table(conn, role, "factory_telemetry", table, "calculation_time")
    assert outcome.done == ("SELECT", "INSERT", "UPDATE", "DELETE") and outcome.problems == ()
    conn.execute("REVOKE INSERT ON factory_telemetry.oee_calculations FROM ms5_user_production")
    outcome = access.exercise_table(conn, role, "factory_telemetry", table, "calculation_time")
    assert outcome.done == ("SELECT",)
    assert outcome.problems == (
        "ms5_user_production cannot INSERT into factory_telemetry.oee_calculations: permission "
        "denied for table oee_calculations. Fix: GRANT INSERT ON "
        "factory_telemetry.oee_calculations TO ms5_user_production",
    )
    # Without SET ROLE, the same answer from PostgreSQL's privilege functions.
    assert access.table_privilege_problems(conn, role, "factory_telemetry", table) == [
        "ms5_user_production lacks INSERT on factory_telemetry.oee_calculations. Fix: GRANT INSERT ON "
        "factory_telemetry.oee_calculations TO ms5_user_production"
    ]


def test_a_row_a_trigger_drops_on_insert_is_named_not_a_traceback(conn):
    """A BEFORE INSERT trigger that returns NULL: the INSERT returns no row, and the check says so."""
    conn.execute("""CREATE FUNCTION factory_telemetry.drop_row() RETURNS trigger LANGUAGE plpgsql
                    AS $$ BEGIN RETURN NULL; END $$""")
    conn.execute("""CREATE TRIGGER drop_row BEFORE INSERT ON factory_telemetry.oee_calculations
                    FOR EACH ROW EXECUTE FUNCTION factory_telemetry.drop_row()""")
    outcome = access.exercise_table(
        conn, "ms5_user_production", "factory_telemetry", "oee_calculations", "calculation_time"
    )
    assert outcome.done == ("SELECT", "INSERT")
    assert outcome.problems == (
        "factory_telemetry.oee_calculations: as ms5_user_production, the row inserted was not written (a trigger "
        "dropped it); updating and deleting were not tried",
    )
