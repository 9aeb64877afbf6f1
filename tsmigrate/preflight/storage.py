"""Pre-flight: the storage a month of data will take once migrated, projected from the live tables, against the
plan's max_storage_gb_per_month; so that the plan can change (a tighter compress_after, a retention) before the
window rather than after the post-flight's storage benchmark measured the miss.

Per planned table: rows per day over the time column's last week (or all of its range when shorter), times bytes
per row (pg_total_relation_size over reltuples: heap, TOAST and indexes), projected over a month by the one
projection the post-flight's benchmark uses (tsmigrate.bench.storage.month_bytes: no more days than drop_after
keeps, the days older than compress_after compressed). The compression ratio is assumed: the plan's
min_compression_percent (the least the post-flight's compression benchmark accepts), none on an edition without
compression. A table that is already a hypertable is measured as the post-flight measures it.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import psycopg
from psycopg import sql

from ..bench.storage import DAY, Growth, StorageResult, measured_growth, planned_compression, project
from ..convert.catalog import keep_unique_needing_an_index
from ..db import display_name, is_hypertable, one, row
from ..findings import Finding
from ..plan import HypertablePlan, Plan
from ..timescale import server_timescaledb
from .checks import finding

RECENT = timedelta(days=7)  # rows per day are counted over a week: it evens out a plant's shifts and weekends


def live_growth(conn: psycopg.Connection, schema: str, h: HypertablePlan) -> Growth | None:
    """How fast a planned table grows, from the live table; None when it does not exist, lacks its time column
    (PF033 says so) or holds no span of time."""
    name = display_name(schema, h.table)
    regclass = one(conn, "SELECT to_regclass(%s)::oid", (name,))
    if regclass is None:
        return None
    if is_hypertable(conn, schema, h.table):
        return measured_growth(conn, schema, h)
    if (
        one(
            conn,
            "SELECT 1 FROM pg_attribute WHERE attrelid = %s::oid AND attname = %s AND NOT attisdropped",
            (regclass, h.time_column),
        )
        is None
    ):
        return None
    table, column = sql.Identifier(schema, h.table), sql.Identifier(h.time_column)
    low, high = row(conn, sql.SQL("SELECT min({c}), max({c}) FROM {t}").format(c=column, t=table))
    if high is None or high == low:
        return None
    window = min(RECENT, high - low)
    recent = one(conn, sql.SQL("SELECT count(*) FROM {t} WHERE {c} >= %s").format(c=column, t=table), (high - window,))
    estimated, size = row(
        conn, "SELECT reltuples, pg_total_relation_size(oid) FROM pg_class WHERE oid = %s::oid", (regclass,)
    )
    # reltuples is the planner's count (no scan); a table never vacuumed or analyzed has none (-1): count it
    rows = estimated if estimated and estimated > 0 else one(conn, sql.SQL("SELECT count(*) FROM {}").format(table))
    added = rebuilt_key_bytes(conn, regclass, schema, h)
    days = window.total_seconds() / DAY
    per_row = (size + added) / rows if rows else 0.0
    per_day = recent / days
    return Growth(
        name,
        per_day * per_row,
        per_day,
        f"{per_day:,.0f} rows/day over the last {days:.1f} days x {per_row:,.0f} bytes/row"
        + (f", with {added / 1e6:,.1f} MB of keys the conversion rebuilds" if added >= 0.05e6 else ""),
    )


def rebuilt_key_bytes(conn: psycopg.Connection, regclass: int, schema: str, h: HypertablePlan) -> float:
    """Bytes the conversion adds to the table's indexes: each unique key without the time column gains it (every
    entry grows by the time column's 8 bytes, beside its own columns and 12 bytes of entry header and line
    pointer), and a keep_unique column that leads no index gets one of its own (an entry a row: its width, and 12
    bytes of header and line pointer); one that leads a key finds its rows through the rebuilt key."""
    added = 0.0
    keys = conn.execute(
        """SELECT pg_relation_size(i.indexrelid),
                                  array_agg(a.attname::text ORDER BY a.attnum), coalesce(sum(s.avg_width), 0)
                             FROM pg_index i
                             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                             LEFT JOIN pg_stats s ON s.schemaname = %s AND s.tablename = %s AND s.attname = a.attname
                            WHERE i.indrelid = %s::oid AND i.indisunique
                            GROUP BY i.indexrelid""",
        (schema, h.table, regclass),
    ).fetchall()
    for size, columns, width in keys:
        if h.time_column in columns:
            continue
        added += size * 8 / ((width or 8 * len(columns)) + 12)
    for column in keep_unique_needing_an_index(conn, str(regclass), h.keep_unique):
        added += float(
            one(
                conn,
                """SELECT greatest(c.reltuples, 0) * (coalesce(s.avg_width, 8) + 12)
                     FROM pg_class c LEFT JOIN pg_stats s
                       ON s.schemaname = %s AND s.tablename = %s AND s.attname = %s
                    WHERE c.oid = %s::oid""",
                (schema, h.table, column, regclass),
            )
        )
    return added


def project_live(conn: psycopg.Connection, plan: Plan | None) -> StorageResult | None:
    """The storage per month the planned tables will take once migrated; None when none holds a span of data."""
    if plan is None:
        return None
    grown = [(h, g) for h in plan.hypertables if (g := live_growth(conn, plan.schema, h)) is not None]
    if not grown:
        return None
    percent, source = planned_compression(server_timescaledb(conn), plan.benchmarks)
    return project(grown, percent, source)


def storage_target(projection: StorageResult | None, plan: Plan | None) -> list[Finding]:
    """PF075 when the projection is over the plan's max_storage_gb_per_month: the figures per table, and what to
    change in plan.toml, pointing at the setting of the table that takes most."""
    if projection is None or plan is None:
        return []
    limit = plan.benchmarks.max_storage_gb_per_month
    figure = projection.figure(limit)
    if figure.passed:
        return []
    biggest = max(projection.tables, key=lambda t: t.bytes_per_month)
    path = str(plan.path) if plan.path else None
    return [
        finding(
            "PF075",
            f"storage per month projected at {figure.value:.2f} GB/month once migrated, over the "
            f"plan's max_storage_gb_per_month = {limit:g} ({projection.how()}): "
            f"{projection.tables_text()}. To meet it: {projection.advice(limit)}",
            path=path,
            line=plan_line(plan.path, biggest.hypertable.table) if plan.path else None,
            table=biggest.growth.table,
        )
    ]


def plan_line(path: Path, table: str, keys: tuple[str, ...] = ("compress_after", "drop_after")) -> int | None:
    """The line of the first of ``keys`` in the table's [hypertables.<table>] section of plan.toml, else of the
    section's header; None when the file has no such section (a plan written another way)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    header = re.compile(rf'^\s*\[\s*hypertables\.(?:"{re.escape(table)}"|{re.escape(table)})\s*\]')
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    if start is None:
        return None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    for key in keys:
        for i in range(start + 1, end):
            if re.match(rf"^\s*{key}\s*=", lines[i]):
                return i + 1
    return start + 1
