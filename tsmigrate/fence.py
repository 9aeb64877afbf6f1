"""The maintenance window, enforced: the application cannot log in while the run changes the database.

A fence sets NOLOGIN on every role of the plan's ``application_roles`` that can log in, and on every
login role that is a member of one (directly or not), and ends their sessions on the target database.
Superusers and the run's own role are never fenced. Role attributes live in the cluster's shared
catalog, so a fence does not depend on the database (a restore cannot undo or keep it).

Each fenced role carries a record in its comment (also a shared catalog): the database, the run's
backend pid and start, and the comment it had. Lifting puts LOGIN and the comment back. A run killed
while fencing leaves the records; the next run or the pre-flight finds them, sees that the backend that
wrote them is gone, and lifts that fence (:func:`lift_stale`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass

import psycopg
from psycopg import sql

from .db import one, row

log = logging.getLogger(__name__)

MARK = "tsmigrate-fence "


class FenceError(RuntimeError):
    """The fence could not be raised; the message says why and what to do."""


@dataclass(frozen=True)
class FencedRole:
    role: str
    database: str
    run_pid: int
    run_backend_start: str  # with the pid: identifies the run's session, even after pid reuse
    fenced_at: str
    comment: str | None  # the role's own comment, put back when the fence is lifted

    def record(self) -> str:
        return MARK + json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def parse(cls, role: str, comment: str | None) -> FencedRole | None:
        if not comment or not comment.startswith(MARK):
            return None
        try:
            return cls(**{**json.loads(comment[len(MARK) :]), "role": role})
        except (ValueError, TypeError):
            return None


def roles_to_fence(conn: psycopg.Connection, application_roles: tuple[str, ...] | list[str]) -> list[str]:
    """Login roles through which the application reaches the database: the roles themselves if they can
    log in, and their login members. Never a superuser, never the connected role."""
    if not application_roles:
        return []
    rows = conn.execute(
        """
        WITH RECURSIVE granted(oid) AS (
            SELECT oid FROM pg_roles WHERE rolname = ANY(%s)
             UNION
            SELECT m.member FROM pg_auth_members m JOIN granted g ON m.roleid = g.oid)
        SELECT r.rolname FROM pg_roles r JOIN granted g ON g.oid = r.oid
         WHERE r.rolcanlogin AND NOT r.rolsuper AND r.rolname <> current_user
         ORDER BY 1""",
        (list(application_roles),),
    ).fetchall()
    return [r[0] for r in rows]


def can_fence(conn: psycopg.Connection) -> bool:
    """ALTER ROLE ... NOLOGIN needs superuser or CREATEROLE."""
    row = conn.execute("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user").fetchone()
    return bool(row and row[0])


def fences(conn: psycopg.Connection, database: str | None = None) -> list[FencedRole]:
    """Every fence record on the cluster (of one database, if given)."""
    rows = conn.execute(
        "SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_roles "
        "WHERE shobj_description(oid, 'pg_authid') LIKE %s ORDER BY 1",
        (MARK + "%",),
    ).fetchall()
    found = [f for f in (FencedRole.parse(role, comment) for role, comment in rows) if f is not None]
    return [f for f in found if database is None or f.database == database]


def is_stale(conn: psycopg.Connection, fence: FencedRole) -> bool:
    """Whether the run that raised this fence is gone (its session no longer exists)."""
    alive = conn.execute(
        "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND backend_start::text = %s",
        (fence.run_pid, fence.run_backend_start),
    ).fetchone()
    return alive is None


def _set_role(conn: psycopg.Connection, role: str, login: bool, comment: str | None) -> None:
    ident = sql.Identifier(role)
    with conn.transaction():
        conn.execute(sql.SQL("ALTER ROLE {} {}").format(ident, sql.SQL("LOGIN" if login else "NOLOGIN")))
        conn.execute(
            sql.SQL("COMMENT ON ROLE {} IS {}").format(
                ident, sql.Literal(comment) if comment is not None else sql.SQL("NULL")
            )
        )


def lift(conn: psycopg.Connection, fenced: list[FencedRole]) -> list[str]:
    """Give the roles LOGIN and their comments back. Returns the roles lifted."""
    lifted = []
    for f in fenced:
        current = conn.execute(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (f.role,)
        ).fetchone()
        if current is None or FencedRole.parse(f.role, current[0]) is None:
            continue  # dropped meanwhile, or already lifted
        _set_role(conn, f.role, True, f.comment)
        lifted.append(f.role)
    if lifted:
        log.info("fence lifted: %s may log in again", ", ".join(lifted))
    return lifted


def lift_stale(conn: psycopg.Connection, database: str) -> list[FencedRole]:
    """Lift the fences of ``database`` whose run is gone (killed while fencing). Returns what was lifted."""
    stale = [f for f in fences(conn, database) if is_stale(conn, f)]
    lifted = set(lift(conn, stale))
    return [f for f in stale if f.role in lifted]


def sessions_of(conn: psycopg.Connection, roles: list[str]) -> list[tuple[int, str, str]]:
    return conn.execute(
        """SELECT pid, usename, application_name FROM pg_stat_activity
                            WHERE datname = current_database() AND usename = ANY(%s) AND pid <> pg_backend_pid()""",
        (roles,),
    ).fetchall()


class Fence:
    """``with Fence(conn, roles): ...``: the roles cannot log in inside, whatever happens there.

    ``conn`` is the run's own session (autocommit): its pid identifies the run in the records.
    ``raise_`` and ``lift_`` may also be called on their own; lifting twice is harmless.
    """

    def __init__(
        self,
        conn: psycopg.Connection,
        application_roles: tuple[str, ...] | list[str],
        *,
        end_sessions_within: float = 10.0,
    ):
        self.conn = conn
        self.application_roles = tuple(application_roles)
        self.end_sessions_within = end_sessions_within
        self.fenced: list[FencedRole] = []

    def raise_(self) -> list[str]:
        if not self.application_roles:
            return []
        roles = roles_to_fence(self.conn, self.application_roles)
        if roles and not can_fence(self.conn):
            user = one(self.conn, "SELECT current_user")
            raise FenceError(
                f"role {user} may not fence the application (ALTER ROLE needs CREATEROLE): "
                f"grant it CREATEROLE, or set fence_application = false in plan.toml and stop "
                f"{', '.join(roles)} yourself"
            )
        database, pid, started = row(
            self.conn,
            "SELECT current_database(), pg_backend_pid(), backend_start::text FROM pg_stat_activity "
            "WHERE pid = pg_backend_pid()",
        )
        now = one(self.conn, "SELECT now()::text")
        for role in roles:
            comment = one(
                self.conn, "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (role,)
            )
            record = FencedRole(role, database, pid, started, now, comment)
            _set_role(self.conn, role, False, record.record())
            self.fenced.append(record)
        self._end_sessions(roles)
        if roles:
            log.info("fence raised: %s cannot log in until the run ends", ", ".join(roles))
        return roles

    def _end_sessions(self, roles: list[str]) -> None:
        """End the fenced roles' sessions on this database; they cannot come back (NOLOGIN)."""
        deadline = time.monotonic() + self.end_sessions_within
        while roles:
            left = sessions_of(self.conn, roles)
            if not left:
                return
            if time.monotonic() > deadline:
                names = ", ".join(f"pid {pid} ({user}, '{app}')" for pid, user, app in left)
                raise FenceError(f"sessions of the fenced roles stay connected after pg_terminate_backend: {names}")
            self.conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND usename = ANY(%s) AND pid <> pg_backend_pid()",
                (roles,),
            )
            time.sleep(0.1)

    def lift_(self, conn: psycopg.Connection | None = None) -> list[str]:
        """Lift through ``conn`` (e.g. a fresh session when the run's own one was lost)."""
        lifted = lift(conn or self.conn, self.fenced)
        self.fenced = []
        return lifted

    def __enter__(self) -> Fence:
        self.raise_()
        return self

    def __exit__(self, *exc) -> None:
        self.lift_()
