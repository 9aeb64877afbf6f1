"""Turn a planned table into a hypertable, whatever its legacy shape.

For a legacy table, in one transaction, the table locked:
1. NULL time values get the plan's rule (refuse, from_column, previous_by, constant); the
   key of every row filled is recorded in ``tsmigrate.time_fills`` so nothing changes silently
   and the content check can still see the rows as they were.
2. A hypertable is built beside it and takes its name (online/locked.py): a primary key or unique
   constraint that leaves out the time column gets it, under the same name (TimescaleDB requires it);
   columns whose values the application looks up (``keep_unique``, e.g. the bigserial id) keep an index
   of their own, their uniqueness carried by their sequence; grants, comments, triggers, sequences and
   dependent views move with the name; the row count is checked before anything commits.
3. Compression settings and policies and retention policies where the edition has them;
   otherwise they are recorded as skipped, with the reason.
A table that is already a hypertable is recognised and left as it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import psycopg
from psycopg import sql

from .plan import HypertablePlan
from .db import is_hypertable, one, timescaledb_version
from .db import regclass as regclass_of
from .own import OWN_SCHEMA
from .policies import apply_policies

log = logging.getLogger(__name__)

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



class ConversionError(RuntimeError):
    """The table cannot be converted as planned; the message says why and what to do."""


@dataclass
class ConversionResult:
    table: str
    already_hypertable: bool = False
    rows: int = 0
    nulls_filled: int = 0
    keys_rebuilt: list[str] = field(default_factory=list)
    views_recreated: list[str] = field(default_factory=list)
    compression: str = "not planned"
    retention: str = "not planned"
    chunks: int = 0
    seconds: float = 0.0
    rows_per_second: float = 0.0
    online: dict | None = None     # what the online path did (online.OnlineReport), when it was taken

    def to_dict(self) -> dict:
        return asdict(self)


def plan_sha256(h: HypertablePlan) -> str:
    """A checksum of a table's plan entry, for the ledger."""
    text = json.dumps({k: str(v) for k, v in asdict(h).items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def time_dimension(conn: psycopg.Connection, schema: str, table: str) -> tuple[str, object] | None:
    row = conn.execute("""SELECT column_name, time_interval FROM timescaledb_information.dimensions
                           WHERE hypertable_schema = %s AND hypertable_name = %s AND dimension_number = 1""",
                       (schema, table)).fetchone()
    return (row[0], row[1]) if row else None


def primary_key_columns(conn: psycopg.Connection, regclass: str) -> list[str]:
    rows = conn.execute("""SELECT a.attname FROM pg_constraint c
                             JOIN LATERAL unnest(c.conkey) WITH ORDINALITY k(attnum, n) ON true
                             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
                            WHERE c.conrelid = %s::regclass AND c.contype = 'p' ORDER BY k.n""",
                        (regclass,)).fetchall()
    return [r[0] for r in rows]


@dataclass(frozen=True)
class UniqueKey:
    name: str
    kind: str            # 'p' primary key, 'u' unique constraint, 'i' unique index without constraint
    columns: tuple[str, ...]
    oid: int


def keys_without_time(conn: psycopg.Connection, regclass: str, time_column: str) -> list[UniqueKey]:
    """Primary keys, unique constraints and unique indexes of the table that leave out the time column."""
    rows = conn.execute("""
        SELECT coalesce(c.conname, i.relname), coalesce(c.contype::text, 'i'),
               array(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(attnum, n)
                       JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum ORDER BY k.n),
               coalesce(c.oid, i.oid),
               x.indexprs IS NOT NULL OR x.indpred IS NOT NULL
          FROM pg_index x
          JOIN pg_class i ON i.oid = x.indexrelid
          LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.contype IN ('p', 'u')
         WHERE x.indrelid = %s::regclass AND x.indisunique
        """, (regclass,)).fetchall()
    keys = []
    for name, kind, columns, oid, has_expressions in rows:
        if time_column in columns:
            continue
        if has_expressions:
            raise ConversionError(f"unique index {name} on {regclass} uses expressions or a WHERE clause and "
                                  f"leaves out {time_column}; rewrite it to include {time_column} before converting")
        keys.append(UniqueKey(name, kind, tuple(columns), oid))
    return keys


def referencing_foreign_keys(conn: psycopg.Connection, regclass: str) -> list[str]:
    rows = conn.execute("""SELECT conrelid::regclass::text || ' (' || conname || ')' FROM pg_constraint
                            WHERE contype = 'f' AND confrelid = %s::regclass AND conrelid <> confrelid""",
                        (regclass,)).fetchall()
    return [r[0] for r in rows]


def _fill_nulls(conn: psycopg.Connection, schema: str, h: HypertablePlan, key_columns: list[str]) -> int:
    table = sql.Identifier(schema, h.table)
    col = sql.Identifier(h.time_column)
    if one(conn, "SELECT attnotnull FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s",
           (regclass_of(schema, h.table), h.time_column)):
        return 0   # declared NOT NULL: no row to fill, and no scan to prove it
    nulls = one(conn, sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL").format(table, col))
    if not nulls:
        return 0
    rule = h.null_time
    where = f"{schema}.{h.table}.{h.time_column}"
    if rule.kind == "refuse":
        raise ConversionError(
            f"{where} has {nulls} rows with a NULL time value and the plan's rule for them is 'refuse'. "
            f"Fill them yourself, or set null_time for [hypertables.{h.table}] in plan.toml "
            "(from_column:<column>, previous_by:<column> or constant:<timestamp>).")
    if not key_columns:
        raise ConversionError(f"{where} has {nulls} NULL time values to fill but no primary key to record "
                              "which rows were filled; add a primary key first")
    if rule.kind == "from_column":
        value = sql.SQL("t.{}::timestamptz").format(sql.Identifier(rule.argument))
    elif rule.kind == "previous_by":
        by = sql.Identifier(rule.argument)
        value = sql.SQL("""coalesce(
            (SELECT p.{col} FROM {table} p WHERE p.{by} < t.{by} AND p.{col} IS NOT NULL ORDER BY p.{by} DESC LIMIT 1),
            (SELECT p.{col} FROM {table} p WHERE p.{by} > t.{by} AND p.{col} IS NOT NULL ORDER BY p.{by} ASC LIMIT 1))"""
                        ).format(col=col, table=table, by=by)
    else:
        value = sql.SQL("{}::timestamptz").format(sql.Literal(rule.argument))
    key = sql.SQL("jsonb_build_array({})").format(sql.SQL(", ").join(sql.Identifier("t", c) for c in key_columns))
    conn.execute(FILLS_DDL)
    # Record first (key and value), then update from the record: one computation, kept for audit.
    recorded = conn.execute(sql.SQL("""
        INSERT INTO {fills} (table_schema, table_name, time_column, row_key, filled_with, rule)
        SELECT {schema}, {name}, {colname}, {key}, tsmigrate_fill_value, {rule}
          FROM (SELECT t.*, {value} AS tsmigrate_fill_value FROM {table} t WHERE t.{col} IS NULL) t
         WHERE tsmigrate_fill_value IS NOT NULL
        ON CONFLICT DO NOTHING""").format(
        fills=sql.Identifier(OWN_SCHEMA, "time_fills"), schema=sql.Literal(schema), name=sql.Literal(h.table),
        colname=sql.Literal(h.time_column), key=key, value=value, rule=sql.Literal(str(rule)), table=table,
        col=col)).rowcount
    conn.execute(sql.SQL("""
        UPDATE {table} t SET {col} = f.filled_with
          FROM {fills} f
         WHERE t.{col} IS NULL AND f.table_schema = {schema} AND f.table_name = {name} AND f.row_key = {key}
        """).format(table=table, col=col, fills=sql.Identifier(OWN_SCHEMA, "time_fills"),
                    schema=sql.Literal(schema), name=sql.Literal(h.table), key=key))
    left = one(conn, sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL").format(table, col))
    if left:
        raise ConversionError(f"{where}: rule {rule} left {left} of {nulls} NULL time values unfilled "
                              f"(no value to take from); choose another null_time rule in plan.toml")
    log.info("%s: filled %d NULL time values by rule %s (recorded in %s.time_fills)", where, recorded, rule, OWN_SCHEMA)
    return recorded


def refuse_what_timescaledb_cannot_keep(conn: psycopg.Connection, schema: str, h: HypertablePlan,
                                        has_compression: bool) -> None:
    """Before anything changes: what the planned hypertable could not have, found only half-way otherwise."""
    regclass = regclass_of(schema, h.table)
    if has_compression and h.wants_compression and one(
            conn, "SELECT relrowsecurity FROM pg_class WHERE oid = to_regclass(%s)", (regclass,)):
        raise ConversionError(f"{schema}.{h.table} has row-level security, and TimescaleDB cannot compress a table "
                              "with row security: disable it (ALTER TABLE ... DISABLE ROW LEVEL SECURITY) or leave "
                              f"compression out of [hypertables.{h.table}] in plan.toml")


# A lock (pg_locks l) on one of the tables of the query's parameter ``tables`` (regclass texts) or on a child of
# one (a hypertable's chunks).
_ON_TABLES_OR_CHUNKS = """(l.relation IN (SELECT to_regclass(t) FROM unnest(%(tables)s::text[]) t)
     OR l.relation IN (SELECT inhrelid FROM pg_inherits
                        WHERE inhparent IN (SELECT to_regclass(t) FROM unnest(%(tables)s::text[]) t)))"""


def lock_holders(conn: psycopg.Connection, schema: str, *tables: str) -> str:
    """Who holds a lock on the tables or their children (a hypertable's chunks), in words (pid, role, application,
    mode, relation, state, statement)."""
    rows = conn.execute(f"""
        SELECT format('pid %%s (role %%s, application ''%%s'', %%s on %%s, %%s: %%s)', a.pid, a.usename,
                      a.application_name, l.mode, l.relation::regclass, a.state,
                      left(regexp_replace(a.query, '\\s+', ' ', 'g'), 80))
          FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE {_ON_TABLES_OR_CHUNKS} AND l.granted AND l.pid <> pg_backend_pid()""",
                        {"tables": [regclass_of(schema, t) for t in tables]}).fetchall()
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
    pids = [r[0] for r in conn.execute(
        f"""SELECT DISTINCT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE {YIELDING_AUTOVACUUM} AND {_ON_TABLES_OR_CHUNKS}""", {"tables": relations}).fetchall()]
    cancelled = []
    for pid in pids:
        try:
            with conn.transaction():   # a savepoint inside the caller's transaction: a refusal must not end it
                if one(conn, "SELECT pg_cancel_backend(%s)", (pid,)):
                    cancelled.append(pid)
        except psycopg.errors.InsufficientPrivilege:
            pass   # only a superuser may: then it goes on, and a long wait names it
    return cancelled


def lock_for_conversion(conn: psycopg.Connection, schema: str, table: str, *, attempts: int = 5,
                        timeout_s: int = 5) -> None:
    """ACCESS EXCLUSIVE on the table before anything is counted or copied: rows written meanwhile would be
    lost or miscounted. Each attempt waits ``timeout_s``; then the message names who holds it."""
    ident = sql.Identifier(schema, table)
    for attempt in range(1, attempts + 1):
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{timeout_s}s")))
                # PostgreSQL would cancel it too, after deadlock_timeout, unless that is set above timeout_s.
                if vacuums := yield_autovacuum(conn, [regclass_of(schema, table)]):
                    log.info("%s.%s: cancelled autovacuum (pid %s) on the table", schema, table,
                             ", ".join(map(str, vacuums)))
                conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(ident))
            conn.execute("SET LOCAL lock_timeout = '60s'")
            return
        except psycopg.errors.LockNotAvailable:
            who = lock_holders(conn, schema, table)
            if attempt == attempts:
                raise ConversionError(
                    f"{schema}.{table}: could not lock the table for its conversion ({attempts} tries of {timeout_s} s); "
                    f"held by {who}. Stop that session (pg_terminate_backend(pid)) or wait for it, then run again.")
            log.warning("%s.%s: waiting for a lock held by %s (try %d of %d)", schema, table, who, attempt, attempts)


def _insertable_columns(conn: psycopg.Connection, regclass: str) -> list[str]:
    return [r[0] for r in conn.execute(
        """SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0
             AND NOT attisdropped AND attgenerated = '' ORDER BY attnum""", (regclass,)).fetchall()]


def convert_table(conn: psycopg.Connection, schema: str, h: HypertablePlan, *, has_compression: bool,
                  rows_per_second: float | None = None, batch_rows: int = 500_000) -> ConversionResult:
    """Convert one planned table (the caller owns the transaction)."""
    started = time.monotonic()
    result = ConversionResult(table=f"{schema}.{h.table}")
    regclass = regclass_of(schema, h.table)
    if one(conn, "SELECT to_regclass(%s)", (regclass,)) is None:
        raise ConversionError(f"table {schema}.{h.table} named in plan.toml does not exist in the target database; "
                              "fix the table name in the plan or run the migration that creates it")
    if timescaledb_version(conn) is None:
        raise ConversionError("the timescaledb extension is not created in the target database; a migration "
                              "must run CREATE EXTENSION timescaledb before the conversion steps")
    if is_hypertable(conn, schema, h.table):
        column, interval = time_dimension(conn, schema, h.table)
        if column != h.time_column:
            raise ConversionError(f"{schema}.{h.table} is already a hypertable on column {column}, but the plan says "
                                  f"{h.time_column}; a hypertable cannot change its time column: fix the plan")
        result.already_hypertable = True
        log.info("%s is already a hypertable on %s (chunk interval %s); leaving it as it is", result.table, column, interval)
        apply_policies(conn, schema, h, has_compression, result)
        result.seconds = time.monotonic() - started
        return result

    column_type = one(conn, """SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                                 WHERE attrelid = %s::regclass AND attname = %s AND NOT attisdropped""",
                       (regclass, h.time_column))
    if column_type is None:
        raise ConversionError(f"{schema}.{h.table} has no column {h.time_column} (the plan's time_column)")
    if column_type not in ("timestamp with time zone", "timestamp without time zone", "date"):
        raise ConversionError(f"{schema}.{h.table}.{h.time_column} is {column_type}; a time column must be "
                              "timestamptz, timestamp or date")
    foreign = referencing_foreign_keys(conn, regclass)
    if foreign:
        raise ConversionError(f"{schema}.{h.table} is referenced by foreign keys from {', '.join(foreign)}; "
                              "TimescaleDB cannot keep them on a hypertable: drop them (or point them elsewhere) first")

    refuse_what_timescaledb_cannot_keep(conn, schema, h, has_compression)
    lock_for_conversion(conn, schema, h.table)
    key_columns = primary_key_columns(conn, regclass)
    result.nulls_filled = _fill_nulls(conn, schema, h, key_columns)

    result.keys_rebuilt = [f"{k.name} ({', '.join(k.columns)}) -> ({', '.join((*k.columns, h.time_column))})"
                           for k in keys_without_time(conn, regclass, h.time_column)]
    # Built beside and swapped in, in this transaction (the online package's machinery, with the lock held
    # throughout): imported here, as that package builds on this module.
    from .online.locked import convert_locked

    t0 = time.monotonic()
    result.rows, result.views_recreated = convert_locked(conn, schema, h, rows_per_second=rows_per_second,
                                                         batch_rows=batch_rows)
    elapsed = time.monotonic() - t0
    result.rows_per_second = result.rows / elapsed if elapsed > 0 else 0.0
    log.info("%s: %d rows converted in %.1f s (%.0f rows/s)", result.table, result.rows, elapsed,
             result.rows_per_second)
    apply_policies(conn, schema, h, has_compression, result)
    result.chunks = one(conn, "SELECT count(*) FROM timescaledb_information.chunks "
                               "WHERE hypertable_schema = %s AND hypertable_name = %s", (schema, h.table))
    result.seconds = time.monotonic() - started
    return result


def columns_as_before_fills(conn: psycopg.Connection, schema: str, table: str,
                            filled_after: datetime | None = None) -> dict[str, sql.Composable]:
    """Column expressions that show filled time values as the NULLs they were (for fingerprints).

    ``filled_after``: only fills made after this moment (e.g. a backup's snapshot: a fill a killed run
    committed before that backup is part of what the backup holds). Returns {} when nothing was filled.
    """
    if one(conn, "SELECT to_regclass(%s)", (f"{OWN_SCHEMA}.time_fills",)) is None:
        return {}
    columns = [r[0] for r in conn.execute(
        f"SELECT DISTINCT time_column FROM {OWN_SCHEMA}.time_fills WHERE table_schema = %s AND table_name = %s",
        (schema, table)).fetchall()]
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
            fills=sql.Identifier(OWN_SCHEMA, "time_fills"), schema=sql.Literal(schema), table=sql.Literal(table),
            column=sql.Literal(column), key=key, ident=sql.Identifier(column),
            after=sql.Literal(filled_after or datetime.min.replace(tzinfo=timezone.utc)))
        for column in columns
    }
