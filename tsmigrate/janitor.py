"""Databases made, emptied of sessions and dropped: the side effects restore, rehearsal and tests share.

TimescaleDB's scheduler visits every database, so a statement that needs a database free of
sessions (DROP, RENAME, CREATE ... TEMPLATE) may have to end sessions more than once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial

import psycopg
from psycopg import sql
from psycopg.abc import Query

from .db import one

log = logging.getLogger(__name__)


class DatabaseStateError(RuntimeError):
    """A database is not in the state a step needs; the message names it and says what to do."""


class DatabaseInUse(DatabaseStateError):
    """A database stays in use by other sessions; the message says what to stop."""


class DatabaseExists(DatabaseStateError):
    """A database this step would make exists already (it is someone's: never dropped)."""


class DatabaseLeftBehind(DatabaseStateError):
    """A database this step made could not be dropped (the server went away); the message says how to."""


# The sessions the connected role may end: all for a superuser; else those of roles it has the privileges of, or all
# but superusers' with pg_signal_backend. TimescaleDB's scheduler runs as a superuser: a non-superuser cannot end
# it, and need not: TimescaleDB stops it itself for a DROP, RENAME or template copy of its database (retried).
_MAY_END = """(SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
               OR (NOT coalesce((SELECT rolsuper FROM pg_roles WHERE oid = a.usesysid), true)
                   AND (pg_has_role(current_user, a.usesysid, 'USAGE')
                        OR pg_has_role(current_user, 'pg_signal_backend', 'USAGE')))"""


def terminate_sessions(admin: psycopg.Connection, dbname: str) -> None:
    admin.execute(
        f"SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a "
        f"WHERE a.datname = %s AND a.pid <> pg_backend_pid() AND ({_MAY_END})",
        (dbname,),
    )


def while_alone(admin: psycopg.Connection, dbname: str, statement: Query, attempts: int = 20) -> None:
    """Run a statement that needs ``dbname`` free of sessions, ending them first (bounded retries)."""
    for attempt in range(attempts):
        terminate_sessions(admin, dbname)
        try:
            admin.execute(statement)
            return
        except psycopg.errors.ObjectInUse:
            if attempt == attempts - 1:
                raise DatabaseInUse(
                    f"database {dbname} stays in use by other sessions; stop the application "
                    "(and its connection pool) and try again"
                ) from None
            time.sleep(0.1 * (attempt + 1))


def drop_database(admin: psycopg.Connection, dbname: str) -> None:
    while_alone(admin, dbname, sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(dbname)))


def freeze(admin: psycopg.Connection, dbname: str) -> None:
    """Keep every session (TimescaleDB's scheduler too) out of a database, e.g. to clone it as a template."""
    admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(dbname)))
    terminate_sessions(admin, dbname)


def thaw(admin: psycopg.Connection, dbname: str) -> None:
    admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(dbname)))


def _create(
    admin: psycopg.Connection,
    dbname: str,
    *,
    owner: str | None = None,
    template: str | None = None,
    encoding: str | None = None,
    collate: str | None = None,
    ctype: str | None = None,
) -> None:
    """CREATE DATABASE, ending the template's sessions first where it has one (a live database copied as a template
    must be free of them: TimescaleDB's scheduler visits it)."""
    options = [sql.SQL("OWNER {}").format(sql.Identifier(owner))] if owner else []
    if template:
        options.append(sql.SQL("TEMPLATE {}").format(sql.Identifier(template)))
    for word, value in (("ENCODING", encoding), ("LC_COLLATE", collate), ("LC_CTYPE", ctype)):
        if value is not None:
            options.append(sql.SQL(word + " {}").format(sql.Literal(value)))
    create = sql.SQL("CREATE DATABASE {} {}").format(sql.Identifier(dbname), sql.SQL(" ").join(options))
    if template:
        while_alone(admin, template, create)
    else:
        admin.execute(create)


def create_database(admin: psycopg.Connection, dbname: str, *, template: str | None = None) -> None:
    """Create ``dbname`` (dropping one of that name first), empty or as a copy of ``template``."""
    drop_database(admin, dbname)
    _create(admin, dbname, template=template)


def drop_database_and_copies(admin: psycopg.Connection, dbname: str) -> None:
    """Drop ``dbname`` and the copies a restore or rehearsal leaves beside it (``dbname_*``)."""
    names = [
        r[0]
        for r in admin.execute(
            "SELECT datname FROM pg_database WHERE datname = %s OR starts_with(datname, %s)", (dbname, dbname + "_")
        ).fetchall()
    ]
    for name in names:
        drop_database(admin, name)


def may_create_owned_by(admin: psycopg.Connection, owner: str) -> bool:
    """Whether the connected role may create a database owned by ``owner`` (a superuser, or a member of it)."""
    row = admin.execute(
        "SELECT pg_has_role(current_user, oid, 'MEMBER') FROM pg_roles WHERE rolname = %s", (owner,)
    ).fetchone()
    return bool(row and row[0])


def hand_over(database: str, owner: str) -> str:
    """The statement that gives ``database`` to ``owner`` (for a person who may: a superuser, or a member)."""
    return (
        f"ALTER DATABASE {sql.Identifier(database).as_string(None)} OWNER TO {sql.Identifier(owner).as_string(None)};"
    )


class NewDatabase:
    """``with NewDatabase(connect_admin, name, owner=...) as name:`` the database a step makes for itself (a
    restore's copy, a rehearsal's scratch copy), dropped when the block fails (Ctrl-C and SIGTERM too) and,
    unless ``keep``, when it ends. ``connect_admin`` opens a connection to another database of the server.

    A database of that name that exists already is refused, never dropped: it is not this step's. When the
    drop itself fails (the server went away), the original error goes on, with a note naming what is left.
    """

    def __init__(
        self,
        connect_admin: Callable[[], psycopg.Connection],
        name: str,
        *,
        owner: str | None = None,
        template: str | None = "template0",
        encoding: str | None = None,
        collate: str | None = None,
        ctype: str | None = None,
        keep: bool = False,
    ):
        self.connect_admin, self.name, self.keep = connect_admin, name, keep
        self.owner: str | None = None  # who owns it once made: ``owner``, or the connected role when it may not
        self.options = {"owner": owner, "template": template, "encoding": encoding, "collate": collate, "ctype": ctype}

    def __enter__(self) -> str:
        with self.connect_admin() as admin:
            if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.name,)).fetchone():
                raise DatabaseExists(
                    f"database {self.name} exists already; it is not this run's, so it is left as it "
                    "is: drop or rename it, then run again"
                )
            wanted = self.options["owner"]
            if wanted and not may_create_owned_by(admin, wanted):
                # CREATE DATABASE ... OWNER needs membership in that role: without it, the database is the
                # connected role's, and the caller says who owns it and how to hand it over.
                self.options["owner"] = None
            _create(admin, self.name, **self.options)
            self.owner = self.options["owner"] or one(admin, "SELECT current_user")
        return self.name

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None and self.keep:
            return
        try:
            with self.connect_admin() as admin:
                drop_database(admin, self.name)
        except Exception as drop_error:  # the server went away, or the admin connection (TargetError) failed
            left = (
                f"database {self.name} was left behind ({drop_error}); drop it once the server is back: "
                f"DROP DATABASE {sql.Identifier(self.name).as_string(None)}"
            )
            if exc is None:
                raise DatabaseLeftBehind(left) from drop_error
            log.error(left)
            exc.add_note(left)


class ScratchDatabase(NewDatabase):
    """``with ScratchDatabase(admin_conninfo, "name", template=...) as name:`` a fresh database for a test, the
    benchmark or the sweep, dropped afterwards together with the ``name_*`` copies a run made of it (restored,
    failed). Unlike NewDatabase, an existing database of that name is dropped first: use names that are yours,
    on servers that are yours.
    """

    def __init__(self, admin_conninfo: str, name: str, *, template: str | None = None):
        super().__init__(partial(psycopg.connect, admin_conninfo, autocommit=True), name, template=template)

    def __enter__(self) -> str:
        with self.connect_admin() as admin:
            drop_database(admin, self.name)
        return super().__enter__()

    def __exit__(self, *exc) -> None:
        with self.connect_admin() as admin:
            drop_database_and_copies(admin, self.name)
