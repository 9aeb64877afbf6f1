"""Online conversion: the hypertable is built beside the legacy table while the application writes, then swapped in.

1. Capture: a trigger on the legacy table records the key of every row inserted, updated or deleted (and a
   TRUNCATE) in ``tsmigrate."<table>_changes"``; its function is SECURITY DEFINER, so the application's
   roles need no grant.
2. Build: an empty table like the legacy one (columns, defaults on the same sequences, CHECK and NOT NULL,
   owner, grants, comments, row security), made a hypertable; keys that leave out the time column get it;
   the legacy indexes are copied (under names of their own until the swap). Where the rows fall into many
   chunks (history.key_before_copy: a primary key added to a hypertable costs time growing with the square of
   its chunks), the keys are created now, on the empty hypertable.
3. Copy: the legacy heap in block ranges, each range its own short transaction, on several connections.
   Nothing is locked beyond what a reader takes; a killed copy leaves only our own objects, which the next
   attempt drops. A row the application updates meanwhile may be met twice (its new version in a later range).
   With the keys in place the copy skips the second (``ON CONFLICT DO NOTHING``). Without them (few chunks)
   it is a plain INSERT (2,000,000 rows in 11 chunks: 1.3 s, against 5-6 s keeping the key up to date), then
   one replay round with no limit, its snapshot taken after the copy, replays every change logged by then by
   a hash join over the chunks (each key met twice is among them: its update committed before the later
   range was read, so before the copy ended), and the keys are built in bulk (2.2-2.5 s in all).
   The other indexes are built after the copy either way.
4. Catch up: the keys changed meanwhile are replayed (delete by key, copy the row as it is now) until the
   backlog is small, then in rounds until a handful are left for the swap's lock. A round replays the changes
   its snapshot sees and deletes exactly those from the log: change ids are taken before commit, so one that
   commits late with a low id is left for the next round (or the swap's), not skipped by a watermark.
5. Swap: one short transaction under a short lock timeout, retried: lock the legacy table, replay the rest,
   rename both tables and their indexes, move sequence ownership, the application's triggers and the
   dependent views to the new table, record the step. Application statements that waited for the lock
   resolve the name again and land in the hypertable.
6. After: triggers on the hypertable keep recording the keys the application updates and deletes, and those it
   inserts at or below a watermark (armed before the swap's lock; inserts above it are taken by range), so
   :func:`swap_back` can undo the conversion in seconds, and :func:`verify` compares the legacy table (now still)
   with the hypertable at the cost of one hashing pass over each: a row count and an order-independent sum of
   64-bit row hashes per side, which misses a difference with a probability of about 2^-64 (the post-flight
   fingerprints' standard); only a difference found is joined row by row, to name its keys. :func:`drop_legacy`
   ends it once the post-flight passed.

The state of each conversion is a row of ``tsmigrate.online_conversions``. The offline conversion uses the same
pieces with the table locked throughout, in one transaction (convert/offline.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ...db import insertable_columns, one, regclass
from ...plan import HypertablePlan
from ...tool_objects import OWN_SCHEMA
from ..catalog import hypertable_chunks, keys_rebuilt, refuse_what_timescaledb_cannot_keep
from ..history import expected_chunks_and_rows, key_before_copy
from ..nulltime import fill_nulls
from ..policies import apply_policies
from ..result import ConversionError, ConversionResult, phase
from .build import (
    CHUNKS_PER_TRANSACTION,
    add_foreign_keys,
    copy,
    create_beside,
    create_indexes,
    create_indexes_in_parallel,
    planned_indexes,
)
from .capture import (
    arm_capture_back,
    catch_up_round,
    key_columns,
    recorded_columns,
    start_capture,
    with_lock_retries,
)
from .state import STATE_DDL, Names, PhaseHook, discard_unfinished, no_hook
from .swap import check_views_can_move, name_indexes_early, split_renames, swap_in, unname_indexes_early, verify

log = logging.getLogger(__name__)


@dataclass
class OnlineReport:
    """What the online path did, for the step's details and the benchmark."""

    copied: int = 0
    replayed: int = 0
    rounds: int = 0
    swap_attempts: int = 0
    swap_seconds: float = 0.0  # the lock, from granted to committed: the application's statements on the table wait
    swap_replayed: int = 0  # keys replayed under the lock
    swap_steps_ms: dict = field(default_factory=dict)  # where the locked transaction spent its time
    copy_seconds: float = 0.0
    keys_after_copy: bool = False  # the keys were built once the rows were in (few chunks), not before the copy
    verified_rows: int = 0
    legacy_table: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


# -- the whole path ------------------------------------------------------------------------------------
def convert_online(
    connect: Callable[[], psycopg.Connection],
    conn: psycopg.Connection,
    schema: str,
    h: HypertablePlan,
    *,
    has_compression: bool,
    own_xids: set[int],
    on_swapped: Callable[[psycopg.Connection], None] | None = None,
    workers: int = 2,
    batch_rows: int = 250_000,
    small_backlog: int = 2_000,
    swap_backlog: int = 100,
    max_rounds: int = 50,
    lock_timeout_ms: int = 300,
    swap_attempts: int = 30,
    on_phase: PhaseHook = no_hook,
) -> ConversionResult:
    """Convert one planned table online. ``conn`` is an autocommit connection of the run; ``connect`` opens more
    for the copy. ``on_swapped(conn)`` runs inside the swap transaction (the ledger records the step there)."""
    started = time.monotonic()
    names = Names(schema, h.table)
    result = ConversionResult(table=f"{schema}.{h.table}")
    report = OnlineReport(legacy_table=f"{schema}.{names.legacy}")
    refuse_what_timescaledb_cannot_keep(conn, schema, h, has_compression)
    check_views_can_move(conn, names)
    conn.execute(STATE_DDL)
    discard_unfinished(conn, names)
    typed_keys = key_columns(conn, names)
    keys = [k for k, _ in typed_keys]
    with conn.transaction():
        conn.execute(
            f"INSERT INTO {OWN_SCHEMA}.online_conversions (table_schema, table_name, new_name, legacy_name, "
            "state) VALUES (%s, %s, %s, %s, 'building')",
            (schema, h.table, names.new, names.legacy),
        )
    with phase(result.phases, "capture"):
        start_capture(
            conn, names, recorded_columns(conn, names, typed_keys, h.time_column), lock_timeout_ms, swap_attempts
        )
    on_phase("capturing", conn)
    with conn.transaction():  # NULL times get the plan's rule in the legacy table itself (recorded, captured)
        result.nulls_filled = fill_nulls(conn, schema, h, keys)
        own_xids.add(int(one(conn, "SELECT pg_current_xact_id()::text")))
    # The keys first, kept up to date by the copy (which skips rows it meets twice by them), only where building
    # them once the rows are in would cost more: a primary key added to a hypertable costs time growing with the
    # square of its chunks. An unknown time range keeps them first.
    chunks, rows = expected_chunks_and_rows(conn, schema, h)
    keys_first = chunks is None or key_before_copy(chunks, rows)
    report.keys_after_copy = not keys_first
    with phase(result.phases, "hypertable beside, its keys" if keys_first else "hypertable beside"):
        with conn.transaction():
            create_beside(conn, names, h, names.legacy)
            planned = planned_indexes(conn, names, h)
            key_indexes = [i for i in planned if i.key]
            # The other indexes are built once the rows are in, which costs less than keeping them up to date row
            # by row.
            if keys_first:
                create_indexes(conn, key_indexes)
            renames = [i.rename() for i in planned]
            conn.execute(
                f"UPDATE {OWN_SCHEMA}.online_conversions SET index_renames = %s::jsonb "
                "WHERE table_schema = %s AND table_name = %s",
                (Jsonb(renames), schema, h.table),
            )
    result.keys_rebuilt = keys_rebuilt(conn, regclass(schema, h.table), h.time_column)
    columns = insertable_columns(conn, schema, h.table)
    t0 = time.monotonic()
    # A history of more chunks than one transaction should create is copied in windows of time (build.copy).
    many_chunks = chunks is None or chunks > CHUNKS_PER_TRANSACTION
    with phase(result.phases, "chunks and copy"):
        report.copied = copy(
            connect,
            names,
            columns,
            workers=workers,
            batch_rows=batch_rows,
            own_xids=own_xids,
            on_phase=on_phase,
            time_column=h.time_column if many_chunks else None,
            chunk_seconds=h.chunk_interval.seconds,
            skip_duplicates=keys_first,
        )
    report.copy_seconds = time.monotonic() - t0
    if not keys_first:
        # Without keys the copy took a row the application updated meanwhile twice when its new version lay in a
        # later block range, copied after the update committed: so before the copy ended, and its key is in the
        # change log. One round, its snapshot taken now and without a limit, replays every change logged so far
        # (delete by key, every copy; insert the row as it is now): no key is then held twice, and the keys can
        # be built.
        with phase(result.phases, "replay before the keys"):
            replayed, _ = catch_up_round(conn, names, h, keys, columns, limit=None, own_xids=own_xids, unindexed=True)
            report.rounds += 1
            report.replayed += replayed
        on_phase("replayed before the keys", conn)
        with phase(result.phases, "keys after the copy"), conn.transaction():
            create_indexes(conn, key_indexes)
    # Each in transactions of its own, chunk by chunk where it can (nothing shows the new table yet): the locks
    # held at once are a chunk's, not the history's. Different indexes build at once on ``workers`` connections.
    with phase(result.phases, "index builds"):
        create_indexes_in_parallel(connect, [i for i in planned if not i.key], workers)
    with phase(result.phases, "foreign keys"), conn.transaction():
        added = add_foreign_keys(conn, names)
    with phase(result.phases, "analyze"):
        conn.execute(sql.SQL("ANALYZE {}").format(names.ident(names.new)))  # outside a transaction: chunk by chunk
    log.info(
        "%s: %d rows copied beside it in %.1f s; %d foreign keys checked",
        result.table,
        report.copied,
        report.copy_seconds,
        added,
    )

    def catch_up(backlog_left: int = small_backlog) -> None:
        for _ in range(max_rounds):
            replayed, backlog = catch_up_round(conn, names, h, keys, columns, limit=100_000, own_xids=own_xids)
            report.rounds += 1
            report.replayed += replayed
            if backlog <= backlog_left:
                return
        log.warning(
            "%s: the application changes rows faster than they are replayed; swapping with a backlog", result.table
        )

    with phase(result.phases, "catch up"):
        catch_up()
    on_phase("caught up", conn)
    capture_back_mark = arm_capture_back(conn, names, h, keys)
    early_renames, late_renames = split_renames(conn, names, renames)
    with_lock_retries(
        conn,
        names,
        f"{schema}.{h.table}: naming the new table's indexes",
        lock_timeout_ms,
        swap_attempts,
        lambda: name_indexes_early(conn, names, early_renames),
    )

    def swap() -> tuple[float, int]:
        report.swap_attempts += 1
        report.swap_steps_ms = {}
        return swap_in(
            conn,
            names,
            h,
            keys,
            columns,
            late_renames,
            on_swapped=on_swapped,
            own_xids=own_xids,
            on_phase=on_phase,
            capture_back_mark=capture_back_mark,
            steps_ms=report.swap_steps_ms,
        )

    def swap_with_retries() -> float:
        for attempt in (1, 2):
            try:
                locked_at, report.swap_replayed = with_lock_retries(
                    conn,
                    names,
                    f"{schema}.{h.table}: swapping in the hypertable",
                    lock_timeout_ms,
                    swap_attempts,
                    swap,
                    between=lambda: catch_up(swap_backlog),
                )
                return locked_at
            except psycopg.errors.NotNullViolation:
                if attempt == 2:
                    raise
                catch_up(swap_backlog)  # a row without a time value came in just before the swap: the round fills it
        raise AssertionError("unreachable")

    try:
        # What is replayed under the lock is what came in since the last round: rounds until that is a handful.
        catch_up(swap_backlog)
        locked_at = swap_with_retries()
    except (ConversionError, psycopg.errors.NotNullViolation):
        unname_indexes_early(conn, names, early_renames)
        raise
    report.swap_seconds = time.monotonic() - locked_at  # the commit released the lock
    report.swap_steps_ms["commit"] = round(1000 * report.swap_seconds - sum(report.swap_steps_ms.values()), 1)
    log.info(
        "%s: swapped in the hypertable; the table was locked for %.0f ms. The legacy table is kept as %s",
        result.table,
        1000 * report.swap_seconds,
        report.legacy_table,
    )
    result.phases["swap"] = round(report.swap_seconds, 3)
    with phase(result.phases, "policies"), conn.transaction():
        apply_policies(conn, schema, h, has_compression, result)
    with phase(result.phases, "verify"):
        report.verified_rows, differing = verify(conn, schema, h.table)
    if differing:
        raise ConversionError(
            f"{result.table}: after the swap, rows differ from the legacy table "
            f"{report.legacy_table} (keys {', '.join(differing)}); undo with "
            "`python -m tsmigrate.online swap-back` (README: Online conversion)"
        )
    result.rows = report.verified_rows
    result.chunks = hypertable_chunks(conn, schema, h.table)
    result.seconds = time.monotonic() - started
    result.rows_per_second = report.copied / report.copy_seconds if report.copy_seconds > 0 else 0.0
    result.online = report.to_dict()
    return result
