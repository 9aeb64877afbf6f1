"""Static lint of migration SQL: each rule fires on bad SQL, at the right line and table,
and stays quiet once the SQL is fixed. No database needed."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tsmigrate.findings import ADVISORY, BLOCKING, Finding
from tsmigrate.lint import hypertables_created_in, lint_sql, rows_changed_in, source
from tsmigrate.lint.context import RULES

PATH = "migrations/001_example.sql"
# The MS5.0 plan's hypertables, as the plan file names them (bare names).
PLAN = {"metric_hist": "ts", "oee_calculations": "calculation_time"}


def lint(sql: str, *, hypertables=PLAN, **options) -> list[Finding]:
    return lint_sql(sql, PATH, hypertables=hypertables, **options)


def only(findings: list[Finding], code: str) -> list[Finding]:
    return [finding for finding in findings if finding.code == code]


def where(findings: list[Finding], code: str) -> list[tuple[int | None, str | None]]:
    return [(finding.line, finding.table) for finding in only(findings, code)]


# --- the rule registry and findings -----------------------------------------------------------


def test_rule_codes_and_severities_are_stable():
    # Reports, suppressions and the pre-flight key on these codes: changing one is a breaking change.
    assert {code: rule.severity for code, rule in RULES.items()} == {
        "TS000": BLOCKING,
        "TS001": BLOCKING,
        "TS002": BLOCKING,
        "TS003": BLOCKING,
        "TS004": BLOCKING,
        "TS005": BLOCKING,
        "TS006": ADVISORY,
        "TS007": BLOCKING,
        "TS008": ADVISORY,
        "TS009": BLOCKING,
        "TS010": BLOCKING,
        "TS011": BLOCKING,
        "TS012": BLOCKING,
        "TS013": BLOCKING,
        "TS101": ADVISORY,
        "TS102": ADVISORY,
        "TS103": ADVISORY,
        "TS104": ADVISORY,
        "TS105": ADVISORY,
    }
    for code, rule in RULES.items():
        assert rule.code == code and rule.title and rule.hint


def test_findings_carry_the_hint_and_severity_of_their_rule():
    findings = lint("ALTER TABLE machines ALTER COLUMN x TYPE bigint;\nVACUUM machines;\n")
    assert [f.code for f in findings] == ["TS102", "TS004"]
    for finding in findings:
        assert (finding.severity, finding.hint) == (RULES[finding.code].severity, RULES[finding.code].hint)
        assert finding.path == PATH


def test_finding_location_and_json():
    finding = Finding("TS001", BLOCKING, "bad", path="a.sql", line=3, table="s.t", hint="fix")
    assert finding.location() == "a.sql:3"
    assert Finding("TS001", BLOCKING, "bad", path="a.sql").location() == "a.sql"
    assert Finding("TS001", BLOCKING, "bad", line=7).location() == "line 7"
    assert Finding("TS001", ADVISORY, "bad").location() == ""
    assert json.loads(json.dumps(finding.to_dict())) == {
        "code": "TS001",
        "severity": "blocking",
        "message": "bad",
        "path": "a.sql",
        "line": 3,
        "table": "s.t",
        "hint": "fix",
        "location": "a.sql:3",
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        finding.line = 4  # type: ignore[misc]
    with pytest.raises(ValueError):
        Finding("TS001", "fatal", "bad")


# --- TS001: unique key without the time column ------------------------------------------------


@pytest.mark.parametrize(
    "bad, line",
    [
        ("CREATE TABLE IF NOT EXISTS metric_hist (\n  id bigserial PRIMARY KEY,\n  ts timestamptz NOT NULL\n);", 2),
        ("CREATE TABLE IF NOT EXISTS metric_hist (\n  id bigint,\n  ts timestamptz NOT NULL,\n  UNIQUE (id)\n);", 4),
        ("-- keep ids unique\nALTER TABLE metric_hist ADD CONSTRAINT metric_hist_pkey PRIMARY KEY (id);", 2),
        ("\n\nCREATE UNIQUE INDEX IF NOT EXISTS metric_hist_id ON metric_hist (id);", 3),
    ],
)
def test_unique_key_without_time_column_is_blocking(bad, line):
    findings = only(lint(bad), "TS001")
    assert [(f.line, f.table, f.severity) for f in findings] == [(line, "metric_hist", BLOCKING)]
    assert "'ts'" in findings[0].message and "(id)" in findings[0].message


@pytest.mark.parametrize(
    "fixed",
    [
        "CREATE TABLE IF NOT EXISTS metric_hist (\n  id bigserial,\n  ts timestamptz NOT NULL,\n"
        "  PRIMARY KEY (id, ts)\n);",
        "ALTER TABLE metric_hist ADD CONSTRAINT metric_hist_pkey PRIMARY KEY (id, ts);",
        "CREATE UNIQUE INDEX IF NOT EXISTS metric_hist_id ON metric_hist (id, TS);",
        # Not a hypertable: a unique id is fine.
        "CREATE UNIQUE INDEX IF NOT EXISTS machines_id ON machines (id);",
    ],
)
def test_unique_key_with_time_column_passes(fixed):
    assert only(lint(fixed), "TS001") == []


@pytest.mark.parametrize(
    "plan, sql_name, reported",
    [
        ({"metric_hist": "ts"}, "factory_telemetry.metric_hist", "factory_telemetry.metric_hist"),  # bare key
        ({"factory_telemetry.metric_hist": "ts"}, "metric_hist", "metric_hist"),  # qualified key, bare SQL
        ({"factory_telemetry.metric_hist": "ts"}, "factory_telemetry.metric_hist", "factory_telemetry.metric_hist"),
        ({"Factory_Telemetry.Metric_Hist": "TS"}, "factory_telemetry.METRIC_HIST", "factory_telemetry.metric_hist"),
        ({'"factory_telemetry"."metric_hist"': "ts"}, "metric_hist", "metric_hist"),
        ({"factory_telemetry.metric_hist": "ts"}, "archive.metric_hist", None),  # another schema
        ({"metric_hist": "ts"}, "metric_history", None),
    ],
)
def test_hypertable_names_match_bare_or_qualified_case_insensitively(plan, sql_name, reported):
    findings = only(lint(f"CREATE UNIQUE INDEX IF NOT EXISTS u ON {sql_name} (id);", hypertables=plan), "TS001")
    assert [f.table for f in findings] == ([reported] if reported else [])


def test_tables_converted_in_the_file_are_checked_without_a_plan():
    sql = (
        "CREATE TABLE IF NOT EXISTS readings (\n  id int PRIMARY KEY,\n  ts timestamptz NOT NULL\n);\n"
        "SELECT create_hypertable('readings', 'ts');\n"
    )
    assert where(lint(sql, hypertables={}), "TS001") == [(2, "readings")]


# --- TS002: nullable time column ----------------------------------------------------------------


def test_nullable_time_column_is_blocking():
    sql = (
        "CREATE TABLE IF NOT EXISTS oee_calculations (\n  id bigint,\n  calculation_time timestamptz DEFAULT now()\n);"
    )
    findings = only(lint(sql), "TS002")
    assert [(f.line, f.table, f.severity) for f in findings] == [(3, "oee_calculations", BLOCKING)]
    assert "calculation_time" in findings[0].message and "NOT NULL" in findings[0].hint


@pytest.mark.parametrize(
    "fixed",
    [
        "CREATE TABLE IF NOT EXISTS oee_calculations (id bigint, calculation_time timestamptz NOT NULL)",
        "CREATE TABLE IF NOT EXISTS oee_calculations (id bigint, calculation_time timestamptz, "
        "PRIMARY KEY (id, calculation_time))",
        "CREATE TABLE IF NOT EXISTS oee_calculations (id bigint, calculation_time timestamptz PRIMARY KEY)",
        "CREATE TABLE IF NOT EXISTS machines (id bigint, calculation_time timestamptz)",  # not a hypertable
    ],
)
def test_not_null_time_column_passes(fixed):
    assert only(lint(fixed), "TS002") == []


# --- TS003: non-immutable functions in indexes ------------------------------------------------


@pytest.mark.parametrize(
    "bad, named",
    [
        ("CREATE INDEX IF NOT EXISTS recent ON metric_hist (ts)\n  WHERE ts > now() - interval '1 day';", "now()"),
        ("CREATE INDEX IF NOT EXISTS recent ON metric_hist (ts)\n  WHERE ts::date = CURRENT_DATE;", "CURRENT_DATE"),
        ("CREATE INDEX IF NOT EXISTS aged ON metric_hist (\n  (age(ts)));", "age()"),
        ("CREATE INDEX IF NOT EXISTS r ON metric_hist (\n  (random()));", "random()"),
    ],
)
def test_non_immutable_function_in_index_is_blocking(bad, named):
    findings = only(lint(bad), "TS003")
    assert [(f.line, f.table, f.severity) for f in findings] == [(2, "metric_hist", BLOCKING)]
    assert named in findings[0].message


@pytest.mark.parametrize(
    "fixed",
    [
        "CREATE INDEX IF NOT EXISTS recent ON metric_hist (ts) WHERE ts > '2024-01-01'::timestamptz",
        "CREATE INDEX IF NOT EXISTS lower_name ON machines ((lower(name)))",
        "CREATE INDEX IF NOT EXISTS aged ON machines ((age(finished, started)))",  # two-argument age
    ],
)
def test_immutable_index_expressions_pass(fixed):
    assert only(lint(fixed), "TS003") == []


def test_live_volatility_overrides_the_builtin_list():
    sql = "CREATE INDEX IF NOT EXISTS i ON metric_hist ((shift_of(ts))) WHERE ts > now();"
    from_server = {"shift_of": "s", "now": "i"}.get  # pretend pg_proc knows both
    findings = only(lint(sql, volatility=from_server), "TS003")
    assert [f.message.split(" uses ")[1].split(" ")[0] for f in findings] == ["shift_of()"]
    # Unknown to the server: fall back to the built-in list.
    assert len(only(lint(sql, volatility=lambda name: None), "TS003")) == 1


# --- TS004: statements that cannot run in a transaction ---------------------------------------


@pytest.mark.parametrize(
    "bad, what",
    [
        ("CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON machines (name);", "CREATE INDEX CONCURRENTLY"),
        ("REINDEX INDEX CONCURRENTLY machines_name;", "REINDEX CONCURRENTLY"),
        ("ALTER SYSTEM SET work_mem = '64MB';", "ALTER SYSTEM"),
        ("CREATE DATABASE scratch;", "CREATE DATABASE"),
        ("VACUUM (ANALYZE) metric_hist;", "VACUUM"),
        ("DROP INDEX CONCURRENTLY IF EXISTS i;", "DROP INDEX CONCURRENTLY"),
        ("CALL refresh_continuous_aggregate('hourly', NULL, NULL);", "refresh_continuous_aggregate"),
    ],
)
def test_non_transactional_statement_in_transactional_file_is_blocking(bad, what):
    sql = "-- maintenance\n\n" + bad
    findings = only(lint(sql), "TS004")
    assert [(f.line, f.severity) for f in findings] == [(3, BLOCKING)]
    assert what in findings[0].message
    assert only(lint(sql, transactional=False), "TS004") == []


@pytest.mark.parametrize(
    "fine",
    [
        "CREATE INDEX IF NOT EXISTS i ON machines (name);",  # plain CREATE INDEX is normal in a transaction
        "ANALYZE metric_hist;",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS hourly WITH (timescaledb.continuous) AS SELECT 1 WITH NO DATA;",
    ],
)
def test_transaction_safe_statements_pass(fine):
    findings = lint(fine)
    assert only(findings, "TS004") == []
    assert only(findings, "TS103") == []


# --- TS005 / TS006: create_hypertable and migrate_data ----------------------------------------


def test_create_hypertable_after_loading_rows_without_migrate_data_is_blocking():
    sql = (
        "CREATE TABLE IF NOT EXISTS readings (id int, ts timestamptz NOT NULL);\n"
        "INSERT INTO readings VALUES (1, now());\n"
        "SELECT create_hypertable('readings', 'ts');\n"
    )
    findings = lint(sql, hypertables={})
    assert [(f.code, f.line, f.table, f.severity) for f in findings] == [("TS005", 3, "readings", BLOCKING)]
    fixed = sql.replace("'ts')", "'ts', migrate_data => true)")
    assert lint(fixed, hypertables={}) == []


def test_create_hypertable_on_a_fresh_table_of_the_same_file_passes():
    sql = (
        "CREATE TABLE IF NOT EXISTS readings (id int, ts timestamptz NOT NULL);\n"
        "SELECT create_hypertable('readings', by_range('ts'));\n"
    )
    assert lint(sql, hypertables={}) == []


def test_create_hypertable_on_a_table_from_elsewhere_is_advisory():
    sql = (
        "\nSELECT create_hypertable('factory_telemetry.metric_hist', 'ts',\n"
        "  chunk_time_interval => interval '1 hour');"
    )
    findings = lint(sql)
    assert [(f.code, f.line, f.table, f.severity) for f in findings] == [
        ("TS006", 2, "factory_telemetry.metric_hist", ADVISORY)
    ]
    assert "migrate_data" in findings[0].message


@pytest.mark.parametrize(
    "fixed",
    [
        "SELECT create_hypertable('metric_hist', 'ts', migrate_data => true);",
        "SELECT create_hypertable('metric_hist', 'ts', migrate_data => 'on');",
        "SELECT create_hypertable('metric_hist', by_range('ts'), migrate_data => TRUE);",
        "SELECT create_hypertable('metric_hist', by_range('ts'), true, true, true);",  # 5th positional
        "SELECT create_hypertable('metric_hist', 'ts', NULL, NULL, NULL, NULL, interval '1 hour', "
        "true, true, NULL, true);",
    ],
)
def test_create_hypertable_with_migrate_data_passes(fixed):
    assert only(lint(fixed), "TS006") == []


# --- TS007 / TS008: foreign keys into hypertables ---------------------------------------------


def test_foreign_key_between_hypertables_is_blocking():
    sql = (
        "ALTER TABLE oee_calculations\n"
        "  ADD CONSTRAINT oee_metric FOREIGN KEY (metric_id, ts) REFERENCES metric_hist (id, ts) NOT VALID;"
    )
    assert [(f.code, f.line, f.table, f.severity) for f in lint(sql)] == [("TS007", 2, "oee_calculations", BLOCKING)]


def test_foreign_key_from_a_plain_table_into_a_hypertable_is_advisory():
    sql = (
        "CREATE TABLE IF NOT EXISTS alarms (\n  id int,\n"
        "  metric_id bigint REFERENCES factory_telemetry.metric_hist (id)\n);"
    )
    findings = lint(sql)
    assert [(f.code, f.line, f.table, f.severity) for f in findings] == [("TS008", 3, "alarms", ADVISORY)]
    assert "factory_telemetry.metric_hist" in findings[0].message


def test_foreign_key_into_a_plain_table_passes():
    sql = "CREATE TABLE IF NOT EXISTS metric_hist (ts timestamptz NOT NULL, machine_id int REFERENCES machines (id));"
    assert lint(sql) == []


# --- TS009: psql meta-commands ----------------------------------------------------------------


def test_psql_meta_commands_are_blocking_and_the_rest_is_still_linted():
    sql = "-- run me with psql\n\\set ON_ERROR_STOP on\nSELECT 1;\n   \\connect ms5\nVACUUM metric_hist;\n"
    findings = lint(sql)
    assert [(f.code, f.line) for f in findings] == [("TS009", 2), ("TS009", 4), ("TS004", 5)]
    assert "\\connect ms5" in findings[1].message and findings[1].severity == BLOCKING


def test_backslashes_inside_strings_comments_and_function_bodies_are_not_meta_commands():
    sql = (
        "CREATE OR REPLACE FUNCTION f() RETURNS text LANGUAGE sql AS $body$\n"
        "\\not a command\n"
        "$body$;\n"
        "SELECT 'first line\n"
        "\\second line';\n"
        "SELECT E'it''s\\'\n"
        "\\x';\n"
        "/* nested /* comment */\n"
        "\\still a comment */\n"
        "SELECT 1;\n"
    )
    assert lint(sql) == []


# --- TS000: parse errors ----------------------------------------------------------------------


def test_parse_error_is_a_blocking_finding_at_the_reported_line():
    sql = "SELECT 1;\n\n-- ü\nCREATE TABLEX metric_hist ();\nSELECT 2;\n"
    findings = lint(sql)
    assert [(f.code, f.line, f.severity) for f in findings] == [("TS000", 4, BLOCKING)]
    assert "TABLEX" in findings[0].message


def test_parse_error_at_end_of_input_points_at_the_last_line():
    findings = lint("SELECT 1;\nSELECT (\n\n\n")
    assert [(f.code, f.line) for f in findings] == [("TS000", 2)]


# --- TS101: non-idempotent DDL ----------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, fixed",
    [
        ("CREATE TABLE machines (id int)", "CREATE TABLE IF NOT EXISTS machines (id int)"),
        (
            "CREATE INDEX machines_name ON machines (name)",
            "CREATE INDEX IF NOT EXISTS machines_name ON machines (name)",
        ),
        ("CREATE SCHEMA factory_telemetry", "CREATE SCHEMA IF NOT EXISTS factory_telemetry"),
        ("CREATE EXTENSION timescaledb", "CREATE EXTENSION IF NOT EXISTS timescaledb"),
        ("DROP TABLE old_readings", "DROP TABLE IF EXISTS old_readings"),
        ("DROP INDEX machines_name", "DROP INDEX IF EXISTS machines_name"),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        ),
        ("CREATE VIEW v AS SELECT 1", "CREATE OR REPLACE VIEW v AS SELECT 1"),
    ],
)
def test_non_idempotent_ddl_is_advisory(bad, fixed):
    findings = lint("\n" + bad + ";")
    assert [(f.code, f.line, f.severity) for f in findings] == [("TS101", 2, ADVISORY)]
    assert lint(fixed) == []


# --- TS102: table rewrites --------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, column",
    [
        ("ALTER TABLE machines ALTER COLUMN counter TYPE bigint", "counter"),
        ("ALTER TABLE machines ADD COLUMN token uuid DEFAULT gen_random_uuid()", "token"),
        ("ALTER TABLE machines ADD COLUMN seq bigserial", "seq"),
    ],
)
def test_table_rewrite_is_advisory(bad, column):
    findings = only(lint(bad), "TS102")
    assert [(f.line, f.table, f.severity) for f in findings] == [(1, "machines", ADVISORY)]
    assert repr(column) in findings[0].message


@pytest.mark.parametrize(
    "fine",
    [
        "ALTER TABLE machines ADD COLUMN added_at timestamptz DEFAULT now()",  # stable: no rewrite
        "ALTER TABLE machines ADD COLUMN flag boolean DEFAULT false",
        # A table created in the same file is still empty: rewriting it costs nothing.
        "CREATE TABLE IF NOT EXISTS t (c int); ALTER TABLE t ALTER COLUMN c TYPE bigint",
    ],
)
def test_no_rewrite_passes(fine):
    assert only(lint(fine), "TS102") == []


# --- TS103: lock-heavy validation -------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "ALTER TABLE machines ADD CONSTRAINT machines_line FOREIGN KEY (line_id) REFERENCES lines (id)",
        "ALTER TABLE machines ADD CONSTRAINT positive CHECK (counter >= 0)",
        "ALTER TABLE machines ALTER COLUMN name SET NOT NULL",
    ],
)
def test_lock_heavy_statement_is_advisory(bad):
    findings = only(lint("SELECT 1;\n" + bad + ";"), "TS103")
    assert [(f.line, f.table, f.severity) for f in findings] == [(2, "machines", ADVISORY)]


@pytest.mark.parametrize(
    "fine",
    [
        "ALTER TABLE machines ADD CONSTRAINT machines_line FOREIGN KEY (line_id) REFERENCES lines (id) NOT VALID",
        "ALTER TABLE machines ADD CONSTRAINT positive CHECK (counter >= 0) NOT VALID",
        "ALTER TABLE machines VALIDATE CONSTRAINT positive",
        "CREATE TABLE IF NOT EXISTS t (c int); ALTER TABLE t ALTER COLUMN c SET NOT NULL",
    ],
)
def test_non_blocking_validation_passes(fine):
    assert only(lint(fine), "TS103") == []


# --- TS104: transaction control inside a file -------------------------------------------------


def test_begin_and_commit_in_a_transactional_file_are_advisory():
    sql = "BEGIN;\nSAVEPOINT s;\nSELECT 1;\nCOMMIT;\n"
    assert [(f.code, f.line, f.severity) for f in lint(sql)] == [("TS104", 1, ADVISORY), ("TS104", 4, ADVISORY)]
    assert lint(sql, transactional=False) == []  # a non-transactional file may manage its own


# --- line numbers -----------------------------------------------------------------------------


def test_lines_are_right_after_multiline_comments_and_multibyte_characters():
    sql = (
        "-- Größe der Maschinenhalle ✓ 🚀\n"  # 1
        "/* Kommentar über\n"  # 2
        "   mehrere Zeilen: 日本語 */\n"  # 3
        "INSERT INTO notes VALUES ('ünïcödé 🏭');\n"  # 4
        "/* before */ /* and\n"  # 5
        "   after */\n"  # 6
        "\n"  # 7
        "   VACUUM metric_hist;  -- ✓\n"  # 8
        "DROP TABLE\n"  # 9
        "  old_🏭;\n"
    )  # 10
    assert [(f.code, f.line) for f in lint(sql)] == [("TS004", 8), ("TS101", 9)]


def test_byte_offsets_from_older_parsers_are_converted_to_characters(monkeypatch):
    monkeypatch.setattr(source, "PARSER_OFFSETS_ARE_BYTES", True)
    text = "-- ü🏭\nSELECT 1;\n"
    lines = source.LineMap(text)
    byte_offset = len("-- ü🏭\n".encode())
    assert lines.index(byte_offset) == text.index("SELECT")
    assert lines.line(lines.index(byte_offset)) == 2


# --- create_hypertable detection --------------------------------------------------------------


@pytest.mark.parametrize(
    "call, expected",
    [
        ("SELECT create_hypertable('metric_hist', 'ts');", {"metric_hist": "ts"}),
        (
            "SELECT create_hypertable('factory_telemetry.metric_hist'::regclass, 'ts', chunk_time_interval => "
            "interval '1 hour');",
            {"factory_telemetry.metric_hist": "ts"},
        ),
        (
            "SELECT create_hypertable(relation => 'metric_hist', time_column_name => 'ts', if_not_exists => true);",
            {"metric_hist": "ts"},
        ),
        ("SELECT create_hypertable('metric_hist', time_column_name => 'ts');", {"metric_hist": "ts"}),
        ("SELECT public.create_hypertable('metric_hist', by_range('ts', INTERVAL '1 hour'));", {"metric_hist": "ts"}),
        (
            "SELECT create_hypertable(relation => 'metric_hist', dimension => by_range(column_name => 'ts'));",
            {"metric_hist": "ts"},
        ),
        (
            "SELECT * FROM create_hypertable('a', 'ts'); SELECT create_hypertable('b', by_range('at'));",
            {"a": "ts", "b": "at"},
        ),
    ],
)
def test_create_hypertable_calls_are_found(call, expected):
    assert hypertables_created_in(call) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT add_dimension('metric_hist', by_hash('machine_id', 4));",
        "-- SELECT create_hypertable('metric_hist', 'ts');\nSELECT 1;",
        "SELECT 'create_hypertable(''metric_hist'', ''ts'')';",
        "SELECT create_hypertable('metric_hist' 'ts');",  # does not parse
    ],
)
def test_no_create_hypertable_no_conversion(sql):
    assert hypertables_created_in(sql) == {}


# --- properties -------------------------------------------------------------------------------

SAMPLE = (
    "CREATE TABLE IF NOT EXISTS metric_hist (\n"
    "  id bigserial PRIMARY KEY,\n"
    "  ts timestamptz\n"
    ");\n"
    "CREATE INDEX IF NOT EXISTS recent ON metric_hist (ts) WHERE ts > now();\n"
    "\\connect ms5\n"
    "DROP TABLE old;\n"
)

comment_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r\n"), max_size=30)
block_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40).filter(
    lambda text: "/*" not in text and "*/" not in text
)
noise = st.lists(
    st.one_of(
        st.just("\n"),
        st.sampled_from([" \n", "\t\n", "   "]),
        comment_text.map(lambda text: f"-- {text}\n"),
        block_text.map(lambda text: f"/* {text} */"),
    ),
    max_size=12,
).map("".join)


@given(prefix=noise)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_a_prefix_of_comments_and_blank_lines_shifts_every_line_by_its_newlines(prefix):
    before = [(f.code, f.line) for f in lint(SAMPLE)]
    shifted = [(f.code, f.line) for f in lint(prefix + "\n" + SAMPLE)]
    newlines = prefix.count("\n") + 1
    assert before == [("TS001", 2), ("TS002", 3), ("TS003", 5), ("TS009", 6), ("TS101", 7)]
    assert shifted == [(code, line + newlines) for code, line in before]


name_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='".'), min_size=1, max_size=15
)  # at most 60 UTF-8 bytes: under PostgreSQL's 63


@given(name=name_text, time_column=name_text)
@settings(max_examples=150)
def test_any_quoted_identifier_is_matched_and_reported_as_written(name, time_column):
    quoted = '"' + name + '"'  # a plan key may quote a name too, as PostgreSQL would
    sql = f"CREATE UNIQUE INDEX IF NOT EXISTS u ON {quoted} (id);"
    findings = lint(sql, hypertables={quoted: time_column})
    assert [(f.code, f.table) for f in findings] == [("TS001", name)]
    assert lint(sql.replace("(id)", f'(id, "{time_column}")'), hypertables={quoted: time_column}) == []


@given(sql=st.text(max_size=200))
@settings(max_examples=300)
def test_arbitrary_text_never_crashes_the_linter(sql):
    findings = lint(sql)
    assert all(isinstance(f, Finding) and f.code in RULES for f in findings)
    lines = sql.count("\n") + 1
    assert all(f.line is None or 1 <= f.line <= lines for f in findings)


# --- what a file may do to rows (a restore tells the run's own deletions from others' by it) ------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "DELETE FROM factory_telemetry.oee_calculations WHERE id < 10;\nINSERT INTO andon_events (id) VALUES (1);",
            ({("factory_telemetry", "oee_calculations")}, {(None, "andon_events")}),
        ),
        (
            "TRUNCATE a, s.b;\nDROP TABLE IF EXISTS c;\nUPDATE d SET x = 1;\nCOPY e FROM STDIN;",
            ({(None, "a"), ("s", "b"), (None, "c"), (None, "d")}, {(None, "d"), (None, "e")}),
        ),
        (
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_class WHERE relname = 'x') "
            "THEN DELETE FROM f; END IF; END $$;",
            ({(None, "f")}, set()),
        ),
        (
            "DO $$ DECLARE r text; BEGIN FOREACH r IN ARRAY ARRAY['a'] LOOP\n"
            "  EXECUTE 'CREATE ROLE ' || quote_ident(r) || ' NOLOGIN'; END LOOP; END $$;",
            (set(), set()),
        ),
        (
            "CREATE TABLE IF NOT EXISTS g (id int);\nCREATE OR REPLACE VIEW v AS SELECT count(*) FROM g;\n"
            "SELECT create_hypertable('g', 'id');",
            (set(), set()),
        ),
        ("SELECT purge_old_rows();", None),  # a function may delete anything
        ("DO $$ BEGIN PERFORM purge_old_rows(); END $$;", None),
        ("DO $$ BEGIN EXECUTE 'DELETE FROM ' || 'h'; END $$;", None),  # dynamic SQL that changes rows
        ("DO $$ DECLARE s text := 'x'; BEGIN EXECUTE s; END $$;", None),  # dynamic SQL nothing can read
        ("CALL archive();", None),
        ("SELEC 1;", None),
    ],
    ids=[
        "delete-insert",
        "truncate-drop-update-copy",
        "do-block",
        "do-dynamic-ddl",
        "ddl-only",
        "select-function",
        "perform",
        "dynamic-delete",
        "dynamic-unknown",
        "call",
        "no-parse",
    ],
)
def test_what_a_file_may_do_to_rows_is_read_from_its_statements(text, expected):
    assert rows_changed_in(text) == expected
