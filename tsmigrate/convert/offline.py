"""The offline path: a table made a hypertable in the caller's transaction, the table locked throughout.

1. NULL time values get the plan's rule (nulltime.py).
2. A hypertable is built beside it and takes its name: the rows are read once, into chunks of a hypertable that has
   no index yet; the indexes are then built in bulk, chunk by chunk (at production density, a fraction of what
   keeping them up to date row by row costs; except a primary key over many chunks, which goes first: see
   key_before_copy), the foreign keys checked once, and the hypertable takes the table's
   name and all that goes with it (online/swap.py move_name). A primary key or unique constraint that leaves out the
   time column gets it, under the same name (TimescaleDB requires it); columns whose values the application looks
   up (``keep_unique``, e.g. the bigserial id) are found through the rebuilt key where they lead it, else through
   an index of their own. The legacy table is dropped in the same
   transaction: nothing is visible to others before the commit, and a failure rolls all of it back. The table's
   statistics are gathered after the commit (:func:`analyze_after_commit`), while the application works.
3. Compression settings and policies and retention policies where the edition has them (policies.py); otherwise
   they are recorded as skipped, with the reason.
A table that is already a hypertable is recognised and left as it is.
"""

from __future__ import annotations

import logging
import time

import psycopg
from psycopg import sql

from ..db import insertable_columns, is_hypertable, one, timescaledb_version
from ..db import regclass as regclass_of
from ..plan import HypertablePlan
from ..progress import heartbeat
from .catalog import (
    hypertable_chunks,
    keys_rebuilt,
    lock_holders,
    primary_key_columns,
    referencing_foreign_keys,
    refuse_what_timescaledb_cannot_keep,
    time_dimension,
    yield_autovacuum,
)
from .history import expected_chunks_and_rows, key_before_copy
from .nulltime import fill_nulls
from .online.build import add_foreign_keys, copy, create_beside, create_indexes, planned_indexes
from .online.state import Names, aside, discard_unfinished, no_hook
from .online.swap import check_views_can_move, checked_application_triggers, move_name
from .policies import apply_policies
from .result import ConversionError, ConversionResult, phase

log = logging.getLogger("tsmigrate.conversion")


def lock_for_conversion(
    conn: psycopg.Connection, schema: str, table: str, *, attempts: int = 5, timeout_s: int = 5
) -> None:
    """ACCESS EXCLUSIVE on the table before anything is counted or copied: rows written meanwhile would be
    lost or miscounted. Each attempt waits ``timeout_s``; then the message names who holds it."""
    ident = sql.Identifier(schema, table)
    for attempt in range(1, attempts + 1):
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{timeout_s}s")))
                # PostgreSQL would cancel it too, after deadlock_timeout, unless that is set above timeout_s.
                if vacuums := yield_autovacuum(conn, [regclass_of(schema, table)]):
                    log.info(
                        "%s.%s: cancelled autovacuum (pid %s) on the table", schema, table, ", ".join(map(str, vacuums))
                    )
                conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(ident))
            conn.execute("SET LOCAL lock_timeout = '60s'")
            return
        except psycopg.errors.LockNotAvailable:
            who = lock_holders(conn, schema, table)
            if attempt == attempts:
                raise ConversionError(
                    f"{schema}.{table}: could not lock the table for its conversion ({attempts} tries of "
                    f"{timeout_s} s); held by {who}. Stop that session (pg_terminate_backend(pid)) or wait for it, "
                    "then run again."
                ) from None
            log.warning("%s.%s: waiting for a lock held by %s (try %d of %d)", schema, table, who, attempt, attempts)


def convert_locked(
    conn: psycopg.Connection,
    schema: str,
    h: HypertablePlan,
    *,
    rows_per_second: float | None = None,
    batch_rows: int = 500_000,
    phases: dict[str, float] | None = None,
) -> tuple[int, list[str]]:
    """Within the caller's transaction, the table locked: make it a hypertable. Returns the rows it holds and the
    dependent views recreated; ``phases`` gets the seconds each phase took."""
    phases = {} if phases is None else phases
    names = Names(schema, h.table)
    what = f"{schema}.{h.table}"
    discard_unfinished(conn, names)  # an online attempt that died before its swap (the plan may have changed)
    triggers = checked_application_triggers(conn, names)
    check_views_can_move(conn, names)
    legacy_to = aside(h.table, "_tsm_old")
    with phase(phases, "hypertable beside"):
        create_beside(conn, names, h, legacy_to)
    planned = planned_indexes(conn, names, h)
    columns = insertable_columns(conn, schema, h.table)
    chunks, rows = expected_chunks_and_rows(conn, schema, h)
    first = [i for i in planned if i.primary] if chunks is not None and key_before_copy(chunks, rows) else []
    log.info(
        "%s: creating hypertable on %s, chunk interval %s, copying the rows into chunks%s",
        what,
        h.time_column,
        h.chunk_interval,
        f" (about {chunks} chunks: the primary key first, kept up to date by the copy)" if first else "",
    )
    after = [i for i in planned if i not in first]
    if first:
        with phase(phases, "primary key before the copy"):
            create_indexes(conn, first)
    # Block ranges from the first block to past the last: every row of the locked table is read exactly once,
    # so the rows copied are the table's count.
    with phase(phases, "chunks and copy"):
        moved = copy(
            None, names, columns, workers=1, batch_rows=batch_rows, own_xids=set(), on_phase=no_hook, within=conn
        )
    expected = moved / rows_per_second / 2 if rows_per_second else None
    with (
        phase(phases, "index builds"),
        heartbeat(log, f"{what}: building {len(after)} indexes on the hypertable", expected_seconds=expected),
    ):
        create_indexes(conn, after)
    with phase(phases, "foreign keys"), heartbeat(log, f"{what}: checking its foreign keys", expected_seconds=None):
        add_foreign_keys(conn, names)
    with phase(phases, "swap"):
        views = move_name(conn, names, [i.rename() for i in planned], triggers, legacy_to=legacy_to)
    try:
        with phase(phases, "drop legacy"), conn.transaction():
            conn.execute(sql.SQL("DROP TABLE {}").format(names.ident(legacy_to)))
    except psycopg.errors.DependentObjectsStillExist as exc:
        raise ConversionError(
            f"{what}: other objects depend on the table and cannot move to the hypertable "
            f"({exc.diag.message_detail or exc}); drop them before converting, and create them "
            "again afterwards"
        ) from None
    return moved, views


def analyze_after_commit(conn: psycopg.Connection, schema: str, table: str) -> None:
    """Statistics of a converted table, once its conversion has committed (``conn`` in autocommit). ANALYZE takes
    SHARE UPDATE EXCLUSIVE, which keeps no reader or writer out, so the application does not wait for it as it would
    inside the locked transaction; outside a transaction block, TimescaleDB analyzes the chunks one transaction each.
    A run stopped before it ends leaves the statistics to autovacuum: every chunk's rows count as inserted since its
    last analyze, which is over autovacuum's threshold."""
    conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, table)))


def convert_table(
    conn: psycopg.Connection,
    schema: str,
    h: HypertablePlan,
    *,
    has_compression: bool,
    rows_per_second: float | None = None,
    batch_rows: int = 500_000,
) -> ConversionResult:
    """Convert one planned table (the caller owns the transaction)."""
    started = time.monotonic()
    result = ConversionResult(table=f"{schema}.{h.table}")
    regclass = regclass_of(schema, h.table)
    if one(conn, "SELECT to_regclass(%s)", (regclass,)) is None:
        raise ConversionError(
            f"table {schema}.{h.table} named in plan.toml does not exist in the target database; "
            "fix the table name in the plan or run the migration that creates it"
        )
    if timescaledb_version(conn) is None:
        raise ConversionError(
            "the timescaledb extension is not created in the target database; a migration "
            "must run CREATE EXTENSION timescaledb before the conversion steps"
        )
    if is_hypertable(conn, schema, h.table):
        column, interval = time_dimension(conn, schema, h.table) or (None, None)
        if column != h.time_column:
            raise ConversionError(
                f"{schema}.{h.table} is already a hypertable on column {column}, but the plan says "
                f"{h.time_column}; a hypertable cannot change its time column: fix the plan"
            )
        result.already_hypertable = True
        log.info(
            "%s is already a hypertable on %s (chunk interval %s); leaving it as it is", result.table, column, interval
        )
        apply_policies(conn, schema, h, has_compression, result)
        result.seconds = time.monotonic() - started
        return result

    column_type = one(
        conn,
        """SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                                 WHERE attrelid = %s::regclass AND attname = %s AND NOT attisdropped""",
        (regclass, h.time_column),
    )
    if column_type is None:
        raise ConversionError(f"{schema}.{h.table} has no column {h.time_column} (the plan's time_column)")
    if column_type not in ("timestamp with time zone", "timestamp without time zone", "date"):
        raise ConversionError(
            f"{schema}.{h.table}.{h.time_column} is {column_type}; a time column must be timestamptz, timestamp or date"
        )
    foreign = referencing_foreign_keys(conn, regclass)
    if foreign:
        raise ConversionError(
            f"{schema}.{h.table} is referenced by foreign keys from {', '.join(foreign)}; "
            "TimescaleDB cannot keep them on a hypertable: drop them (or point them elsewhere) first"
        )

    refuse_what_timescaledb_cannot_keep(conn, schema, h, has_compression)
    lock_for_conversion(conn, schema, h.table)
    key_columns = primary_key_columns(conn, regclass)
    result.nulls_filled = fill_nulls(conn, schema, h, key_columns)

    result.keys_rebuilt = keys_rebuilt(conn, regclass, h.time_column)
    t0 = time.monotonic()
    result.rows, result.views_recreated = convert_locked(
        conn, schema, h, rows_per_second=rows_per_second, batch_rows=batch_rows, phases=result.phases
    )
    elapsed = time.monotonic() - t0
    result.rows_per_second = result.rows / elapsed if elapsed > 0 else 0.0
    log.info(
        "%s: %d rows converted in %.1f s (%.0f rows/s)", result.table, result.rows, elapsed, result.rows_per_second
    )
    with phase(result.phases, "policies"):
        apply_policies(conn, schema, h, has_compression, result)
    result.chunks = hypertable_chunks(conn, schema, h.table)
    result.seconds = time.monotonic() - started
    return result
