"""Catalog helpers every part needs, written once: one value from a query, how a table is named in SQL, whether
TimescaleDB is created in the database."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import sql

_PLAIN = re.compile(r"^[a-z_][a-z0-9_$]*$")
_RESERVED = {
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "check",
    "column",
    "constraint",
    "default",
    "desc",
    "do",
    "end",
    "for",
    "from",
    "group",
    "in",
    "limit",
    "not",
    "null",
    "offset",
    "on",
    "or",
    "order",
    "select",
    "table",
    "to",
    "user",
    "using",
    "when",
    "where",
    "with",
}


def one(conn: psycopg.Connection, query, params=()) -> Any:
    """The first column of the first row, or None when there is no row."""
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def regclass(schema: str, table: str) -> str:
    """schema.table quoted as SQL reads it (for ``%s::regclass`` / ``to_regclass(%s)``)."""
    return f"{sql.Identifier(schema).as_string(None)}.{sql.Identifier(table).as_string(None)}"


def display_name(*parts: str) -> str:
    """schema.name as a person writes it: quoted only where SQL needs it (also valid SQL)."""
    return ".".join(p if _PLAIN.match(p) and p not in _RESERVED else sql.Identifier(p).as_string(None) for p in parts)


def timescaledb_version(conn: psycopg.Connection) -> str | None:
    """The version of the timescaledb extension created in this database; None when it is not created."""
    return one(conn, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")


def is_hypertable(conn: psycopg.Connection, schema: str, table: str) -> bool:
    """Whether schema.table is a hypertable; False where TimescaleDB is not created (its views do not exist)."""
    if timescaledb_version(conn) is None:
        return False
    return (
        one(
            conn,
            "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_schema = %s AND hypertable_name = %s",
            (schema, table),
        )
        is not None
    )


def insertable_columns(conn: psycopg.Connection, schema: str, table: str) -> list[str]:
    """The table's columns an INSERT may name (not dropped, not generated), in their order. By name through the
    catalog: to_regclass would need USAGE on the schema."""
    return [
        r[0]
        for r in conn.execute(
            """SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
              AND a.attgenerated = '' ORDER BY a.attnum""",
            (schema, table),
        ).fetchall()
    ]


def row(conn: psycopg.Connection, query, params=()) -> tuple[Any, ...]:
    """The one row of a query that always returns one (an aggregate, the catalog row of a relation that exists)."""
    found = conn.execute(query, params).fetchone()
    if found is None:
        raise LookupError("a query that returns one row returned none")
    return found
