"""The dashboard benchmark: one dashboard query timed (p50, p95 over repeated runs) and explained, with the chunks
its executed plan scanned beside the chunks that overlap its time window.

The queries themselves are data (see dashboard_queries.py). Each runs in a read-only transaction that is
rolled back, with the plan's schema first on the search_path, so a site's SQL names its tables as the
application does.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql

from ..db import display_name, one
from ..timescale import server_timescaledb
from .dashboard_queries import DashboardQuery, Window
from .figures import BenchSkipped, Figure


@dataclass(frozen=True)
class QueryResult:
    query: DashboardQuery
    samples_ms: tuple[float, ...]
    rows: int
    plan: str  # EXPLAIN (ANALYZE, BUFFERS) text
    window: tuple | None  # (lo, hi)
    chunks_total: int | None  # chunks of the window's hypertable (None: no window, or not a hypertable)
    chunks_in_window: int | None  # chunks whose range overlaps the window
    chunks_scanned: int | None  # chunks the executed plan touched

    @property
    def p50(self) -> float:
        return percentile(self.samples_ms, 50)

    @property
    def p95(self) -> float:
        return percentile(self.samples_ms, 95)

    def exclusion(self) -> str:
        if self.window is None:
            return "no time window"
        if self.chunks_total is None:
            return "plain tables, no chunks"
        return (
            f"scanned {self.chunks_scanned} of {self.chunks_total} chunks ({self.chunks_in_window} overlap the window)"
        )

    def exclusion_failure(self) -> str | None:
        """What is wrong when the plan touched chunks outside the query's time window (None when it did not)."""
        window = self.query.window
        scanned, in_window = self.chunks_scanned, self.chunks_in_window
        if self.chunks_total is None or window is None or scanned is None or in_window is None or scanned <= in_window:
            return None
        return (
            f"{self.query.title}: the plan touched {self.chunks_scanned} chunks of {window.relation} but only "
            f"{self.chunks_in_window} overlap its time window: chunk exclusion does not work for this query "
            f"(is the condition on {window.column} a plain comparison with constants?) ({self.query.source})"
            f"\n{self.plan}"
        )

    def remedy(self) -> str:
        window = self.query.window
        if window is not None and self.exclusion_failure():
            return (
                f"write the condition on {window.column} in {self.query.source} as a plain comparison "
                "with constants or parameters, so that TimescaleDB leaves out the chunks outside the window."
            )
        return (
            f"read its EXPLAIN ANALYZE plan in the report: an index on what '{self.query.title}' filters or joins "
            "by, or a continuous aggregate for what it sums, brings it down; or raise max_dashboard_query_ms in "
            "[benchmarks] of plan.toml if the target was set too tight."
        )

    def figure(self, limit_ms: float) -> Figure:
        what = f"the last {self.query.window}" if self.query.window else "the whole query"
        return Figure(
            f"{self.query.title}, p95",
            self.p95,
            "ms",
            limit_ms,
            "lower",
            f"{what}: p50 {self.p50:.2f} ms over {len(self.samples_ms)} runs, "
            f"{self.rows} row{'s' if self.rows != 1 else ''}; {self.exclusion()}",
            {
                "p50_ms": self.p50,
                "p95_ms": self.p95,
                "runs": len(self.samples_ms),
                "rows": self.rows,
                "chunks_total": self.chunks_total,
                "chunks_in_window": self.chunks_in_window,
                "chunks_scanned": self.chunks_scanned,
                "plan": self.plan,
            },
        )


def percentile(samples: Iterable[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _plan_relations(node: dict) -> set[str]:
    found = {node["Relation Name"]} if "Relation Name" in node else set()
    for child in node.get("Plans", ()):
        found |= _plan_relations(child)
    return found


def _window_relation(conn: psycopg.Connection, query: DashboardQuery, window: Window) -> tuple[str, str]:
    """(schema, table) of the query's window, as the search_path finds it; skips when there is none."""
    found = conn.execute(
        """SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                             WHERE c.oid = to_regclass(%s)""",
        (window.relation,),
    ).fetchone()
    if found is None:
        raise BenchSkipped(f"{query.title}: {window.relation} does not exist in this database ({query.source})")
    return found[0], found[1]


def run_dashboard_query(
    conn: psycopg.Connection, schema: str, query: DashboardQuery, *, repeats: int = 20
) -> QueryResult:
    """Time a dashboard query (client wall clock, after one warm-up run) and explain it.

    A table the query reads that does not exist here skips it (BenchSkipped, with the server's words).
    """
    statement = sql.SQL(query.sql)
    params: dict = {}
    window: tuple[Any, Any] | None = None  # (lo, hi)
    chunk_rows: list[tuple[Any, ...]] | None = None
    samples = []
    with conn.transaction(force_rollback=True):
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute(
            "SELECT set_config('search_path', format('%%I, ', %s::text) || current_setting('search_path'), true)",
            (schema,),
        )
        if query.window:
            rel_schema, rel_name = _window_relation(conn, query, query.window)
            hi = one(
                conn,
                sql.SQL("SELECT max({}) FROM {}").format(
                    sql.Identifier(query.window.column), sql.Identifier(rel_schema, rel_name)
                ),
            )
            if hi is None:
                raise BenchSkipped(f"{query.title}: {display_name(rel_schema, rel_name)} is empty")
            window = (hi - timedelta(seconds=query.window.interval.seconds), hi)
            params = {"lo": window[0], "hi": window[1]}
            if server_timescaledb(conn).installed_version:
                chunk_rows = conn.execute(
                    """SELECT chunk_name, range_start, range_end FROM timescaledb_information.chunks
                                              WHERE hypertable_schema = %s AND hypertable_name = %s""",
                    (rel_schema, rel_name),
                ).fetchall()
        with conn.cursor() as cur:
            try:
                cur.execute(statement, params).fetchall()  # warm-up: plans and caches
            except psycopg.errors.UndefinedTable as exc:
                raise BenchSkipped(
                    f"{query.title}: {str(exc).splitlines()[0]} in this database ({query.source})"
                ) from None
            for _ in range(repeats):
                started = time.perf_counter()
                rows = len(cur.execute(statement, params).fetchall())
                samples.append((time.perf_counter() - started) * 1000)
        with psycopg.ClientCursor(conn) as cur:  # literal values: the plan shows them
            explained = cur.execute(sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) {}").format(statement), params).fetchone()
            assert explained is not None  # EXPLAIN returns the plan as one row
            explain_json = explained[0]
            plan_text = "\n".join(
                r[0] for r in cur.execute(sql.SQL("EXPLAIN (ANALYZE, BUFFERS) {}").format(statement), params).fetchall()
            )
    if isinstance(explain_json, str):
        explain_json = json.loads(explain_json)
    chunks_total: int | None = None
    chunks_in_window: int | None = None
    chunks_scanned: int | None = None
    if chunk_rows and window is not None:  # chunk rows are read only for a window
        chunks_total = len(chunk_rows)
        scanned = _plan_relations(explain_json[0]["Plan"])
        chunks_scanned = sum(1 for name, _, _ in chunk_rows if name in scanned)
        chunks_in_window = sum(1 for _, start, end in chunk_rows if start <= window[1] and end > window[0])
    return QueryResult(query, tuple(samples), rows, plan_text, window, chunks_total, chunks_in_window, chunks_scanned)
