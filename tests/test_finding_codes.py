"""The registry of finding codes: the README's table is the registry, and every code (and each code's other
severity) has a test that makes its condition and asserts code, severity and location. The TS codes' tests
are here (migration files written to disk, through the real lint); the PF codes' tests, on real servers, are
in tests/test_preflight_findings.py and the other tests marked ``@pytest.mark.finding(code, severity)``."""

from __future__ import annotations

import ast
import difflib
import shutil
from pathlib import Path

import psycopg
import pytest

from tsmigrate.codes import CODES, readme_table, table_lines
from tsmigrate.findings import ADVISORY, BLOCKING, SEVERITIES, Finding
from tsmigrate.janitor import ScratchDatabase
from tsmigrate.lint import lint_sql
from tsmigrate.migrations import discover
from tsmigrate.plan import load_plan
from tsmigrate.preflight.files import hypertables_of, lint

PROJECT = Path(__file__).resolve().parents[1]
TESTS = PROJECT / "tests"


# -- the registry, the README and the tests -------------------------------------------------------------


def test_the_readme_table_is_the_registry():
    readme = readme_table((PROJECT / "README.md").read_text())
    assert readme, "README.md has no table of finding codes"
    diff = "\n".join(difflib.unified_diff(readme, table_lines(), "README.md", "tsmigrate/codes.py", lineterm=""))
    assert readme == table_lines(), (
        f"README.md's table of codes differs from the registry; run `.venv/bin/tsmigrate codes README.md`:\n{diff}"
    )


def test_every_code_of_the_registry_is_well_formed():
    for code, entry in CODES.items():
        assert entry.code == code and code[:2] in ("TS", "PF") and code[2:].isdigit() and len(code) == 5, code
        assert entry.severity in SEVERITIES and entry.title and entry.hint.endswith((".", ")")), code


NAMED = {"BLOCKING": BLOCKING, "ADVISORY": ADVISORY}  # the severities, as the tests spell them


def marked_findings() -> dict[tuple[str, str], list[str]]:
    """(code, severity) -> the tests marked ``pytest.mark.finding(code, severity)``, read from the test files."""
    marked: dict[tuple[str, str], list[str]] = {}
    for path in sorted(TESTS.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "finding"
                and ast.unparse(node.func.value) == "pytest.mark"
            ):
                code, severity = (NAMED.get(ast.unparse(a)) or ast.literal_eval(a) for a in node.args)
                marked.setdefault((code, severity), []).append(f"{path.name}:{node.lineno}")
    return marked


def test_every_code_and_each_of_its_severities_has_a_test():
    marked = marked_findings()
    wanted = {(c.code, c.severity) for c in CODES.values()} | {
        (c.code, c.other_severity) for c in CODES.values() if c.other_severity
    }
    untested = sorted(wanted - set(marked))
    unknown = {key: where for key, where in marked.items() if key not in wanted}
    assert untested == [], (
        "codes (with severity) no test makes and asserts; add a test marked "
        f"@pytest.mark.finding(code, severity): {untested}"
    )
    assert unknown == {}, f"tests marked with a code or severity the registry does not have: {unknown}"


# -- TS codes: a migration file on disk, through the lint the pre-flight runs ---------------------------


TS_CASES = [
    pytest.param("SELECT 1;\nSELEC 2;\n", 2, None, id="TS000", marks=pytest.mark.finding("TS000", BLOCKING)),
    pytest.param(
        "CREATE TABLE IF NOT EXISTS readings (\n  id bigserial PRIMARY KEY,\n  ts timestamptz NOT NULL\n);\n"
        "SELECT create_hypertable('readings', 'ts', if_not_exists => true);\n",
        2,
        "readings",
        id="TS001",
        marks=pytest.mark.finding("TS001", BLOCKING),
    ),
    pytest.param(
        "-- the time column may be NULL\nCREATE TABLE IF NOT EXISTS readings (\n  ts timestamptz,\n  v int\n);\n"
        "SELECT create_hypertable('readings', 'ts', if_not_exists => true);\n",
        3,
        "readings",
        id="TS002",
        marks=pytest.mark.finding("TS002", BLOCKING),
    ),
    pytest.param(
        "CREATE TABLE IF NOT EXISTS readings (ts timestamptz NOT NULL, v int);\n"
        "CREATE INDEX IF NOT EXISTS recent ON readings (v)\n  WHERE ts > now() - interval '1 day';\n",
        3,
        "readings",
        id="TS003",
        marks=pytest.mark.finding("TS003", BLOCKING),
    ),
    pytest.param(
        "\nCREATE INDEX CONCURRENTLY IF NOT EXISTS readings_v ON readings (v);\n",
        2,
        "readings",
        id="TS004",
        marks=pytest.mark.finding("TS004", BLOCKING),
    ),
    pytest.param(
        "CREATE TABLE IF NOT EXISTS readings (ts timestamptz NOT NULL, v int);\n"
        "INSERT INTO readings VALUES (now(), 1);\n"
        "SELECT create_hypertable('readings', 'ts', if_not_exists => true);\n",
        3,
        "readings",
        id="TS005",
        marks=pytest.mark.finding("TS005", BLOCKING),
    ),
    pytest.param(
        "-- readings exists already (an earlier migration)\n"
        "SELECT create_hypertable('readings', 'ts', if_not_exists => true);\n",
        2,
        "readings",
        id="TS006",
        marks=pytest.mark.finding("TS006", ADVISORY),
    ),
    pytest.param(
        "CREATE TABLE IF NOT EXISTS events (ts timestamptz NOT NULL, id bigint, UNIQUE (id, ts));\n"
        "CREATE TABLE IF NOT EXISTS notes (\n  ts timestamptz NOT NULL,\n  event_id bigint,\n"
        "  event_ts timestamptz,\n  FOREIGN KEY (event_id, event_ts) REFERENCES events (id, ts)\n);\n"
        "SELECT create_hypertable('events', 'ts', if_not_exists => true);\n"
        "SELECT create_hypertable('notes', 'ts', if_not_exists => true);\n",
        6,
        "notes",
        id="TS007",
        marks=pytest.mark.finding("TS007", BLOCKING),
    ),
    pytest.param(
        "CREATE TABLE IF NOT EXISTS notes (\n  id bigserial PRIMARY KEY,\n"
        "  reading_id bigint REFERENCES readings (id)\n);\n"
        "SELECT create_hypertable('readings', 'ts', migrate_data => true, if_not_exists => true);\n",
        3,
        "notes",
        id="TS008",
        marks=pytest.mark.finding("TS008", ADVISORY),
    ),
    pytest.param("SELECT 1;\n\\i other.sql\n", 2, None, id="TS009", marks=pytest.mark.finding("TS009", BLOCKING)),
    pytest.param(
        "SELECT 1;\nCREATE TABLE readings (ts timestamptz NOT NULL);\n",
        2,
        "readings",
        id="TS101",
        marks=pytest.mark.finding("TS101", ADVISORY),
    ),
    pytest.param(
        "ALTER TABLE readings\n  ALTER COLUMN v TYPE bigint;\n",
        1,
        "readings",
        id="TS102",
        marks=pytest.mark.finding("TS102", ADVISORY),
    ),
    pytest.param(
        "ALTER TABLE readings ADD CONSTRAINT positive CHECK (v > 0);\n",
        1,
        "readings",
        id="TS103",
        marks=pytest.mark.finding("TS103", ADVISORY),
    ),
    pytest.param(
        "CREATE TABLE IF NOT EXISTS readings (ts timestamptz NOT NULL);\nCOMMIT;\n",
        2,
        None,
        id="TS104",
        marks=pytest.mark.finding("TS104", ADVISORY),
    ),
]


def lint_directory(directory: Path) -> list[Finding]:
    """What the pre-flight's lint finds in the files of ``directory`` (tables they convert are hypertables)."""
    files, problems = discover(directory)
    assert problems == [], problems
    hypertables = hypertables_of(None, files)
    return [
        finding
        for f in files
        for finding in lint_sql(f.sql, str(f.path), hypertables=hypertables, transactional=f.transactional)
    ]


@pytest.mark.parametrize("text, line, table", TS_CASES)
def test_each_lint_code_names_its_file_line_and_table(text, line, table, marked_finding, tmp_path):
    code, severity = marked_finding
    migration = tmp_path / "001_case.sql"
    migration.write_text(text)
    found = [f for f in lint_directory(tmp_path) if f.code == code]
    assert [(f.severity, f.path, f.line, f.table) for f in found] == [(severity, str(migration), line, table)], found
    assert found[0].hint == CODES[code].hint


# The pre-flight judges some lint codes against the plan: (file text, line, table), one finding of the code.
PLANNED_CASES = [
    pytest.param(
        "-- keep ids unique\nCREATE UNIQUE INDEX IF NOT EXISTS metric_hist_id ON factory_telemetry.metric_hist (id);\n",
        2,
        "factory_telemetry.metric_hist",
        id="TS001-rebuilt-by-the-plan",
        marks=pytest.mark.finding("TS001", ADVISORY),
    ),
    pytest.param(
        "CREATE TABLE IF NOT EXISTS factory_telemetry.production_kpis (\n  id bigserial,\n"
        "  created_at timestamptz,\n  kpi_date date\n);\n",
        3,
        "factory_telemetry.production_kpis",
        id="TS002-filled-by-the-plan",
        marks=pytest.mark.finding("TS002", ADVISORY),
    ),
    pytest.param(
        "CREATE TABLE IF NOT EXISTS factory_telemetry.notes (\n  id bigserial PRIMARY KEY,\n"
        "  metric_hist_id bigint REFERENCES factory_telemetry.metric_hist (id)\n);\n",
        3,
        "factory_telemetry.notes",
        id="TS008-cannot-be-kept",
        marks=pytest.mark.finding("TS008", BLOCKING),
    ),
]


@pytest.mark.parametrize("text, line, table", PLANNED_CASES)
def test_the_preflight_judges_lint_codes_against_the_plan(text, line, table, marked_finding, tmp_path, local_server):
    code, severity = marked_finding
    shutil.copy(PROJECT / "migrations" / "plan.toml", tmp_path / "plan.toml")
    migration = tmp_path / "011_case.sql"
    migration.write_text(text)
    with (
        ScratchDatabase(local_server.conninfo(), "lint_against_the_plan") as name,
        psycopg.connect(local_server.conninfo(name), autocommit=True) as conn,
    ):
        found = [f for f in lint(conn, tmp_path, load_plan(tmp_path)) if f.code == code]
    assert [(f.severity, f.path, f.line, f.table) for f in found] == [(severity, str(migration), line, table)], found
