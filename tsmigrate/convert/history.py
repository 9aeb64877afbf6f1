"""The time range of a table's rows, read cheaply, and the chunks it spans: what a conversion will create.

Shared by the pre-flight's capacity check (how many locks a conversion needs), the online copy (how to keep the
chunks one transaction creates to a batch) and both paths' choice of when the primary key is built
(:func:`key_before_copy`).
"""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg import sql

from ..db import one, regclass, row
from ..plan import HypertablePlan
from ..timescale import primary_key_seconds


def span_seconds(first: date | datetime, last: date | datetime) -> float:
    def as_time(v: date | datetime) -> datetime:  # a date is its midnight
        return v if isinstance(v, datetime) else datetime(v.year, v.month, v.day)

    a, b = as_time(first), as_time(last)
    if (a.tzinfo is None) != (b.tzinfo is None):
        a, b = a.replace(tzinfo=None), b.replace(tzinfo=None)
    return max(0.0, (b - a).total_seconds())


def chunks_between(first: date | datetime, last: date | datetime, interval_seconds: float) -> int:
    """At most how many chunks of ``interval_seconds`` the rows from ``first`` to ``last`` fall into (chunks are
    aligned to multiples of the interval, so a range touches up to one more than its length over the interval)."""
    if interval_seconds <= 0:
        return 1
    return math.floor(span_seconds(first, last) / interval_seconds) + 2


def time_range(conn: psycopg.Connection, schema: str, table: str, column: str) -> tuple[Any, Any, str]:
    """(first, last, how it was read) of ``column``: from an index on it (min and max read at the index's two
    ends, not a scan), else from the bounds of its histogram in pg_stats (as of the table's last ANALYZE), else
    (None, None, why not)."""
    index = one(
        conn,
        """
        SELECT i.relname FROM pg_index x
          JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am am ON am.oid = i.relam
          JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]
         WHERE x.indrelid = %s::regclass AND a.attname = %s AND am.amname = 'btree' AND x.indpred IS NULL
           AND x.indisvalid ORDER BY i.relname LIMIT 1""",
        (regclass(schema, table), column),
    )
    if index is not None:
        first, last = row(
            conn,
            sql.SQL("SELECT min({c}), max({c}) FROM {t}").format(
                c=sql.Identifier(column), t=sql.Identifier(schema, table)
            ),
        )
        if first is None:
            return None, None, f"no rows with a {column} (read from index {index})"
        return first, last, f"min and max read from index {index}"
    column_type = one(
        conn,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s",
        (regclass(schema, table), column),
    )
    bounds = conn.execute(
        sql.SQL("""
        SELECT b[1], b[array_upper(b, 1)] FROM (
               SELECT histogram_bounds::text::{}[] AS b FROM pg_stats
                WHERE schemaname = %s AND tablename = %s AND attname = %s
                  AND histogram_bounds IS NOT NULL) s""").format(sql.SQL(column_type)),
        (schema, table, column),
    ).fetchone()
    if bounds is not None and bounds[0] is not None:
        return bounds[0], bounds[1], "histogram bounds in pg_stats (as of the table's last ANALYZE)"
    return None, None, f"no index on {column} and no statistics of it (the table was never analyzed)"


def expected_chunks_and_rows(conn: psycopg.Connection, schema: str, h: HypertablePlan) -> tuple[int | None, float]:
    """The chunks the table's rows will fall into (from its time range, read cheaply; None where it cannot be read)
    and its rows (as estimated by the last ANALYZE or VACUUM; counted where it has none)."""
    first, last, _ = time_range(conn, schema, h.table, h.time_column)
    chunks = chunks_between(first, last, h.chunk_interval.seconds) if first is not None else None
    rows = float(one(conn, "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (regclass(schema, h.table),)))
    if rows < 0:  # never analyzed
        rows = float(one(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, h.table))))
    return chunks, rows


# A primary key created on the empty hypertable gets to each chunk as the copy creates it, and every row then costs
# an index insertion: about 2 us more than the bulk build (4.5 s more on 2 million rows, measured with the figures of
# timescale.primary_key_seconds), against a bulk build whose cost grows with the square of the chunks.
PRIMARY_KEY_S_PER_ROW_KEPT = 2.2e-6


def key_before_copy(chunks: int, rows: float) -> bool:
    """Whether the rebuilt primary key is cheaper created on the empty hypertable (kept up to date row by row) than
    built once the rows are in (a cost that grows with the square of the chunks)."""
    return primary_key_seconds(chunks) > rows * PRIMARY_KEY_S_PER_ROW_KEPT
