"""Post-flight benchmarks: figures measured on the migrated database, each beside its limit.

Nothing they do stays in the user's tables: inserts run in a transaction that is rolled back
(with negative ids given explicitly, so no sequence moves either), queries run in read-only
transactions, compression is measured inside a transaction that is rolled back.

Every benchmark returns a :class:`Figure`: the value, the limit from the plan, their ratio and
whether it passes. ``figures_table_html`` and ``bar_chart_svg`` render a list of figures (objects
or their ``to_dict()`` form) for the reports; no plotting library is needed.
"""

from __future__ import annotations

import html
import json
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Callable, Iterable

import psycopg
from psycopg import sql

from .config import HypertablePlan
from .fingerprint import serial_column
from .integrity import display_name

GB = 1e9
DAYS_PER_MONTH = 30


class BenchSkipped(Exception):
    """A benchmark that cannot be measured here; the message says why."""


# -- figures ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    limit: float
    better: str                    # "higher" (value must reach the limit) or "lower" (must stay under it)
    details: str = ""
    extra: dict = field(default_factory=dict, compare=False)   # more figures (p50, plan, sizes...)

    @property
    def ratio(self) -> float:
        """value / limit: at least 1 passes a "higher" figure, at most 1 a "lower" one."""
        return self.value / self.limit if self.limit else math.inf

    @property
    def passed(self) -> bool:
        return self.value >= self.limit if self.better == "higher" else self.value <= self.limit

    @property
    def margin(self) -> float:
        """How many times better than the limit (above 1 passes), whichever way is better."""
        if self.better == "higher":
            return self.ratio
        return self.limit / self.value if self.value else math.inf

    def sentence(self) -> str:
        bound = "at least" if self.better == "higher" else "under"
        verdict = "PASS" if self.passed else "FAIL"
        return (f"{self.name}: {fmt(self.value)} {self.unit}, limit {bound} {fmt(self.limit)} {self.unit} "
                f"(ratio {self.ratio:.3g}, {fmt_margin(self.margin)} {'better' if self.passed else 'worse'} than the limit): "
                f"{verdict}" + (f"; {self.details}" if self.details else ""))

    def to_dict(self) -> dict:
        """JSON-ready: an infinite ratio or margin (a limit of 0, a value of 0) becomes None."""
        d = asdict(self)
        d.update(ratio=self.ratio, passed=self.passed, margin=self.margin)
        for key in ("value", "ratio", "margin"):
            if not math.isfinite(d[key]):
                d[key] = None
        return d


def fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "none"
    if math.isinf(value):
        return "unbounded"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:,.1f}"
    return f"{value:.3g}"


def fmt_margin(margin: float | None) -> str:
    if margin is None or math.isinf(margin):
        return "infinitely"
    m = margin if margin >= 1 else (1 / margin if margin else math.inf)
    return f"{m:.1f}x" if not math.isinf(m) else "infinitely"


def _as_dict(figure) -> dict:
    """A figure, or its to_dict() form (as the reports keep it), with value, ratio and margin as numbers."""
    d = figure.to_dict() if isinstance(figure, Figure) else dict(figure)
    value = math.inf if d.get("value") is None else float(d["value"])
    higher = d.get("better", "higher") == "higher"
    d["value"] = value
    d.setdefault("unit", "")
    if d.get("limit") is None:      # a figure without a limit: shown at the limit line, as it came
        d.update(limit=math.nan, ratio=math.nan, margin=1.0)
        d.setdefault("passed", True)
        return d
    limit = float(d["limit"])
    d["ratio"] = value / limit if limit else math.inf
    d["margin"] = d["ratio"] if higher else (limit / value if value else math.inf)
    d.setdefault("passed", value >= limit if higher else value <= limit)
    return d


# -- ingest --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IngestResult:
    table: str
    method: str                    # short: COPY, batched INSERT
    how: str                       # how the rows were sent
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else math.inf

    def figure(self, limit: float) -> Figure:
        return Figure(f"{self.table.rsplit('.', 1)[-1]} ingest, {self.method}", self.rows_per_second, "rows/s", limit,
                      "higher", f"{self.rows:,} rows into {self.table} in {self.seconds:.3f} s, "
                      f"{self.how}, in one transaction rolled back (no commit cost)",
                      {"rows": self.rows, "seconds": self.seconds})


def _sample(conn: psycopg.Connection, schema: str, table: str, time_column: str, rows: int
            ) -> tuple[list[str], list[tuple]]:
    """Rows to insert: the newest rows of the table as text, the serial id replaced by negative ids
    below any existing one, cycled up to ``rows``. Their times lie in existing chunks."""
    key = serial_column(conn, schema, table)
    if key is None:
        raise BenchSkipped(f"{display_name(schema, table)} has no sequence-backed id column; the ingest benchmark "
                           "needs one to give its rows ids no real row has")
    columns = [r[0] for r in conn.execute("""
        SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(format('%%I.%%I', %s::text, %s::text))
           AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum""", (schema, table)).fetchall()]
    ident = sql.Identifier(schema, table)
    sample = conn.execute(sql.SQL("SELECT {} FROM {} ORDER BY {} DESC LIMIT 1000").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns), ident,
        sql.Identifier(time_column))).fetchall()
    if not sample:
        raise BenchSkipped(f"{display_name(schema, table)} is empty: no rows to model the inserts on")
    lowest = conn.execute(sql.SQL("SELECT least(coalesce(min({}), 0), 0) FROM {}").format(
        sql.Identifier(key), ident)).fetchone()[0]
    k = columns.index(key)
    out = []
    for i in range(rows):
        row = list(sample[i % len(sample)])
        row[k] = str(lowest - 1 - i)
        out.append(tuple(row))
    return columns, out


def ingest_copy(conn: psycopg.Connection, schema: str, table: str, time_column: str, rows: int = 20_000) -> IngestResult:
    """Rows per second through COPY into the table, in a transaction that is rolled back."""
    columns, data = _sample(conn, schema, table, time_column, rows)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(schema, table),
                                                         sql.SQL(", ").join(map(sql.Identifier, columns)))
    with conn.transaction(force_rollback=True):
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(statement) as copy:
            for row in data:
                copy.write_row(row)
        seconds = time.perf_counter() - started
    return IngestResult(display_name(schema, table), "COPY", "COPY FROM STDIN, text format", rows, seconds)


def ingest_batched(conn: psycopg.Connection, schema: str, table: str, time_column: str, rows: int = 20_000,
                   batch: int = 1_000) -> IngestResult:
    """Rows per second through INSERT statements sent in batches (executemany, pipelined), rolled back."""
    columns, data = _sample(conn, schema, table, time_column, rows)
    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(schema, table), sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)))
    with conn.transaction(force_rollback=True):
        started = time.perf_counter()
        with conn.cursor() as cur:
            for i in range(0, len(data), batch):
                cur.executemany(statement, data[i:i + batch])
        seconds = time.perf_counter() - started
    return IngestResult(display_name(schema, table), "batched INSERT",
                        f"one-row INSERTs sent {batch:,} at a time (executemany, pipelined)", rows, seconds)


# -- dashboard queries -----------------------------------------------------------------------------

@dataclass(frozen=True)
class DashboardQuery:
    key: str                              # test id
    title: str                            # short: the figure's name
    what: str                             # what it reads, for the details
    relation: tuple[str | None, str]      # (schema or None for the plan's, name) the window applies to
    time_column: str | None               # None: no time window
    window: timedelta | None
    requires: tuple[tuple[str | None, str], ...]
    build: Callable[[str], sql.Composable]   # plan schema -> query (parameters %(lo)s, %(hi)s)


def _latest_values(s: str) -> sql.Composable:
    return sql.SQL("""
        SELECT d.equipment_code, d.metric_key, h.ts, h.value_bool, h.value_int, h.value_real, h.value_text
          FROM {def} d
          CROSS JOIN LATERAL (SELECT m.ts, m.value_bool, m.value_int, m.value_real, m.value_text
                                FROM {hist} m
                               WHERE m.metric_def_id = d.id AND m.ts > %(lo)s AND m.ts <= %(hi)s
                               ORDER BY m.ts DESC LIMIT 1) h
         WHERE d.enabled IS NOT FALSE
         ORDER BY d.equipment_code, d.metric_key""").format(
        hist=sql.Identifier(s, "metric_hist"), **{"def": sql.Identifier(s, "metric_def")})


def _oee_per_line(s: str) -> sql.Composable:
    return sql.SQL("""
        SELECT l.line_code, count(*) AS samples, avg(o.oee) AS oee, avg(o.availability) AS availability,
               avg(o.performance) AS performance, avg(o.quality) AS quality, sum(o.good_parts) AS good_parts
          FROM {oee} o JOIN {lines} l ON l.id = o.line_id
         WHERE o.calculation_time > %(lo)s AND o.calculation_time <= %(hi)s
         GROUP BY l.line_code ORDER BY l.line_code""").format(
        oee=sql.Identifier(s, "oee_calculations"), lines=sql.Identifier(s, "production_lines"))


def _energy_per_hour(s: str) -> sql.Composable:
    return sql.SQL("""
        SELECT time_bucket(INTERVAL '1 hour', e.consumption_time) AS hour, e.equipment_code,
               sum(e.energy_consumption_kwh) AS kwh, avg(e.power_consumption_kw) AS avg_kw
          FROM {energy} e
         WHERE e.consumption_time > %(lo)s AND e.consumption_time <= %(hi)s
         GROUP BY 1, 2 ORDER BY 1, 2""").format(energy=sql.Identifier(s, "energy_consumption"))


def _faults_active(s: str) -> sql.Composable:
    return sql.SQL("SELECT * FROM {} ORDER BY equipment_code, bit_index").format(sql.Identifier("public", "v_faults_active"))


DASHBOARD_QUERIES = (
    DashboardQuery("latest_values_per_equipment", "latest values per equipment", "last hour of metric_hist",
                   (None, "metric_hist"), "ts", timedelta(hours=1),
                   ((None, "metric_hist"), (None, "metric_def")), _latest_values),
    DashboardQuery("oee_per_line_over_a_shift", "OEE per line over a shift", "8 hours of oee_calculations",
                   (None, "oee_calculations"), "calculation_time", timedelta(hours=8),
                   ((None, "oee_calculations"), (None, "production_lines")), _oee_per_line),
    DashboardQuery("energy_per_hour_over_a_day", "energy per hour over a day", "a day of energy_consumption",
                   (None, "energy_consumption"), "consumption_time", timedelta(days=1),
                   ((None, "energy_consumption"),), _energy_per_hour),
    DashboardQuery("faults_active", "faults active", "public.v_faults_active",
                   ("public", "v_faults_active"), None, None,
                   (("public", "v_faults_active"),), _faults_active),
)


@dataclass(frozen=True)
class QueryResult:
    query: DashboardQuery
    samples_ms: tuple[float, ...]
    rows: int
    plan: str                         # EXPLAIN (ANALYZE, BUFFERS) text
    window: tuple | None              # (lo, hi)
    chunks_total: int | None          # chunks of the hypertable (None: not a hypertable)
    chunks_in_window: int | None      # chunks whose range overlaps the window
    chunks_scanned: int | None        # chunks the executed plan touched

    @property
    def p50(self) -> float:
        return percentile(self.samples_ms, 50)

    @property
    def p95(self) -> float:
        return percentile(self.samples_ms, 95)

    def exclusion(self) -> str:
        if self.chunks_total is None:
            return "plain tables, no chunks"
        return (f"scanned {self.chunks_scanned} of {self.chunks_total} chunks "
                f"({self.chunks_in_window} overlap the window)")

    def exclusion_failure(self) -> str | None:
        """What is wrong when the plan touched chunks outside the query's time window (None when it did not)."""
        if self.chunks_total is None or self.window is None or self.chunks_scanned <= self.chunks_in_window:
            return None
        return (f"{self.query.title}: the plan touched {self.chunks_scanned} chunks of {self.query.relation[1]} but only "
                f"{self.chunks_in_window} overlap its time window: chunk exclusion does not work for this query "
                f"(is the condition on {self.query.time_column} a plain comparison with constants?)\n{self.plan}")

    def figure(self, limit_ms: float) -> Figure:
        return Figure(f"{self.query.title}, p95", self.p95, "ms", limit_ms, "lower",
                      f"{self.query.what}: p50 {self.p50:.2f} ms over {len(self.samples_ms)} runs, {self.rows} row{'s' if self.rows != 1 else ''}; "
                      f"{self.exclusion()}",
                      {"p50_ms": self.p50, "p95_ms": self.p95, "runs": len(self.samples_ms), "rows": self.rows,
                       "chunks_total": self.chunks_total, "chunks_in_window": self.chunks_in_window,
                       "chunks_scanned": self.chunks_scanned, "plan": self.plan})


def percentile(samples: Iterable[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _relation(schema: str, rel: tuple[str | None, str]) -> tuple[str, str]:
    return rel[0] or schema, rel[1]


def _plan_relations(node: dict) -> set[str]:
    found = {node["Relation Name"]} if "Relation Name" in node else set()
    for child in node.get("Plans", ()):
        found |= _plan_relations(child)
    return found


def run_dashboard_query(conn: psycopg.Connection, schema: str, query: DashboardQuery, *, repeats: int = 20) -> QueryResult:
    """Time a dashboard query (client wall clock, after one warm-up run) and explain it."""
    for rel in query.requires:
        s, name = _relation(schema, rel)
        if conn.execute("SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))", (s, name)).fetchone()[0] is None:
            raise BenchSkipped(f"{query.title}: {display_name(s, name)} does not exist in this database")
    rel_schema, rel_name = _relation(schema, query.relation)
    params: dict = {}
    window = None
    if query.time_column:
        hi = conn.execute(sql.SQL("SELECT max({}) FROM {}").format(
            sql.Identifier(query.time_column), sql.Identifier(rel_schema, rel_name))).fetchone()[0]
        if hi is None:
            raise BenchSkipped(f"{query.title}: {display_name(rel_schema, rel_name)} is empty")
        window = (hi - query.window, hi)
        params = {"lo": window[0], "hi": window[1]}
    statement = query.build(schema)
    samples = []
    with conn.transaction(force_rollback=True):
        conn.execute("SET TRANSACTION READ ONLY")
        with conn.cursor() as cur:
            cur.execute(statement, params).fetchall()          # warm-up: plans and caches
            for _ in range(repeats):
                started = time.perf_counter()
                rows = len(cur.execute(statement, params).fetchall())
                samples.append((time.perf_counter() - started) * 1000)
        with psycopg.ClientCursor(conn) as cur:                 # literal values: the plan shows them
            explain_json = cur.execute(sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) {}").format(statement), params).fetchone()[0]
            plan_text = "\n".join(r[0] for r in cur.execute(
                sql.SQL("EXPLAIN (ANALYZE, BUFFERS) {}").format(statement), params).fetchall())
    if isinstance(explain_json, str):
        explain_json = json.loads(explain_json)
    chunks_total = chunks_in_window = chunks_scanned = None
    chunk_rows = conn.execute("""SELECT chunk_name, range_start, range_end FROM timescaledb_information.chunks
                                  WHERE hypertable_schema = %s AND hypertable_name = %s""",
                              (rel_schema, rel_name)).fetchall() if _has_timescaledb(conn) else []
    if chunk_rows:
        chunks_total = len(chunk_rows)
        scanned = _plan_relations(explain_json[0]["Plan"])
        chunks_scanned = sum(1 for name, _, _ in chunk_rows if name in scanned)
        chunks_in_window = sum(1 for _, start, end in chunk_rows
                               if window is None or (start <= window[1] and end > window[0]))
    return QueryResult(query, tuple(samples), rows, plan_text, window, chunks_total, chunks_in_window, chunks_scanned)


def _has_timescaledb(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is not None


# -- compression and storage --------------------------------------------------------------------------

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
    per_table, estimated = {}, False
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
                            (name, name)).fetchone()[0] if _has_timescaledb(conn) else \
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


# -- rendering -------------------------------------------------------------------------------------------

def figures_table_html(figures: Iterable) -> str:
    """An HTML table of figures: name, value, limit, ratio, verdict, details."""
    rows = []
    for f in map(_as_dict, figures):
        bound = "&ge;" if f.get("better", "higher") == "higher" else "&lt;"
        verdict = "PASS" if f["passed"] else "FAIL"
        color = "#1a7f37" if f["passed"] else "#cf222e"
        limit = "&mdash;" if math.isnan(f["limit"]) else f"{bound} {html.escape(fmt(f['limit']))} {html.escape(f['unit'])}"
        ratio = "&mdash;" if math.isnan(f["ratio"]) else f"{f['ratio']:.3g}"
        rows.append(
            f"<tr><td>{html.escape(f['name'])}</td><td style='text-align:right'>{html.escape(fmt(f['value']))} "
            f"{html.escape(f['unit'])}</td><td style='text-align:right'>{limit}</td><td style='text-align:right'>{ratio}</td>"
            f"<td style='color:{color};font-weight:bold'>{verdict}</td><td>{html.escape(f.get('details', ''))}</td></tr>")
    return ("<table class='tsmigrate-benchmarks' style='border-collapse:collapse' border='1' cellpadding='4'>"
            "<thead><tr><th>benchmark</th><th>value</th><th>limit</th><th>ratio (value/limit)</th><th>verdict</th>"
            "<th>details</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def bar_chart_svg(figures: Iterable, *, width: int = 760, row_height: int = 30) -> str:
    """An inline SVG bar chart: one bar per figure, its length how many times better (or worse)
    than its limit on a log scale, the limit as a line at 1x; green passes, red fails."""
    items = [_as_dict(f) for f in figures]
    label_w, value_w, top, bottom = 300, 150, 24, 24
    plot_w = width - label_w - value_w
    lo, hi = -1.0, 3.0                       # log10 of 0.1x .. 1000x

    def x(margin: float) -> float:
        m = min(max(margin if margin > 0 else 10 ** lo, 10 ** lo), 10 ** hi)
        return label_w + (math.log10(m) - lo) / (hi - lo) * plot_w

    height = top + bottom + row_height * max(1, len(items))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           'font-family="sans-serif" font-size="12" role="img" aria-label="benchmarks against their limits">',
           f'<text x="{label_w}" y="14" fill="#555">times better than the limit (log scale; the line is the limit)</text>']
    for tick in (0.1, 1, 10, 100, 1000):
        tx = x(tick)
        out.append(f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{height - bottom}" stroke="#ddd"/>')
        out.append(f'<text x="{tx:.1f}" y="{height - 8}" text-anchor="middle" fill="#555">{tick:g}x</text>')
    for i, f in enumerate(items):
        y = top + i * row_height
        margin = f["margin"]
        color = "#2da44e" if f["passed"] else "#cf222e"
        bar_end = x(margin)
        start = x(1)
        left, right = min(start, bar_end), max(start, bar_end)
        title = html.escape(f"{f['name']}: {fmt(f['value'])} {f['unit']} (limit {fmt(f['limit'])} {f['unit']})")
        out.append(f'<g><title>{title}</title>')
        label = f["name"] if len(f["name"]) <= 44 else f["name"][:43] + "\u2026"
        out.append(f'<text x="{label_w - 6}" y="{y + row_height * 0.62:.1f}" text-anchor="end">{html.escape(label)}</text>')
        out.append(f'<rect x="{left:.1f}" y="{y + 5}" width="{max(right - left, 1):.1f}" height="{row_height - 10}" fill="{color}"/>')
        out.append(f'<text x="{label_w + plot_w + 6}" y="{y + row_height * 0.62:.1f}">'
                   f'{html.escape(fmt(f["value"]))} {html.escape(f["unit"])} ({fmt_margin(margin)})</text></g>')
    out.append(f'<line x1="{x(1):.1f}" y1="{top - 4}" x2="{x(1):.1f}" y2="{height - bottom + 4}" stroke="#000" stroke-width="2"/>')
    out.append("</svg>")
    return "".join(out)
