"""Pre-flight findings about the migration files, the ledger, the live data and the rehearsal (PF020-PF040),
each made for real (files on disk, ledger rows as a run writes them, rows in a copy of the legacy MS5.0
database) and read back from the check the pre-flight suite runs: code, severity and location."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tsmigrate import ledger
from tsmigrate.findings import ADVISORY, BLOCKING, Finding
from tsmigrate.janitor import ScratchDatabase
from tsmigrate.migrations import apply_file, discover
from tsmigrate.plan import load_plan
from tsmigrate.preflight.files import migration_files, pending_files
from tsmigrate.preflight.hazards import target_hazards
from tsmigrate.preflight.rehearsal_check import rehearsal
from tsmigrate.target import Target

PROJECT = Path(__file__).resolve().parents[1]
READ_ONLY = "-c default_transaction_read_only=on"  # the pre-flight's own session


def where(findings: list[Finding], code: str) -> list[tuple[str, str, str | None]]:
    """(severity, location, table) of each finding of ``code``."""
    return [(f.severity, f.location(), f.table) for f in findings if f.code == code]


@pytest.fixture
def scratch(local_server):
    """An empty database: (writable connection, read-only connection)."""
    with (
        ScratchDatabase(local_server.conninfo(), "findings_of_files") as name,
        psycopg.connect(local_server.conninfo(name), autocommit=True) as conn,
        psycopg.connect(local_server.conninfo(name), autocommit=True, options=READ_ONLY) as ro,
    ):
        yield conn, ro


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def applied(conn: psycopg.Connection, directory: Path) -> None:
    """Apply every file of ``directory`` and record it in the ledger, as a run does."""
    files, _ = discover(directory)
    ledger.ensure_ledger(conn)
    for f in files:
        attempt = ledger.record_start(conn, f.version, "migration", f.label, f.sha256, f.transactional)
        apply_file(conn, f, on_success=lambda c, result, attempt=attempt: ledger.record_finish(c, attempt, "applied"))


def plan_dir(tmp_path: Path, edit=lambda text: text, files: dict[str, str] | None = None) -> Path:
    """A migrations directory with the project's plan.toml (edited) and ``files`` (none of the project's)."""
    directory = write(tmp_path / "migrations", files or {})
    (directory / "plan.toml").write_text(edit((PROJECT / "migrations" / "plan.toml").read_text()))
    return directory


def hazards(target: Target, directory: Path) -> list[Finding]:
    with target.connect(options=READ_ONLY) as conn:
        return target_hazards(conn, directory, load_plan(directory))


# -- the migration files and the ledger -------------------------------------------------------------------


@pytest.mark.parametrize(
    "names, problem",
    [
        pytest.param(("1a_typo.sql",), "follows no convention", marks=pytest.mark.finding("PF020", BLOCKING)),
        pytest.param(
            ("002_a.sql", "002_b.sql"),
            "version 002 is also used by 002_a.sql",
            marks=pytest.mark.finding("PF020", BLOCKING),
        ),
    ],
)
def test_pf020_a_file_misnamed_or_sharing_a_version(names, problem, marked_finding, scratch, tmp_path):
    code, severity = marked_finding
    directory = write(tmp_path / "migrations", {"001_start.sql": "SELECT 1;\n", **dict.fromkeys(names, "SELECT 2;\n")})
    found = migration_files(scratch[1], directory)
    assert where(found, code) == [(severity, str(directory / names[-1]), None)] and problem in found[0].message


@pytest.mark.finding("PF021", ADVISORY)
def test_pf021_a_gap_in_the_versions(marked_finding, scratch, tmp_path):
    code, severity = marked_finding
    directory = write(tmp_path / "migrations", {"001_start.sql": "SELECT 1;\n", "003_next.sql": "SELECT 3;\n"})
    found = migration_files(scratch[1], directory)
    assert (
        where(found, code) == [(severity, str(directory), None)] and found[0].message == "versions jump from 001 to 003"
    )


@pytest.mark.finding("PF022", BLOCKING)
def test_pf022_an_applied_file_edited_afterwards(marked_finding, scratch, tmp_path):
    code, severity = marked_finding
    directory = write(tmp_path / "migrations", {"001_table.sql": "CREATE TABLE t (v int);\n"})
    applied(scratch[0], directory)
    (directory / "001_table.sql").write_text("CREATE TABLE t (v bigint);\n")
    found = migration_files(scratch[1], directory)
    assert where(found, code) == [(severity, f"{directory / '001_table.sql'}:1", None)]


@pytest.mark.finding("PF023", BLOCKING)
def test_pf023_an_applied_file_gone_from_the_directory(marked_finding, scratch, tmp_path):
    code, severity = marked_finding
    directory = write(
        tmp_path / "migrations",
        {"001_table.sql": "CREATE TABLE t (v int);\n", "002_index.sql": "CREATE INDEX ON t (v);\n"},
    )
    applied(scratch[0], directory)
    (directory / "002_index.sql").unlink()
    found = migration_files(scratch[1], directory)
    assert where(found, code) == [(severity, str(directory), None)]
    assert found[0].message.startswith("step 002 (002_index.sql) was applied on ")


NO_TRANSACTION = "-- tsmigrate:no-transaction\n"


@pytest.mark.parametrize(
    "header, resolve, then",
    [
        pytest.param(
            NO_TRANSACTION,
            False,
            "it is not transactional, so part of it may have run",
            marks=pytest.mark.finding("PF024", BLOCKING),
        ),
        pytest.param("", False, "PostgreSQL rolled it back", marks=pytest.mark.finding("PF024", ADVISORY)),
        pytest.param(
            NO_TRANSACTION,
            True,
            "--resolve-interrupted: the run marks it interrupted",
            marks=pytest.mark.finding("PF024", ADVISORY),
        ),
    ],
)
def test_pf024_a_step_left_started_by_a_run_that_died(header, resolve, then, marked_finding, scratch, tmp_path):
    """The ledger as a killed run leaves it: the step's 'started' row committed, its end never written (a real
    killed run: tests/test_execute.py)."""
    code, severity = marked_finding
    directory = write(tmp_path / "migrations", {"001_index.sql": header + "CREATE INDEX IF NOT EXISTS i ON t (v);\n"})
    (f,), _ = discover(directory)
    ledger.ensure_ledger(scratch[0])
    ledger.record_start(scratch[0], f.version, "migration", f.label, f.sha256, f.transactional)
    found = migration_files(scratch[1], directory, resolve_interrupted=resolve)
    assert where(found, code) == [(severity, str(f.path), None)]
    assert "never finished; " + then in found[0].message


# -- the live data ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param("refuse", marks=pytest.mark.finding("PF030", BLOCKING)),
        pytest.param("from_column:kpi_date", marks=pytest.mark.finding("PF030", ADVISORY)),
    ],
)
def test_pf030_null_time_values_in_a_table_to_convert(rule, marked_finding, legacy_db, tmp_path):
    code, severity = marked_finding
    directory = plan_dir(
        tmp_path, lambda text: text.replace('null_time = "from_column:kpi_date"', f'null_time = "{rule}"')
    )
    with legacy_db.connect() as conn:
        nulls = conn.execute(
            "SELECT count(*) FROM factory_telemetry.production_kpis WHERE created_at IS NULL"
        ).fetchone()[0]
    found = [f for f in hazards(legacy_db, directory) if f.table == "factory_telemetry.production_kpis"]
    assert nulls and where(found, code) == [
        (severity, str(directory / "plan.toml"), "factory_telemetry.production_kpis")
    ]
    assert f"holds {nulls} NULL values" in found[0].message


@pytest.mark.finding("PF031", BLOCKING)
def test_pf031_a_foreign_key_into_a_table_to_convert(marked_finding, legacy_db, tmp_path):
    code, severity = marked_finding
    with legacy_db.connect() as conn:
        conn.execute(
            "CREATE TABLE factory_telemetry.metric_notes (metric_hist_id bigint CONSTRAINT metric_notes_metric "
            "REFERENCES factory_telemetry.metric_hist (id))"
        )
    directory = plan_dir(tmp_path)
    found = hazards(legacy_db, directory)
    assert where(found, code) == [(severity, str(directory / "plan.toml"), "factory_telemetry.metric_hist")]
    assert (
        found[[f.code for f in found].index(code)].message
        == "factory_telemetry.metric_notes references factory_telemetry.metric_hist through foreign key "
        "metric_notes_metric"
    )


CONVERTS_ENERGY = (
    "-- energy history becomes a hypertable\nCREATE EXTENSION IF NOT EXISTS timescaledb;\n\n"
    "SELECT create_hypertable('factory_telemetry.energy_consumption', 'consumption_time'{});\n"
)


@pytest.mark.finding("PF032", BLOCKING)
def test_pf032_a_file_converts_a_populated_table_without_migrate_data(marked_finding, legacy_db, tmp_path):
    code, severity = marked_finding
    directory = write(tmp_path / "migrations", {"011_energy.sql": CONVERTS_ENERGY.format("")})
    found = hazards(legacy_db, directory)
    assert where(found, code) == [
        (severity, f"{directory / '011_energy.sql'}:4", "factory_telemetry.energy_consumption")
    ]


@pytest.mark.parametrize(
    "edit, message",
    [
        pytest.param(
            lambda text: text.replace("[hypertables.metric_hist]", "[hypertables.metric_history]"),
            "table factory_telemetry.metric_history does not exist and no pending migration creates it",
            marks=pytest.mark.finding("PF033", BLOCKING),
        ),
        pytest.param(
            lambda text: text.replace('time_column = "ts"', 'time_column = "sampled_at"'),
            "factory_telemetry.metric_hist has no column sampled_at",
            marks=pytest.mark.finding("PF033", BLOCKING),
        ),
    ],
)
def test_pf033_a_planned_table_or_time_column_missing(edit, message, marked_finding, legacy_db, tmp_path):
    code, severity = marked_finding
    directory = plan_dir(tmp_path, edit)
    found = hazards(legacy_db, directory)
    table = re.search(r"factory_telemetry\.\w+", message).group(0)
    assert where(found, code) == [(severity, str(directory / "plan.toml"), table)] and found[0].message == message


@pytest.mark.finding("PF034", ADVISORY)
def test_pf034_retention_drops_rows_the_table_holds(marked_finding, legacy_db, tmp_path):
    """The tiny legacy database holds a day of metric history: a retention of 12 hours drops part of it."""
    code, severity = marked_finding
    directory = plan_dir(
        tmp_path,
        lambda text: text.replace(
            'compress_after = "7 days"\ndrop_after = "90 days"', 'compress_after = "6 hours"\ndrop_after = "12 hours"'
        ),
    )
    with legacy_db.connect() as conn:
        old = conn.execute(
            "SELECT count(*) FROM factory_telemetry.metric_hist WHERE ts < now() - interval '12 hours'"
        ).fetchone()[0]
    found = hazards(legacy_db, directory)
    assert old and where(found, code) == [(severity, str(directory / "plan.toml"), "factory_telemetry.metric_hist")]
    assert f"holds {old} rows older than 12 hours" in found[[f.code for f in found].index(code)].message


@pytest.mark.finding("PF035", ADVISORY)
def test_pf035_keys_the_plans_conversion_rebuilds(marked_finding, legacy_db, tmp_path):
    code, severity = marked_finding
    directory = plan_dir(tmp_path)
    plan = load_plan(directory)
    found = hazards(legacy_db, directory)
    assert sorted(where(found, code)) == sorted(
        (severity, str(directory / "plan.toml"), f"{plan.schema}.{h.table}") for h in plan.hypertables
    )


@pytest.mark.finding("PF035", BLOCKING)
def test_pf035_a_key_a_files_own_create_hypertable_fails_on(marked_finding, legacy_db, tmp_path):
    code, severity = marked_finding
    directory = write(tmp_path / "migrations", {"011_energy.sql": CONVERTS_ENERGY.format(", migrate_data => true")})
    found = hazards(legacy_db, directory)
    assert where(found, code) == [
        (severity, f"{directory / '011_energy.sql'}:4", "factory_telemetry.energy_consumption")
    ]
    assert "energy_consumption_pkey" in found[0].message and not [f for f in found if f.code == "PF032"]


# -- the rehearsal ----------------------------------------------------------------------------------------


def scratch_copies(target: Target) -> list[str]:
    with target.connect() as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (target.dbname + "_rehearsal_%",)
            )
        ]


@pytest.mark.finding("PF040", BLOCKING)
def test_pf040_a_statement_that_fails_on_the_scratch_copy(marked_finding, legacy_db, tmp_path):
    code, severity = marked_finding
    directory = write(
        tmp_path / "migrations",
        {
            "011_broken.sql": (
                "-- fine so far\nSELECT 1;\n\nALTER TABLE factory_telemetry.no_such_table\n  ADD COLUMN x int;\n"
            )
        },
    )
    with legacy_db.connect(options=READ_ONLY) as conn:
        found = rehearsal(legacy_db, directory, pending_files(conn, directory), None)
    assert where(found, code) == [(severity, f"{directory / '011_broken.sql'}:4", None)]
    assert "SQLSTATE 42P01" in found[0].message and scratch_copies(legacy_db) == []


@pytest.mark.finding("PF040", ADVISORY)
def test_pf040_no_rehearsal_for_a_role_that_may_not_create_databases(
    marked_finding, legacy_db, login_role, local_server, tmp_path
):
    code, severity = marked_finding
    role = login_role("NOCREATEDB")
    as_role = Target(
        make_conninfo(legacy_db.conninfo, user=role, password=local_server.password), "the pre-flight's role"
    )
    directory = write(tmp_path / "migrations", {"011_index.sql": "CREATE INDEX IF NOT EXISTS i ON t (v);\n"})
    found = rehearsal(as_role, directory, discover(directory)[0], None)
    assert where(found, code) == [(severity, "", None)]
    assert "the connected role may not create databases" in found[0].message and scratch_copies(legacy_db) == []
