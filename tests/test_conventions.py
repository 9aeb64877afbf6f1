"""Migration file conventions (Flyway, golang-migrate, dbmate, plain): discovery, order, what runs and its lines.

Sets written the way public projects of each tool write them. Discovery, order and lines need no database;
the ledger, the rehearsal and the execute run are proven on a throwaway server (the suites run as a user
runs them), and the project's MS5.0 migrations renamed the Flyway way must be judged as the originals are.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
from pathlib import Path

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsmigrate.conventions import UNDERSTOOD, flyway_version
from tsmigrate.janitor import ScratchDatabase
from tsmigrate.lint import lint_sql
from tsmigrate.migrations import discover, split_statements, version_gaps
from tsmigrate.preflight.files import migration_files, pending_files

# A Flyway set: dotted and underscored versions, repeatable views and functions, an undo file (Flyway Teams).
FLYWAY_SET = {
    "V1__Initial.sql": "CREATE TABLE IF NOT EXISTS sensor (id bigint PRIMARY KEY, name text NOT NULL);\n",
    "V1.1__add_sensor_kind.sql": "ALTER TABLE sensor ADD COLUMN IF NOT EXISTS kind text;\n",
    "V1.2__seed_kinds.sql": "UPDATE sensor SET kind = 'analog' WHERE kind IS NULL;\n",
    "V1.10__index_sensor_kind.sql": "CREATE INDEX IF NOT EXISTS sensor_kind_idx ON sensor (kind);\n",
    "V2__add_table.sql": (
        "CREATE TABLE IF NOT EXISTS reading (\n    sensor_id bigint NOT NULL,\n"
        "    ts timestamptz NOT NULL,\n    value double precision\n);\n"
    ),
    "V2_1__reading_index.sql": "CREATE INDEX IF NOT EXISTS reading_ts_idx ON reading (sensor_id, ts DESC);\n",
    "U2__add_table.sql": "DROP TABLE reading;\n",
    "R__sensor_views.sql": (
        "CREATE OR REPLACE VIEW sensor_latest AS\nSELECT sensor_id, max(ts) AS ts FROM reading GROUP BY sensor_id;\n"
    ),
    "R__functions.sql": (
        "CREATE OR REPLACE FUNCTION reading_count(s bigint) RETURNS bigint\n"
        "LANGUAGE sql STABLE AS $$ SELECT count(*) FROM reading WHERE sensor_id = s $$;\n"
    ),
}
FLYWAY_ORDER = [
    "V1__Initial.sql",
    "V1.1__add_sensor_kind.sql",
    "V1.2__seed_kinds.sql",
    "V1.10__index_sensor_kind.sql",
    "V2__add_table.sql",
    "V2_1__reading_index.sql",
    "R__functions.sql",
    "R__sensor_views.sql",
]

# A golang-migrate set, as `migrate create -ext sql -seq` writes it.
GOLANG_MIGRATE_SET = {
    "000001_create_users_table.up.sql": (
        "CREATE TABLE IF NOT EXISTS users (\n    id bigserial PRIMARY KEY,\n    username text NOT NULL UNIQUE\n);\n"
    ),
    "000001_create_users_table.down.sql": "DROP TABLE IF EXISTS users;\n",
    "000002_add_users_email.up.sql": "ALTER TABLE users ADD COLUMN IF NOT EXISTS email text;\n",
    "000002_add_users_email.down.sql": "ALTER TABLE users DROP COLUMN IF EXISTS email;\n",
    "000010_users_email_index.up.sql": "CREATE INDEX IF NOT EXISTS users_email_idx ON users (email);\n",
    "000010_users_email_index.down.sql": "DROP INDEX IF EXISTS users_email_idx;\n",
}

# A dbmate set, as `dbmate new` writes it: both directions in one file, a comment header on one of them,
# and an index built outside a transaction.
DBMATE_SET = {
    "20240101120000_create_machines.sql": (
        "-- migrate:up\n"
        "CREATE TABLE IF NOT EXISTS machine (\n"
        "    code text PRIMARY KEY,\n"
        "    line text NOT NULL\n"
        ");\n"
        "\n"
        "-- migrate:down\n"
        "DROP TABLE machine;\n"
    ),
    "20240215093000_machine_line_index.sql": (
        "-- Built without blocking the writers: CONCURRENTLY,\n"
        "-- which PostgreSQL refuses inside a transaction.\n"
        "\n"
        "-- migrate:up transaction:false\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS machine_line_idx\n"
        "    ON machine (line);\n"
        "\n"
        "-- migrate:down transaction:false\n"
        "DROP INDEX CONCURRENTLY IF EXISTS machine_line_idx;\n"
    ),
    "20240301080000_machine_state.sql": (
        "-- migrate:up\n"
        "CREATE TABLE IF NOT EXISTS machine_state (\n"
        "    code text NOT NULL REFERENCES machine (code),\n"
        "    changed_at timestamptz NOT NULL,\n"
        "    state text NOT NULL\n"
        ");\n"
        "\n"
        "-- migrate:down\n"
        "DROP TABLE machine_state;\n"
    ),
}


def write_set(directory, files: dict[str, str]):
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def problems_by_file(problems):
    return {p.path.name: p for p in problems}


# -- Flyway ---------------------------------------------------------------------------------------------


def test_flyway_set_is_ordered_as_flyway_orders_it_with_repeatables_last(tmp_path):
    files, problems = discover(write_set(tmp_path, FLYWAY_SET))
    assert [f.label for f in files] == FLYWAY_ORDER
    assert {f.convention for f in files} == {"Flyway"}
    assert [f.step_id for f in files] == ["1", "1.1", "1.2", "1.10", "2", "2_1", "R__functions", "R__sensor_views"]
    assert [f.repeatable for f in files] == [False] * 6 + [True] * 2
    # The undo file is a note, not a problem: it never runs forward.
    assert [(p.path.name, p.blocking) for p in problems] == [("U2__add_table.sql", False)]
    assert "Flyway undo migration" in problems[0].problem


@pytest.mark.parametrize(
    "lower, higher",
    [
        ("1", "1.1"),
        ("1.1", "1.2"),
        ("1.2", "1.10"),
        ("1.10", "2"),
        ("2", "2_1"),
        ("2_1", "2.2"),
        ("9", "10"),
        ("10", "20240101120000"),
    ],
)
def test_flyway_versions_compare_part_by_part_as_integers(lower, higher):
    assert flyway_version(lower) < flyway_version(higher)


@pytest.mark.parametrize("one, other", [("1", "1.0"), ("2.1", "2_1"), ("1.01", "1.1"), ("001", "1")])
def test_flyway_versions_that_flyway_holds_equal(one, other):
    assert flyway_version(one) == flyway_version(other)


def flyway_compare(a: str, b: str) -> int:
    """Flyway's MigrationVersion.compareTo written out as Flyway does it: '_' is '.', parts compared as
    integers one by one, a missing part counting as zero."""
    pa, pb = ([int(x) for x in v.replace("_", ".").split(".")] for v in (a, b))
    for i in range(max(len(pa), len(pb))):
        x, y = (pa[i] if i < len(pa) else 0), (pb[i] if i < len(pb) else 0)
        if x != y:
            return -1 if x < y else 1
    return 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=4), st.sampled_from([".", "_"])
        ),
        min_size=1,
        max_size=10,
    )
)
def test_discovery_orders_any_flyway_versions_as_flyway_does(tmp_path_factory, parts):
    versions: list[str] = []
    for numbers, separator in parts:
        version = separator.join(map(str, numbers))
        if all(flyway_compare(version, v) != 0 for v in versions):  # Flyway holds 1 and 1.0 the same
            versions.append(version)
    directory = write_set(tmp_path_factory.mktemp("flyway"), {f"V{v}__step.sql": "SELECT 1;\n" for v in versions})
    files, problems = discover(directory)
    assert problems == []
    assert [f.version for f in files] == sorted(versions, key=functools.cmp_to_key(flyway_compare))


def test_flyway_duplicate_versions_are_a_problem_naming_both_files(tmp_path):
    files, problems = discover(
        write_set(
            tmp_path,
            {
                "V1__a.sql": "SELECT 1;\n",
                "V1.0__b.sql": "SELECT 2;\n",
                "V2_1__c.sql": "SELECT 3;\n",
                "V2.1__d.sql": "SELECT 4;\n",
            },
        )
    )
    by_file = problems_by_file(problems)
    assert set(by_file) == {"V1.0__b.sql", "V2.1__d.sql"} and all(p.blocking for p in problems)
    assert "version 1.0 is also used by V1__a.sql" in by_file["V1.0__b.sql"].problem
    assert "version 2.1 is also used by V2_1__c.sql" in by_file["V2.1__d.sql"].problem
    assert [f.label for f in files] == ["V1__a.sql", "V2_1__c.sql"]


def test_two_repeatable_files_with_one_description_are_a_problem(tmp_path):
    files, problems = discover(
        write_set(
            tmp_path,
            {"V1__a.sql": "SELECT 1;\n", "R__refresh_views.sql": "SELECT 2;\n", "R__refresh views.sql": "SELECT 3;\n"},
        )
    )
    (problem,) = problems
    assert problem.blocking and problem.path.name == "R__refresh_views.sql"
    assert "the same description as R__refresh views.sql" in problem.problem
    assert [f.label for f in files] == ["V1__a.sql", "R__refresh views.sql"]


def test_flyway_callbacks_and_misspelt_names_match_no_convention(tmp_path):
    files, problems = discover(
        write_set(
            tmp_path,
            {"V1__a.sql": "SELECT 1;\n", "afterMigrate.sql": "SELECT 2;\n", "V2_missing_separator.sql": "SELECT 3;\n"},
        )
    )
    assert [f.label for f in files] == ["V1__a.sql"]
    by_file = problems_by_file(problems)
    assert "Flyway callback" in by_file["afterMigrate.sql"].problem
    assert UNDERSTOOD in by_file["V2_missing_separator.sql"].problem
    assert all(p.blocking for p in problems)


# -- golang-migrate ---------------------------------------------------------------------------------------


def test_golang_migrate_up_files_run_and_down_files_are_notes(tmp_path):
    files, problems = discover(write_set(tmp_path, GOLANG_MIGRATE_SET))
    assert [f.label for f in files] == [
        "000001_create_users_table.up.sql",
        "000002_add_users_email.up.sql",
        "000010_users_email_index.up.sql",
    ]
    assert {f.convention for f in files} == {"golang-migrate"}
    assert [f.step_id for f in files] == ["000001", "000002", "000010"]
    assert sorted((p.path.name, p.blocking) for p in problems) == [
        (name, False) for name in sorted(n for n in GOLANG_MIGRATE_SET if n.endswith(".down.sql"))
    ]
    assert all("golang-migrate down migration" in p.problem for p in problems)
    assert all(f.sql == GOLANG_MIGRATE_SET[f.label] for f in files)


def test_golang_migrate_two_up_files_of_one_version_are_a_problem(tmp_path):
    _, problems = discover(write_set(tmp_path, {**GOLANG_MIGRATE_SET, "000002_other_change.up.sql": "SELECT 1;\n"}))
    blocking = [p for p in problems if p.blocking]
    assert len(blocking) == 1 and "version 000002 is also used by" in blocking[0].problem


# -- dbmate -----------------------------------------------------------------------------------------------


def test_dbmate_runs_the_up_section_only_on_the_lines_of_the_file(tmp_path):
    files, problems = discover(write_set(tmp_path, DBMATE_SET))
    assert problems == []
    assert [f.label for f in files] == sorted(DBMATE_SET)
    assert {f.convention for f in files} == {"dbmate"}
    machines, index, state = files
    assert "DROP" not in machines.sql and "DROP" not in index.sql
    statements = split_statements(index.sql)
    assert [(s.line, s.sql.split()[0]) for s in statements] == [(5, "CREATE")]
    assert DBMATE_SET[index.label].splitlines()[4].startswith("CREATE INDEX CONCURRENTLY")
    assert [(s.line, s.sql.split()[2]) for s in split_statements(state.sql)] == [(2, "IF")]
    assert [f.transactional for f in files] == [True, False, True]


def test_dbmate_lint_findings_name_lines_of_the_file_not_of_the_section(tmp_path):
    text = (
        "-- Machines: the index the dashboard needs.\n"
        "-- (written in a hurry)\n"
        "\n"
        "-- migrate:up\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS machine_line_idx\n"
        "    ON machine (line);\n"
        "\n"
        "-- migrate:down\n"
        "DROP INDEX IF EXISTS machine_line_idx;\n"
    )
    (f,), _problems = discover(write_set(tmp_path, {"20240215093000_machine_line_index.sql": text}))
    found = lint_sql(f.sql, str(f.path), hypertables={}, transactional=f.transactional)
    assert [(x.code, x.line) for x in found] == [("TS004", 5)]
    assert text.splitlines()[4].startswith("CREATE INDEX CONCURRENTLY")


def test_dbmate_checksum_is_of_the_up_section_so_editing_the_down_section_changes_nothing(tmp_path):
    directory = write_set(
        tmp_path, {"20240101120000_create_machines.sql": DBMATE_SET["20240101120000_create_machines.sql"]}
    )
    (before,), _ = discover(directory)
    path = directory / "20240101120000_create_machines.sql"
    path.write_text(path.read_text().replace("DROP TABLE machine;", "DROP TABLE IF EXISTS machine CASCADE;"))
    (after,), _ = discover(directory)
    assert after.sha256 == before.sha256
    up = DBMATE_SET["20240101120000_create_machines.sql"].split("-- migrate:down")[0]
    assert before.sha256 == hashlib.sha256(up.encode()).hexdigest()
    path.write_text(path.read_text().replace("line text NOT NULL", "line text"))
    (changed,), _ = discover(directory)
    assert changed.sha256 != before.sha256


@pytest.mark.parametrize(
    "text, line, says",
    [
        (
            "CREATE EXTENSION IF NOT EXISTS pgcrypto;\n-- migrate:up\nSELECT 1;\n-- migrate:down\nSELECT 2;\n",
            1,
            "before '-- migrate:up'",
        ),
        (
            "-- header\n-- migrate:down\nSELECT 2;\n-- migrate:up\nSELECT 1;\n",
            2,
            "comes before '-- migrate:up' (line 4)",
        ),
    ],
)
def test_dbmate_files_dbmate_would_refuse_are_problems_at_their_line(tmp_path, text, line, says):
    files, problems = discover(
        write_set(tmp_path, {"20240101120000_a.sql": "-- migrate:up\nSELECT 1;\n", "20240102120000_b.sql": text})
    )
    assert [f.label for f in files] == ["20240101120000_a.sql"]
    (problem,) = problems
    assert problem.path.name == "20240102120000_b.sql" and problem.line == line and problem.blocking
    assert says in problem.problem


def test_a_dbmate_directory_with_a_file_lacking_its_up_marker_names_that_file(tmp_path):
    directory = write_set(tmp_path, {**DBMATE_SET, "20240401000000_forgot_marker.sql": "SELECT 1;\n"})
    files, problems = discover(directory)
    assert [f.label for f in files] == sorted(DBMATE_SET)
    (problem,) = problems
    assert problem.path.name == "20240401000000_forgot_marker.sql" and problem.blocking
    assert "follows dbmate" in problem.problem and "no '-- migrate:up' line" in problem.problem
    assert UNDERSTOOD in problem.problem


# -- plain, and directories that mix ----------------------------------------------------------------------


def test_plain_files_keep_their_whole_content_and_checksum(tmp_path):
    text = "\n-- the whole file runs\nCREATE TABLE IF NOT EXISTS t (id int);\n"
    (f,), problems = discover(write_set(tmp_path, {"001_t.sql": text}))
    assert problems == [] and f.convention == "plain" and f.sql == text and f.first_line == 1
    assert f.sha256 == hashlib.sha256(text.encode()).hexdigest()


def test_a_directory_mixing_conventions_names_each_file_of_the_minority(tmp_path):
    directory = write_set(
        tmp_path, {**FLYWAY_SET, "003_plain_style.sql": "SELECT 1;\n", "000004_golang_style.up.sql": "SELECT 2;\n"}
    )
    files, problems = discover(directory)
    assert [f.label for f in files] == FLYWAY_ORDER
    blocking = problems_by_file(p for p in problems if p.blocking)
    assert set(blocking) == {"003_plain_style.sql", "000004_golang_style.up.sql"}
    for name, convention in (("003_plain_style.sql", "plain"), ("000004_golang_style.up.sql", "golang-migrate")):
        message = blocking[name].problem
        assert "mixes naming conventions" in message and "it follows Flyway" in message
        assert f"this file follows {convention}" in message and UNDERSTOOD in message


def test_a_file_matching_no_convention_names_the_conventions_understood(tmp_path):
    _files, problems = discover(write_set(tmp_path, {"001_a.sql": "SELECT 1;\n", "add_index.sql": "SELECT 2;\n"}))
    (problem,) = problems
    assert problem.path.name == "add_index.sql" and problem.blocking
    for convention in (
        "Flyway: V<version>__<description>.sql, R__<description>.sql",
        "golang-migrate: <version>_<name>.up.sql",
        "dbmate: <version>_<name>.sql with a '-- migrate:up' line",
        "plain: <version>_<name>.sql",
    ):
        assert convention in problem.problem


@pytest.mark.parametrize(
    "names, gaps",
    [
        (["V1__a.sql", "V2__b.sql", "V5__c.sql", "R__d.sql"], [(2, 5)]),
        (["V1__a.sql", "V1.1__b.sql", "V3__c.sql"], []),  # dotted versions have no "next"
        (["20240101120000_a.up.sql", "20240301080000_b.up.sql"], []),  # dated versions leave gaps by design
        (["001_a.sql", "002_b.sql", "005_c.sql"], [(2, 5)]),
    ],
)
def test_gaps_only_between_whole_numbered_versions(tmp_path, names, gaps):
    files, _ = discover(write_set(tmp_path, dict.fromkeys(names, "SELECT 1;\n")))
    assert version_gaps(files) == gaps


# -- on a real server: the ledger, the rehearsal and the execute run --------------------------------------

PROJECT = Path(__file__).resolve().parents[1]


def ledger_rows(conninfo: str) -> list[tuple]:
    with psycopg.connect(conninfo) as conn:
        return conn.execute(
            "SELECT attempt, step, name, sha256, transactional, outcome FROM tsmigrate.ledger ORDER BY attempt"
        ).fetchall()


def run_record(run_suite, tmp_path: Path, *args: str) -> tuple[dict, str]:
    """Run a suite with its own reports directory; its JSON record and stdout."""
    reports = tmp_path / f"reports-{len(list(tmp_path.glob('reports-*')))}"
    result = run_suite(*args, "--reports", str(reports))
    record = json.loads((reports / "latest.json").read_text())
    assert record["exit_code"] == result.returncode
    return record, result.stdout


def test_flyway_repeatable_file_reruns_when_changed_and_only_then(local_server, run_suite, tmp_path):
    directory = write_set(tmp_path / "flyway", FLYWAY_SET)
    steps = ["1", "1.1", "1.2", "1.10", "2", "2_1", "R__functions", "R__sensor_views"]
    with ScratchDatabase(local_server.conninfo(), "conventions_flyway") as name:
        dsn = local_server.conninfo(name)
        first, out = run_record(run_suite, tmp_path, "suites/execute", "--dsn", dsn, "--migrations", str(directory))
        assert first["verdict"] == "SUCCESS", out[-3000:]
        applied = ledger_rows(dsn)
        assert [(r[1], r[2], r[5]) for r in applied] == [
            (s, f, "applied") for s, f in zip(steps, FLYWAY_ORDER, strict=True)
        ]
        assert [
            (f["code"], f["severity"], Path(f["path"]).name) for f in first["findings"] if f["code"] == "PF025"
        ] == [("PF025", "advisory", "U2__add_table.sql")]
        assert first["environment"]["Migrations"].startswith(
            f"8 files (Flyway) in {directory}, 1 to 2_1 and 2 repeatable; sha256 "
        )
        with psycopg.connect(dsn) as conn:  # the undo file never ran: its table is there
            assert conn.execute("SELECT to_regclass('reading') IS NOT NULL").fetchone()[0]

        second, out = run_record(run_suite, tmp_path, "suites/execute", "--dsn", dsn, "--migrations", str(directory))
        assert second["verdict"] == "SUCCESS", out[-3000:]
        assert ledger_rows(dsn) == applied, "nothing changed, so nothing ran again"

        view = directory / "R__sensor_views.sql"
        view.write_text(
            "CREATE OR REPLACE VIEW sensor_latest AS\n"
            "SELECT sensor_id, max(ts) AS ts, count(*) AS readings FROM reading GROUP BY sensor_id;\n"
        )
        third, out = run_record(run_suite, tmp_path, "suites/execute", "--dsn", dsn, "--migrations", str(directory))
        assert third["verdict"] == "SUCCESS", out[-3000:]
        assert not [f for f in third["findings"] if f["code"] == "PF022"], "a changed repeatable file is pending"
        rows = ledger_rows(dsn)
        assert rows[: len(applied)] == applied
        (rerun,) = rows[len(applied) :]
        assert (rerun[1], rerun[5]) == ("R__sensor_views", "applied")
        assert rerun[3] == hashlib.sha256(view.read_bytes()).hexdigest() != applied[-1][3]
        with psycopg.connect(dsn) as conn:
            columns = [
                r[0]
                for r in conn.execute(
                    "SELECT attname FROM pg_attribute WHERE attrelid = 'sensor_latest'::regclass AND attnum > 0 "
                    "ORDER BY attnum"
                )
            ]
        assert columns == ["sensor_id", "ts", "readings"]

        # Edited after they ran: the versioned file blocks (PF022), the repeatable one is pending again.
        initial = directory / "V1__Initial.sql"
        initial.write_text(initial.read_text() + "-- edited after it ran\n")
        view.write_text(view.read_text() + "-- edited again\n")
        with psycopg.connect(dsn) as conn:
            found = migration_files(conn, directory)
            pending = pending_files(conn, directory)
        assert [(f.code, Path(f.path).name, f.line) for f in found if f.blocking] == [("PF022", initial.name, 1)]
        assert [f.label for f in pending] == ["R__sensor_views.sql"]


def test_naming_findings_of_the_pre_flight_name_the_file_and_line(local_server, tmp_path):
    directory = write_set(
        tmp_path / "dbmate",
        {
            **DBMATE_SET,
            "20240101120000_same_version.sql": "-- migrate:up\nSELECT 1;\n",
            "20240301080001_setup.sql": "SET search_path = app;\n\n-- migrate:up\nSELECT 1;\n",
            "20240401000000_plain_style.sql": "SELECT 1;\n",
            "V5__flyway_style.sql": "SELECT 1;\n",
            "notes.sql": "-- scratch\n",
        },
    )
    with (
        ScratchDatabase(local_server.conninfo(), "conventions_naming") as name,
        psycopg.connect(local_server.conninfo(name)) as conn,
    ):
        found = migration_files(conn, directory)
    assert sorted((f.code, f.severity, Path(f.path).name, f.line) for f in found) == [
        ("PF020", "blocking", "20240101120000_same_version.sql", None),
        ("PF020", "blocking", "20240301080001_setup.sql", 1),
        ("PF020", "blocking", "20240401000000_plain_style.sql", None),
        ("PF020", "blocking", "V5__flyway_style.sql", None),
        ("PF020", "blocking", "notes.sql", None),
    ]
    assert all(UNDERSTOOD in f.message for f in found if "mixes" in f.message or "no convention" in f.message)
    assert all("V<version>__<description>.sql" in f.hint for f in found)


@pytest.mark.finding("PF025", "advisory")
def test_golang_migrate_set_runs_its_up_files_and_never_its_down_files(local_server, run_suite, tmp_path):
    directory = write_set(tmp_path / "golang", GOLANG_MIGRATE_SET)
    with ScratchDatabase(local_server.conninfo(), "conventions_golang") as name:
        dsn = local_server.conninfo(name)
        record, out = run_record(run_suite, tmp_path, "suites/execute", "--dsn", dsn, "--migrations", str(directory))
        assert record["verdict"] == "SUCCESS", out[-3000:]
        assert [(r[1], r[5]) for r in ledger_rows(dsn)] == [
            ("000001", "applied"),
            ("000002", "applied"),
            ("000010", "applied"),
        ]
        notes = sorted((Path(f["path"]).name, f["severity"]) for f in record["findings"] if f["code"] == "PF025")
        assert notes == sorted((n, "advisory") for n in GOLANG_MIGRATE_SET if n.endswith(".down.sql"))
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT to_regclass('users_email_idx') IS NOT NULL").fetchone()[0]
            assert (
                conn.execute(
                    "SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'email'"
                ).fetchone()[0]
                == 1
            )


def test_dbmate_set_runs_up_sections_honours_transaction_false_and_reports_file_lines(
    local_server, run_suite, tmp_path
):
    directory = write_set(tmp_path / "dbmate", DBMATE_SET)
    with ScratchDatabase(local_server.conninfo(), "conventions_dbmate") as name:
        dsn = local_server.conninfo(name)
        record, out = run_record(run_suite, tmp_path, "suites/execute", "--dsn", dsn, "--migrations", str(directory))
        assert record["verdict"] == "SUCCESS", out[-3000:]
        assert [(r[1], r[4], r[5]) for r in ledger_rows(dsn)] == [
            ("20240101120000", True, "applied"),
            ("20240215093000", False, "applied"),
            ("20240301080000", True, "applied"),
        ]
        with psycopg.connect(dsn) as conn:
            # CONCURRENTLY ran outside a transaction (PostgreSQL refuses it in one), and no down section ran.
            assert (
                conn.execute(
                    "SELECT indisvalid FROM pg_index WHERE indexrelid = 'machine_line_idx'::regclass"
                ).fetchone()[0]
                is True
            )
            assert conn.execute("SELECT to_regclass('machine_state') IS NOT NULL").fetchone()[0]

        # A new file whose view names a column that does not exist: the rehearsal's error names its file line.
        broken = directory / "20240401000000_machine_counts.sql"
        broken.write_text(
            "-- Changes per machine, for the dashboard.\n"
            "-- Reviewed 2024-04-01.\n"
            "\n"
            "-- migrate:up\n"
            "CREATE OR REPLACE VIEW machine_counts AS\n"
            "SELECT m.code, count(s.*) AS changes\n"
            "  FROM machine m LEFT JOIN machine_state s ON s.machine_code = m.code\n"
            " GROUP BY m.code;\n"
            "\n"
            "-- migrate:down\n"
            "DROP VIEW machine_counts;\n"
        )
        record, out = run_record(run_suite, tmp_path, "suites/preflight", "--dsn", dsn, "--migrations", str(directory))
        assert record["verdict"] == "NO-GO", out[-3000:]
        (failed,) = [f for f in record["findings"] if f["code"] == "PF040"]
        assert (Path(failed["path"]).name, failed["line"]) == (broken.name, 7)
        assert "machine_code" in failed["message"]


def flyway_renamed(name: str) -> str:
    """001_telemetry.sql -> V1__telemetry.sql"""
    version, rest = name.split("_", 1)
    return f"V{int(version)}__{rest}"


def ms5_set(directory: Path, rename) -> Path:
    """The project's MS5.0 migrations under ``rename``d names, with a plan that refuses NULL time values
    (the plan's null_time rules taken out): lint, hazards and rehearsal then say NO-GO at files and lines."""
    directory.mkdir()
    for path in sorted((PROJECT / "migrations").glob("*.sql")):
        shutil.copyfile(path, directory / rename(path.name))
    plan = (PROJECT / "migrations" / "plan.toml").read_text()
    (directory / "plan.toml").write_text(re.sub(r"(?m)^null_time = .*\n", "", plan))
    return directory


def test_ms5_migrations_renamed_for_flyway_get_the_same_no_go_at_the_same_files_and_lines(
    legacy_db, run_suite, tmp_path
):
    original = ms5_set(tmp_path / "original", lambda name: name)
    renamed = ms5_set(tmp_path / "flyway", flyway_renamed)
    back = {flyway_renamed(p.name): p.name for p in original.glob("*.sql")}

    def judged(directory: Path) -> tuple[dict, list[tuple]]:
        record, out = run_record(
            run_suite, tmp_path, "suites/preflight", "--dsn", legacy_db.conninfo, "--migrations", str(directory)
        )
        assert record["verdict"] == "NO-GO", out[-3000:]
        findings = []
        for f in record["findings"]:
            path = Path(f["path"]) if f["path"] else None
            where = back.get(path.name, path.name) if path and path.parent == directory else f["path"]
            message = f["message"]
            for new, old in back.items():
                message = message.replace(new, old)
            findings.append(
                (f["code"], f["severity"], where, f["line"], f["table"], message.replace(str(directory), "<dir>"))
            )
        return record, sorted(findings, key=repr)

    original_record, original_findings = judged(original)
    renamed_record, renamed_findings = judged(renamed)
    in_files = [f for f in original_findings if f[2] in back.values() and f[1] == "blocking"]
    assert ("TS002", "blocking", "004_advanced_production.sql", 180) in [f[:4] for f in in_files], original_findings
    assert ("TS002", "blocking", "007_plc_integration.sql", 61) in [f[:4] for f in in_files]
    assert renamed_findings == original_findings
    checksums = renamed_record["verdict_inputs"]["migrations"]
    assert {back[name]: sha for name, sha in checksums.items()} == original_record["verdict_inputs"]["migrations"]
