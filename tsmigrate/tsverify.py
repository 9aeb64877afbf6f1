"""Post-flight: the TimescaleDB state the plan asked for, read from timescaledb_information.

Each function returns problems as sentences that name the table, the policy or the job and say
what to do; an empty list means the check passed. Compression and policies exist only in the
community edition: callers skip those checks under apache (see ``timescale.APACHE_LACKS``).
"""

from __future__ import annotations

from datetime import timedelta

import psycopg
from psycopg import sql

from .convert.catalog import time_dimension
from .convert.policies import paused_jobs
from .db import display_name, is_hypertable, one, row
from .plan import HypertablePlan


def _seconds(value) -> float | None:
    return value.total_seconds() if isinstance(value, timedelta) else None


def interval_text(value) -> str:
    """A chunk interval as PostgreSQL writes one ("1 hour", "7 days"), not as Python does."""
    if not isinstance(value, timedelta):
        return str(value)
    total = int(value.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if total and total % size == 0:
            n = total // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return str(value)


def _convert_hint(schema: str, h: HypertablePlan) -> str:
    return (
        f"convert it again (SELECT create_hypertable('{display_name(schema, h.table)}', by_range('{h.time_column}', "
        f"INTERVAL '{h.chunk_interval}'), migrate_data => true), after making the primary key include "
        f"{h.time_column}) or restore the backup and run the execute suite"
    )


def hypertable_problems(conn: psycopg.Connection, schema: str, h: HypertablePlan) -> list[str]:
    """A hypertable on the planned time column with the planned chunk interval."""
    name = display_name(schema, h.table)
    if one(conn, "SELECT to_regclass(%s)", (name,)) is None:
        return [
            f"{name} does not exist; the plan says it is a hypertable on {h.time_column}: restore it from the backup"
        ]
    if not is_hypertable(conn, schema, h.table):
        return [
            f"{name} is a plain table, not a hypertable on {h.time_column} with {h.chunk_interval} chunks as planned: "
            + _convert_hint(schema, h)
        ]
    dimension = time_dimension(conn, schema, h.table)
    assert dimension is not None  # a hypertable always has its first dimension
    column, interval = dimension
    problems = []
    if column != h.time_column:
        problems.append(
            f"{name} is a hypertable on {column}, but the plan says {h.time_column}: a hypertable cannot "
            "change its time column; fix the plan or rebuild the table from the backup"
        )
    if _seconds(interval) != h.chunk_interval.seconds:
        problems.append(
            f"{name} has chunk interval {interval_text(interval)}, the plan says {h.chunk_interval}: run SELECT "
            f"set_chunk_time_interval('{name}', INTERVAL '{h.chunk_interval}') (new chunks only)"
        )
    return problems


def chunk_problems(conn: psycopg.Connection, schema: str, h: HypertablePlan) -> tuple[str, list[str]]:
    """Every row lies in a chunk, the chunks span the data's time range and have the planned width.

    Returns (a one-line account of the chunks, problems).
    """
    name = display_name(schema, h.table)
    if not is_hypertable(conn, schema, h.table):
        return "", [f"{name} is not a hypertable, so it has no chunks: " + _convert_hint(schema, h)]
    table, col = sql.Identifier(schema, h.table), sql.Identifier(h.time_column)
    in_parent = one(conn, sql.SQL("SELECT count(*) FROM ONLY {}").format(table))
    low, high, rows = row(conn, sql.SQL("SELECT min({c}), max({c}), count(*) FROM {t}").format(c=col, t=table))
    chunks = conn.execute(
        """SELECT range_start, range_end FROM timescaledb_information.chunks
                              WHERE hypertable_schema = %s AND hypertable_name = %s ORDER BY range_start""",
        (schema, h.table),
    ).fetchall()
    account = f"{name}: {rows} rows from {low} to {high} in {len(chunks)} chunks"
    problems = []
    if in_parent:
        problems.append(
            f"{name}: {in_parent} rows lie in the hypertable's parent table, outside any chunk (a conversion "
            "without migrate_data); move them: restore the backup and run the conversion again"
        )
    if rows and not chunks:
        problems.append(f"{name} holds {rows} rows but has no chunk")
    elif rows:

        def covered(t):
            return any(start <= t < end for start, end in chunks)

        for label, t in (("oldest", low), ("newest", high)):
            if not covered(t):
                problems.append(f"{name}: the {label} row ({h.time_column} = {t}) lies in no chunk")
        odd = [(s, e) for s, e in chunks if _seconds(e - s) != h.chunk_interval.seconds]
        # A chunk may be cut short where it meets one made with another interval; all of them is a mistake.
        if odd and len(odd) == len(chunks):
            problems.append(
                f"{name}: none of its {len(chunks)} chunks is {h.chunk_interval} wide as planned (the first "
                f"spans {odd[0][0]} to {odd[0][1]}): the data was chunked with another interval; rebuild "
                "the table from the backup with the planned interval"
            )
    return account, problems


def compression_settings_problems(conn: psycopg.Connection, schema: str, h: HypertablePlan) -> list[str]:
    name = display_name(schema, h.table)
    enabled = conn.execute(
        """SELECT compression_enabled FROM timescaledb_information.hypertables
                               WHERE hypertable_schema = %s AND hypertable_name = %s""",
        (schema, h.table),
    ).fetchone()
    if not enabled:
        return [f"{name} is not a hypertable, so it cannot be compressed: " + _convert_hint(schema, h)]
    fix = (
        f"ALTER TABLE {name} SET (timescaledb.compress, timescaledb.compress_segmentby = "
        f"'{', '.join(h.compress_segment_by)}', timescaledb.compress_orderby = '{', '.join(h.compress_order_by)}')"
    )
    if not enabled[0]:
        return [f"{name}: compression is not enabled; the plan asks for it: {fix}"]
    rows = conn.execute(
        """SELECT attname, segmentby_column_index, orderby_column_index, orderby_asc
                             FROM timescaledb_information.compression_settings
                            WHERE hypertable_schema = %s AND hypertable_name = %s""",
        (schema, h.table),
    ).fetchall()
    segment_by = [r[0] for r in sorted((r for r in rows if r[1] is not None), key=lambda r: r[1])]
    order_by = [(r[0], bool(r[3])) for r in sorted((r for r in rows if r[2] is not None), key=lambda r: r[2])]
    problems = []
    if tuple(segment_by) != tuple(h.compress_segment_by):
        problems.append(
            f"{name}: compression segments by ({', '.join(segment_by) or 'nothing'}), the plan says "
            f"({', '.join(h.compress_segment_by) or 'nothing'}): {fix}"
        )
    planned = [(i.column, i.ascending) for i in h.order_items]
    if planned and order_by[: len(planned)] != planned:
        shown = ", ".join(f"{c} {'ASC' if asc else 'DESC'}" for c, asc in order_by)
        problems.append(
            f"{name}: compression orders by ({shown or 'nothing'}), the plan says "
            f"({', '.join(h.compress_order_by)}): {fix}"
        )
    return problems


POLICIES = {
    # kind: (job procedure, config key, plan attribute, how to add it)
    "compression": ("policy_compression", "compress_after", "compress_after", "add_compression_policy"),
    "retention": ("policy_retention", "drop_after", "drop_after", "add_retention_policy"),
}


def policy_problems(conn: psycopg.Connection, schema: str, h: HypertablePlan, kind: str) -> tuple[str, list[str]]:
    """The compression or retention policy the plan asks for: its job exists, with the planned
    interval, and is scheduled. Returns (a one-line account of the job, problems)."""
    proc, key, attribute, add = POLICIES[kind]
    planned = getattr(h, attribute)
    name = display_name(schema, h.table)
    fix = f"SELECT {add}('{name}', INTERVAL '{planned}')"
    jobs = conn.execute(
        """SELECT j.job_id, j.scheduled, j.schedule_interval, j.config ->> %s,
                                  (j.config ->> %s)::interval = %s::interval,
                                  CASE WHEN isfinite(j.next_start) THEN j.next_start::text END, s.last_run_status
                             FROM timescaledb_information.jobs j
                             LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
                            WHERE j.proc_name = %s AND j.hypertable_schema = %s AND j.hypertable_name = %s
                            ORDER BY j.job_id""",
        (key, key, planned.text, proc, schema, h.table),
    ).fetchall()
    if not jobs:
        return "", [f"{name} has no {kind} policy; the plan asks for {key} {planned}: {fix}"]
    job_id, scheduled, every, value, as_planned, next_start, last_status = jobs[0]
    account = (
        f"{kind} policy of {name}: job {job_id}, {key} {value}, every {every}, "
        f"next run {next_start or 'not yet planned'}, last run {last_status or 'none yet'}"
    )
    problems = []
    if not as_planned:
        problems.append(
            f"{name}: its {kind} policy (job {job_id}) has {key} {value}, the plan says {planned}: "
            f"SELECT remove_{kind}_policy('{name}'); {fix}"
        )
    if not scheduled and job_id in paused_jobs(conn):
        account += " (paused by the conversion; the post-flight's last step schedules it once every check passed)"
    elif not scheduled:
        problems.append(
            f"{name}: its {kind} policy (job {job_id}) is paused (not scheduled): "
            f"SELECT alter_job({job_id}, scheduled => true)"
        )
    return account, problems
