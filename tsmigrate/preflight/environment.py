"""Pre-flight checks of the server environment: PostgreSQL and TimescaleDB versions, client tools, other sessions
and their locks and writes, fences left by a dead run, encoding, and room for the backup (privileges: privileges.py)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import psycopg

from .. import fence
from ..activity import other_sessions, sample_writes
from ..backup import room_needed
from ..convert.catalog import YIELDING_AUTOVACUUM
from ..convert.connections import free_connection_slots
from ..convert.online import online_tables
from ..db import one
from ..dumps import tool, tool_major
from ..errors import BackupError
from ..findings import ADVISORY, BLOCKING, Finding
from ..plan import Plan
from ..timescale import APACHE_LACKS, ServerTimescale, preload_libraries, server_timescaledb
from .checks import finding


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
        preload = preload_libraries(conn)
        found.append(
            finding(
                "PF003",
                "timescaledb is not in shared_preload_libraries "
                f"({'unreadable to this role' if preload is None else preload or 'empty'})",
            )
        )
    if ts.installed_version and ts.installed_version != ts.available_version:
        found.append(
            finding(
                "PF005",
                f"timescaledb {ts.installed_version} is created in this database, "
                f"{ts.available_version} is installed on the server",
            )
        )
    if plan is None or not (plan.needs_compression or plan.needs_retention) or not ts.preloaded:
        return found
    if ts.edition is None:
        found.append(
            finding(
                "PF004",
                "cannot tell which TimescaleDB edition the server runs (the connected role may "
                "not load the library before the extension exists); compression and retention "
                "are applied only if it is the community edition",
                severity=ADVISORY,
                path=str(plan.path) if plan.path else None,
            )
        )
    elif not ts.has_compression:
        wanted = " and ".join(
            w for w, on in (("compression", plan.needs_compression), ("retention", plan.needs_retention)) if on
        )
        message = f"the server runs TimescaleDB's apache edition (no {APACHE_LACKS}); the plan asks for {wanted}"
        if plan.allow_apache_edition:
            found.append(
                finding(
                    "PF004",
                    message + "; plan.toml allows going without them: they will be skipped",
                    severity=ADVISORY,
                    path=str(plan.path) if plan.path else None,
                )
            )
        else:
            found.append(
                finding(
                    "PF004", message + " and does not allow going without", path=str(plan.path) if plan.path else None
                )
            )
    return found


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


def primary_server(conn: psycopg.Connection) -> list[Finding]:
    if one(conn, "SELECT pg_is_in_recovery()"):
        return [finding("PF008", "the server is in recovery (a standby or a replica)")]
    return []


def connection_slots(conn: psycopg.Connection, plan: Plan | None = None, needed: int = 4) -> list[Finding]:
    """``needed`` slots for the run's own sessions; a plan that sets ``jobs`` needs that many for the conversions'
    copy and index builds instead of one (the default jobs are sized to the free slots: convert/connections.py)."""
    free = free_connection_slots(conn)
    jobs = plan.jobs if plan is not None else None
    if jobs is not None:
        needed = needed - 1 + jobs
    if free < needed:
        why = f" (3 of its own and the plan's jobs = {jobs}; lower jobs in plan.toml [plan])" if jobs else ""
        return [finding("PF009", f"{free} connection slots free; the run needs {needed}{why}")]
    return []


def activity(
    conn: psycopg.Connection, plan: Plan | None, long_after_s: int = 300, grace_s: float = 5.0
) -> list[Finding]:
    found = []
    for pid, user, app, age, query in conn.execute(
        """SELECT pid, usename, application_name, extract(epoch FROM now() - xact_start)::int, left(query, 80)
                 FROM pg_stat_activity
                WHERE xact_start < now() - make_interval(secs => %s) AND pid <> pg_backend_pid()
                  AND backend_type = 'client backend'""",
        (long_after_s,),
    ).fetchall():
        found.append(
            finding("PF010", f"backend pid {pid} ({user}, '{app}') has had a transaction open for {age} s: {query}")
        )
    if plan is not None:
        tables = [f"{plan.schema}.{h.table}" for h in plan.hypertables]
        # The application's row locks on a table that converts online are expected: it keeps writing. Elsewhere a
        # writer's row lock of a moment (a statement running in a transaction younger than 5 s, caught by this look)
        # is not a holder: the conversion's lock waits for it; the writing itself is PF014's. A transaction left
        # open (idle in transaction) with the lock is one.
        online = [f"{plan.schema}.{t}" for t in online_tables(conn, plan)]
        # An autovacuum worker is no holder either: it gives way to the conversion's lock (unless it prevents
        # wraparound). A run killed a moment ago still has its server sessions for a second or two (the server
        # notices the dead client within client_connection_check_interval): give them that time before calling them
        # holders.
        deadline = time.monotonic() + grace_s
        while True:
            holders = conn.execute(
                f"""SELECT l.pid, a.usename, a.application_name, l.mode, l.relation::regclass::text,
                          a.backend_type = 'autovacuum worker'
                     FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                    WHERE l.relation = ANY(SELECT to_regclass(t) FROM unnest(%s::text[]) t)
                      AND l.pid <> pg_backend_pid() AND l.granted
                      AND NOT ({YIELDING_AUTOVACUUM})
                      AND l.mode NOT IN ('AccessShareLock')
                      AND NOT (l.mode IN ('RowShareLock', 'RowExclusiveLock')
                               AND (l.relation = ANY(SELECT to_regclass(t) FROM unnest(%s::text[]) t)
                                    OR (a.state = 'active' AND a.xact_start > now() - interval '5 seconds')))""",
                (tables, online),
            ).fetchall()
            if not any(app.startswith("tsmigrate") for _, _, app, _, _, _ in holders) or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        for pid, user, app, mode, rel, autovacuum in holders:
            who = (
                "an autovacuum that prevents wraparound, which does not give way: wait for it to finish"
                if autovacuum
                else "another tsmigrate run"
                if app.startswith("tsmigrate")
                else "the application, or another session"
            )
            found.append(
                finding("PF011", f"backend pid {pid} ({user}, '{app}': {who}) holds {mode} on {rel}", table=rel)
            )
    return found


def maintenance_window(conn: psycopg.Connection, plan: Plan | None, sample_seconds: float = 2.0) -> list[Finding]:
    """Who else is connected, and whether rows are being written over a short sample.

    Writes block unless every other session belongs to a role the run's fence will stop, or the plan
    keeps the application online (fence_application = false: then they are an advisory).
    """
    online = online_tables(conn, plan) if plan is not None else []
    fencing = plan is not None and plan.fence_application and not online
    fenceable = set(fence.roles_to_fence(conn, plan.application_roles)) if plan is not None and fencing else set()
    found = []
    if fenceable and not fence.can_fence(conn):
        found.append(
            finding(
                "PF017",
                f"the run must fence {', '.join(sorted(fenceable))} but role "
                f"{one(conn, 'SELECT current_user')} has neither CREATEROLE nor superuser",
                path=str(plan.path) if plan is not None and plan.path else None,
            )
        )
    sessions = other_sessions(conn)
    sample = sample_writes(conn, sample_seconds)
    unstoppable = [s for s in sessions if s.role not in fenceable]
    if sample.writing:
        writers = "; ".join(map(str, sessions)) or "no client session is connected now (a pooler's short sessions?)"
        if fencing and not unstoppable and sessions:
            found.append(
                finding(
                    "PF014",
                    f"rows are being written ({sample.describe()}) by sessions of "
                    f"{', '.join(sorted({s.role for s in sessions}))}: the run's fence ends them "
                    f"and keeps them out until it ends. Sessions: {writers}",
                    severity=ADVISORY,
                )
            )
        elif not fencing:
            why = (
                f"{', '.join(online)} convert online: the application's writes wait only for each swap's lock "
                "(milliseconds)"
                if online
                else "plan.toml keeps the application online (fence_application = false): conversions make its "
                "writes wait"
            )
            found.append(
                finding(
                    "PF014",
                    f"rows are being written ({sample.describe()}) and {why}; a restore "
                    "carries its rows over. Sessions: " + writers,
                    severity=ADVISORY,
                )
            )
        else:
            found.append(
                finding(
                    "PF014",
                    f"rows are being written ({sample.describe()}); connected sessions the "
                    f"fence cannot stop: {'; '.join(map(str, unstoppable)) or 'none seen'}",
                )
            )
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
        return [
            finding(
                "PF016",
                f"role {f.role} is fenced (NOLOGIN) by a run that died (backend pid {f.run_pid}, "
                f"fenced at {f.fenced_at}): run the pre-flight with a role that may lift it",
                severity=BLOCKING,
            )
            for f in stale
        ]
    lifted = set(fence.lift(lift_through, stale))
    return [
        finding(
            "PF016",
            f"role {f.role} was fenced (NOLOGIN) at {f.fenced_at} by a run that died (backend pid "
            f"{f.run_pid}); "
            + ("it may log in again now" if f.role in lifted else "it was lifted meanwhile by someone else"),
        )
        for f in stale
    ]


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
        return [
            finding(
                "PF013",
                f"{free / 2**30:.2f} GiB free in {backups_dir}, about {needed / 2**30:.2f} GiB needed "
                f"for a backup of {size / 2**30:.2f} GiB",
                path=str(backups_dir),
            )
        ]
    return []
