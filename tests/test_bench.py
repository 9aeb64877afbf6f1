"""Benchmark figures and their rendering (no database): ratios, verdicts, the HTML table and the SVG chart; the
dashboard queries file (its format and every way it can be wrong, with file and line); and the dashboard
queries' chunk exclusion, on a real hypertable."""

from __future__ import annotations

import json
import math
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import psycopg
import pytest

from tsmigrate.bench import (
    DashboardQuery,
    DashboardQueryError,
    Figure,
    load_dashboard_queries,
    parse_dashboard_queries,
    percentile,
    run_dashboard_query,
)
from tsmigrate.janitor import ScratchDatabase
from tsmigrate.plan import PlanError, load_plan
from tsmigrate.report.html import figures_chart_svg as bar_chart_svg
from tsmigrate.report.html import figures_table_html

PROJECT = Path(__file__).resolve().parents[1]

SVG = "{http://www.w3.org/2000/svg}"

FAST_INGEST = Figure("metric_hist ingest, COPY", 52_000, "rows/s", 1_000, "higher")
SLOW_QUERY = Figure("OEE per line over a shift, p95", 250.0, "ms", 100, "lower", "p50 120 ms")
STORAGE = Figure("storage per month, projected", 0.4, "GB/month", 1.0, "lower")


def test_a_figure_passes_by_the_direction_of_its_limit():
    assert FAST_INGEST.passed and FAST_INGEST.ratio == 52 and FAST_INGEST.margin == 52
    assert not SLOW_QUERY.passed and SLOW_QUERY.ratio == 2.5 and SLOW_QUERY.margin == 0.4
    assert STORAGE.passed and STORAGE.margin == 2.5
    assert Figure("q", 100, "ms", 100, "lower").passed and Figure("i", 1_000, "rows/s", 1_000, "higher").passed


def test_a_figure_sentence_puts_value_and_limit_side_by_side():
    assert SLOW_QUERY.sentence() == (
        "OEE per line over a shift, p95: 250 ms, limit under 100 ms (ratio 2.5, 2.5x worse "
        "than the limit): FAIL; p50 120 ms"
    )
    assert FAST_INGEST.sentence().startswith(
        "metric_hist ingest, COPY: 52,000 rows/s, limit at least 1,000 rows/s "
        "(ratio 52, 52.0x better than the limit): PASS"
    )


def test_figure_dicts_are_json_even_with_a_limit_of_zero():
    d = Figure("storage", 0.5, "GB/month", 0.0, "lower").to_dict()
    assert d["ratio"] is None and d["passed"] is False
    json.dumps(d, allow_nan=False)
    assert {"name", "value", "unit", "limit", "ratio", "passed", "better"} <= set(FAST_INGEST.to_dict())


def test_percentile_is_nearest_rank():
    samples = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 7.0, 8.0, 9.0]
    assert percentile(samples, 50) == 5.0 and percentile(samples, 95) == 10.0 and percentile([2.0], 95) == 2.0
    assert math.isnan(percentile([], 50))


def test_the_chart_is_valid_svg_with_one_bar_per_figure_coloured_by_verdict():
    figures = [FAST_INGEST, SLOW_QUERY, STORAGE.to_dict()]  # objects or the summary's dicts
    root = ET.fromstring(bar_chart_svg(figures))
    bars = root.findall(f"{SVG}g/{SVG}rect")
    assert [b.get("fill") for b in bars] == ["#2da44e", "#cf222e", "#2da44e"]
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert "metric_hist ingest, COPY" in labels and "52,000 rows/s (52.0x)" in labels and "250 ms (2.5x)" in labels
    # Bars start at the limit line: a passing bar extends right of it, a failing one left.
    limit_x = float(root.findall(f"{SVG}line")[-1].get("x1"))
    assert float(bars[0].get("x")) == limit_x and float(bars[1].get("x")) + float(bars[1].get("width")) == limit_x


def test_names_and_details_are_escaped_in_the_chart_and_the_table():
    evil = Figure("<script>alert(1)</script> & co", 5, "ms", 100, "lower", "details <b>")
    assert "<script>" not in bar_chart_svg([evil]) and "<script>" not in figures_table_html([evil])
    ET.fromstring(bar_chart_svg([evil]))
    table = figures_table_html([evil, SLOW_QUERY])
    assert "&lt;b&gt;" in table and "FAIL" in table and "&lt; 100 ms" in table


def test_a_figure_kept_without_a_limit_still_renders():
    kept = {"name": "restore time", "value": 3.0, "unit": "s", "limit": None, "passed": True}
    ET.fromstring(bar_chart_svg([kept, FAST_INGEST]))
    assert "&mdash;" in figures_table_html([kept])


# -- the dashboard queries file ---------------------------------------------------------------------


def test_the_plan_points_at_ms5s_dashboard_queries():
    plan = load_plan(PROJECT / "migrations")
    queries = load_dashboard_queries(plan.dashboard_queries)
    assert [q.key for q in queries] == [
        "latest_values_per_equipment",
        "oee_per_line_over_a_shift",
        "energy_per_hour_over_a_day",
        "faults_active",
    ]
    assert [str(q.window) for q in queries] == [
        "1 hour of metric_hist.ts",
        "8 hours of oee_calculations.calculation_time",
        "1 day of energy_consumption.consumption_time",
        "None",
    ]
    lines = plan.dashboard_queries.read_text().splitlines()
    for q in queries:  # each names the line of its '-- name:'
        path, line = q.source.rsplit(":", 1)
        assert path == str(plan.dashboard_queries) and lines[int(line) - 1] == f"-- name: {q.title}"


def test_the_plan_names_its_queries_file_relative_to_itself(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "ours.sql").write_text("-- name: lines\nSELECT 1;\n")
    (tmp_path / "plan.toml").write_text('[benchmarks]\ndashboard_queries = "site/ours.sql"\n')
    assert load_plan(tmp_path).dashboard_queries == tmp_path / "site" / "ours.sql"
    (tmp_path / "plan.toml").write_text("[benchmarks]\n")
    assert load_plan(tmp_path).dashboard_queries is None, "no file named and none at the default place"
    (tmp_path / "plan.toml").write_text('[benchmarks]\ndashboard_queries = "site/theirs.sql"\n')
    with pytest.raises(PlanError) as refused:
        load_plan(tmp_path)
    assert refused.value.key == "benchmarks.dashboard_queries" and "theirs.sql does not exist" in str(refused.value)


MALFORMED = {
    "SQL before the first name": ("SELECT 1;\n-- name: a\nSELECT 1;\n", 1, "SQL before the first '-- name:' line"),
    "no query at all": ("-- only a comment\n\n", 1, "no query in this file"),
    "a name without SQL": ("-- name: a\n-- comment only\n\n-- name: b\nSELECT 1;\n", 1, "'a' has no SQL"),
    "a misspelt header key": ("-- name: a\n-- windw: 1 hour of t.ts\nSELECT 1;\n", 2, "unknown key 'windw'"),
    "a window without its table": (
        "-- name: a\n-- window: 1 hour\nSELECT 1;\n",
        2,
        "is not '<interval> of [schema.]table.column'",
    ),
    "a window of no interval": (
        "-- name: a\n-- window: soon of t.ts\nSELECT 1 WHERE %(lo)s < %(hi)s;\n",
        2,
        "'soon' is not a positive interval",
    ),
    "a window the SQL ignores": (
        "-- name: a\n-- window: 1 hour of t.ts\nSELECT * FROM t;\n",
        1,
        "does not use %(lo)s and %(hi)s",
    ),
    "bounds without a window": ("-- name: a\nSELECT * FROM t WHERE ts > %(lo)s;\n", 1, "has no window"),
    "a literal percent sign": ("-- name: a\nSELECT 1\n WHERE 'x' LIKE 'a%';\n", 3, "a literal % is written %%"),
    "an unknown parameter": (
        "-- name: a\n-- window: 1 hour of t.ts\nSELECT * FROM t WHERE ts > %(lo)s\n"
        "   AND ts <= %(hi)s AND site = %(site)s;\n",
        4,
        "unknown parameter %(site)s",
    ),
    "a syntax error": ("-- name: a\nSELECT *\n  FRM t;\n", 3, 'not valid SQL: syntax error at or near "FRM"'),
    "two statements": ("-- name: a\nSELECT 1; SELECT 2;\n", 2, "2 statements under one name"),
    "a write": ("-- name: a\nDELETE FROM t;\n", 2, "a DeleteStmt, not a SELECT"),
    "a name used twice": (
        "-- name: OEE\nSELECT 1;\n-- name: oee\nSELECT 2;\n",
        3,
        "the name 'oee' is taken by the query at line 1",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_queries_file_names_the_file_the_line_and_the_fix(case):
    text, line, problem = MALFORMED[case]
    with pytest.raises(DashboardQueryError) as refused:
        parse_dashboard_queries(text, "site/dashboards.sql")
    assert (refused.value.path, refused.value.line) == ("site/dashboards.sql", line), str(refused.value)
    assert str(refused.value).startswith(f"site/dashboards.sql:{line}: ") and problem in str(refused.value)


def test_a_query_may_hold_a_literal_percent_sign_and_comments():
    (query,) = parse_dashboard_queries(
        "-- name: Faults, 100%% sure\nSELECT * FROM t -- every fault\n WHERE code LIKE 'E%%';\n"
    )
    assert query.key == "faults_100_sure" and query.window is None and query.sql.endswith("LIKE 'E%%'")


def test_a_malformed_queries_file_stops_the_run_before_any_check(run_suite, tmp_path):
    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    queries = migrations / "benchmarks" / "dashboard_queries.sql"
    queries.write_text(queries.read_text().replace("-- window: 8 hours", "-- windw: 8 hours"))
    line = queries.read_text().splitlines().index("-- windw: 8 hours of oee_calculations.calculation_time") + 1
    # The target is never reached: the file is refused while the run is being collected.
    result = run_suite(
        "suites", "--dsn", "host=127.0.0.1 port=1 dbname=nowhere user=nobody", "--migrations", str(migrations)
    )
    assert result.returncode == 4, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"invalid dashboard queries: {queries}:{line}: unknown key 'windw'" in result.stderr
    assert "passed" not in result.stdout and "failed" not in result.stdout


# -- the dashboard queries on a real hypertable ------------------------------------------------------


@pytest.fixture
def day_of_readings(local_server):
    """A hypertable of one-hour chunks holding a day of readings (24 chunks)."""
    with (
        ScratchDatabase(local_server.conninfo(), "bench_subject") as name,
        psycopg.connect(local_server.conninfo(name), autocommit=True) as conn,
    ):
        conn.execute("CREATE EXTENSION timescaledb")
        conn.execute("CREATE TABLE readings (ts timestamptz NOT NULL, v int)")
        conn.execute("SELECT create_hypertable('readings', by_range('ts', interval '1 hour'))")
        conn.execute(
            "INSERT INTO readings SELECT timestamptz '2026-01-01 00:00+00' + i * interval '1 minute', i "
            "FROM generate_series(0, 24 * 60 - 1) i"
        )
        conn.execute("ANALYZE readings")
        yield conn


def last_hour_where(condition: str) -> DashboardQuery:
    (query,) = parse_dashboard_queries(
        "-- name: last hour of readings\n-- window: 1 hour of readings.ts\n"
        f"SELECT count(*), avg(v) FROM readings WHERE {condition};\n"
    )
    return query


def test_a_query_whose_condition_defeats_chunk_exclusion_is_a_failure_naming_the_chunks(day_of_readings):
    # An expression on the time column cannot be compared with the chunks' ranges: every chunk is scanned.
    result = run_dashboard_query(
        day_of_readings, "public", last_hour_where("ts + interval '0 s' > %(lo)s AND ts <= %(hi)s"), repeats=1
    )
    assert (result.chunks_total, result.chunks_in_window, result.chunks_scanned) == (24, 2, 24)
    problem = result.exclusion_failure()
    assert problem.startswith(
        "last hour of readings: the plan touched 24 chunks of readings but only 2 overlap its "
        "time window: chunk exclusion does not work for this query"
    )
    assert result.plan in problem


def test_a_plain_time_window_scans_only_its_chunks(day_of_readings):
    result = run_dashboard_query(day_of_readings, "public", last_hour_where("ts > %(lo)s AND ts <= %(hi)s"), repeats=1)
    assert (result.chunks_total, result.chunks_in_window, result.chunks_scanned) == (24, 2, 2)
    assert result.exclusion_failure() is None and result.rows == 1
