"""The build-beside conversion with the table locked throughout, in the caller's transaction: how a table converts
when the application is kept out (offline).

The rows are read once, into chunks of a hypertable that has no index yet; the indexes are then built in bulk,
chunk by chunk (at production density, a fraction of what keeping them up to date row by row costs), the foreign
keys checked once, and the hypertable takes the table's name and all that goes with it (see swap.move_name). The
legacy table is dropped in the same transaction: nothing is visible to others before the commit, and a failure
rolls all of it back.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from ..plan import HypertablePlan
from ..conversion import ConversionError, _insertable_columns
from ..db import regclass
from ..progress import heartbeat
from .build import add_foreign_keys, copy, create_beside, create_indexes, planned_indexes
from .state import Names, aside, discard_unfinished, no_hook
from .swap import check_views_can_move, checked_application_triggers, move_name

log = logging.getLogger("tsmigrate.conversion")


def convert_locked(conn: psycopg.Connection, schema: str, h: HypertablePlan, *,
                   rows_per_second: float | None = None, batch_rows: int = 500_000) -> tuple[int, list[str]]:
    """Within the caller's transaction, the table locked: make it a hypertable. Returns the rows it holds and the
    dependent views recreated."""
    names = Names(schema, h.table)
    what = f"{schema}.{h.table}"
    discard_unfinished(conn, names)   # an online attempt that died before its swap (the plan may have changed)
    triggers = checked_application_triggers(conn, names)
    check_views_can_move(conn, names)
    legacy_to = aside(h.table, "_tsm_old")
    create_beside(conn, names, h, legacy_to)
    planned = planned_indexes(conn, names, h)
    columns = _insertable_columns(conn, regclass(schema, h.table))
    log.info("%s: creating hypertable on %s, chunk interval %s, copying the rows into chunks", what, h.time_column,
             h.chunk_interval)
    # Block ranges from the first block to past the last: every row of the locked table is read exactly once,
    # so the rows copied are the table's count.
    moved = copy(None, names, columns, workers=1, batch_rows=batch_rows, own_xids=set(), on_phase=no_hook,
                 within=conn)
    expected = moved / rows_per_second / 2 if rows_per_second else None
    with heartbeat(log, f"{what}: building {len(planned)} indexes on the hypertable", expected_seconds=expected):
        create_indexes(conn, planned)
    with heartbeat(log, f"{what}: checking its foreign keys", expected_seconds=None):
        add_foreign_keys(conn, names)
    views = move_name(conn, names, [i.rename() for i in planned], triggers, legacy_to=legacy_to, capture_back=False)
    try:
        with conn.transaction():
            conn.execute(sql.SQL("DROP TABLE {}").format(names.ident(legacy_to)))
    except psycopg.errors.DependentObjectsStillExist as exc:
        raise ConversionError(f"{what}: other objects depend on the table and cannot move to the hypertable "
                              f"({exc.diag.message_detail or exc}); drop them before converting, and create them "
                              "again afterwards") from None
    conn.execute(sql.SQL("ANALYZE {}").format(names.ident(h.table)))
    return moved, views
