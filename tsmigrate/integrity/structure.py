"""Post-flight integrity of the schema's structure:

- ``constraints_not_valid`` / ``invalid_indexes``: nothing left NOT VALID or half built.
- ``foreign_key_orphans``: every foreign key holds, checked by query (an anti-join), so rows
  loaded with triggers disabled or ``session_replication_role = replica`` are found too.
- ``sequences_behind``: the next value of each sequence a column takes its values from is
  beyond the column's maximum.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..db import display_name, one, row
from .user_schemas import NOT_USER_SCHEMA


def constraints_not_valid(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        sql.SQL("""
        SELECT CASE WHEN c.conrelid <> 0 THEN c.conrelid::regclass::text ELSE c.contypid::regtype::text END,
               c.conname, c.conrelid <> 0
          FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
         WHERE NOT c.convalidated AND NOT {not_user}
         ORDER BY 1, 2""").format(not_user=NOT_USER_SCHEMA)
    ).fetchall()
    return [
        f"constraint {name} on {owner} is NOT VALID (existing rows were never checked): run "
        f"ALTER {'TABLE' if on_table else 'DOMAIN'} {owner} VALIDATE CONSTRAINT {display_name(name)}"
        for owner, name, on_table in rows
    ]


def invalid_indexes(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute("""
        SELECT i.indexrelid::regclass::text, i.indrelid::regclass::text
          FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE (NOT i.indisvalid OR NOT i.indisready)
           AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1""").fetchall()
    return [
        f"index {index} on {table} is invalid (a CREATE INDEX CONCURRENTLY or REINDEX failed): "
        f"run REINDEX INDEX {index}"
        for index, table in rows
    ]


@dataclass(frozen=True)
class ForeignKey:
    name: str
    schema: str
    table: str
    columns: tuple[str, ...]
    ref_schema: str
    ref_table: str
    ref_columns: tuple[str, ...]
    match_full: bool

    def describe(self) -> str:
        return (
            f"{self.name} on {self.schema}.{self.table} ({', '.join(self.columns)}) -> "
            f"{self.ref_schema}.{self.ref_table} ({', '.join(self.ref_columns)})"
        )


def foreign_keys(conn: psycopg.Connection) -> list[ForeignKey]:
    rows = conn.execute(
        sql.SQL("""
        SELECT c.conname, n.nspname, t.relname,
               array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(num, i)
                       JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.num ORDER BY k.i),
               rn.nspname, r.relname,
               array(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(num, i)
                       JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.num ORDER BY k.i),
               c.confmatchtype = 'f'
          FROM pg_constraint c
          JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
          JOIN pg_class r ON r.oid = c.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace
         WHERE c.contype = 'f' AND c.conparentid = 0 AND NOT {not_user}
         ORDER BY 2, 3, 1""").format(not_user=NOT_USER_SCHEMA)
    ).fetchall()
    return [ForeignKey(r[0], r[1], r[2], tuple(r[3]), r[4], r[5], tuple(r[6]), r[7]) for r in rows]


def foreign_key_orphans(conn: psycopg.Connection) -> list[str]:
    """Rows whose foreign key points at nothing, per constraint (checked by query, not trusted)."""
    problems = []
    for fk in foreign_keys(conn):
        child = [sql.Identifier("c", col) for col in fk.columns]
        checked = sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(c) for c in child)
        if fk.match_full:  # MATCH FULL: all NULL is fine, some NULL is a violation
            checked = sql.SQL("NOT ({})").format(sql.SQL(" AND ").join(sql.SQL("{} IS NULL").format(c) for c in child))
        join = sql.SQL(" AND ").join(
            sql.SQL("p.{} = {}").format(sql.Identifier(r), c) for r, c in zip(fk.ref_columns, child, strict=True)
        )
        query = sql.SQL("""SELECT {cols} FROM {child} c WHERE {checked}
                             AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {join})""").format(
            cols=sql.SQL(", ").join(child),
            child=sql.Identifier(fk.schema, fk.table),
            checked=checked,
            parent=sql.Identifier(fk.ref_schema, fk.ref_table),
            join=join,
        )
        count = one(conn, sql.SQL("SELECT count(*) FROM ({}) o").format(query))
        if count:
            examples = conn.execute(sql.SQL("{} LIMIT 3").format(query)).fetchall()
            shown = "; ".join(
                ", ".join(f"{c}={v}" for c, v in zip(fk.columns, example, strict=True)) for example in examples
            )
            problems.append(
                f"foreign key {fk.describe()}: {count} row{'s' if count != 1 else ''} of "
                f"{fk.schema}.{fk.table} {'point' if count != 1 else 'points'} at nothing (for example {shown}); "
                "restore the missing "
                f"{fk.ref_schema}.{fk.ref_table} rows from the baseline backup or delete the orphans"
            )
    return problems


def sequences_behind(conn: psycopg.Connection) -> list[str]:
    """Sequences (owned by a column, or named in a column default) whose next value is not beyond the column's
    values."""
    rows = conn.execute(
        sql.SQL("""
        WITH used AS (
            SELECT d.objid AS seq, d.refobjid AS rel, d.refobjsubid AS attnum
              FROM pg_depend d
             WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
            UNION
            SELECT d.refobjid, ad.adrelid, ad.adnum
              FROM pg_depend d JOIN pg_attrdef ad ON ad.oid = d.objid
             WHERE d.classid = 'pg_attrdef'::regclass AND d.refclassid = 'pg_class'::regclass)
        SELECT sn.nspname, s.relname, n.nspname, t.relname, a.attname, q.seqincrement
          FROM used u
          JOIN pg_class s ON s.oid = u.seq AND s.relkind = 'S' JOIN pg_namespace sn ON sn.oid = s.relnamespace
          JOIN pg_sequence q ON q.seqrelid = s.oid
          JOIN pg_class t ON t.oid = u.rel AND t.relkind IN ('r', 'p') JOIN pg_namespace n ON n.oid = t.relnamespace
          JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = u.attnum AND NOT a.attisdropped
         WHERE NOT {not_user}
         ORDER BY 1, 2""").format(not_user=NOT_USER_SCHEMA)
    ).fetchall()
    problems = []
    for seq_schema, seq, schema, table, column, increment in rows:
        # The column first, then the sequence: a writer taking values meanwhile can only move the sequence
        # further ahead of what was read (the other order reports a false "behind" under a live application).
        extreme = one(
            conn,
            sql.SQL("SELECT {}({}) FROM {}").format(
                sql.SQL("max" if increment > 0 else "min"), sql.Identifier(column), sql.Identifier(schema, table)
            ),
        )
        last, called = row(
            conn, sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(seq_schema, seq))
        )
        next_value = last + increment if called else last
        if extreme is not None and (next_value <= extreme if increment > 0 else next_value >= extreme):
            seq_name, col_ref = display_name(seq_schema, seq), display_name(schema, table)
            problems.append(
                f"sequence {seq_name} gives {next_value} next, but {col_ref}.{column} already holds "
                f"{extreme}: the next insert reuses a value. Fix: SELECT setval('{seq_name}', "
                f"(SELECT {'max' if increment > 0 else 'min'}({display_name(column)}) FROM {col_ref}))"
            )
    return problems
