"""Post-flight benchmarks as gates: each figure is measured in this run and compared with its
limit from the plan ([benchmarks] in plan.toml); the dashboard queries come from the plan's
dashboard queries file (migrations/benchmarks/dashboard_queries.sql). The run prints the figures side
by side at the end and the reports show them as a table and charts.

A figure below its target fails its test as a performance target (performance_gate, fixtures/benchmarks.py):
the run exits 6 with the verdict BELOW TARGET, and the policy jobs are scheduled all the same (their gate is
the checks of the data and structure).

Nothing stays in the user's tables: inserts are rolled back (and give their own negative ids, so
no sequence moves), queries run read-only, compression is measured in a transaction rolled back.
Storage is projected first, before the ingest benchmarks leave dead rows for autovacuum.
"""

from __future__ import annotations

import warnings

import psycopg
import pytest

from tsmigrate import bench
from tsmigrate.bench import BenchSkipped

pytestmark = [pytest.mark.order(3), pytest.mark.postflight]

INGEST_ROWS = 20_000  # per method; enough for a steady rate, a few seconds at most
QUERY_RUNS = 20  # per dashboard query, after one warm-up run


@pytest.fixture
def thresholds(plan):
    if plan is None:
        pytest.skip("no plan.toml: the benchmarks take their limits from its [benchmarks] section")
    return plan.benchmarks


@pytest.fixture(scope="module")
def compression(plan, target_conn, timescale_server):
    """The compression ratio of old chunks (community edition; skips under apache with the reason)."""
    if not timescale_server.has_compression:
        pytest.skip(
            f"TimescaleDB on this server is the {timescale_server.edition} edition, without native "
            "compression: no compression ratio can be measured (the community edition has it)"
        )
    return measure("the compression ratio", bench.measure_compression, target_conn, plan.schema, plan.hypertables)


@pytest.fixture
def ingest_table(plan):
    """metric_hist (the bulk of MS5.0's data) when planned, else the first planned hypertable."""
    if not plan.hypertables:
        pytest.skip("the plan names no hypertable to insert into")
    return plan.hypertable("metric_hist") or plan.hypertables[0]


def measure(what: str, how, *args, **kwargs):
    """Run one benchmark: skip with the reason when it cannot be measured here, fail with the
    server's message (no traceback) when the database refuses it."""
    try:
        return how(*args, **kwargs)
    except BenchSkipped as exc:
        pytest.skip(str(exc))
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        pytest.fail(
            f"{what} could not be measured: {first} (SQLSTATE {exc.sqlstate}); the database refused what an "
            "application does, fix that first (the other post-flight checks say more)",
            pytrace=False,
        )


def test_storage_per_month_projected(
    target_conn, plan, thresholds, request, record_figure, performance_gate, timescale_server
):
    try:
        measured = request.getfixturevalue("compression")
        percent, source = measured.percent, f"measured on {measured.chunks} chunks"
    except pytest.skip.Exception as skipped:
        percent, source = bench.planned_compression(timescale_server, thresholds, unmeasured=str(skipped))
    result = measure(
        "the storage per month", bench.project_storage, target_conn, plan.schema, plan.hypertables, percent, source
    )
    figure = record_figure(result.figure(thresholds.max_storage_gb_per_month))
    if not figure.passed and not timescale_server.has_compression and plan.allow_apache_edition:
        # The limit assumes compressed history; the plan accepts an edition without it.
        warnings.warn(
            UserWarning(
                f"{figure.sentence()} -- the limit assumes compression, which this server's "
                f"{timescale_server.edition} edition lacks; plan.toml allows that edition, so this "
                "is an advisory: run the community edition to meet it"
            ),
            stacklevel=1,  # the check's own line: the report names the check
        )
        return
    performance_gate(figure, remedy=result.advice(thresholds.max_storage_gb_per_month))


@pytest.mark.needs_community
def test_compression_ratio_of_historical_data(compression, thresholds, record_figure, performance_gate):
    performance_gate(record_figure(compression.figure(thresholds.min_compression_percent)), remedy=compression.remedy())


def test_ingest_through_copy(target_conn, plan, ingest_table, thresholds, record_figure, performance_gate):
    result = measure(
        f"ingest through COPY into {ingest_table.table}",
        bench.ingest_copy,
        target_conn,
        plan.schema,
        ingest_table.table,
        ingest_table.time_column,
        INGEST_ROWS,
    )
    performance_gate(record_figure(result.figure(thresholds.min_insert_rows_per_second)), remedy=result.remedy())


def test_ingest_through_batched_inserts(target_conn, plan, ingest_table, thresholds, record_figure, performance_gate):
    result = measure(
        f"ingest through batched INSERTs into {ingest_table.table}",
        bench.ingest_batched,
        target_conn,
        plan.schema,
        ingest_table.table,
        ingest_table.time_column,
        INGEST_ROWS,
    )
    performance_gate(record_figure(result.figure(thresholds.min_insert_rows_per_second)), remedy=result.remedy())


def test_dashboard_query(target_conn, plan, dashboard_query, thresholds, record_figure, performance_gate):
    """One per query of the plan's dashboard queries file (fixtures/benchmarks.py)."""
    result = measure(
        f"the dashboard query '{dashboard_query.title}'",
        bench.run_dashboard_query,
        target_conn,
        plan.schema,
        dashboard_query,
        repeats=QUERY_RUNS,
    )
    figure = record_figure(result.figure(thresholds.max_dashboard_query_ms))
    print(result.plan)
    if problem := result.exclusion_failure():
        performance_gate(problem=problem, name=figure.name, remedy=result.remedy())
    performance_gate(figure, remedy=result.remedy())
