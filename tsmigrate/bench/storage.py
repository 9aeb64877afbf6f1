"""The storage benchmarks: the compression ratio of old chunks (community edition), and the storage a month of
data takes, projected from each planned hypertable's size over the time its data spans.

Compression is measured inside a transaction that is rolled back (chunks already compressed count as they are).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import psycopg
from psycopg import sql

from ..plan import HypertablePlan
from ..db import display_name
from ..timescale import server_timescaledb
from .figures import BenchSkipped, Figure

GB = 1e9
MIN_ROWS_PER_CHUNK = 1_000
DAYS_PER_MONTH = 30


@dataclass(frozen=True)
class CompressionResult:
    before_bytes: int
    after_bytes: int
    chunks: int
    how: str                     # which chunks were measured and how
    per_table: dict              # table -> (before, after, chunks)

    @property
    def percent(self) -> float:
        return (1 - self.after_bytes / self.before_bytes) * 100 if self.before_bytes else 0.0

    def figure(self, limit_percent: float) -> Figure:
        tables = ", ".join(f"{t} {(1 - a / b) * 100:.0f}% ({n} chunks)" for t, (b, a, n) in self.per_table.items() if b)
        return Figure("compression of historical data", self.percent, "%", limit_percent, "higher",
                      f"{self.chunks} chunks, {self.before_bytes / 1e6:.1f} MB -> {self.after_bytes / 1e6:.1f} MB; {self.how}; {tables}",
                      {"before_bytes": self.before_bytes, "after_bytes": self.after_bytes, "chunks": self.chunks})


def measure_compression(conn: psycopg.Connection, schema: str, hypertables: Iterable[HypertablePlan],
                        *, max_chunks: int = 4) -> CompressionResult:
    """Compression ratio of the planned hypertables' old chunks (community edition only).

    Chunks already compressed count as they are. Otherwise up to ``max_chunks`` chunks per table
    that are older than the table's compress_after (or, when none is that old yet, its oldest
    chunks that no longer receive data) are compressed inside a transaction that is rolled back.
    """
    before = after = chunks = 0
    per_table, estimated, sampled_rows, sampled_chunks = {}, False, 0, 0
    for h in hypertables:
        if not h.wants_compression:
            continue
        regclass = display_name(schema, h.table)
        stats = conn.execute("""SELECT coalesce(sum(before_compression_total_bytes), 0), coalesce(sum(after_compression_total_bytes), 0), count(*)
                                  FROM chunk_compression_stats(%s::regclass) WHERE compression_status = 'Compressed'""",
                             (regclass,)).fetchone()
        if stats[2]:
            per_table[regclass] = (int(stats[0]), int(stats[1]), int(stats[2]))
            continue
        with conn.transaction(force_rollback=True):
            older = h.compress_after.text if h.compress_after else "0 seconds"
            candidates = [r[0] for r in conn.execute(
                "SELECT c FROM show_chunks(%s::regclass, older_than => now() - %s::interval) c LIMIT %s",
                (regclass, older, max_chunks)).fetchall()]
            if not candidates:
                estimated = True
                candidates = [r[0] for r in conn.execute("""
                    SELECT format('%%I.%%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks
                     WHERE hypertable_schema = %s AND hypertable_name = %s AND NOT is_compressed
                       AND range_end <= (SELECT max(range_start) FROM timescaledb_information.chunks
                                          WHERE hypertable_schema = %s AND hypertable_name = %s)
                     ORDER BY range_start LIMIT %s""", (schema, h.table, schema, h.table, max_chunks)).fetchall()]
            for chunk in candidates:
                sampled_rows += conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(str(chunk)))).fetchone()[0]
                sampled_chunks += 1
                conn.execute("SELECT compress_chunk(%s::regclass)", (str(chunk),))
            if candidates:
                b, a = conn.execute("""SELECT coalesce(sum(before_compression_total_bytes), 0), coalesce(sum(after_compression_total_bytes), 0)
                                         FROM chunk_compression_stats(%s::regclass) WHERE compression_status = 'Compressed'""",
                                    (regclass,)).fetchone()
                per_table[regclass] = (int(b), int(a), len(candidates))
    for b, a, n in per_table.values():
        before, after, chunks = before + b, after + a, chunks + n
    if not chunks:
        raise BenchSkipped("no chunk of the planned hypertables can be compressed yet: each has a single chunk, "
                           "which still receives data")
    if sampled_chunks and sampled_rows / sampled_chunks < MIN_ROWS_PER_CHUNK:
        # TimescaleDB compresses up to 1000 rows of a segment into one batch: chunks this small cannot show
        # what compression does to the table's history.
        percent = (1 - after / before) * 100 if before else 0.0
        raise BenchSkipped(f"chunks too small to judge compression: {sampled_rows / sampled_chunks:,.0f} rows per chunk "
                           f"on average (at least {MIN_ROWS_PER_CHUNK:,} needed); measured {percent:.1f} % over "
                           f"{chunks} chunks, {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")
    how = ("estimated on the oldest completed chunks (none is older than compress_after yet), compressed in a "
           "transaction rolled back") if estimated else "chunks older than compress_after, compressed in a transaction rolled back or already compressed"
    return CompressionResult(before, after, chunks, how, per_table)


@dataclass(frozen=True)
class StorageResult:
    bytes_per_month: float
    per_table: dict            # table -> (bytes, rows, days of data, bytes per month)
    compression_percent: float | None

    def figure(self, limit_gb: float) -> Figure:
        tables = ", ".join(f"{t} {m / 1e6:,.1f} MB ({r:,} rows over {d:.1f} days)" for t, (_, r, d, m) in self.per_table.items())
        how = (f"with {self.compression_percent:.0f}% compression after each table's compress_after"
               if self.compression_percent is not None else "uncompressed (no compression on this edition)")
        return Figure("storage per month, projected", self.bytes_per_month / GB, "GB/month", limit_gb, "lower",
                      f"{how}; {tables}", {"bytes_per_month": self.bytes_per_month})


def project_storage(conn: psycopg.Connection, schema: str, hypertables: Iterable[HypertablePlan],
                    compression_percent: float | None = None) -> StorageResult:
    """Storage a month of data takes, projected from each planned hypertable's size over the time its data spans.

    With a compression ratio, the part of the month older than compress_after is counted compressed.
    """
    total, per_table = 0.0, {}
    timescaledb = server_timescaledb(conn).installed_version is not None
    for h in hypertables:
        name = display_name(schema, h.table)
        if conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is None:
            continue
        ident = sql.Identifier(schema, h.table)
        rows, low, high = conn.execute(sql.SQL("SELECT count(*), min({c}), max({c}) FROM {t}").format(
            c=sql.Identifier(h.time_column), t=ident)).fetchone()
        if not rows or high == low:
            continue
        size = conn.execute("SELECT coalesce(hypertable_size(%s::regclass), pg_total_relation_size(%s::regclass))",
                            (name, name)).fetchone()[0] if timescaledb else \
            conn.execute("SELECT pg_total_relation_size(%s::regclass)", (name,)).fetchone()[0]
        days = (high - low).total_seconds() / 86400
        per_day = size / days
        if compression_percent is not None and h.compress_after:
            fresh = min(DAYS_PER_MONTH, h.compress_after.seconds / 86400)
            month = per_day * (fresh + (DAYS_PER_MONTH - fresh) * (1 - compression_percent / 100))
        else:
            month = per_day * DAYS_PER_MONTH
        per_table[name] = (int(size), int(rows), days, month)
        total += month
    if not per_table:
        raise BenchSkipped("no planned hypertable holds data spanning any time: nothing to project from")
    return StorageResult(total, per_table, compression_percent)
