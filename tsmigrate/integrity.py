"""Post-flight integrity: the data as before, and every object of the schema usable.

Each function returns the problems it found as sentences that name the object and say what
to do; an empty list means the check passed. What each check proves:

- ``content_differences``: every table of the baseline has the same row count and the same
  content fingerprint over the columns it had before (rows whose NULL time the conversion
  filled are seen as they were). When the dump of the baseline holds the table's rows, the
  rows that differ are counted exactly (a set difference of row hashes, in a temporary table
  that disappears with the transaction).
- ``constraints_not_valid`` / ``invalid_indexes``: nothing left NOT VALID or half built.
- ``foreign_key_orphans``: every foreign key holds, checked by query (an anti-join), so rows
  loaded with triggers disabled or ``session_replication_role = replica`` are found too.
- ``sequences_behind``: the next value of each sequence a column takes its values from is
  beyond the column's maximum.
- ``missing_objects``: views, functions, triggers and extensions of the baseline's dump exist.
- ``broken_views``: every view and materialized view answers a query (``LIMIT 1``).
- ``broken_functions``: every function passes its language's validator (plpgsql: the body
  parses; SQL: it parses and every name resolves), and every function (not a trigger function, a
  procedure, or one with polymorphic arguments: those get the validator only) is *called*, with
  NULL arguments, in a READ ONLY transaction that is rolled back. PostgreSQL plans
  each statement a call reaches before running it, so a missing table, column, function or
  privilege on that path shows as an error; a statement that would write stops the call with
  "read-only transaction" only after it was planned, which counts as compiled. Branches a call
  with NULL arguments does not reach are only syntax-checked.
- ``extension_problems``: timescaledb is installed at the version the server's files offer, and
  every extension is at its default version and present if the baseline had it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from .baseline import Baseline
from .conversion import columns_as_before_fills, primary_key_columns
from .db import display_name
from .fingerprint import (BUCKETS, OWN_SCHEMA, PINNED_SETTINGS, TableFingerprint, compare, fingerprint_table,
                          table_columns)
from .errors import first_line

# Schemas that are not the user's: catalogs, TimescaleDB's own and chunks, our bookkeeping.
_NOT_USER_SCHEMA = sql.SQL("""(n.nspname IN ('pg_catalog', 'information_schema', 'timescaledb_information',
                                             'timescaledb_experimental', {own})
                               OR n.nspname LIKE 'pg\\_%%' OR n.nspname LIKE '\\_timescaledb%%')""").format(
    own=sql.Literal(OWN_SCHEMA))
# Counting the exact rows that differ needs the baseline rows in a temporary table: up to this many.
EXACT_COUNT_MAX_ROWS = 2_000_000


# -- rows and content as before ---------------------------------------------------------------------

@dataclass(frozen=True)
class TableDifference:
    table: str
    kind: str          # missing, columns, rows (count differs), content (same count, rows differ)
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class RowDifference:
    gone: int                       # rows of the baseline not found now (deleted or changed)
    new: int                        # rows now that the baseline did not have (inserted or changed)
    examples: tuple[str, ...] = ()  # keys of some rows of the baseline that are gone or changed

    def describe(self) -> str:
        e = f" (for example {'; '.join(self.examples)})" if self.examples else ""
        if self.gone == self.new:
            return f"{self.gone} row{'s' if self.gone != 1 else ''} differ{'s' if self.gone == 1 else ''}{e}"
        return (f"{self.gone} row{'s' if self.gone != 1 else ''} of the baseline gone or changed{e}, "
                f"{self.new} row{'s' if self.new != 1 else ''} not in the baseline")


def fingerprints_as_before(conn: psycopg.Connection, before: dict[str, TableFingerprint],
                           filled_after: datetime | None = None
                           ) -> tuple[dict[str, TableFingerprint], list[TableDifference]]:
    """Today's fingerprints over the columns each table had before; tables or columns gone are problems.

    ``filled_after``: when ``before`` was taken (a backup's snapshot); NULL-time fills made earlier count as
    they are now. Without it every fill is shown as the NULL it was (``before`` from the legacy database)."""
    now, problems = {}, []
    for name, old in sorted(before.items()):
        schema, table = old.schema, old.table
        existing = table_columns(conn, schema, table)
        if not existing:
            continue  # compare() reports the table as missing
        gone = [c for c in old.columns if c not in existing]
        if gone:
            problems.append(TableDifference(name, "columns", f"{name}: column{'s' if len(gone) > 1 else ''} "
                                            f"{', '.join(gone)} existed before and {'are' if len(gone) > 1 else 'is'} gone; "
                                            "restore them from the baseline backup or fix the migration that dropped them"))
            continue
        now[name] = fingerprint_table(conn, schema, table, old.columns, algorithm=old.algorithm,
                                      overrides=columns_as_before_fills(conn, schema, table, filled_after))
    return now, problems


def count_row_differences(conn: psycopg.Connection, baseline: Baseline, old: TableFingerprint) -> RowDifference | None:
    """Exactly how many rows of one table differ from the dump of the baseline (None if it cannot tell).

    The dump's rows go into a temporary table inside a transaction that is rolled back.
    """
    if old.rows > EXACT_COUNT_MAX_ROWS:
        return None
    table = sql.Identifier(old.schema, old.table)
    scratch = sql.Identifier("pg_temp", "tsmigrate_baseline_rows")
    with baseline.table_data(old.schema, old.table) as data:
        if data is None or set(old.columns) - set(data.columns) \
                or set(data.columns) - set(table_columns(conn, old.schema, old.table)):
            return None
        with conn.transaction(force_rollback=True):
            conn.execute(PINNED_SETTINGS)   # row text as the fingerprints read it
            conn.execute(sql.SQL("SET LOCAL client_encoding = {}").format(sql.Literal(data.encoding)))
            conn.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                scratch, sql.SQL(", ").join(map(sql.Identifier, data.columns)), table))
            with conn.cursor() as cur, cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
                    scratch, sql.SQL(", ").join(map(sql.Identifier, data.columns)))) as copy:
                for line in data.rows:
                    copy.write(line)
            overrides = columns_as_before_fills(conn, old.schema, old.table, baseline.filled_after)
            then = sql.SQL("md5(ROW({})::text)").format(sql.SQL(", ").join(sql.Identifier("t", c) for c in old.columns))
            now = sql.SQL("md5(ROW({})::text)").format(
                sql.SQL(", ").join(overrides.get(c, sql.Identifier("t", c)) for c in old.columns))
            gone_query = sql.SQL("SELECT {then} FROM {scratch} t EXCEPT ALL SELECT {now} FROM {table} t").format(
                then=then, now=now, scratch=scratch, table=table)
            new_query = sql.SQL("SELECT {now} FROM {table} t EXCEPT ALL SELECT {then} FROM {scratch} t").format(
                then=then, now=now, scratch=scratch, table=table)
            gone = conn.execute(sql.SQL("SELECT count(*) FROM ({}) d").format(gone_query)).fetchone()[0]
            new = conn.execute(sql.SQL("SELECT count(*) FROM ({}) d").format(new_query)).fetchone()[0]
            keys = [c for c in primary_key_columns(conn, display_name(old.schema, old.table)) if c in old.columns] \
                or list(old.columns[:1])
            examples = conn.execute(sql.SQL("SELECT {keys} FROM {scratch} t WHERE {then} IN ({gone}) LIMIT 3").format(
                keys=sql.SQL(", ").join(sql.Identifier("t", k) for k in keys), scratch=scratch, then=then,
                gone=gone_query)).fetchall() if gone else []
    if not gone and not new:
        return None   # the dump's rows match: the difference lies elsewhere, the row groups tell
    shown = tuple(", ".join(f"{k}={v}" for k, v in zip(keys, row)) for row in examples)
    return RowDifference(gone, new, shown)


def content_differences(conn: psycopg.Connection, baseline: Baseline,
                        measured: tuple[dict[str, TableFingerprint], list[TableDifference]] | None = None
                        ) -> list[TableDifference]:
    """Every table of the baseline: row count and content as before (see the module's docstring).

    ``measured``: what fingerprints_as_before returned, when the caller has it already.
    """
    before = baseline.fingerprints
    now, problems = measured if measured is not None else fingerprints_as_before(conn, before, baseline.filled_after)
    problems = list(problems)
    skipped = {p.table for p in problems}
    for diff in compare({k: v for k, v in before.items() if k not in skipped}, now):
        old, new = before[diff.table], now.get(diff.table)
        if new is None:
            problems.append(TableDifference(diff.table, "missing", f"{diff.table}: the table existed before and is gone; "
                                            "restore it from the baseline backup"))
            continue
        grown = _grown_only(conn, old, new, baseline.filled_after)
        if grown is not None:
            problems.append(grown)
            continue
        exact = count_row_differences(conn, baseline, old)
        if new.rows != old.rows:
            how = f": {exact.describe()}" if exact else ""
            problems.append(TableDifference(diff.table, "rows", f"{diff.table}: {old.rows} rows before, {new.rows} now "
                                            f"({new.rows - old.rows:+d}){how}"))
        else:
            if exact:
                how = exact.describe()
            else:
                changed = sum(1 for a, b in zip(old.buckets, new.buckets) if a != b)
                n = max(1, changed // 2)   # a changed row leaves its old group and joins another
                how = (f"at least {n} row{'s differ' if n != 1 else ' differs'} (in {changed} of {BUCKETS} row groups)"
                       if changed else f"rows differ (more than {EXACT_COUNT_MAX_ROWS:,} rows: too many to count "
                       f"from the dump here; compare with pg_restore --data-only -t {old.table} on a scratch database)")
            problems.append(TableDifference(diff.table, "content", f"{diff.table}: same row count ({old.rows}) but {how}"))
    return problems


def _grown_only(conn: psycopg.Connection, old: TableFingerprint, new: TableFingerprint,
                filled_after: datetime | None) -> TableDifference | None:
    """Rows written after the backup (ids above the backup's highest), with every row of the backup as it was:
    the application kept writing (fence_application = false, or a session the fence could not stop)."""
    if old.high_water is None or new.rows <= old.rows:
        return None
    column, top = old.high_water
    if column not in table_columns(conn, old.schema, old.table):
        return None
    then = fingerprint_table(conn, old.schema, old.table, old.columns, up_to=old.high_water, algorithm=old.algorithm,
                             overrides=columns_as_before_fills(conn, old.schema, old.table, filled_after))
    if (then.rows, then.digest) != (old.rows, old.digest):
        return None
    added = new.rows - old.rows
    return TableDifference(old.name, "grown", f"{old.name}: {added} row{'s' if added != 1 else ''} written after the "
                                              f"backup ({column} above {top}); every row of the backup is as it was")


# -- constraints, indexes, foreign keys, sequences ---------------------------------------------------------

def constraints_not_valid(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(sql.SQL("""
        SELECT CASE WHEN c.conrelid <> 0 THEN c.conrelid::regclass::text ELSE c.contypid::regtype::text END,
               c.conname, c.conrelid <> 0
          FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
         WHERE NOT c.convalidated AND NOT {not_user}
         ORDER BY 1, 2""").format(not_user=_NOT_USER_SCHEMA)).fetchall()
    return [f"constraint {name} on {owner} is NOT VALID (existing rows were never checked): run "
            f"ALTER {'TABLE' if on_table else 'DOMAIN'} {owner} VALIDATE CONSTRAINT {display_name(name)}"
            for owner, name, on_table in rows]


def invalid_indexes(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute("""
        SELECT i.indexrelid::regclass::text, i.indrelid::regclass::text
          FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE (NOT i.indisvalid OR NOT i.indisready)
           AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1""").fetchall()
    return [f"index {index} on {table} is invalid (a CREATE INDEX CONCURRENTLY or REINDEX failed): "
            f"run REINDEX INDEX {index}" for index, table in rows]


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
        return (f"{self.name} on {self.schema}.{self.table} ({', '.join(self.columns)}) -> "
                f"{self.ref_schema}.{self.ref_table} ({', '.join(self.ref_columns)})")


def foreign_keys(conn: psycopg.Connection) -> list[ForeignKey]:
    rows = conn.execute(sql.SQL("""
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
         ORDER BY 2, 3, 1""").format(not_user=_NOT_USER_SCHEMA)).fetchall()
    return [ForeignKey(r[0], r[1], r[2], tuple(r[3]), r[4], r[5], tuple(r[6]), r[7]) for r in rows]


def foreign_key_orphans(conn: psycopg.Connection) -> list[str]:
    """Rows whose foreign key points at nothing, per constraint (checked by query, not trusted)."""
    problems = []
    for fk in foreign_keys(conn):
        child = [sql.Identifier("c", col) for col in fk.columns]
        checked = sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(c) for c in child)
        if fk.match_full:   # MATCH FULL: all NULL is fine, some NULL is a violation
            checked = sql.SQL("NOT ({})").format(sql.SQL(" AND ").join(sql.SQL("{} IS NULL").format(c) for c in child))
        join = sql.SQL(" AND ").join(sql.SQL("p.{} = {}").format(sql.Identifier(r), c) for r, c in zip(fk.ref_columns, child))
        query = sql.SQL("""SELECT {cols} FROM {child} c WHERE {checked}
                             AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {join})""").format(
            cols=sql.SQL(", ").join(child), child=sql.Identifier(fk.schema, fk.table), checked=checked,
            parent=sql.Identifier(fk.ref_schema, fk.ref_table), join=join)
        count = conn.execute(sql.SQL("SELECT count(*) FROM ({}) o").format(query)).fetchone()[0]
        if count:
            examples = conn.execute(sql.SQL("{} LIMIT 3").format(query)).fetchall()
            shown = "; ".join(", ".join(f"{c}={v}" for c, v in zip(fk.columns, row)) for row in examples)
            problems.append(f"foreign key {fk.describe()}: {count} row{'s' if count != 1 else ''} of "
                            f"{fk.schema}.{fk.table} {'point' if count != 1 else 'points'} at nothing (for example {shown}); restore the missing "
                            f"{fk.ref_schema}.{fk.ref_table} rows from the baseline backup or delete the orphans")
    return problems


def sequences_behind(conn: psycopg.Connection) -> list[str]:
    """Sequences (owned by a column, or named in a column default) whose next value is not beyond the column's values."""
    rows = conn.execute(sql.SQL("""
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
         ORDER BY 1, 2""").format(not_user=_NOT_USER_SCHEMA)).fetchall()
    problems = []
    for seq_schema, seq, schema, table, column, increment in rows:
        # The column first, then the sequence: a writer taking values meanwhile can only move the sequence
        # further ahead of what was read (the other order reports a false "behind" under a live application).
        extreme = conn.execute(sql.SQL("SELECT {}({}) FROM {}").format(
            sql.SQL("max" if increment > 0 else "min"), sql.Identifier(column), sql.Identifier(schema, table))).fetchone()[0]
        last, called = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(
            sql.Identifier(seq_schema, seq))).fetchone()
        next_value = last + increment if called else last
        if extreme is not None and (next_value <= extreme if increment > 0 else next_value >= extreme):
            seq_name, col_ref = display_name(seq_schema, seq), display_name(schema, table)
            problems.append(f"sequence {seq_name} gives {next_value} next, but {col_ref}.{column} already holds "
                            f"{extreme}: the next insert reuses a value. Fix: SELECT setval('{seq_name}', "
                            f"(SELECT {'max' if increment > 0 else 'min'}({display_name(column)}) FROM {col_ref}))")
    return problems


# -- objects: present, views answer, functions compile, extensions ---------------------------------------------

def _object_exists(conn: psycopg.Connection, obj) -> bool:
    if obj.kind == "EXTENSION":
        query, params = "SELECT 1 FROM pg_extension WHERE extname = %s", (obj.tag,)
    elif obj.kind in ("FUNCTION", "PROCEDURE"):
        name, _, args = obj.tag.partition("(")
        query, params = "SELECT to_regprocedure(format('%%I.%%I(%%s', %s::text, %s::text, %s::text))", (obj.schema, name, args)
    elif obj.kind == "TRIGGER":
        table, _, trigger = obj.tag.partition(" ")
        query = ("SELECT 1 FROM pg_trigger WHERE tgname = %s "
                 "AND tgrelid = to_regclass(format('%%I.%%I', %s::text, %s::text))")
        params = (trigger, obj.schema, table)
    else:
        query, params = "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))", (obj.schema, obj.tag)
    row = conn.execute(query, params).fetchone()
    return row is not None and row[0] is not None


def _restore_hint(obj, dump: str, dbname: str) -> str:
    """The command that puts one object back from the dump, as it was before the migration."""
    if obj.kind == "EXTENSION":
        return f"CREATE EXTENSION {display_name(obj.tag)}"
    if obj.kind in ("FUNCTION", "PROCEDURE"):
        selector = f"-P '{obj.tag}'"
    elif obj.kind == "TRIGGER":
        selector = f"-T '{obj.tag}'"     # pg_restore names a trigger by its tag: "table trigger"
    else:
        selector = f"-t {obj.tag}"
    refresh = f"; then REFRESH MATERIALIZED VIEW {display_name(obj.schema, obj.tag)}" if obj.kind == "MATERIALIZED VIEW" else ""
    return f"pg_restore --schema-only -n {obj.schema} {selector} -d {dbname} {dump}{refresh}"


def missing_objects(conn: psycopg.Connection, baseline: Baseline) -> list[str]:
    """Views, materialized views, functions, procedures, triggers, extensions of the baseline that are gone."""
    path = baseline.backup.path
    dump, first = str(path / "dump"), ""
    if baseline.backup.encrypted:
        dump = f"{path}.decrypted/dump"
        first = (f"python -m tsmigrate.backupctl decrypt --key-file KEYFILE {path} {path}.decrypted (the backup is "
                 "encrypted), then ")
    return [f"{obj.describe()} existed before the migration (in {path.name}) and is gone: run again "
            f"the migration file that defines it, or restore it as it was: {first}{_restore_hint(obj, dump, conn.info.dbname)}"
            for obj in baseline.objects() if not _object_exists(conn, obj)]


def _with_rollback(conn: psycopg.Connection, statement: sql.Composable, *, timeout: str) -> psycopg.Error | None:
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(timeout)))
            conn.execute("SET LOCAL lock_timeout = '5s'")
            conn.execute(statement).fetchall()
    except psycopg.Error as exc:
        return exc
    return None


def _first_line(exc: psycopg.Error) -> str:
    return f"{first_line(exc)} (SQLSTATE {exc.sqlstate})"


def broken_views(conn: psycopg.Connection, *, timeout: str = "60s") -> tuple[int, list[str]]:
    """Query every view and materialized view; returns (how many were queried, problems)."""
    views = conn.execute(sql.SQL("""
        SELECT n.nspname, c.relname, c.relkind = 'm'
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('v', 'm') AND NOT {not_user}
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                           AND d.objid = c.oid AND d.deptype = 'e')
         ORDER BY 1, 2""").format(not_user=_NOT_USER_SCHEMA)).fetchall()
    problems = []
    for schema, name, materialized in views:
        error = _with_rollback(conn, sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(schema, name)), timeout=timeout)
        if error is not None:
            fix = (f"REFRESH MATERIALIZED VIEW {display_name(schema, name)}" if error.sqlstate == "55000"
                   else "recreate it from the migration file that defines it")
            problems.append(f"{'materialized view' if materialized else 'view'} {display_name(schema, name)} does not answer: "
                            f"{_first_line(error)}; {fix}")
    return len(views), problems


def broken_functions(conn: psycopg.Connection, *, timeout: str = "30s") -> tuple[int, list[str]]:
    """Validate and call every user function (see the module's docstring). Returns (how many, problems).

    Give it a connection of its own and close it afterwards: a function may leave session state.
    """
    functions = conn.execute(sql.SQL("""
        SELECT p.oid, n.nspname, p.proname, p.oid::regprocedure::text, p.prokind, l.lanname,
               vn.nspname, v.proname,
               p.prorettype IN ('trigger'::regtype, 'event_trigger'::regtype)
                 OR EXISTS (SELECT 1 FROM unnest(p.proargtypes) a(typ) JOIN pg_type t ON t.oid = a.typ
                             WHERE t.typtype = 'p'),
               p.provariadic <> 0,
               array(SELECT array[tn.nspname::text, t.typname::text]
                       FROM unnest(p.proargtypes) WITH ORDINALITY a(typ, i)
                       JOIN pg_type t ON t.oid = a.typ JOIN pg_namespace tn ON tn.oid = t.typnamespace ORDER BY a.i)
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
          LEFT JOIN pg_proc v ON v.oid = l.lanvalidator LEFT JOIN pg_namespace vn ON vn.oid = v.pronamespace
         WHERE NOT {not_user} AND p.prokind IN ('f', 'p')
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                           AND d.objid = p.oid AND d.deptype = 'e')
         ORDER BY 4""").format(not_user=_NOT_USER_SCHEMA)).fetchall()
    problems = []
    for oid, schema, name, signature, kind, language, v_schema, v_name, not_callable, variadic, args in functions:
        if v_name is not None:
            check = sql.SQL("SELECT {}({})").format(sql.Identifier(v_schema, v_name), sql.Literal(oid))
            try:
                with conn.transaction(force_rollback=True):
                    conn.execute("SET LOCAL check_function_bodies = on")
                    conn.execute(check)
            except psycopg.Error as exc:
                problems.append(f"function {signature} ({language}) does not compile: {_first_line(exc)}; "
                                "recreate it from the migration file that defines it")
                continue
        if not_callable or kind != "f":
            continue   # triggers and pseudo-typed (polymorphic) arguments cannot be called with plain NULLs;
                       # procedures (CALL) may commit: the validator only
        values = [sql.SQL("NULL::{}").format(sql.Identifier(*a)) for a in args]
        if variadic and values:
            values[-1] = sql.SQL("VARIADIC {}").format(values[-1])
        call = sql.SQL("SELECT 1 FROM {}({}) AS r LIMIT 1").format(sql.Identifier(schema, name), sql.SQL(", ").join(values))
        error = _with_rollback(conn, call, timeout=timeout)
        # Class 42 (a name that does not resolve, a type mismatch, a privilege) and 3F (schema) mean
        # the function no longer fits the schema. Other errors (read-only, NULL input, timeout)
        # come after its statements were planned, or say nothing about the schema.
        if error is not None and error.sqlstate and error.sqlstate[:2] in ("42", "3F"):
            problems.append(f"function {signature} no longer fits the schema: {_first_line(error)}; "
                            "fix the object it names or recreate the function")
    return len(functions), problems


def extension_problems(conn: psycopg.Connection, baseline: Baseline | None = None) -> list[str]:
    problems = []
    rows = {name: (installed, default) for name, installed, default in conn.execute("""
        SELECT e.extname, e.extversion, a.default_version
          FROM pg_extension e LEFT JOIN pg_available_extensions a ON a.name = e.extname""").fetchall()}
    if "timescaledb" not in rows:
        problems.append("the timescaledb extension is not installed in this database: the migration that runs "
                        "CREATE EXTENSION timescaledb (010) did not run; run the execute suite")
    for name, (installed, default) in sorted(rows.items()):
        if default is not None and installed != default:
            problems.append(f"extension {name} is at version {installed} but the server's files are {default}: run "
                            f"ALTER EXTENSION {display_name(name)} UPDATE "
                            "(for timescaledb as the first command of a new session: psql -X)")
        elif default is None:
            problems.append(f"extension {name} {installed} is installed but the server has no files for it: "
                            "install its package for this PostgreSQL")
    if baseline is not None and baseline.has_dump:
        for obj in baseline.objects():
            if obj.kind == "EXTENSION" and obj.tag not in rows:
                problems.append(f"extension {obj.tag} was installed before the migration and is gone: "
                                f"CREATE EXTENSION {display_name(obj.tag)}")
    return problems
