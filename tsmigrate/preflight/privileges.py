"""Pre-flight checks of the connected role's privileges: everything the run will do, checked as the role that will
do it, before anything changes. Each missing privilege is a finding with the statement that grants it.

- the server's settings the checks read (PF054);
- CREATE on the database: the run's own schema, the files' CREATE SCHEMA, the extension (PF050);
- CREATE on each schema the files and the conversions create objects in (PF051);
- ownership (membership in the owner) of every existing object a step alters, replaces or drops, of the planned
  tables and the views on them, and the timescaledb extension where the role cannot create it (PF007);
- the databases the rehearsal and the automatic restore make and swap: CREATEDB, the database's owner (PF052);
- the fence: ending the application's sessions (pg_signal_backend, PF053; CREATEROLE is PF017).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg
from pglast import ast
from pglast.enums import FunctionParameterMode, ObjectType
from psycopg import sql

from .. import fence
from ..convert.online import online_tables
from ..db import is_hypertable, one, row
from ..findings import Finding
from ..lint.source import parse
from ..lint.syntax import filled
from ..migrations import MigrationFile, discover
from ..plan import Plan
from ..timescale import server_timescaledb
from ..tool_objects import OWN_SCHEMA
from .checks import finding


def _q(*names: str) -> str:
    """Names as SQL quotes them (for the statements a finding shows)."""
    return sql.Identifier(*names).as_string(None)


def grant_role(role: str, to: str) -> str:
    return f"GRANT {_q(role)} TO {_q(to)};"


def member_of(conn: psycopg.Connection, owner: str, user: str, what: str) -> str:
    """How ``user`` comes to hold ``owner``'s privileges on ``what``: membership, never in a superuser's role."""
    if one(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = %s", (owner,)):
        return (
            f"{owner} is a superuser, so grant no membership in it: as a superuser, give {what} to the role that "
            f"owns the application's objects and that {user} is a member of (ALTER ... OWNER TO), or run as a "
            "superuser"
        )
    return grant_role(owner, user)


def _user(conn: psycopg.Connection) -> str:
    return one(conn, "SELECT current_user")


def _superuser(conn: psycopg.Connection) -> bool:
    return one(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")


# -- what the pending files touch -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Touched:
    """An object a statement of a file needs: ``kind`` 'relation' or 'function' (to own), or 'schema' (to create in,
    None: the schema unqualified names are created in)."""

    kind: str
    name: tuple[str, ...]  # as written: (name,) or (schema, name)
    path: str
    line: int
    nargs: int | None = None  # a function's input arguments
    verb: str = "alters"


def _range(rv: ast.RangeVar | None) -> tuple[str, ...]:
    rv = filled(rv)
    return tuple(p for p in (rv.schemaname, rv.relname) if p)


def _strings(names) -> tuple[str, ...]:
    return tuple(n.sval for n in names or () if isinstance(n, ast.String) and n.sval is not None)


def _input_args(parameters) -> int:
    modes = (
        FunctionParameterMode.FUNC_PARAM_IN,
        FunctionParameterMode.FUNC_PARAM_INOUT,
        FunctionParameterMode.FUNC_PARAM_VARIADIC,
        FunctionParameterMode.FUNC_PARAM_DEFAULT,
    )
    return sum(1 for p in parameters or () if p.mode in modes)


_DROPPED_RELATIONS = {
    ObjectType.OBJECT_TABLE,
    ObjectType.OBJECT_VIEW,
    ObjectType.OBJECT_MATVIEW,
    ObjectType.OBJECT_SEQUENCE,
    ObjectType.OBJECT_INDEX,
    ObjectType.OBJECT_FOREIGN_TABLE,
}


def touched_by(sql_text: str, path: str) -> list[Touched]:
    """The existing objects each statement of a file alters, replaces or drops, and the schemas it creates in."""
    parsed = parse(sql_text)
    if parsed.error is not None:
        return []  # the lint reports it (TS000)
    found: list[Touched] = []
    for raw in parsed.statements:
        stmt, line = raw.stmt, parsed.lines.line(parsed.lines.skip_noise(raw.stmt_location or 0))

        def add(
            kind: str, name: tuple[str, ...], verb: str = "alters", nargs: int | None = None, line: int = line
        ) -> None:
            if name or kind == "schema":
                found.append(Touched(kind, name, path, line, nargs, verb))

        def creates_in(name: tuple[str, ...]) -> None:
            add("schema", name[:-1], "creates objects in")

        if isinstance(stmt, (ast.AlterTableStmt, ast.RefreshMatViewStmt)) and stmt.relation:
            add("relation", _range(stmt.relation))
        elif isinstance(stmt, ast.AlterSeqStmt) and stmt.sequence:
            add("relation", _range(stmt.sequence))
        elif isinstance(stmt, ast.RenameStmt) and stmt.relation:
            add("relation", _range(stmt.relation), "renames")
        elif isinstance(stmt, (ast.IndexStmt, ast.CreateTrigStmt)) and stmt.relation:
            add(
                "relation", _range(stmt.relation), "indexes" if isinstance(stmt, ast.IndexStmt) else "adds a trigger to"
            )
        elif isinstance(stmt, ast.ViewStmt):
            add("relation", _range(stmt.view), "replaces")
            creates_in(_range(stmt.view))
        elif isinstance(stmt, ast.CreateFunctionStmt):
            name = _strings(stmt.funcname)
            add("function", name, "replaces", _input_args(stmt.parameters))
            creates_in(name)
        elif isinstance(stmt, (ast.CreateStmt, ast.CreateSeqStmt)):
            name = _range(stmt.relation if isinstance(stmt, ast.CreateStmt) else stmt.sequence)
            creates_in(name)
        elif isinstance(stmt, ast.CreateTableAsStmt) and stmt.into and stmt.into.rel:
            creates_in(_range(stmt.into.rel))
        elif isinstance(stmt, (ast.CompositeTypeStmt,)) and stmt.typevar:
            creates_in(_range(stmt.typevar))
        elif isinstance(stmt, (ast.CreateEnumStmt, ast.CreateDomainStmt)):
            creates_in(_strings(stmt.typeName if isinstance(stmt, ast.CreateEnumStmt) else stmt.domainname))
        elif isinstance(stmt, ast.DropStmt):
            for obj in stmt.objects or ():
                if stmt.removeType in _DROPPED_RELATIONS:
                    add("relation", _strings(obj), "drops")
                elif stmt.removeType in (ObjectType.OBJECT_FUNCTION, ObjectType.OBJECT_PROCEDURE) and isinstance(
                    obj, ast.ObjectWithArgs
                ):
                    add(
                        "function",
                        _strings(obj.objname),
                        "drops",
                        None if obj.args_unspecified else len(obj.objargs or ()),
                    )
                elif stmt.removeType == ObjectType.OBJECT_TRIGGER:
                    add("relation", _strings(obj)[:-1], "drops a trigger of")
    return found


def _relation_owner(conn: psycopg.Connection, name: tuple[str, ...]) -> tuple[str, str, bool, int] | None:
    """(the relation as the server names it, its owner, whether the connected role has its privileges, its oid), or
    None. Read from the catalog, which any role may (to_regclass needs USAGE on the schema)."""
    schema, relation = (name[-2] if len(name) > 1 else None), name[-1]
    row = conn.execute(
        """SELECT format('%%I.%%I', n.nspname, c.relname), pg_get_userbyid(c.relowner),
                                 pg_has_role(current_user, c.relowner, 'USAGE'), c.oid::bigint
                            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE c.relname = %s AND (n.nspname = %s OR (%s::text IS NULL
                                 AND n.nspname = ANY(current_schemas(true))))
                           ORDER BY array_position(current_schemas(true), n.nspname) LIMIT 1""",
        (relation, schema, schema),
    ).fetchone()
    return tuple(row) if row else None


def _function_owners(conn: psycopg.Connection, name: tuple[str, ...], nargs: int | None) -> list[tuple[str, str, bool]]:
    schema, func = (name[-2] if len(name) > 1 else None), name[-1]
    return conn.execute(
        """SELECT p.oid::regprocedure::text, pg_get_userbyid(p.proowner),
                                  pg_has_role(current_user, p.proowner, 'USAGE')
                             FROM pg_proc p
                            WHERE p.proname = %s AND (%s::int IS NULL OR p.pronargs = %s)
                              AND p.pronamespace = (SELECT n.oid FROM pg_namespace n JOIN pg_proc q
                                                           ON q.pronamespace = n.oid AND q.proname = p.proname
                                                        WHERE n.nspname = %s OR (%s::text IS NULL
                                                              AND n.nspname = ANY(current_schemas(true)))
                                                        ORDER BY array_position(current_schemas(true), n.nspname)
                                                        LIMIT 1)""",
        (func, nargs, nargs, schema, schema),
    ).fetchall()


# -- the checks -------------------------------------------------------------------------------------------------


def settings(conn: psycopg.Connection) -> list[Finding]:
    """Settings such as shared_preload_libraries and data_directory are a superuser's or pg_read_all_settings'."""
    if one(conn, "SELECT pg_has_role(current_user, 'pg_read_all_settings', 'USAGE')"):
        return []
    user = _user(conn)
    return [
        finding(
            "PF054",
            f"role {user} may not read the server's settings reserved to pg_read_all_settings "
            "(shared_preload_libraries, data_directory, config_file): the checks that read them judge "
            f"from what the role sees instead. To let them read them: GRANT pg_read_all_settings TO "
            f"{_q(user)};",
        )
    ]


def database(conn: psycopg.Connection, files: list[MigrationFile], plan: Plan | None) -> list[Finding]:
    """CREATE on the database: the run creates its schema (CREATE SCHEMA checks it even when the schema exists),
    so do the files' CREATE SCHEMA, and the extension when it is not created yet."""
    if one(conn, "SELECT has_database_privilege(current_database(), 'CREATE')"):
        return []
    user, db = _user(conn), one(conn, "SELECT current_database()")
    needs = [f"its schema {OWN_SCHEMA}"]
    schemas = [f for f in files if any(isinstance(r.stmt, ast.CreateSchemaStmt) for r in parse(f.sql).statements)]
    if schemas:
        needs.append("CREATE SCHEMA in " + ", ".join(f.label for f in schemas))
    if not one(conn, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"):
        needs.append("the timescaledb extension, unless a superuser creates it first")
    return [
        finding(
            "PF050",
            f"role {user} may not create schemas in database {db}, and the run creates "
            f"{'; '.join(needs)}: GRANT CREATE ON DATABASE {_q(db)} TO {_q(user)};",
        )
    ]


def schemas(conn: psycopg.Connection, files: list[MigrationFile], plan: Plan | None) -> list[Finding]:
    """CREATE on every existing schema the files create objects in, and on the plan's (the conversion's tables)."""
    user = _user(conn)
    wanted: dict[str, tuple[str | None, int | None, str]] = {}
    for f in files:
        for t in touched_by(f.sql, str(f.path)):
            if t.kind != "schema":
                continue
            schema = t.name[0] if t.name else one(conn, "SELECT current_schema()")
            if schema is not None:
                wanted.setdefault(schema, (t.path, t.line, f"{f.label} creates objects in it"))
    wanted.setdefault(OWN_SCHEMA, (None, None, "the run keeps its ledger and records there"))
    if plan is not None and plan.hypertables:
        wanted.setdefault(
            plan.schema, (str(plan.path) if plan.path else None, None, "the conversions create the new tables in it")
        )
    found = []
    for schema, (path, line, why) in wanted.items():
        ok = one(
            conn,
            """SELECT n.oid IS NULL OR (has_schema_privilege(n.oid, 'CREATE')
                                                    AND has_schema_privilege(n.oid, 'USAGE'))
                            FROM (SELECT (SELECT oid FROM pg_namespace WHERE nspname = %s) AS oid) n""",
            (schema,),
        )
        if not ok:
            found.append(
                finding(
                    "PF051",
                    f"role {user} may not create objects in schema {schema} ({why}): "
                    f"GRANT USAGE, CREATE ON SCHEMA {_q(schema)} TO {_q(user)};",
                    path=path,
                    line=line,
                )
            )
    return found


def ownership(conn: psycopg.Connection, files: list[MigrationFile], plan: Plan | None) -> list[Finding]:
    """Every existing object a step alters must be the role's or one of its roles' (or the role a superuser)."""
    if _superuser(conn):
        return []
    user = _user(conn)
    found = []
    if not one(conn, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"):
        trusted = one(
            conn,
            """SELECT bool_or(trusted) FROM pg_available_extension_versions
                                WHERE name = 'timescaledb'""",
        )
        if not trusted:
            found.append(
                finding(
                    "PF007",
                    f"role {user} is not a superuser and cannot create the timescaledb extension "
                    "(it is not a trusted extension on this server): a superuser runs "
                    "CREATE EXTENSION timescaledb; in the database before the window",
                )
            )
    seen: set[str] = set()

    def judge(name: str, owner: str, member: bool, why: str, **where) -> None:
        if member or name in seen:
            return
        seen.add(name)
        found.append(
            finding(
                "PF007",
                f"role {user} does not own {name} (owner {owner}), which {why}: {member_of(conn, owner, user, name)}",
                **where,
            )
        )

    if plan is not None:
        for h in plan.hypertables:
            owned = _relation_owner(conn, (plan.schema, h.table))
            if owned is not None:
                judge(*owned[:3], "the conversion alters", table=f"{plan.schema}.{h.table}")
                for view, view_owner, view_member in conn.execute(
                    """
                        SELECT DISTINCT v.oid::regclass::text, pg_get_userbyid(v.relowner),
                               pg_has_role(current_user, v.relowner, 'USAGE')
                          FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class
                         WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = %s::oid
                           AND v.oid <> d.refobjid""",
                    (owned[3],),
                ).fetchall():
                    judge(
                        view,
                        view_owner,
                        view_member,
                        f"the conversion of {plan.schema}.{h.table} moves (a view on it)",
                        table=f"{plan.schema}.{h.table}",
                    )
    for table, table_owner, table_member in conn.execute(
        """SELECT format('%%I.%%I', n.nspname, c.relname), pg_get_userbyid(c.relowner),
                                      pg_has_role(current_user, c.relowner, 'USAGE')
                                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                WHERE n.nspname = %s AND c.relkind IN ('r', 'p')""",
        (OWN_SCHEMA,),
    ).fetchall():
        judge(table, table_owner, table_member, "the run writes (an earlier run as another role made it)")
    for f in files:
        for t in touched_by(f.sql, str(f.path)):
            if t.kind == "relation":
                rows = [r[:3]] if (r := _relation_owner(conn, t.name)) else []
            elif t.kind == "function":
                rows = _function_owners(conn, t.name, t.nargs)
            else:
                continue
            for owned_by in rows:
                judge(*owned_by, f"{f.label} {t.verb}", path=t.path, line=t.line)
    return found


def databases(conn: psycopg.Connection, changes: bool = True) -> list[Finding]:
    """The rehearsal's scratch copy and the restore's new database need CREATEDB; the restore swaps names, and
    renaming the database needs its owner's privileges. ``changes``: the run has steps to apply (a restore may
    follow); loading TimescaleDB's catalog (hypertables, chunks, jobs) back is a superuser's."""
    if _superuser(conn):
        return []
    user, db = _user(conn), one(conn, "SELECT current_database()")
    found = []
    if changes and one(conn, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"):
        own = one(
            conn,
            """SELECT (SELECT count(*) FROM _timescaledb_catalog.hypertable)
                                + (SELECT count(*) FROM _timescaledb_config.bgw_job WHERE id >= 1000)""",
        )
        if own:
            found.append(
                finding(
                    "PF052",
                    f"database {db} has hypertables or TimescaleDB jobs already: the automatic "
                    "restore loads TimescaleDB's catalog back, which only a superuser may; "
                    f"role {user} is not one: run the migration as a superuser, or with "
                    "--no-restore and a superuser at hand to restore",
                )
            )
    if not one(conn, "SELECT rolcreatedb FROM pg_roles WHERE rolname = current_user"):
        found.append(
            finding(
                "PF052",
                f"role {user} may not create databases: the rehearsal's scratch copy and the "
                f"automatic restore's new database need it: ALTER ROLE {_q(user)} CREATEDB;",
            )
        )
    owner, member = row(
        conn,
        """SELECT pg_get_userbyid(datdba), pg_has_role(current_user, datdba, 'USAGE')
             FROM pg_database WHERE datname = current_database()""",
    )
    if not member:
        fix = member_of(conn, owner, user, f"database {db}")
        found.append(
            finding(
                "PF052",
                f"role {user} does not own database {db} (owner {owner}): the automatic restore "
                f"renames it to keep the failed copy and gives its name to the restored one: " + fix,
            )
        )
    return found


def fence_sessions(conn: psycopg.Connection, plan: Plan | None) -> list[Finding]:
    """The fence ends the application's open sessions: pg_signal_backend, or membership in each login role."""
    if plan is None or not plan.fence_application or _superuser(conn) or online_tables(conn, plan):
        return []
    if one(conn, "SELECT pg_has_role(current_user, 'pg_signal_backend', 'USAGE')"):
        return []
    user = _user(conn)
    cannot = [
        r
        for r in fence.roles_to_fence(conn, plan.application_roles)
        if not one(conn, "SELECT pg_has_role(current_user, %s, 'USAGE')", (r,))
    ]
    if not cannot:
        return []
    return [
        finding(
            "PF053",
            f"role {user} may not end the sessions of {', '.join(cannot)}, which the fence ends when "
            f"they are connected at the start of the run: GRANT pg_signal_backend TO {_q(user)};",
            path=str(plan.path) if plan.path else None,
        )
    ]


def files_to_check(conn: psycopg.Connection, migrations_dir: Path) -> list[MigrationFile]:
    """The pending files; every file when the role may not read the ledger (PF051 says why)."""
    from .files import pending_files

    readable = one(
        conn,
        """SELECT coalesce(bool_and(has_schema_privilege(oid, 'USAGE')), true)
                              FROM pg_namespace WHERE nspname = %s""",
        (OWN_SCHEMA,),
    )
    if readable:
        try:
            with conn.transaction():
                return pending_files(conn, migrations_dir)
        except psycopg.errors.InsufficientPrivilege:
            pass  # the ledger is another role's: PF007 names it
    return discover(migrations_dir)[0]


def has_pending_steps(conn: psycopg.Connection, files: list[MigrationFile], plan: Plan | None) -> bool:
    """Whether the run has anything to apply (``files``: the pending ones), so a restore may follow."""
    return bool(files) or (
        plan is not None and any(not is_hypertable(conn, plan.schema, h.table) for h in plan.hypertables)
    )


def privileges(conn: psycopg.Connection, plan: Plan | None, files: list[MigrationFile] | None = None) -> list[Finding]:
    """Every privilege check of this module (``files``: the pending migration files)."""
    files = files or []
    return (
        settings(conn)
        + database(conn, files, plan)
        + schemas(conn, files, plan)
        + ownership(conn, files, plan)
        + databases(conn, has_pending_steps(conn, files, plan))
        + fence_sessions(conn, plan)
    )


def job_owners(conn: psycopg.Connection, plan: Plan | None) -> list[Finding]:
    """TimescaleDB runs a table's policy jobs as the table's owner, and refuses to start them for a role that may
    not log in ("permission denied to start background process as role ..."): where the plan adds compression or
    retention policies (community edition), each planned table's owner must have LOGIN."""
    if plan is None or not (plan.needs_compression or plan.needs_retention):
        return []
    if not server_timescaledb(conn).has_compression:
        return []  # the apache edition adds no policy (PF004 says so)
    found = []
    for h in plan.hypertables:
        if not (h.wants_compression or h.wants_retention):
            continue
        row = conn.execute(
            """SELECT r.rolname, r.rolcanlogin FROM pg_class c
                                JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_roles r ON r.oid = c.relowner
                               WHERE n.nspname = %s AND c.relname = %s""",
            (plan.schema, h.table),
        ).fetchone()
        if row is None or row[1]:
            continue
        owner = row[0]
        found.append(
            finding(
                "PF055",
                f"{plan.schema}.{h.table} is owned by {owner}, which may not log in: TimescaleDB runs the table's "
                "compression and retention jobs as its owner and refuses to start them for a role without "
                "LOGIN, so its conversion would fail when it adds them (a role without a password still cannot "
                f"log in from outside). To let it: ALTER ROLE {_q(owner)} LOGIN;",
                table=f"{plan.schema}.{h.table}",
            )
        )
    return found
