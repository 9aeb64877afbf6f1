"""Databases made, emptied of sessions and dropped: the side effects restore, rehearsal and tests share.

TimescaleDB's scheduler visits every database, so a statement that needs a database free of
sessions (DROP, RENAME, CREATE ... TEMPLATE) may have to end sessions more than once.
"""

from __future__ import annotations

import time

import psycopg
from psycopg import sql


class DatabaseInUse(RuntimeError):
    """A database stays in use by other sessions; the message says what to stop."""


def terminate_sessions(admin: psycopg.Connection, dbname: str) -> None:
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  "WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,))


def while_alone(admin: psycopg.Connection, dbname: str, statement: sql.Composable, attempts: int = 20) -> None:
    """Run a statement that needs ``dbname`` free of sessions, ending them first (bounded retries)."""
    for attempt in range(attempts):
        terminate_sessions(admin, dbname)
        try:
            admin.execute(statement)
            return
        except psycopg.errors.ObjectInUse:
            if attempt == attempts - 1:
                raise DatabaseInUse(f"database {dbname} stays in use by other sessions; stop the application "
                                    "(and its connection pool) and try again") from None
            time.sleep(0.1 * (attempt + 1))


def drop_database(admin: psycopg.Connection, dbname: str) -> None:
    while_alone(admin, dbname, sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(dbname)))


def freeze(admin: psycopg.Connection, dbname: str) -> None:
    """Keep every session (TimescaleDB's scheduler too) out of a database, e.g. to clone it as a template."""
    admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(dbname)))
    terminate_sessions(admin, dbname)


def thaw(admin: psycopg.Connection, dbname: str) -> None:
    admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(dbname)))


def create_database(admin: psycopg.Connection, dbname: str, *, template: str | None = None) -> None:
    """Create ``dbname`` (dropping one of that name first), empty or as a copy of ``template``."""
    drop_database(admin, dbname)
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname))
    if template:
        while_alone(admin, template, sql.SQL("{} TEMPLATE {}").format(create, sql.Identifier(template)))
    else:
        admin.execute(create)


def drop_database_and_copies(admin: psycopg.Connection, dbname: str) -> None:
    """Drop ``dbname`` and the copies a restore or rehearsal leaves beside it (``dbname_*``)."""
    names = [r[0] for r in admin.execute(
        "SELECT datname FROM pg_database WHERE datname = %s OR starts_with(datname, %s)",
        (dbname, dbname + "_")).fetchall()]
    for name in names:
        drop_database(admin, name)


class ScratchDatabase:
    """``with ScratchDatabase(admin_conninfo, "name", template=...) as name:`` a fresh database, dropped
    afterwards together with its ``name_*`` copies. An existing database of that name is dropped first:
    use names that are yours.
    """

    def __init__(self, admin_conninfo: str, name: str, *, template: str | None = None):
        self.admin_conninfo, self.name, self.template = admin_conninfo, name, template

    def __enter__(self) -> str:
        with psycopg.connect(self.admin_conninfo, autocommit=True) as admin:
            create_database(admin, self.name, template=self.template)
        return self.name

    def __exit__(self, *exc) -> None:
        with psycopg.connect(self.admin_conninfo, autocommit=True) as admin:
            drop_database_and_copies(admin, self.name)
