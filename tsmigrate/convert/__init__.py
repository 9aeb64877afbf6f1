"""Turning a planned table into a hypertable: one package, layered (imports only go down).

- ``result``: ConversionResult, ConversionError, plan_sha256.
- ``catalog``: the catalog questions both paths ask (keys, foreign keys, time dimension, chunks, lock holders).
- ``history``: the time range of a table's rows and the chunks it spans.
- ``nulltime``: NULL time values given the plan's rule, each fill recorded.
- ``policies``: compression settings, compression and retention policies (created paused).
- ``online/``: the online path (state, build, capture, swap, driver) and its command.
- ``offline``: the offline path, the table locked in the caller's transaction (it reuses online's build and swap).
- here: :func:`convert`, the one entry point, which picks the path.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from ..plan import HypertablePlan
from .offline import analyze_after_commit, convert_table
from .online import chooses_online, convert_online
from .result import ConversionError, ConversionResult, phase, plan_sha256

__all__ = ["ConversionError", "ConversionResult", "convert", "convert_online", "convert_table", "plan_sha256"]

# Called in the transaction that makes the conversion visible (the ledger records the step there), with the result
# where it is known by then (offline), None where it is not yet (online: the swap comes before verification).
OnConverted = Callable[[psycopg.Connection, ConversionResult | None], None]


def convert(
    connect: Callable[[], psycopg.Connection],
    conn: psycopg.Connection,
    schema: str,
    h: HypertablePlan,
    *,
    has_compression: bool,
    own_xids: set[int],
    online_above_rows: int,
    on_converted: OnConverted,
    rows_per_second: float | None = None,
    jobs: int = 2,
) -> ConversionResult:
    """Convert one planned table, online or offline as the plan and its size say (online.state.chooses_online).
    ``conn`` is an autocommit connection; ``connect`` opens up to ``jobs`` more for the online copy and index builds
    (the offline path works in the caller's one transaction, which other connections cannot see into)."""
    if chooses_online(conn, schema, h, online_above_rows):
        return convert_online(
            connect,
            conn,
            schema,
            h,
            has_compression=has_compression,
            own_xids=own_xids,
            on_swapped=lambda c: on_converted(c, None),
            workers=jobs,
        )
    with conn.transaction():
        result = convert_table(conn, schema, h, has_compression=has_compression, rows_per_second=rows_per_second)
        on_converted(conn, result)
    if not result.already_hypertable:
        with phase(result.phases, "analyze, after the commit"):
            analyze_after_commit(conn, schema, h.table)
    return result
