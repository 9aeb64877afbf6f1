"""Where an online conversion stands (``tsmigrate.online_conversions``), the names it uses, and which tables take it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ...db import is_hypertable, one, regclass
from ...plan import HypertablePlan
from ...tool_objects import BUILD_SUFFIX, CAPTURE_TRIGGER, OWN_SCHEMA

log = logging.getLogger("tsmigrate.online")

STATE_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {OWN_SCHEMA};
CREATE TABLE IF NOT EXISTS {OWN_SCHEMA}.online_conversions (
    table_schema     text NOT NULL,
    table_name       text NOT NULL,
    new_name         text NOT NULL,       -- the hypertable while it is built
    legacy_name      text NOT NULL,       -- the legacy table's name after the swap
    state            text NOT NULL,       -- building, swapped, swapped back
    replayed_through bigint NOT NULL DEFAULT 0,   -- newest change id replayed (status only: the log holds the rest)
    started_at       timestamptz NOT NULL DEFAULT now(),
    swapped_at       timestamptz,
    swap_ms          double precision,
    index_renames    jsonb NOT NULL DEFAULT '[]',   -- [[legacy index, its name aside, new index's name while built]]
    PRIMARY KEY (table_schema, table_name)
);
-- Inserts into the hypertable above it in this column are not captured: a swap back takes them by range.
ALTER TABLE {OWN_SCHEMA}.online_conversions ADD COLUMN IF NOT EXISTS watermark_column text,
                                            ADD COLUMN IF NOT EXISTS watermark text;
"""

PHASE_COPY, PHASE_AFTER_SWAP = 0, 1

# Called with the phase's name and the connection doing it: "capturing", "copying" (after each block range),
# "replayed before the keys" (few chunks: the copy went into a hypertable without keys, whose keys come next),
# "caught up", "locked" (inside the swap transaction, the table just locked, before the last replay),
# "swapping" (inside it, after the last replay). The fault tests end sessions there.
PhaseHook = Callable[[str, psycopg.Connection], None]


def no_hook(phase: str, conn: psycopg.Connection) -> None:
    pass


def aside(name: str, suffix: str) -> str:
    return name[: 63 - len(suffix)] + suffix


@dataclass(frozen=True)
class Names:
    schema: str
    table: str

    @property
    def new(self) -> str:
        return aside(self.table, BUILD_SUFFIX)

    @property
    def legacy(self) -> str:
        return aside(self.table, "_legacy")

    @property
    def changes(self) -> sql.Identifier:
        return sql.Identifier(OWN_SCHEMA, aside(self.table, "_changes"))

    @property
    def capture_function(self) -> sql.Identifier:
        return sql.Identifier(OWN_SCHEMA, aside(self.table, "_capture"))

    def ident(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)


# -- which tables -------------------------------------------------------------------------------------
def chooses_online(conn: psycopg.Connection, schema: str, h: HypertablePlan, above_rows: int) -> bool:
    """Whether the table converts online: as its plan entry says, else when it holds more than ``above_rows``
    rows (the planner's estimate: no scan). A table that does not exist yet or is a hypertable already does not."""
    # By name through the catalog: to_regclass would need USAGE on the schema, which a pre-flight role may lack.
    reltuples = one(
        conn,
        """SELECT c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE n.nspname = %s AND c.relname = %s AND c.relkind = 'r'""",
        (schema, h.table),
    )
    if reltuples is None or is_hypertable(conn, schema, h.table):
        return False
    return h.online if h.online is not None else reltuples > above_rows


def online_tables(conn: psycopg.Connection, plan) -> list[str]:
    """The plan's tables that convert online, as the target stands now."""
    return [h.table for h in plan.hypertables if chooses_online(conn, plan.schema, h, plan.online_above_rows)]


# -- state ---------------------------------------------------------------------------------------------
def conversion_state(conn: psycopg.Connection, schema: str, table: str) -> dict | None:
    if one(conn, "SELECT to_regclass(%s)", (f"{OWN_SCHEMA}.online_conversions",)) is None:
        return None
    row = conn.execute(
        # Through to_jsonb: a conversion swapped by a version before the watermark has no such columns.
        f"""SELECT new_name, legacy_name, state, replayed_through, index_renames,
                   to_jsonb(o) ->> 'watermark_column', to_jsonb(o) ->> 'watermark'
              FROM {OWN_SCHEMA}.online_conversions o WHERE table_schema = %s AND table_name = %s""",
        (schema, table),
    ).fetchone()
    if row is None:
        return None
    fields = ("new_name", "legacy_name", "state", "replayed_through", "index_renames", "watermark_column", "watermark")
    return dict(zip(fields, row, strict=True))


def legacy_tables(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """(schema, table, legacy table) of every conversion whose legacy table is kept beside the hypertable."""
    if one(conn, "SELECT to_regclass(%s)", (f"{OWN_SCHEMA}.online_conversions",)) is None:
        return []
    return [
        tuple(r)
        for r in conn.execute(
            f"SELECT table_schema, table_name, legacy_name FROM {OWN_SCHEMA}.online_conversions "
            "WHERE state = 'swapped' ORDER BY 1, 2"
        ).fetchall()
    ]


def discard_unfinished(conn: psycopg.Connection, names: Names) -> bool:
    """Drop what an earlier attempt that did not reach the swap left (the legacy table is untouched by it)."""
    state = conversion_state(conn, names.schema, names.table)
    if state is None or state["state"] != "building":
        return False
    with conn.transaction():
        conn.execute("SET LOCAL lock_timeout = '5s'")
        conn.execute(
            sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(CAPTURE_TRIGGER), names.ident(names.table))
        )
        conn.execute(
            sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                sql.Identifier(CAPTURE_TRIGGER + "_truncate"), names.ident(names.table)
            )
        )
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(names.ident(state["new_name"])))
        # Plain indexes of the legacy table set aside just before a swap that did not happen take their names back.
        for final, legacy_aside, _ in state["index_renames"]:
            if legacy_aside and one(
                conn,
                "SELECT to_regclass(%s) IS NULL AND EXISTS (SELECT 1 FROM pg_index "
                "WHERE indexrelid = to_regclass(%s) AND indrelid = %s::regclass)",
                (
                    regclass(names.schema, final),
                    regclass(names.schema, legacy_aside),
                    regclass(names.schema, names.table),
                ),
            ):
                conn.execute(
                    sql.SQL("ALTER INDEX {} RENAME TO {}").format(names.ident(legacy_aside), sql.Identifier(final))
                )
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(names.changes))
        conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {}()").format(names.capture_function))
        conn.execute(
            f"DELETE FROM {OWN_SCHEMA}.online_conversions WHERE table_schema = %s AND table_name = %s",
            (names.schema, names.table),
        )
    log.info(
        "%s.%s: dropped what an unfinished online conversion left (its hypertable and change log); starting again",
        names.schema,
        names.table,
    )
    return True
