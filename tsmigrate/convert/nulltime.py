"""NULL time values given the plan's rule before a table becomes a hypertable, each fill recorded in
``tsmigrate.time_fills`` (so nothing changes silently, and the content check can still see the rows as they were)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from ..db import one
from ..db import regclass as regclass_of
from ..plan import HypertablePlan
from ..tool_objects import OWN_SCHEMA
from .catalog import primary_key_columns
from .result import ConversionError

log = logging.getLogger("tsmigrate.conversion")

FILLS_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {OWN_SCHEMA};
CREATE TABLE IF NOT EXISTS {OWN_SCHEMA}.time_fills (
    table_schema text NOT NULL,
    table_name   text NOT NULL,
    time_column  text NOT NULL,
    row_key      jsonb NOT NULL,      -- the row's legacy primary key values, as a JSON array
    filled_with  timestamptz NOT NULL,
    rule         text NOT NULL,
    filled_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_schema, table_name, row_key)
);
"""


def fill_nulls(conn: psycopg.Connection, schema: str, h: HypertablePlan, key_columns: list[str]) -> int:
    table = sql.Identifier(schema, h.table)
    col = sql.Identifier(h.time_column)
    if one(
        conn,
        "SELECT attnotnull FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s",
        (regclass_of(schema, h.table), h.time_column),
    ):
        return 0  # declared NOT NULL: no row to fill, and no scan to prove it
    nulls = one(conn, sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL").format(table, col))
    if not nulls:
        return 0
    rule = h.null_time
    where = f"{schema}.{h.table}.{h.time_column}"
    if rule.kind == "refuse":
        raise ConversionError(
            f"{where} has {nulls} rows with a NULL time value and the plan's rule for them is 'refuse'. "
            f"Fill them yourself, or set null_time for [hypertables.{h.table}] in plan.toml "
            "(from_column:<column>, previous_by:<column> or constant:<timestamp>)."
        )
    if not key_columns:
        raise ConversionError(
            f"{where} has {nulls} NULL time values to fill but no primary key to record "
            "which rows were filled; add a primary key first"
        )
    if rule.kind == "from_column":
        value = sql.SQL("t.{}::timestamptz").format(sql.Identifier(str(rule.argument)))
    elif rule.kind == "previous_by":
        by = sql.Identifier(str(rule.argument))
        value = sql.SQL("""coalesce(
            (SELECT p.{col} FROM {table} p WHERE p.{by} < t.{by} AND p.{col} IS NOT NULL ORDER BY p.{by} DESC LIMIT 1),
            (SELECT p.{col} FROM {table} p WHERE p.{by} > t.{by} AND p.{col} IS NOT NULL
              ORDER BY p.{by} ASC LIMIT 1))""").format(col=col, table=table, by=by)
    else:
        value = sql.SQL("{}::timestamptz").format(sql.Literal(rule.argument))
    key = sql.SQL("jsonb_build_array({})").format(sql.SQL(", ").join(sql.Identifier("t", c) for c in key_columns))
    conn.execute(FILLS_DDL)
    # Record first (key and value), then update from the record: one computation, kept for audit.
    recorded = conn.execute(
        sql.SQL("""
        INSERT INTO {fills} (table_schema, table_name, time_column, row_key, filled_with, rule)
        SELECT {schema}, {name}, {colname}, {key}, tsmigrate_fill_value, {rule}
          FROM (SELECT t.*, {value} AS tsmigrate_fill_value FROM {table} t WHERE t.{col} IS NULL) t
         WHERE tsmigrate_fill_value IS NOT NULL
        ON CONFLICT DO NOTHING""").format(
            fills=sql.Identifier(OWN_SCHEMA, "time_fills"),
            schema=sql.Literal(schema),
            name=sql.Literal(h.table),
            colname=sql.Literal(h.time_column),
            key=key,
            value=value,
            rule=sql.Literal(str(rule)),
            table=table,
            col=col,
        )
    ).rowcount
    conn.execute(
        sql.SQL("""
        UPDATE {table} t SET {col} = f.filled_with
          FROM {fills} f
         WHERE t.{col} IS NULL AND f.table_schema = {schema} AND f.table_name = {name} AND f.row_key = {key}
        """).format(
            table=table,
            col=col,
            fills=sql.Identifier(OWN_SCHEMA, "time_fills"),
            schema=sql.Literal(schema),
            name=sql.Literal(h.table),
            key=key,
        )
    )
    left = one(conn, sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL").format(table, col))
    if left:
        raise ConversionError(
            f"{where}: rule {rule} left {left} of {nulls} NULL time values unfilled "
            f"(no value to take from); choose another null_time rule in plan.toml"
        )
    log.info("%s: filled %d NULL time values by rule %s (recorded in %s.time_fills)", where, recorded, rule, OWN_SCHEMA)
    return recorded


def columns_as_before_fills(
    conn: psycopg.Connection, schema: str, table: str, filled_after: datetime | None = None
) -> dict[str, sql.Composable]:
    """Column expressions that show filled time values as the NULLs they were (for fingerprints).

    ``filled_after``: only fills made after this moment (e.g. a backup's snapshot: a fill a killed run
    committed before that backup is part of what the backup holds). Returns {} when nothing was filled.
    """
    if one(conn, "SELECT to_regclass(%s)", (f"{OWN_SCHEMA}.time_fills",)) is None:
        return {}
    columns = [
        r[0]
        for r in conn.execute(
            f"SELECT DISTINCT time_column FROM {OWN_SCHEMA}.time_fills WHERE table_schema = %s AND table_name = %s",
            (schema, table),
        ).fetchall()
    ]
    if not columns:
        return {}
    key_columns = primary_key_columns(conn, regclass_of(schema, table))
    # The key was recorded from the legacy primary key; the rebuilt key has the time column appended.
    key_columns = [c for c in key_columns if c not in columns]
    key = sql.SQL("jsonb_build_array({})").format(sql.SQL(", ").join(sql.Identifier("t", c) for c in key_columns))
    return {
        column: sql.SQL("""CASE WHEN EXISTS (SELECT 1 FROM {fills} f WHERE f.table_schema = {schema}
                               AND f.table_name = {table} AND f.time_column = {column} AND f.row_key = {key}
                               AND f.filled_at > {after})
                           THEN NULL ELSE t.{ident} END""").format(
            fills=sql.Identifier(OWN_SCHEMA, "time_fills"),
            schema=sql.Literal(schema),
            table=sql.Literal(table),
            column=sql.Literal(column),
            key=key,
            ident=sql.Identifier(column),
            after=sql.Literal(filled_after or datetime.min.replace(tzinfo=UTC)),
        )
        for column in columns
    }
