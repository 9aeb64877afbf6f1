"""Benchmark figures and their rendering (no database): ratios, verdicts, the HTML table and the SVG chart; and
the dashboard queries' chunk exclusion, on a real hypertable."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from datetime import timedelta

import psycopg
import pytest
from psycopg import sql

from tsmigrate.bench import DashboardQuery, Figure, bar_chart_svg, figures_table_html, percentile, run_dashboard_query
from tsmigrate.janitor import ScratchDatabase

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
    assert SLOW_QUERY.sentence() == ("OEE per line over a shift, p95: 250 ms, limit under 100 ms (ratio 2.5, 2.5x worse "
                                     "than the limit): FAIL; p50 120 ms")
    assert FAST_INGEST.sentence().startswith("metric_hist ingest, COPY: 52,000 rows/s, limit at least 1,000 rows/s "
                                             "(ratio 52, 52.0x better than the limit): PASS")


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
    figures = [FAST_INGEST, SLOW_QUERY, STORAGE.to_dict()]       # objects or the summary's dicts
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


@pytest.fixture
def day_of_readings(local_server):
    """A hypertable of one-hour chunks holding a day of readings (24 chunks)."""
    with ScratchDatabase(local_server.conninfo(), "bench_subject") as name, \
            psycopg.connect(local_server.conninfo(name), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION timescaledb")
        conn.execute("CREATE TABLE readings (ts timestamptz NOT NULL, v int)")
        conn.execute("SELECT create_hypertable('readings', by_range('ts', interval '1 hour'))")
        conn.execute("INSERT INTO readings SELECT timestamptz '2026-01-01 00:00+00' + i * interval '1 minute', i "
                     "FROM generate_series(0, 24 * 60 - 1) i")
        conn.execute("ANALYZE readings")
        yield conn


def last_hour_where(condition: str) -> DashboardQuery:
    return DashboardQuery("last_hour", "last hour of readings", "an hour of readings", (None, "readings"), "ts",
                          timedelta(hours=1), ((None, "readings"),),
                          lambda schema: sql.SQL("SELECT count(*), avg(v) FROM {} WHERE " + condition).format(
                              sql.Identifier(schema, "readings")))


def test_a_query_whose_condition_defeats_chunk_exclusion_is_a_failure_naming_the_chunks(day_of_readings):
    # An expression on the time column cannot be compared with the chunks' ranges: every chunk is scanned.
    result = run_dashboard_query(day_of_readings, "public",
                                 last_hour_where("ts + interval '0 s' > %(lo)s AND ts <= %(hi)s"), repeats=1)
    assert (result.chunks_total, result.chunks_in_window, result.chunks_scanned) == (24, 2, 24)
    problem = result.exclusion_failure()
    assert problem.startswith("last hour of readings: the plan touched 24 chunks of readings but only 2 overlap its "
                              "time window: chunk exclusion does not work for this query")
    assert result.plan in problem


def test_a_plain_time_window_scans_only_its_chunks(day_of_readings):
    result = run_dashboard_query(day_of_readings, "public", last_hour_where("ts > %(lo)s AND ts <= %(hi)s"), repeats=1)
    assert (result.chunks_total, result.chunks_in_window, result.chunks_scanned) == (24, 2, 2)
    assert result.exclusion_failure() is None and result.rows == 1
