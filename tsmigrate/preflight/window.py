"""The maintenance window, estimated before it starts, and set beside what the run then measured.

The rehearsal (tsmigrate/rehearsal.py) times every step on a scratch copy in which the large tables hold a sample of
their rows. Each step's time is scaled to the full table (its rows over the sample's: a conversion reads and writes
every row once, so its cost grows with them), the backup's from the copy's time (the database's size over the
copy's), and the whole gives:

- ``execute_seconds``: how long the execute phase takes (the backup, then every step);
- ``application_out_seconds``: how long the application is kept out: with the fence (tsmigrate/fence.py), the whole
  execute phase; without it, the time its tables are locked (the files and offline conversions, and each online
  conversion's swap);
- ``disk_bytes`` and ``wal_bytes``: the room the run needs in the data directory and the WAL it writes
  (tsmigrate.preflight.disk, the pre-flight's PF065 rule).

    estimate = estimate_window(conn, plan, rehearsal_result)   # a dict: the GO banner and the record's ``estimate``
    compare(estimate, steps, timeline, phases)                 # estimated beside measured, with their ratio
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from ..convert.online import chooses_online
from ..db import one
from ..migrations import MigrationFile, split_statements
from ..plan import Plan
from ..rehearsal import RehearsalResult
from .disk import disk_need

# An online conversion copies beside the table while the application writes, replays what it wrote, swaps, then
# verifies every row: more work than the offline path the rehearsal times (convert_table). Each online table's
# rehearsed time is multiplied by this (`make bench ROWS=2500000 ARGS=--tenfold` before the bench was rewritten:
# online 16.9 s and 181.0 s against offline 6.6 s and 78.3 s, 2.6x and 2.3x; the site-scale demo, README: The
# window, 1.5x); its swap, the only time the application's statements on it
# wait, is allowed SWAP_SECONDS (the same run: 11 ms and 53 ms; 8 ms on the site-scale demo; the rest is room for
# the lock's retries).
ONLINE_COST_FACTOR = 2.5
SWAP_SECONDS = 0.25

# The backup (pg_dump of the whole database beside the fingerprints, then a trial restore of its schema) against the
# rehearsal's copy (pg_dump piped into pg_restore, which rebuilds every index): at least as long (both are mostly
# fixed costs on a small database: 3.0 s against 3.4 s on the tiny legacy database), and per byte of the database
# about this share of the copy's time per byte of the copy: measured 0.12 on the site-scale demo (`pytest suites
# --demo --demo-scale site`: a backup of 8.7 s, a copy of 3.7 s holding 1/19.6 of the database), at most 0.33 at
# 345,600 metric_hist rows (tests/test_timeline.py).
BACKUP_PER_COPY = 0.15
# ... plus what the copy does not do: the trial restore's scratch database, the manifest and the verification (the
# tiny legacy database, its copy in 0.7 s: a backup of 2.7 s).
BACKUP_FIXED_SECONDS = 2.0

# The estimate is stated within this factor of what a run measures (tests/test_timeline.py checks it on a run of
# the legacy database).
STATED_FACTOR = 3.0


def _rows(conn: psycopg.Connection, schema: str, table: str) -> int | None:
    """The table's rows: the planner's count when it has one (no scan), else a count."""
    estimate = one(
        conn,
        """SELECT c.reltuples::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')""",
        (schema, table),
    )
    if estimate is None:
        return None
    if estimate >= 0:
        return int(estimate)
    return int(one(conn, psycopg.sql.SQL("SELECT count(*) FROM {}").format(psycopg.sql.Identifier(schema, table))) or 0)


def _ratios(conn: psycopg.Connection, result: RehearsalResult) -> dict[str, float]:
    """schema.table -> full rows over the sample's, for the tables the copy sampled."""
    ratios = {}
    for name, copied in result.sampled.items():
        schema, table = name.split(".", 1)
        full = _rows(conn, schema, table)
        if full is not None and copied > 0:
            ratios[name] = max(1.0, full / copied)
    return ratios


# Statements whose work grows with a table's rows: they read or rewrite all of it. Others (DDL, functions, ANALYZE,
# which samples a fixed number of rows) take the time the rehearsal measured.
_ROW_WORK = re.compile(
    r"^\s*(UPDATE|DELETE|INSERT|COPY|CLUSTER|VACUUM\s+FULL|REFRESH\s+MATERIALIZED|CREATE\s+(UNIQUE\s+)?INDEX|"
    r"ALTER\s+TABLE|SELECT\s+create_hypertable)\b",
    re.IGNORECASE,
)
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


def statement_ratio(sql: str, ratios: dict[str, float]) -> float:
    """How much longer a statement takes on the full tables: the largest rows ratio of the sampled tables it names,
    for a statement whose work grows with rows (_ROW_WORK); 1 for any other."""
    text = _COMMENTS.sub(" ", sql)
    if not _ROW_WORK.match(text):
        return 1.0
    named = [r for name, r in ratios.items() if re.search(rf"\b{re.escape(name.split('.', 1)[1])}\b", text, re.I)]
    return max(named, default=1.0)


def _file_seconds(file: MigrationFile | None, timings: list[tuple[int, float]], seconds: float, ratios) -> float:
    """A file's rehearsed time with each statement scaled (statement_ratio); its time outside statements as is."""
    if file is None or not timings:
        return seconds
    by_line = {s.line: s.sql for s in split_statements(file.sql)}
    scaled = sum(t * statement_ratio(by_line.get(line, ""), ratios) for line, t in timings)
    return max(0.0, seconds - sum(t for _, t in timings)) + scaled


def estimate_window(
    conn: psycopg.Connection, plan: Plan | None, result: RehearsalResult, pending: list[MigrationFile] | None = None
) -> dict[str, Any]:
    """The window, from a rehearsal that succeeded; ``conn`` is on the target (read only), ``pending`` the files the
    rehearsal applied."""
    ratios = _ratios(conn, result)
    files = {f.label: f for f in pending or []}
    database = int(one(conn, "SELECT pg_database_size(current_database())") or 0)
    copy_ratio = max(1.0, database / result.copied_bytes) if result.copied_bytes else 1.0
    backup_seconds = BACKUP_FIXED_SECONDS + result.copy_seconds * max(1.0, copy_ratio * BACKUP_PER_COPY)
    steps: list[dict[str, Any]] = []
    locked = 0.0
    online_tables = 0
    for label, seconds in result.steps:
        online = False
        if label.startswith("convert ") and plan is not None:
            name = label.removeprefix("convert ")
            ratio = ratios.get(name, 1.0)
            h = plan.hypertable(name.split(".", 1)[1])
            online = h is not None and chooses_online(conn, plan.schema, h, plan.online_above_rows)
            expected = seconds * ratio * (ONLINE_COST_FACTOR if online else 1.0)
        else:
            expected = _file_seconds(files.get(label), result.statements.get(label, []), seconds, ratios)
            ratio = expected / seconds if seconds > 0 else 1.0
        locked += SWAP_SECONDS if online else expected
        online_tables += online
        steps.append(
            {
                "label": label,
                "rehearsed_seconds": round(seconds, 3),
                "rows_ratio": round(ratio, 2),
                "online": online,
                "seconds": round(expected, 3),
            }
        )
    execute = backup_seconds + sum(s["seconds"] for s in steps)
    fenced = bool(plan and plan.fence_application and not online_tables)
    need = disk_need(conn, plan) if plan is not None else None
    return {
        "execute_seconds": round(execute, 3),
        "application_out_seconds": round(execute if fenced else locked, 3),
        "fenced": fenced,
        "backup_seconds": round(backup_seconds, 3),
        "disk_bytes": need.copies if need else None,
        "wal_bytes": need.wal_written if need else None,
        "steps": steps,
        "basis": (
            f"the rehearsal's step times on a scratch copy, scaled by rows (full table over its sample; "
            f"{len(ratios)} tables sampled), the backup by size ({copy_ratio:.1f}x the copy)"
        ),
        "stated_factor": STATED_FACTOR,
    }


def _measured_out(steps: list[dict], fenced: bool, execute: float) -> float:
    if fenced:
        return execute
    locked = 0.0
    for s in steps:
        online = (s.get("details") or {}).get("online")
        locked += float(online.get("swap_seconds", 0.0)) if online else float(s.get("seconds", 0.0))
    return locked


def measured_window(steps: list[dict], timeline: dict | None, phases: list[dict]) -> dict[str, Any]:
    """What the run measured: the execute phase from its first band to its last, the application's time out, and
    from the timeline the database's growth at its peak and the WAL written."""
    bands = [(p["started_at"], p["finished_at"]) for p in phases if p["label"] not in ("restore", "post-flight")]
    bands += [(s["started_at"], s["finished_at"]) for s in steps if "started_at" in s]
    execute = max(f for _, f in bands) - min(b for b, _ in bands) if bands else 0.0
    fenced = any("fence" in p["label"] for p in phases)
    samples = [s for s in (timeline or {}).get("samples", []) if not s.get("error")]
    sizes = [s["database_bytes"] for s in samples if s.get("database_bytes") is not None]
    wal = [s["wal_bytes"] for s in samples if s.get("wal_bytes") is not None]
    return {
        "execute_seconds": round(execute, 3),
        "application_out_seconds": round(_measured_out(steps, fenced, execute), 3),
        "disk_bytes": max(sizes) - sizes[0] if sizes else None,
        "wal_bytes": max(wal) if wal else None,
    }


def compare(estimate: dict, measured: dict) -> list[dict]:
    """Estimated beside measured, each with measured/estimated: the rows of the report's table."""
    rows = []
    for key, what in (
        ("execute_seconds", "execute phase (s)"),
        ("application_out_seconds", "application kept out (s)"),
        ("disk_bytes", "room in the data directory (bytes; measured: the database's growth at its peak)"),
        ("wal_bytes", "WAL written (bytes)"),
    ):
        e, m = estimate.get(key), measured.get(key)
        ratio = round(m / e, 3) if e and m is not None else None
        rows.append({"what": what, "key": key, "estimated": e, "measured": m, "ratio": ratio})
    return rows
