"""The storage benchmarks: the compression ratio of old chunks (community edition), and the storage a month of
data takes, projected from each planned hypertable's size over the time its data spans.

The projection itself (month_bytes, project, StorageResult with the plan settings that would meet a target) is
shared with the pre-flight's prediction from the live tables (tsmigrate/preflight/storage.py): one formula, so the
figure predicted before the window and the one measured after it are the same figure.

Compression is measured inside a transaction that is rolled back (chunks already compressed count as they are).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import psycopg
from psycopg import sql

from ..db import display_name, one, row
from ..plan import BenchmarkThresholds, HypertablePlan, Interval
from ..timescale import ServerTimescale, server_timescaledb
from .figures import BenchSkipped, Figure

GB = 1e9
MIN_ROWS_PER_CHUNK = 1_000
DAYS_PER_MONTH = 30
DAY = 86400.0  # seconds
HOUR = 1 / 24  # of a day


@dataclass(frozen=True)
class CompressionResult:
    before_bytes: int
    after_bytes: int
    chunks: int
    how: str  # which chunks were measured and how
    per_table: dict  # table -> (before, after, chunks)

    @property
    def percent(self) -> float:
        return (1 - self.after_bytes / self.before_bytes) * 100 if self.before_bytes else 0.0

    def remedy(self) -> str:
        """What to change when the ratio is below target, naming the table that compressed least."""
        ratios = {t: (1 - a / b) * 100 for t, (b, a, _) in self.per_table.items() if b}
        worst = min(ratios, key=lambda table: ratios[table]) if ratios else None
        table = worst.rsplit(".", 1)[-1] if worst else "<table>"
        return (
            (f"{worst} compressed least ({ratios[worst]:.0f}%). " if worst else "")
            + f"In [hypertables.{table}] of plan.toml, segment by columns that many rows share "
            "(compress_segment_by: each value's rows compress together) and order by the time column "
            "(compress_order_by); or lower min_compression_percent in [benchmarks] if the target was set too high."
        )

    def figure(self, limit_percent: float) -> Figure:
        tables = ", ".join(f"{t} {(1 - a / b) * 100:.0f}% ({n} chunks)" for t, (b, a, n) in self.per_table.items() if b)
        return Figure(
            "compression of historical data",
            self.percent,
            "%",
            limit_percent,
            "higher",
            f"{self.chunks} chunks, {self.before_bytes / 1e6:.1f} MB -> {self.after_bytes / 1e6:.1f} MB; "
            f"{self.how}; {tables}",
            {"before_bytes": self.before_bytes, "after_bytes": self.after_bytes, "chunks": self.chunks},
        )


def measure_compression(
    conn: psycopg.Connection, schema: str, hypertables: Iterable[HypertablePlan], *, max_chunks: int = 4
) -> CompressionResult:
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
        stats = row(
            conn,
            """SELECT coalesce(sum(before_compression_total_bytes), 0),
                      coalesce(sum(after_compression_total_bytes), 0), count(*)
                 FROM chunk_compression_stats(%s::regclass) WHERE compression_status = 'Compressed'""",
            (regclass,),
        )
        if stats[2]:
            per_table[regclass] = (int(stats[0]), int(stats[1]), int(stats[2]))
            continue
        with conn.transaction(force_rollback=True):
            older = h.compress_after.text if h.compress_after else "0 seconds"
            candidates = [
                r[0]
                for r in conn.execute(
                    "SELECT c FROM show_chunks(%s::regclass, older_than => now() - %s::interval) c LIMIT %s",
                    (regclass, older, max_chunks),
                ).fetchall()
            ]
            if not candidates:
                estimated = True
                candidates = [
                    r[0]
                    for r in conn.execute(
                        """
                    SELECT format('%%I.%%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks
                     WHERE hypertable_schema = %s AND hypertable_name = %s AND NOT is_compressed
                       AND range_end <= (SELECT max(range_start) FROM timescaledb_information.chunks
                                          WHERE hypertable_schema = %s AND hypertable_name = %s)
                     ORDER BY range_start LIMIT %s""",
                        (schema, h.table, schema, h.table, max_chunks),
                    ).fetchall()
                ]
            for chunk in candidates:
                sampled_rows += one(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(str(chunk))))
                sampled_chunks += 1
                conn.execute("SELECT compress_chunk(%s::regclass)", (str(chunk),))
            if candidates:
                b, a = row(
                    conn,
                    """SELECT coalesce(sum(before_compression_total_bytes), 0),
                              coalesce(sum(after_compression_total_bytes), 0)
                         FROM chunk_compression_stats(%s::regclass) WHERE compression_status = 'Compressed'""",
                    (regclass,),
                )
                per_table[regclass] = (int(b), int(a), len(candidates))
    for b, a, n in per_table.values():
        before, after, chunks = before + b, after + a, chunks + n
    if not chunks:
        raise BenchSkipped(
            "no chunk of the planned hypertables can be compressed yet: each has a single chunk, "
            "which still receives data"
        )
    if sampled_chunks and sampled_rows / sampled_chunks < MIN_ROWS_PER_CHUNK:
        # TimescaleDB compresses up to 1000 rows of a segment into one batch: chunks this small cannot show
        # what compression does to the table's history.
        percent = (1 - after / before) * 100 if before else 0.0
        raise BenchSkipped(
            f"chunks too small to judge compression: {sampled_rows / sampled_chunks:,.0f} rows per chunk "
            f"on average (at least {MIN_ROWS_PER_CHUNK:,} needed); measured {percent:.1f} % over "
            f"{chunks} chunks, {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB"
        )
    how = (
        (
            "estimated on the oldest completed chunks (none is older than compress_after yet), compressed in a "
            "transaction rolled back"
        )
        if estimated
        else "chunks older than compress_after, compressed in a transaction rolled back or already compressed"
    )
    return CompressionResult(before, after, chunks, how, per_table)


def planned_compression(
    timescale: ServerTimescale, thresholds: BenchmarkThresholds, *, unmeasured: str = ""
) -> tuple[float | None, str]:
    """The compression ratio a projection assumes where it cannot measure one, and why: none on an edition without
    compression (the conversion skips it), else the plan's min_compression_percent, the least the post-flight's
    compression benchmark accepts (so a projection under its limit with it holds whenever that benchmark passes)."""
    if not timescale.has_compression:
        return None, f"this server's TimescaleDB is the {timescale.edition or 'unknown'} edition, without compression"
    return thresholds.min_compression_percent, (
        "assumed: the plan's min_compression_percent, the least its compression benchmark accepts"
        + (f"; not measured here: {unmeasured}" if unmeasured else "")
    )


def month_bytes(per_day: float, h: HypertablePlan, compression_percent: float | None) -> float:
    """The storage a month of one table's data takes, from its bytes per day and the plan's settings: no more days
    than its retention keeps (drop_after), and the days older than compress_after counted compressed by
    ``compression_percent`` (None: no compression, as on the apache edition). The one projection the pre-flight's
    prediction and the post-flight's benchmark share."""
    kept = DAYS_PER_MONTH if h.drop_after is None else min(DAYS_PER_MONTH, h.drop_after.seconds / DAY)
    if compression_percent is None or h.compress_after is None:
        return per_day * kept
    fresh = min(kept, h.compress_after.seconds / DAY)
    return per_day * (fresh + (kept - fresh) * (1 - compression_percent / 100))


@dataclass(frozen=True)
class Growth:
    """How fast one table's data grows, and where that figure comes from."""

    table: str  # schema.table
    bytes_per_day: float
    rows_per_day: float
    how: str  # the measurement, in words ("3,456 rows over 1.0 days, 1.2 MB")


@dataclass(frozen=True)
class TableProjection:
    hypertable: HypertablePlan
    growth: Growth
    bytes_per_month: float


@dataclass(frozen=True)
class StorageResult:
    tables: tuple[TableProjection, ...]
    compression_percent: float | None
    compression_source: str = ""  # where the ratio comes from: measured, or the figure assumed and why

    @property
    def bytes_per_month(self) -> float:
        return sum(t.bytes_per_month for t in self.tables)

    @property
    def per_table(self) -> dict:
        """schema.table -> bytes per month."""
        return {t.growth.table: t.bytes_per_month for t in self.tables}

    def how(self) -> str:
        if self.compression_percent is None:
            return f"uncompressed ({self.compression_source or 'no compression'})"
        return f"with {self.compression_percent:.0f}% compression after each table's compress_after" + (
            f" ({self.compression_source})" if self.compression_source else ""
        )

    def tables_text(self) -> str:
        return ", ".join(
            f"{t.growth.table} {t.bytes_per_month / 1e6:,.1f} MB ({t.growth.how})"
            for t in sorted(self.tables, key=lambda t: -t.bytes_per_month)
        )

    def figure(self, limit_gb: float) -> Figure:
        return Figure(
            "storage per month, projected",
            self.bytes_per_month / GB,
            "GB/month",
            limit_gb,
            "lower",
            f"{self.how()}; {self.tables_text()}",
            {
                "bytes_per_month": self.bytes_per_month,
                "per_table": self.per_table,
                "compression_percent": self.compression_percent,
            },
        )

    def with_settings(self, table: str, **settings) -> StorageResult:
        """The same projection with one table's plan settings changed (compress_after, drop_after)."""
        return project(
            (
                (replace(t.hypertable, **settings) if t.hypertable.table == table else t.hypertable, t.growth)
                for t in self.tables
            ),
            self.compression_percent,
            self.compression_source,
        )

    def changes_to_meet(self, limit_gb: float) -> tuple[dict[str, dict[str, Interval]], StorageResult]:
        """The plan settings that bring the projection under ``limit_gb`` (table -> {key: interval}) and the
        projection with them; ({}, self) when none does or none is needed.

        The tables that take most go first: each is compressed sooner (the loosest compress_after that does it, at
        least an hour); where that is not enough, kept shorter too (drop_after, at least a day, longer than
        compress_after as the plan requires); then the next table."""
        limit = limit_gb * GB
        changes: dict[str, dict[str, Interval]] = {}
        result = self
        levers = ("compress_after", "drop_after") if self.compression_percent else ("drop_after",)
        for table in [t.hypertable.table for t in sorted(self.tables, key=lambda t: -t.bytes_per_month)]:
            for lever in levers:
                excess = result.bytes_per_month - limit
                if excess <= 0:
                    return changes, result
                now = next(t for t in result.tables if t.hypertable.table == table)
                setting = _setting_for(now, lever, now.bytes_per_month - excess, self.compression_percent)
                if setting:
                    changes.setdefault(table, {}).update(setting)
                    result = result.with_settings(table, **setting)
        return (changes, result) if result.bytes_per_month <= limit else ({}, self)

    def advice(self, limit_gb: float) -> str:
        """What to change in plan.toml to bring the projection under ``limit_gb``, with the figure it gives; ""
        when the projection is already under it."""
        if self.bytes_per_month <= limit_gb * GB:
            return ""
        raise_target = (
            f"raise max_storage_gb_per_month in [benchmarks] of plan.toml if {limit_gb:g} GB/month was set too tight"
        )
        changes, after = self.changes_to_meet(limit_gb)
        if not changes:
            return (
                f"No compress_after or drop_after of the planned tables brings it under {limit_gb:g} GB/month "
                f"(compressed after an hour at the soonest, a day kept at the least): {raise_target}."
            )
        plan = {t.hypertable.table: t.hypertable for t in self.tables}
        edits = "; ".join(
            f"in [hypertables.{table}] "
            + ", ".join(
                f'{key} = "{value.text}" (now {getattr(plan[table], key) or "not set"})'
                for key, value in settings.items()
            )
            for table, settings in changes.items()
        )
        community = (
            ""
            if self.compression_percent is not None
            else " (or run the community edition: its compression brings it down too)"
        )
        return (
            f"Set {edits} of plan.toml: the projection comes to {after.bytes_per_month / GB:.3g} GB/month{community}; "
            f"or {raise_target}."
        )


def _setting_for(
    t: TableProjection, lever: str, wanted: float, compression_percent: float | None
) -> dict[str, Interval]:
    """The loosest ``lever`` setting (compress_after or drop_after) that brings one table's month to at most
    ``wanted`` bytes, or the tightest allowed when none does; {} when it would change nothing."""
    h, per_day = t.hypertable, t.growth.bytes_per_day
    if per_day <= 0:
        return {}
    allowed = max(wanted, 0.0) / per_day  # days of uncompressed data the table may take
    kept = DAYS_PER_MONTH if h.drop_after is None else min(DAYS_PER_MONTH, h.drop_after.seconds / DAY)
    fresh_now = min(kept, h.compress_after.seconds / DAY) if h.compress_after and compression_percent else None
    left = 1 - compression_percent / 100 if compression_percent else 1.0
    if lever == "compress_after":
        if fresh_now is None:
            return {}
        # fresh + (kept - fresh) * left <= allowed
        fresh = max(HOUR, (allowed - kept * left) / (1 - left)) if left < 1 else HOUR
        compress_after = _interval_at_most(fresh)
        return {"compress_after": compress_after} if compress_after.seconds < fresh_now * DAY else {}
    # drop_after: the fresh days as they are, then (compressed, if at all) up to the days kept
    days = fresh_now + (allowed - fresh_now) / left if fresh_now is not None and allowed > fresh_now else allowed
    setting = {"drop_after": _interval_at_most(max(days, 1.0))}  # a day of history at the least
    if setting["drop_after"].seconds >= kept * DAY:
        return {}
    if h.compress_after and h.compress_after.seconds >= setting["drop_after"].seconds:
        setting["compress_after"] = _interval_at_most(setting["drop_after"].seconds / DAY / 2)
    return setting


def _interval_at_most(days: float) -> Interval:
    """The longest whole number of days (or, under a day, hours; at least one) that is at most ``days``."""
    if days >= 1:
        n = int(days)
        return Interval(f"{n} day{'s' if n != 1 else ''}", n * DAY)
    n = max(1, int(days * 24 + 1e-9))
    return Interval(f"{n} hour{'s' if n != 1 else ''}", n * 3600.0)


def project(
    tables: Iterable[tuple[HypertablePlan, Growth]], compression_percent: float | None, compression_source: str = ""
) -> StorageResult:
    """Storage per month of each table from its growth and its plan settings (see :func:`month_bytes`)."""
    projected = tuple(TableProjection(h, g, month_bytes(g.bytes_per_day, h, compression_percent)) for h, g in tables)
    return StorageResult(projected, compression_percent, compression_source)


def measured_growth(conn: psycopg.Connection, schema: str, h: HypertablePlan) -> Growth | None:
    """A table's growth as it is stored now: its size (a hypertable's with its chunks and indexes) over the time
    its data spans. None when the table does not exist or its data spans no time."""
    name = display_name(schema, h.table)
    if one(conn, "SELECT to_regclass(%s)", (name,)) is None:
        return None
    rows, low, high = row(
        conn,
        sql.SQL("SELECT count(*), min({c}), max({c}) FROM {t}").format(
            c=sql.Identifier(h.time_column), t=sql.Identifier(schema, h.table)
        ),
    )
    if not rows or high == low:
        return None
    if server_timescaledb(conn).installed_version is not None:
        size = one(
            conn, "SELECT coalesce(hypertable_size(%s::regclass), pg_total_relation_size(%s::regclass))", (name, name)
        )
    else:
        size = one(conn, "SELECT pg_total_relation_size(%s::regclass)", (name,))
    days = (high - low).total_seconds() / DAY
    return Growth(name, size / days, rows / days, f"{rows:,} rows over {days:.1f} days, {size / 1e6:,.1f} MB")


def project_storage(
    conn: psycopg.Connection,
    schema: str,
    hypertables: Iterable[HypertablePlan],
    compression_percent: float | None = None,
    compression_source: str = "",
) -> StorageResult:
    """Storage a month of data takes, projected from each planned hypertable's size over the time its data spans.

    With a compression ratio, the part of the month older than compress_after is counted compressed.
    """
    measured = [(h, g) for h in hypertables if (g := measured_growth(conn, schema, h)) is not None]
    if not measured:
        raise BenchSkipped("no planned hypertable holds data spanning any time: nothing to project from")
    return project(measured, compression_percent, compression_source)
