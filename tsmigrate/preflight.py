"""Pre-flight checks: will the migration work on this target? Findings only, no changes.

Each check takes a read-only connection (and what else it needs) and returns findings with a
stable code (PF0xx), a location and a fix. The suite turns blocking findings into failed
tests, and the verdict into GO / NO-GO.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import time
from pathlib import Path

import psycopg
from psycopg import sql

from . import fence, ledger
from .activity import other_sessions, sample_writes
from .backup import BackupError, room_needed, tool, tool_major
from .plan import PLAN_FILE_NAME, Plan
from .codes import CODES, Code
from .policies import retention_drops
from .db import one, timescaledb_version
from .db import regclass as regclass_of
from .findings import ADVISORY, BLOCKING, Finding
from .lint import hypertables_created_in, lint_sql
from .migrations import MigrationFile, discover, files_digest, version_gaps
from .online import online_tables
from .rehearsal import RehearsalUnavailable, rehearse
from .target import Target
from .timescale import APACHE_LACKS, ServerTimescale, server_timescaledb


log = logging.getLogger(__name__)

# The PF codes of the registry (tsmigrate/codes.py): severity, title and hint of each check.
CHECKS: dict[str, Code] = {code: c for code, c in CODES.items() if code.startswith("PF")}


def finding(code: str, message: str, *, path: str | None = None, line: int | None = None,
            table: str | None = None, severity: str | None = None, hint: str | None = None) -> Finding:
    check = CHECKS[code]
    return Finding(code, severity or check.severity, message, path, line, table, hint or check.hint)


def _line_of_call(text: str, function: str, table: str) -> int | None:
    """The line of the first call of ``function`` naming ``table`` (for findings about a file's own call)."""
    pattern = re.compile(rf"{function}\s*\(\s*'[^']*{re.escape(table)}'", re.IGNORECASE)
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else None


# -- environment ------------------------------------------------------------------------------------

def server_version(conn: psycopg.Connection, num: int | None = None) -> list[Finding]:
    """``num``: the server_version_num to judge, when not the server's own (a test's other version)."""
    num = num if num is not None else one(conn, "SELECT current_setting('server_version_num')::int")
    if num < 130000:
        return [finding("PF001", f"the server runs PostgreSQL {num // 10000}; TimescaleDB 2.x needs 13 or later")]
    if num // 10000 != 15:
        return [finding("PF001", f"the server runs PostgreSQL {num // 10000}; MS5.0's target is 15", severity=ADVISORY)]
    return []


def timescaledb_ready(conn: psycopg.Connection, plan: Plan | None, ts: ServerTimescale | None = None) -> list[Finding]:
    """``ts``: what the server offers, when not read from it (a test's other version or edition)."""
    ts = ts or server_timescaledb(conn)
    if ts.available_version is None:
        return [finding("PF002", "the timescaledb extension is not installed on the server (pg_available_extensions)")]
    found = []
    if not ts.preloaded:
        found.append(finding("PF003", "timescaledb is not in shared_preload_libraries "
                                      f"({one(conn, 'SHOW shared_preload_libraries') or 'empty'})"))
    if ts.installed_version and ts.installed_version != ts.available_version:
        found.append(finding("PF005", f"timescaledb {ts.installed_version} is created in this database, "
                                      f"{ts.available_version} is installed on the server"))
    wants = plan is not None and (plan.needs_compression or plan.needs_retention)
    if wants and ts.preloaded and ts.edition is None:
        found.append(finding("PF004", "cannot tell which TimescaleDB edition the server runs (the connected role may "
                                      "not load the library before the extension exists); compression and retention "
                                      "are applied only if it is the community edition", severity=ADVISORY,
                             path=str(plan.path) if plan.path else None))
    elif wants and plan.needs_compression and ts.has_compression and _version(ts.available_version) < (2, 21):
        found.append(finding("PF036", f"TimescaleDB {ts.available_version} with compression planned: once chunks are "
                                      "compressed, pg_dump backups of this database cannot be restored"))
    if wants and ts.preloaded and ts.edition is not None and not ts.has_compression:
        wanted = " and ".join(w for w, on in (("compression", plan.needs_compression),
                                              ("retention", plan.needs_retention)) if on)
        message = (f"the server runs TimescaleDB's apache edition (no {APACHE_LACKS}); the plan asks for {wanted}")
        if plan.allow_apache_edition:
            found.append(finding("PF004", message + "; plan.toml allows going without them: they will be skipped",
                                 severity=ADVISORY, path=str(plan.path) if plan.path else None))
        else:
            found.append(finding("PF004", message + " and does not allow going without",
                                 path=str(plan.path) if plan.path else None))
    return found


def _version(text: str | None) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text or "")[:3])


def client_tools(conn: psycopg.Connection) -> list[Finding]:
    server_major = one(conn, "SELECT current_setting('server_version_num')::int") // 10000
    found = []
    for name in ("pg_dump", "pg_restore"):
        try:
            major = tool_major(name)
        except BackupError as exc:
            found.append(finding("PF006", str(exc)))
            continue
        if major < server_major:
            found.append(finding("PF006", f"{name} ({tool(name)}) is version {major}, the server is {server_major}"))
    return found


def privileges(conn: psycopg.Connection, plan: Plan | None) -> list[Finding]:
    superuser = one(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    if superuser:
        return []
    user = one(conn, "SELECT current_user")
    found = []
    ts_created = timescaledb_version(conn)
    if not ts_created:
        found.append(finding("PF007", f"role {user} is not a superuser and cannot create the timescaledb extension"))
    if plan is not None:
        for h in plan.hypertables:
            owner = one(conn, """SELECT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n
                                  ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s""",
                         (plan.schema, h.table))
            if owner is not None and not one(conn, "SELECT pg_has_role(current_user, %s, 'USAGE')", (owner,)):
                found.append(finding("PF007", f"role {user} does not own {plan.schema}.{h.table} (owner {owner})",
                                     table=f"{plan.schema}.{h.table}"))
    return found


def primary_server(conn: psycopg.Connection) -> list[Finding]:
    if one(conn, "SELECT pg_is_in_recovery()"):
        return [finding("PF008", "the server is in recovery (a standby or a replica)")]
    return []


def connection_slots(conn: psycopg.Connection, needed: int = 4) -> list[Finding]:
    free = one(conn, """SELECT current_setting('max_connections')::int
                              - current_setting('superuser_reserved_connections')::int
                              - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')""")
    if free < needed:
        return [finding("PF009", f"{free} connection slots free; the run needs {needed}")]
    return []


def activity(conn: psycopg.Connection, plan: Plan | None, long_after_s: int = 300,
             grace_s: float = 5.0) -> list[Finding]:
    found = []
    for pid, user, app, age, query in conn.execute(
            """SELECT pid, usename, application_name, extract(epoch FROM now() - xact_start)::int, left(query, 80)
                 FROM pg_stat_activity
                WHERE xact_start < now() - make_interval(secs => %s) AND pid <> pg_backend_pid()
                  AND backend_type = 'client backend'""", (long_after_s,)).fetchall():
        found.append(finding("PF010", f"backend pid {pid} ({user}, '{app}') has had a transaction open for {age} s: {query}"))
    if plan is not None:
        tables = [f"{plan.schema}.{h.table}" for h in plan.hypertables]
        # The application's row locks on a table that converts online are expected: it keeps writing. Elsewhere a
        # writer's row lock of a moment (a statement running in a transaction younger than 5 s, caught by this look)
        # is not a holder: the conversion's lock waits for it; the writing itself is PF014's. A transaction left
        # open (idle in transaction) with the lock is one.
        online = [f"{plan.schema}.{t}" for t in online_tables(conn, plan)]
        # A run killed a moment ago still has its server sessions for a second or two (the server notices the
        # dead client within client_connection_check_interval): give them that time before calling them holders.
        deadline = time.monotonic() + grace_s
        while True:
            holders = conn.execute(
                """SELECT l.pid, a.usename, a.application_name, l.mode, l.relation::regclass::text
                     FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                    WHERE l.relation = ANY(SELECT to_regclass(t) FROM unnest(%s::text[]) t)
                      AND l.pid <> pg_backend_pid() AND l.granted
                      AND l.mode NOT IN ('AccessShareLock')
                      AND NOT (l.mode IN ('RowShareLock', 'RowExclusiveLock')
                               AND (l.relation = ANY(SELECT to_regclass(t) FROM unnest(%s::text[]) t)
                                    OR (a.state = 'active' AND a.xact_start > now() - interval '5 seconds')))""",
                (tables, online)).fetchall()
            if not any(app.startswith("tsmigrate") for _, _, app, _, _ in holders) or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        for pid, user, app, mode, rel in holders:
            who = "another tsmigrate run" if app.startswith("tsmigrate") else "the application, or another session"
            found.append(finding("PF011", f"backend pid {pid} ({user}, '{app}': {who}) holds {mode} on {rel}", table=rel))
    return found


def maintenance_window(conn: psycopg.Connection, plan: Plan | None, sample_seconds: float = 2.0) -> list[Finding]:
    """Who else is connected, and whether rows are being written over a short sample.

    Writes block unless every other session belongs to a role the run's fence will stop, or the plan
    keeps the application online (fence_application = false: then they are an advisory).
    """
    online = online_tables(conn, plan) if plan is not None else []
    fencing = plan is not None and plan.fence_application and not online
    fenceable = set(fence.roles_to_fence(conn, plan.application_roles)) if fencing else set()
    found = []
    if fenceable and not fence.can_fence(conn):
        found.append(finding("PF017", f"the run must fence {', '.join(sorted(fenceable))} but role "
                                      f"{one(conn, 'SELECT current_user')} has neither CREATEROLE nor superuser",
                             path=str(plan.path) if plan.path else None))
    sessions = other_sessions(conn)
    sample = sample_writes(conn, sample_seconds)
    unstoppable = [s for s in sessions if s.role not in fenceable]
    if sample.writing:
        writers = "; ".join(map(str, sessions)) or "no client session is connected now (a pooler's short sessions?)"
        if fencing and not unstoppable and sessions:
            found.append(finding("PF014", f"rows are being written ({sample.describe()}) by sessions of "
                                          f"{', '.join(sorted({s.role for s in sessions}))}: the run's fence ends them "
                                          f"and keeps them out until it ends. Sessions: {writers}", severity=ADVISORY))
        elif not fencing:
            why = (f"{', '.join(online)} convert online: the application's writes wait only for each swap's lock "
                   "(milliseconds)" if online else
                   "plan.toml keeps the application online (fence_application = false): conversions make its "
                   "writes wait")
            found.append(finding("PF014", f"rows are being written ({sample.describe()}) and {why}; a restore "
                                          "carries its rows over. Sessions: " + writers, severity=ADVISORY))
        else:
            found.append(finding("PF014", f"rows are being written ({sample.describe()}); connected sessions the "
                                          f"fence cannot stop: {'; '.join(map(str, unstoppable)) or 'none seen'}"))
    else:
        for s in sessions:
            fenced = " (the run's fence ends it)" if s.role in fenceable else ""
            found.append(finding("PF015", f"{s}{fenced}"))
    return found


def stale_fences(conn: psycopg.Connection, lift_through: psycopg.Connection | None) -> list[Finding]:
    """Fences of this database left by a run that died; lifted through ``lift_through`` (a writable session)."""
    database = one(conn, "SELECT current_database()")
    stale = [f for f in fence.fences(conn, database) if fence.is_stale(conn, f)]
    if not stale:
        return []
    if lift_through is None:
        return [finding("PF016", f"role {f.role} is fenced (NOLOGIN) by a run that died (backend pid {f.run_pid}, "
                                 f"fenced at {f.fenced_at}): run the pre-flight with a role that may lift it",
                        severity=BLOCKING) for f in stale]
    lifted = set(fence.lift(lift_through, stale))
    return [finding("PF016", f"role {f.role} was fenced (NOLOGIN) at {f.fenced_at} by a run that died (backend pid "
                             f"{f.run_pid}); " + ("it may log in again now" if f.role in lifted else
                                                  "it was lifted meanwhile by someone else")) for f in stale]


def encoding_and_timezone(conn: psycopg.Connection) -> list[Finding]:
    encoding = one(conn, "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()")
    if encoding != "UTF8":
        return [finding("PF012", f"the database encoding is {encoding}, not UTF8")]
    return []


def room_for_backup(conn: psycopg.Connection, backups_dir: Path) -> list[Finding]:
    size = one(conn, "SELECT pg_database_size(current_database())")
    probe = Path(backups_dir)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    needed = room_needed(size)
    if free < needed:
        return [finding("PF013", f"{free / 2**30:.2f} GiB free in {backups_dir}, about {needed / 2**30:.2f} GiB needed "
                                 f"for a backup of {size / 2**30:.2f} GiB", path=str(backups_dir))]
    return []


# -- migration files ----------------------------------------------------------------------------------

def migration_files(conn: psycopg.Connection, migrations_dir: Path, *, resolve_interrupted: bool = False) -> list[Finding]:
    """``resolve_interrupted``: the run will mark steps a killed run left started as interrupted (and rerun them)."""
    files, problems = discover(migrations_dir)
    found = [finding("PF020" if p.blocking else "PF025", p.problem, path=str(p.path), line=p.line) for p in problems]
    for a, b in version_gaps(files):
        found.append(finding("PF021", f"versions jump from {a:03d} to {b:03d}", path=str(migrations_dir)))
    applied = ledger.applied(conn)
    by_step = {f.step_id: f for f in files}
    for step, entry in applied.items():
        if entry.kind != "migration":
            continue
        f = by_step.get(step)
        if f is None:
            found.append(finding("PF023", f"step {step} ({entry.name}) was applied on {entry.finished_at:%Y-%m-%d} "
                                          f"but is not in {migrations_dir}", path=str(migrations_dir)))
        elif f.sha256 != entry.sha256 and not f.repeatable:   # a repeatable file changed is pending
            found.append(finding("PF022", f"{f.label} was applied on {entry.finished_at:%Y-%m-%d} and has changed since "
                                          "(sha256 differs from the ledger)", path=str(f.path), line=f.first_line))
    for entry in ledger.interrupted_steps(conn):
        severity = ADVISORY if entry.transactional or resolve_interrupted else BLOCKING
        then = ("; PostgreSQL rolled it back and the run applies it again" if entry.transactional else
                "; --resolve-interrupted: the run marks it interrupted and applies it again" if resolve_interrupted
                else "; it is not transactional, so part of it may have run")
        f = by_step.get(entry.step) if entry.kind == "migration" else None
        # A conversion's ledger name is its label, "convert <schema>.<table>" (run.plan_steps).
        where = dict(path=str(f.path)) if f else dict(table=entry.name.removeprefix("convert ")
                                                       if entry.kind == "conversion" else None)
        found.append(finding("PF024", f"step {entry.step} ({entry.name}) was started on {entry.started_at:%Y-%m-%d %H:%M} "
                                      f"by {entry.applied_by} and never finished{then}", severity=severity, **where))
    return found


def pending_files(conn: psycopg.Connection, migrations_dir: Path) -> list[MigrationFile]:
    files, _ = discover(migrations_dir)
    applied = ledger.applied(conn)
    return [f for f in files if not ledger.is_done(applied.get(f.step_id), f.sha256, reruns_when_changed=f.repeatable)]


def hypertables_of(plan: Plan | None, files: list[MigrationFile]) -> dict[str, str]:
    """Tables that will become hypertables: the plan's, and those the files convert themselves."""
    tables: dict[str, str] = {}
    for f in files:
        tables.update(hypertables_created_in(f.sql))
    if plan is not None:
        for h in plan.hypertables:
            tables[f"{plan.schema}.{h.table}"] = h.time_column
    return tables


def lint(conn: psycopg.Connection, migrations_dir: Path, plan: Plan | None) -> list[Finding]:
    """Static lint of the pending files, with function volatility read from the live server."""
    files = pending_files(conn, migrations_dir)
    all_files, _ = discover(migrations_dir)
    hypertables = hypertables_of(plan, all_files)
    planned = {h.table.lower(): h for h in plan.hypertables} if plan else {}

    def volatility(name: str) -> str | None:
        row = conn.execute("SELECT max(provolatile) FROM pg_proc WHERE proname = %s", (name.split(".")[-1],)).fetchone()
        return row[0] if row and row[0] else None

    found = []
    for f in files:
        for item in lint_sql(f.sql, str(f.path), hypertables=hypertables, transactional=f.transactional,
                             volatility=volatility):
            table = (item.table or "").split(".")[-1].strip('"').lower()
            h = planned.get(table)
            if item.code == "TS008":
                # A foreign key must point at a unique key, and on a hypertable every unique key holds the
                # time column: a reference to the legacy id cannot survive the conversion.
                item = Finding(item.code, BLOCKING, item.message + " (the table's unique keys will all include its "
                               "time column, so this reference cannot be kept)", item.path, item.line, item.table, item.hint)
            # The plan's conversion rebuilds keys and applies the null_time rule itself.
            if h is not None and item.code == "TS001":
                item = Finding(item.code, ADVISORY, item.message + " (the plan's conversion adds the time column to it)",
                               item.path, item.line, item.table, CHECKS["PF035"].hint)
            elif h is not None and item.code == "TS002" and h.null_time.kind != "refuse":
                item = Finding(item.code, ADVISORY, item.message + f" (the plan fills NULLs by rule {h.null_time})",
                               item.path, item.line, item.table, item.hint)
            found.append(item)
    return found


# -- hazards in the live data ------------------------------------------------------------------------

def target_hazards(conn: psycopg.Connection, migrations_dir: Path, plan: Plan | None) -> list[Finding]:
    files = pending_files(conn, migrations_dir)
    all_files, _ = discover(migrations_dir)
    created_by_files = {}
    for f in files:
        created_by_files.update({k.lower(): (v, f) for k, v in hypertables_created_in(f.sql).items()})
    found: list[Finding] = []
    planned = [(plan.schema, h.table, h.time_column, h) for h in plan.hypertables] if plan else []
    file_planned = []
    for name, (column, f) in created_by_files.items():
        schema, _, table = name.rpartition(".")
        file_planned.append((schema.strip('"') or "public", table.strip('"'), column, f))
    pending_sql = "\n".join(f.sql for f in files).lower()

    for schema, table, column, source in planned + file_planned:
        qualified = f"{schema}.{table}"
        regclass = one(conn, "SELECT to_regclass(%s)::text", (
            regclass_of(schema, table),))
        by_file = isinstance(source, MigrationFile)
        if by_file:
            where = dict(path=str(source.path), line=_line_of_call(source.sql, "create_hypertable", table))
        else:
            where = dict(path=str(plan.path) if plan and plan.path else None)
        if regclass is None:
            if table.lower() not in pending_sql:
                found.append(finding("PF033", f"table {qualified} does not exist and no pending migration creates it",
                                     table=qualified, **where))
            continue
        if timescaledb_version(conn) and one(
                conn, "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_schema = %s "
                      "AND hypertable_name = %s", (schema, table)):
            continue  # already converted
        col = conn.execute("""SELECT format_type(atttypid, atttypmod), attnotnull FROM pg_attribute
                               WHERE attrelid = %s::regclass AND attname = %s AND NOT attisdropped""",
                           (regclass, column)).fetchone()
        if col is None:
            if f"{column.lower()}" not in pending_sql:
                found.append(finding("PF033", f"{qualified} has no column {column}", table=qualified, **where))
            continue
        nulls = one(conn, sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL").format(
            sql.Identifier(schema, table), sql.Identifier(column)))
        if nulls:
            rule = None if by_file else source.null_time
            if rule is None or rule.kind == "refuse":
                found.append(finding("PF030", f"{qualified}.{column} holds {nulls} NULL values; "
                                              + ("create_hypertable will fail on them" if by_file else
                                                 "the plan's rule is 'refuse'"), table=qualified, **where))
            else:
                found.append(finding("PF030", f"{qualified}.{column} holds {nulls} NULL values; the conversion fills "
                                              f"them by rule {rule} and records each in tsmigrate.time_fills",
                                     table=qualified, severity=ADVISORY, **where))
        for ref in conn.execute("""SELECT conrelid::regclass::text, conname FROM pg_constraint
                                    WHERE contype = 'f' AND confrelid = %s::regclass AND conrelid <> confrelid""",
                                (regclass,)).fetchall():
            found.append(finding("PF031", f"{ref[0]} references {qualified} through foreign key {ref[1]}",
                                 table=qualified, **where))
        rows = one(conn, sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT 1) s").format(sql.Identifier(schema, table)))
        if by_file and rows and "migrate_data" not in source.sql.lower():
            found.append(finding("PF032", f"{source.label} converts {qualified}, which holds rows, without migrate_data",
                                 table=qualified, **where))
        keys = conn.execute("""SELECT conname FROM pg_constraint c WHERE conrelid = %s::regclass AND contype IN ('p','u')
                                 AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.conrelid
                                                 AND a.attnum = ANY(c.conkey) AND a.attname = %s)""",
                            (regclass, column)).fetchall()
        for (name,) in keys:
            if by_file:
                found.append(finding("PF035", f"{qualified} has key {name} without {column}: {source.label}'s "
                                              "create_hypertable will fail on it", table=qualified, severity=BLOCKING,
                                     hint=CODES["TS001"].hint, **where))
            else:
                found.append(finding("PF035", f"{qualified} has key {name} without {column}; the conversion rebuilds "
                                              f"it with {column} added", table=qualified, **where))
        if by_file:
            continue
        if source.drop_after is not None and rows:
            old, oldest, newest = retention_drops(conn, schema, source)
            if old:
                found.append(finding("PF034", f"{qualified} holds {old} rows older than {source.drop_after} ({column} from "
                                              f"{oldest} to {newest}); the retention policy's first run drops them. The "
                                              "run's backup holds them and is kept until you remove it yourself",
                                     table=qualified, **where))
    return found


# -- the rehearsal ----------------------------------------------------------------------------------

def rehearsal(target: Target, migrations_dir: Path, pending: list[MigrationFile], plan: Plan | None) -> list[Finding]:
    """The pending steps applied to a scratch copy of the target: its first failure, or why no copy could be made."""
    try:
        result = rehearse(target, pending, plan)
    except RehearsalUnavailable as exc:
        return [finding("PF040", f"no rehearsal: {exc}", severity=ADVISORY)]
    for label, seconds in result.steps:
        log.info("rehearsal: %-40s %8.2f s", label, seconds)
    if result.error is None:
        return []
    path = getattr(result.error, "file", None)
    return [finding("PF040", f"{result.failed_step} failed on the scratch copy: {result.error}",
                    path=str(migrations_dir / path) if path else None, line=getattr(result.error, "line", None))]


# -- the verdict ------------------------------------------------------------------------------------

def verdict_inputs(conn: psycopg.Connection, migrations_dir: Path) -> dict:
    """What the GO depends on: versions, plan and migration hashes. Execute checks them again."""
    files, _ = discover(migrations_dir)
    plan_path = Path(migrations_dir) / PLAN_FILE_NAME
    ts = server_timescaledb(conn)
    return {
        "server_version": one(conn, "SHOW server_version"),
        "timescaledb_available": ts.available_version,
        "timescaledb_installed": ts.installed_version,
        "timescaledb_edition": ts.edition,
        "plan_sha256": hashlib.sha256(plan_path.read_bytes()).hexdigest() if plan_path.exists() else None,
        "migrations": {f.label: f.sha256 for f in files},
        "migrations_sha256": files_digest(files),
    }


def changed_since(before: dict, now: dict) -> list[str]:
    return [f"{key}: {before.get(key)!r} at the GO, {now.get(key)!r} now"
            for key in sorted(set(before) | set(now)) if key != "migrations" and before.get(key) != now.get(key)]
