"""Post-flight integrity of the schema's objects: present as in the baseline, and usable.

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

import psycopg
from psycopg import sql
from psycopg.abc import Query

from ..baseline import Baseline
from ..db import display_name
from ..errors import first_line
from .user_schemas import NOT_USER_SCHEMA


def _object_exists(conn: psycopg.Connection, obj) -> bool:
    params: tuple[str, ...]
    if obj.kind == "EXTENSION":
        query, params = "SELECT 1 FROM pg_extension WHERE extname = %s", (obj.tag,)
    elif obj.kind in ("FUNCTION", "PROCEDURE"):
        name, _, args = obj.tag.partition("(")
        query, params = (
            "SELECT to_regprocedure(format('%%I.%%I(%%s', %s::text, %s::text, %s::text))",
            (obj.schema, name, args),
        )
    elif obj.kind == "TRIGGER":
        table, _, trigger = obj.tag.partition(" ")
        query = (
            "SELECT 1 FROM pg_trigger WHERE tgname = %s "
            "AND tgrelid = to_regclass(format('%%I.%%I', %s::text, %s::text))"
        )
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
        selector = f"-T '{obj.tag}'"  # pg_restore names a trigger by its tag: "table trigger"
    else:
        selector = f"-t {obj.tag}"
    refresh = (
        f"; then REFRESH MATERIALIZED VIEW {display_name(obj.schema, obj.tag)}"
        if obj.kind == "MATERIALIZED VIEW"
        else ""
    )
    return f"pg_restore --schema-only -n {obj.schema} {selector} -d {dbname} {dump}{refresh}"


def missing_objects(conn: psycopg.Connection, baseline: Baseline) -> list[str]:
    """Views, materialized views, functions, procedures, triggers, extensions of the baseline that are gone."""
    path = baseline.backup.path
    dump, first = str(path / "dump"), ""
    if baseline.backup.encrypted:
        dump = f"{path}.decrypted/dump"
        first = f"tsmigrate backup decrypt --key-file KEYFILE {path} {path}.decrypted (the backup is encrypted), then "
    return [
        f"{obj.describe()} existed before the migration (in {path.name}) and is gone: run again "
        "the migration file that defines it, or restore it as it was: "
        f"{first}{_restore_hint(obj, dump, conn.info.dbname)}"
        for obj in baseline.objects()
        if not _object_exists(conn, obj)
    ]


def _with_rollback(conn: psycopg.Connection, statement: Query, *, timeout: str) -> psycopg.Error | None:
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
    views = conn.execute(
        sql.SQL("""
        SELECT n.nspname, c.relname, c.relkind = 'm'
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('v', 'm') AND NOT {not_user}
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                           AND d.objid = c.oid AND d.deptype = 'e')
         ORDER BY 1, 2""").format(not_user=NOT_USER_SCHEMA)
    ).fetchall()
    problems = []
    for schema, name, materialized in views:
        error = _with_rollback(
            conn, sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(schema, name)), timeout=timeout
        )
        if error is not None:
            fix = (
                f"REFRESH MATERIALIZED VIEW {display_name(schema, name)}"
                if error.sqlstate == "55000"
                else "recreate it from the migration file that defines it"
            )
            problems.append(
                f"{'materialized view' if materialized else 'view'} {display_name(schema, name)} does not answer: "
                f"{_first_line(error)}; {fix}"
            )
    return len(views), problems


def broken_functions(conn: psycopg.Connection, *, timeout: str = "30s") -> tuple[int, list[str]]:
    """Validate and call every user function (see the module's docstring). Returns (how many, problems).

    Give it a connection of its own and close it afterwards: a function may leave session state.
    """
    functions = conn.execute(
        sql.SQL("""
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
         ORDER BY 4""").format(not_user=NOT_USER_SCHEMA)
    ).fetchall()
    problems = []
    for oid, schema, name, signature, kind, language, v_schema, v_name, not_callable, variadic, args in functions:
        if v_name is not None:
            check = sql.SQL("SELECT {}({})").format(sql.Identifier(v_schema, v_name), sql.Literal(oid))
            try:
                with conn.transaction(force_rollback=True):
                    conn.execute("SET LOCAL check_function_bodies = on")
                    conn.execute(check)
            except psycopg.Error as exc:
                problems.append(
                    f"function {signature} ({language}) does not compile: {_first_line(exc)}; "
                    "recreate it from the migration file that defines it"
                )
                continue
        if not_callable or kind != "f":
            continue  # triggers and pseudo-typed (polymorphic) arguments cannot be called with plain NULLs;
            # procedures (CALL) may commit: the validator only
        values = [sql.SQL("NULL::{}").format(sql.Identifier(*a)) for a in args]
        if variadic and values:
            values[-1] = sql.SQL("VARIADIC {}").format(values[-1])
        call = sql.SQL("SELECT 1 FROM {}({}) AS r LIMIT 1").format(
            sql.Identifier(schema, name), sql.SQL(", ").join(values)
        )
        error = _with_rollback(conn, call, timeout=timeout)
        # Class 42 (a name that does not resolve, a type mismatch, a privilege) and 3F (schema) mean
        # the function no longer fits the schema. Other errors (read-only, NULL input, timeout)
        # come after its statements were planned, or say nothing about the schema.
        if error is not None and error.sqlstate and error.sqlstate[:2] in ("42", "3F"):
            problems.append(
                f"function {signature} no longer fits the schema: {_first_line(error)}; "
                "fix the object it names or recreate the function"
            )
    return len(functions), problems


def extension_problems(conn: psycopg.Connection, baseline: Baseline | None = None) -> list[str]:
    problems = []
    rows = {
        name: (installed, default)
        for name, installed, default in conn.execute("""
        SELECT e.extname, e.extversion, a.default_version
          FROM pg_extension e LEFT JOIN pg_available_extensions a ON a.name = e.extname""").fetchall()
    }
    if "timescaledb" not in rows:
        problems.append(
            "the timescaledb extension is not installed in this database: the migration that runs "
            "CREATE EXTENSION timescaledb (010) did not run; run the execute suite"
        )
    for name, (installed, default) in sorted(rows.items()):
        if default is not None and installed != default:
            problems.append(
                f"extension {name} is at version {installed} but the server's files are {default}: run "
                f"ALTER EXTENSION {display_name(name)} UPDATE "
                "(for timescaledb as the first command of a new session: psql -X)"
            )
        elif default is None:
            problems.append(
                f"extension {name} {installed} is installed but the server has no files for it: "
                "install its package for this PostgreSQL"
            )
    if baseline is not None and baseline.has_dump:
        for obj in baseline.objects():
            if obj.kind == "EXTENSION" and obj.tag not in rows:
                problems.append(
                    f"extension {obj.tag} was installed before the migration and is gone: "
                    f"CREATE EXTENSION {display_name(obj.tag)}"
                )
    return problems
