"""The catalog questions both conversion paths ask, each asked once: a table's time dimension, keys, foreign keys,
insertable columns, chunks, what TimescaleDB could not keep, and who holds a lock on it."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from ..db import one
from ..db import regclass as regclass_of
from ..plan import HypertablePlan
from .result import ConversionError


def time_dimension(conn: psycopg.Connection, schema: str, table: str) -> tuple[str, object] | None:
    row = conn.execute(
        """SELECT column_name, time_interval FROM timescaledb_information.dimensions
                           WHERE hypertable_schema = %s AND hypertable_name = %s AND dimension_number = 1""",
        (schema, table),
    ).fetchone()
    return (row[0], row[1]) if row else None


def primary_key_columns(conn: psycopg.Connection, regclass: str) -> list[str]:
    rows = conn.execute(
        """SELECT a.attname FROM pg_constraint c
                             JOIN LATERAL unnest(c.conkey) WITH ORDINALITY k(attnum, n) ON true
                             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
                            WHERE c.conrelid = %s::regclass AND c.contype = 'p' ORDER BY k.n""",
        (regclass,),
    ).fetchall()
    return [r[0] for r in rows]


@dataclass(frozen=True)
class UniqueKey:
    name: str
    kind: str  # 'p' primary key, 'u' unique constraint, 'i' unique index without constraint
    columns: tuple[str, ...]
    oid: int


def keys_without_time(conn: psycopg.Connection, regclass: str, time_column: str) -> list[UniqueKey]:
    """Primary keys, unique constraints and unique indexes of the table that leave out the time column."""
    rows = conn.execute(
        """
        SELECT coalesce(c.conname, i.relname), coalesce(c.contype::text, 'i'),
               array(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(attnum, n)
                       JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum ORDER BY k.n),
               coalesce(c.oid, i.oid),
               x.indexprs IS NOT NULL OR x.indpred IS NOT NULL
          FROM pg_index x
          JOIN pg_class i ON i.oid = x.indexrelid
          LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.contype IN ('p', 'u')
         WHERE x.indrelid = %s::regclass AND x.indisunique
        """,
        (regclass,),
    ).fetchall()
    keys = []
    for name, kind, columns, oid, has_expressions in rows:
        if time_column in columns:
            continue
        if has_expressions:
            raise ConversionError(
                f"unique index {name} on {regclass} uses expressions or a WHERE clause and "
                f"leaves out {time_column}; rewrite it to include {time_column} before converting"
            )
        keys.append(UniqueKey(name, kind, tuple(columns), oid))
    return keys


def keep_unique_needing_an_index(conn: psycopg.Connection, regclass: str, keep_unique: tuple[str, ...]) -> list[str]:
    """The keep_unique columns that need an index of their own on the hypertable: those that lead no complete btree
    index of the table. A key rebuilt with the time column keeps its first column first (``(id)`` becomes
    ``(id, ts)``), and a lookup by that column finds its rows through it on every chunk."""
    leading = {
        name
        for (name,) in conn.execute(
            """SELECT a.attname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                 JOIN pg_am am ON am.oid = i.relam
                 JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]
                WHERE x.indrelid = %s::regclass AND am.amname = 'btree' AND x.indpred IS NULL""",
            (regclass,),
        ).fetchall()
    }
    return [c for c in keep_unique if c not in leading]


def referencing_foreign_keys(conn: psycopg.Connection, regclass: str) -> list[str]:
    rows = conn.execute(
        """SELECT conrelid::regclass::text || ' (' || conname || ')' FROM pg_constraint
                            WHERE contype = 'f' AND confrelid = %s::regclass AND conrelid <> confrelid""",
        (regclass,),
    ).fetchall()
    return [r[0] for r in rows]


def keys_rebuilt(conn: psycopg.Connection, regclass: str, time_column: str) -> list[str]:
    """The keys the conversion rebuilds with the time column, in words: ``name (id) -> (id, ts)``."""
    return [
        f"{k.name} ({', '.join(k.columns)}) -> ({', '.join((*k.columns, time_column))})"
        for k in keys_without_time(conn, regclass, time_column)
    ]


def hypertable_chunks(conn: psycopg.Connection, schema: str, table: str) -> int:
    """How many chunks the hypertable has."""
    return one(
        conn,
        "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_schema = %s AND hypertable_name = %s",
        (schema, table),
    )


def refuse_what_timescaledb_cannot_keep(
    conn: psycopg.Connection, schema: str, h: HypertablePlan, has_compression: bool
) -> None:
    """Before anything changes: what the planned hypertable could not have, found only half-way otherwise."""
    regclass = regclass_of(schema, h.table)
    if (
        has_compression
        and h.wants_compression
        and one(conn, "SELECT relrowsecurity FROM pg_class WHERE oid = to_regclass(%s)", (regclass,))
    ):
        raise ConversionError(
            f"{schema}.{h.table} has row-level security, and TimescaleDB cannot compress a table "
            "with row security: disable it (ALTER TABLE ... DISABLE ROW LEVEL SECURITY) or leave "
            f"compression out of [hypertables.{h.table}] in plan.toml"
        )


# A lock (pg_locks l) on one of the tables of the query's parameter ``tables`` (regclass texts) or on a child of
# one (a hypertable's chunks).
_ON_TABLES_OR_CHUNKS = """(l.relation IN (SELECT to_regclass(t) FROM unnest(%(tables)s::text[]) t)
     OR l.relation IN (SELECT inhrelid FROM pg_inherits
                        WHERE inhparent IN (SELECT to_regclass(t) FROM unnest(%(tables)s::text[]) t)))"""


def lock_holders(conn: psycopg.Connection, schema: str, *tables: str) -> str:
    """Who holds a lock on the tables or their children (a hypertable's chunks), in words (pid, role, application,
    mode, relation, state, statement)."""
    rows = conn.execute(
        f"""
        SELECT format('pid %%s (role %%s, application ''%%s'', %%s on %%s, %%s: %%s)', a.pid, a.usename,
                      a.application_name, l.mode, l.relation::regclass, a.state,
                      left(regexp_replace(a.query, '\\s+', ' ', 'g'), 80))
          FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE {_ON_TABLES_OR_CHUNKS} AND l.granted AND l.pid <> pg_backend_pid()""",
        {"tables": [regclass_of(schema, t) for t in tables]},
    ).fetchall()
    return "; ".join(r[0] for r in rows) or "a session that let go meanwhile"


# An autovacuum worker gives way to a lock it blocks (PostgreSQL cancels it once the waiter has waited
# deadlock_timeout), except one that prevents wraparound.
YIELDING_AUTOVACUUM = "a.backend_type = 'autovacuum worker' AND a.query NOT LIKE '%%to prevent wraparound%%'"


def yield_autovacuum(conn: psycopg.Connection, relations: list[str]) -> list[int]:
    """Cancel the autovacuum workers holding locks on ``relations`` (regclass texts), as PostgreSQL itself would
    for a lock waiting longer than deadlock_timeout: a lock tried for a few hundred ms at a time never gets that
    far. Called just before the lock is asked for, so the request is queued before a relaunched worker's. An
    anti-wraparound one is left alone. Returns the pids cancelled (none where the role may not)."""
    # Chunks too: autovacuum analyzes them after the copy, and a trigger or rename on the hypertable locks them.
    pids = [
        r[0]
        for r in conn.execute(
            f"""SELECT DISTINCT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE {YIELDING_AUTOVACUUM} AND {_ON_TABLES_OR_CHUNKS}""",
            {"tables": relations},
        ).fetchall()
    ]
    cancelled = []
    for pid in pids:
        try:
            with conn.transaction():  # a savepoint inside the caller's transaction: a refusal must not end it
                if one(conn, "SELECT pg_cancel_backend(%s)", (pid,)):
                    cancelled.append(pid)
        except psycopg.errors.InsufficientPrivilege:
            pass  # only a superuser may: then it goes on, and a long wait names it
    return cancelled
