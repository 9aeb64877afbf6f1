"""The ingest benchmarks: rows per second into a planned hypertable through COPY and through batched INSERTs.

Nothing stays: the rows go in inside a transaction that is rolled back, with negative ids given explicitly
(below any existing one), so no sequence moves either. The rows are modelled on the table's newest rows, so
their times lie in existing chunks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..db import display_name, insertable_columns, one
from ..fingerprint import serial_column
from .figures import BenchSkipped, Figure


@dataclass(frozen=True)
class IngestResult:
    table: str
    method: str  # short: COPY, batched INSERT
    how: str  # how the rows were sent
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else math.inf

    def remedy(self) -> str:
        return (
            f"each row into {self.table} pays for its indexes and triggers (the conversion kept the table's own) "
            "and for the server's disk and CPU under whatever else ran meanwhile: look at those, or lower "
            "min_insert_rows_per_second in [benchmarks] of plan.toml if the target was set for another server."
        )

    def figure(self, limit: float) -> Figure:
        return Figure(
            f"{self.table.rsplit('.', 1)[-1]} ingest, {self.method}",
            self.rows_per_second,
            "rows/s",
            limit,
            "higher",
            f"{self.rows:,} rows into {self.table} in {self.seconds:.3f} s, "
            f"{self.how}, in one transaction rolled back (no commit cost)",
            {"rows": self.rows, "seconds": self.seconds},
        )


def _sample(
    conn: psycopg.Connection, schema: str, table: str, time_column: str, rows: int
) -> tuple[list[str], list[tuple]]:
    """Rows to insert: the newest rows of the table as text, the serial id replaced by negative ids
    below any existing one, cycled up to ``rows``. Their times lie in existing chunks."""
    key = serial_column(conn, schema, table)
    if key is None:
        raise BenchSkipped(
            f"{display_name(schema, table)} has no sequence-backed id column; the ingest benchmark "
            "needs one to give its rows ids no real row has"
        )
    columns = insertable_columns(conn, schema, table)
    ident = sql.Identifier(schema, table)
    sample = conn.execute(
        sql.SQL("SELECT {} FROM {} ORDER BY {} DESC LIMIT 1000").format(
            sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns),
            ident,
            sql.Identifier(time_column),
        )
    ).fetchall()
    if not sample:
        raise BenchSkipped(f"{display_name(schema, table)} is empty: no rows to model the inserts on")
    lowest = one(conn, sql.SQL("SELECT least(coalesce(min({}), 0), 0) FROM {}").format(sql.Identifier(key), ident))
    k = columns.index(key)
    out = []
    for i in range(rows):
        row = list(sample[i % len(sample)])
        row[k] = str(lowest - 1 - i)
        out.append(tuple(row))
    return columns, out


def ingest_copy(
    conn: psycopg.Connection, schema: str, table: str, time_column: str, rows: int = 20_000
) -> IngestResult:
    """Rows per second through COPY into the table, in a transaction that is rolled back."""
    columns, data = _sample(conn, schema, table, time_column, rows)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(schema, table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.transaction(force_rollback=True):
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(statement) as copy:
            for row in data:
                copy.write_row(row)
        seconds = time.perf_counter() - started
    return IngestResult(display_name(schema, table), "COPY", "COPY FROM STDIN, text format", rows, seconds)


def ingest_batched(
    conn: psycopg.Connection, schema: str, table: str, time_column: str, rows: int = 20_000, batch: int = 1_000
) -> IngestResult:
    """Rows per second through INSERT statements sent in batches (executemany, pipelined), rolled back."""
    columns, data = _sample(conn, schema, table, time_column, rows)
    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(schema, table),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
    )
    with conn.transaction(force_rollback=True):
        started = time.perf_counter()
        with conn.cursor() as cur:
            for i in range(0, len(data), batch):
                cur.executemany(statement, data[i : i + batch])
        seconds = time.perf_counter() - started
    return IngestResult(
        display_name(schema, table),
        "batched INSERT",
        f"one-row INSERTs sent {batch:,} at a time (executemany, pipelined)",
        rows,
        seconds,
    )
