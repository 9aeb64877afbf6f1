"""Compression settings and the compression and retention policies of a hypertable, as the plan says.

Policies are created paused: their first run waits for the post-flight (see pause_until_verified).
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from ..db import one, row
from ..db import regclass as regclass_of
from ..plan import HypertablePlan
from ..timescale import APACHE_LACKS
from ..tool_objects import OWN_SCHEMA
from .result import ConversionResult

log = logging.getLogger("tsmigrate.conversion")


def compression_settings(
    conn: psycopg.Connection, schema: str, table: str
) -> tuple[bool, list[str], list[tuple[str, bool, bool]]]:
    """Whether compression is enabled on the hypertable, its segment-by columns and its order-by items."""
    enabled = one(
        conn,
        """SELECT compression_enabled FROM timescaledb_information.hypertables
                             WHERE hypertable_schema = %s AND hypertable_name = %s""",
        (schema, table),
    )
    rows = conn.execute(
        """SELECT attname, segmentby_column_index, orderby_column_index, orderby_asc, orderby_nullsfirst
                             FROM timescaledb_information.compression_settings
                            WHERE hypertable_schema = %s AND hypertable_name = %s""",
        (schema, table),
    ).fetchall()
    segment_by = [r[0] for r in sorted((r for r in rows if r[1] is not None), key=lambda r: r[1])]
    order_by = [
        (r[0], bool(r[3]), bool(r[4])) for r in sorted((r for r in rows if r[2] is not None), key=lambda r: r[2])
    ]
    return bool(enabled), segment_by, order_by


# kind: (job procedure, config key, function that adds the policy, function that removes it)
POLICIES = {
    "compression": ("policy_compression", "compress_after", "add_compression_policy", "remove_compression_policy"),
    "retention": ("policy_retention", "drop_after", "add_retention_policy", "remove_retention_policy"),
}


def ensure_policy(conn: psycopg.Connection, schema: str, table: str, kind: str, interval) -> str:
    """Make the table's compression or retention policy the planned one; say what was done.

    ``add_*_policy(if_not_exists => true)`` keeps an existing policy with other arguments (a WARNING
    only), so a changed plan would silently not apply: an existing policy as planned is left alone,
    one with another interval is replaced.
    """
    proc, key, add, remove = POLICIES[kind]
    regclass = regclass_of(schema, table)
    jobs = conn.execute(
        """SELECT job_id, config ->> %s,
                                  coalesce(jsonb_typeof(config -> %s) = 'string'
                                           AND (config ->> %s)::interval = %s::interval, false)
                             FROM timescaledb_information.jobs
                            WHERE proc_name = %s AND hypertable_schema = %s AND hypertable_name = %s
                            ORDER BY job_id""",
        (key, key, key, interval.text, proc, schema, table),
    ).fetchall()
    if len(jobs) == 1 and jobs[0][2]:
        pause_until_verified(conn, jobs[0][0])
        return f"policy job {jobs[0][0]} already as planned, paused until the post-flight passes"
    replaced = ""
    if jobs:
        conn.execute(sql.SQL("SELECT {}(%s::regclass)").format(sql.Identifier(remove)), (regclass,))
        replaced = f", replacing job {jobs[0][0]} ({key} {jobs[0][1] or 'not an interval'})"
        log.info(
            "%s.%s: %s policy job %s had %s %s, the plan says %s: replaced",
            schema,
            table,
            kind,
            jobs[0][0],
            key,
            jobs[0][1],
            interval,
        )
    job_id = one(
        conn,
        sql.SQL("SELECT {}(%s::regclass, {} => %s::interval)").format(sql.Identifier(add), sql.Identifier(key)),
        (regclass, interval.text),
    )
    pause_until_verified(conn, job_id)
    return f"policy job {job_id}{replaced}, paused until the post-flight passes"


PAUSED_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {OWN_SCHEMA};
CREATE TABLE IF NOT EXISTS {OWN_SCHEMA}.paused_jobs (
    job_id    integer PRIMARY KEY,
    paused_at timestamptz NOT NULL DEFAULT now()
);
"""


def pause_until_verified(conn: psycopg.Connection, job_id: int) -> None:
    """A policy's first run waits for the post-flight: a compression job racing the checks can deadlock them,
    and a retention job would drop rows before they are counted. The post-flight schedules it once every
    check passed (:func:`schedule_paused_jobs`)."""
    conn.execute("SELECT alter_job(%s, scheduled => false)", (job_id,))
    conn.execute(PAUSED_DDL)
    conn.execute(f"INSERT INTO {OWN_SCHEMA}.paused_jobs (job_id) VALUES (%s) ON CONFLICT DO NOTHING", (job_id,))


def paused_jobs(conn: psycopg.Connection) -> list[int]:
    if one(conn, "SELECT to_regclass(%s)", (f"{OWN_SCHEMA}.paused_jobs",)) is None:
        return []
    return [r[0] for r in conn.execute(f"SELECT job_id FROM {OWN_SCHEMA}.paused_jobs ORDER BY job_id").fetchall()]


def schedule_paused_jobs(conn: psycopg.Connection) -> list[str]:
    """Schedule the policy jobs the conversion paused; returns, per job, what it does and when it first runs."""
    scheduled = []
    for job_id in paused_jobs(conn):
        with conn.transaction():
            row = conn.execute(
                """SELECT proc_name, hypertable_schema, hypertable_name, schedule_interval
                                    FROM timescaledb_information.jobs WHERE job_id = %s""",
                (job_id,),
            ).fetchone()
            if row is not None:
                # A paused job has no next start (-infinity): it is given one, now, so the report can say when.
                next_start = one(
                    conn,
                    "SELECT next_start::text FROM alter_job(%s, scheduled => true, next_start => now())",
                    (job_id,),
                )
                proc, schema, table, every = row
                scheduled.append(f"job {job_id} ({proc} on {schema}.{table}, every {every}): first run at {next_start}")
            conn.execute(f"DELETE FROM {OWN_SCHEMA}.paused_jobs WHERE job_id = %s", (job_id,))
    return scheduled


def retention_drops(conn: psycopg.Connection, schema: str, h: HypertablePlan) -> tuple[int, object, object]:
    """(rows, oldest, newest) of the rows the first retention run drops (older than drop_after)."""
    if h.drop_after is None:
        return 0, None, None
    count, oldest, newest = row(
        conn,
        sql.SQL("SELECT count(*), min({c}), max({c}) FROM {t} WHERE {c} < now() - {i}::interval").format(
            t=sql.Identifier(schema, h.table), c=sql.Identifier(h.time_column), i=sql.Literal(h.drop_after.text)
        ),
    )
    return count, oldest, newest


def apply_policies(
    conn: psycopg.Connection, schema: str, h: HypertablePlan, has_compression: bool, result: ConversionResult
) -> None:
    """Compression settings, compression policy and retention policy as planned (community edition).

    Idempotent: what is already as planned is left alone, what differs is changed (a re-run after a
    plan change applies the change).
    """
    if h.wants_compression:
        if not has_compression:
            result.compression = f"skipped: this server's TimescaleDB is the apache edition (no {APACHE_LACKS})"
        else:
            enabled, segment_by, order_by = compression_settings(conn, schema, h.table)
            planned_order = [(i.column, i.ascending, i.nulls_first) for i in h.order_items]
            as_planned = (
                enabled
                and (not h.compress_segment_by or segment_by == list(h.compress_segment_by))
                and (not planned_order or order_by == planned_order)
            )
            notes = []
            if not as_planned:
                options: list[sql.Composable] = [sql.SQL("timescaledb.compress")]
                if h.compress_segment_by:
                    options.append(
                        sql.SQL("timescaledb.compress_segmentby = {}").format(
                            sql.Literal(", ".join(sql.Identifier(c).as_string(None) for c in h.compress_segment_by))
                        )
                    )
                if h.compress_order_by:
                    options.append(
                        sql.SQL("timescaledb.compress_orderby = {}").format(
                            sql.Literal(", ".join(i.as_sql() for i in h.order_items))
                        )
                    )
                conn.execute(
                    sql.SQL("ALTER TABLE {} SET ({})").format(
                        sql.Identifier(schema, h.table), sql.SQL(", ").join(options)
                    )
                )
                if enabled:
                    compressed = one(
                        conn,
                        """SELECT count(*) FROM timescaledb_information.chunks
                                                WHERE hypertable_schema = %s AND hypertable_name = %s
                                                  AND is_compressed""",
                        (schema, h.table),
                    )
                    notes.append(
                        "settings changed"
                        + (
                            f" (the {compressed} chunks compressed before keep their old settings until decompressed)"
                            if compressed
                            else ""
                        )
                    )
            else:
                notes.append("settings already as planned")
            if h.compress_after:
                notes.append(ensure_policy(conn, schema, h.table, "compression", h.compress_after))
            result.compression = (f"enabled, compress after {h.compress_after}" if h.compress_after else "enabled") + (
                f" ({'; '.join(notes)})" if notes else ""
            )
    if h.wants_retention:
        if not has_compression:  # retention policies come with the same (community) edition
            result.retention = f"skipped: this server's TimescaleDB is the apache edition (no {APACHE_LACKS})"
        else:
            done = ensure_policy(conn, schema, h.table, "retention", h.drop_after)
            result.retention = f"drop chunks older than {h.drop_after} ({done})"
