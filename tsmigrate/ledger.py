"""The ledger of applied steps, and the advisory lock that makes a run exclusive.

The ledger lives in the target database (schema ``tsmigrate``), one row per attempt.
A step counts as applied when it has an 'applied' row. Before a step runs, a 'started'
row is committed on its own; the step's transaction turns it into 'applied' when it
commits. A 'started' row found at the next start therefore belongs to a run that died:

Crash rule (documented in the README): a transactional step that died was rolled back
by PostgreSQL, so its row is marked 'interrupted' and the step runs again. A
non-transactional step that died may have done part of its work: the run stops and
asks the operator to inspect it and then mark it with ``--resolve-interrupted``.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime

import psycopg

from .db import one
from .tool_objects import OWN_SCHEMA

# One lock key for every run against a database: "tsmigrate" as a bigint.
LOCK_KEY = int.from_bytes(b"tsmigrat", "big") & 0x7FFFFFFFFFFFFFFF

LEDGER_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {OWN_SCHEMA};
CREATE TABLE IF NOT EXISTS {OWN_SCHEMA}.ledger (
    attempt      bigserial PRIMARY KEY,
    step         text NOT NULL,          -- migration version (a repeatable file: its name), or 'convert:<table>'
    kind         text NOT NULL,          -- 'migration' or 'conversion'
    name         text NOT NULL,
    sha256       text NOT NULL,
    transactional boolean NOT NULL DEFAULT true,
    outcome      text NOT NULL CHECK (outcome IN ('started', 'applied', 'failed', 'interrupted')),
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,
    duration_ms  bigint,
    applied_by   text NOT NULL,
    details      jsonb
);
CREATE INDEX IF NOT EXISTS ledger_step_idx ON {OWN_SCHEMA}.ledger (step);
"""


class LockHeld(RuntimeError):
    """Another run holds the lock."""


class LedgerError(RuntimeError):
    """The ledger shows a state the run must not go past."""


@dataclass(frozen=True)
class LedgerEntry:
    attempt: int
    step: str
    kind: str
    name: str
    sha256: str
    transactional: bool
    outcome: str
    started_at: datetime
    finished_at: datetime | None
    applied_by: str


def who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()} pid {os.getpid()}"


def lock_holder(conn: psycopg.Connection) -> str | None:
    row = conn.execute(
        """SELECT a.pid, a.usename, a.application_name, a.client_addr::text, a.backend_start
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND ((l.classid::bigint << 32) | l.objid::bigint) = %s
            LIMIT 1""",
        (LOCK_KEY,),
    ).fetchone()
    if row is None:
        return None
    pid, user, app, addr, since = row
    return (
        f"backend pid {pid}, role {user}, application '{app}', from {addr or 'local socket'}, "
        f"connected since {since:%Y-%m-%d %H:%M:%S %Z}"
    )


def acquire_lock(conn: psycopg.Connection, wait: float = 0.0) -> None:
    """Take the run lock on ``conn`` (a session of its own), or say who holds it.

    ``wait`` seconds are granted to a holder that is going away (a killed run's backend ends within
    seconds of its client: see RUN_SESSION_OPTIONS in run.py).
    """
    deadline = time.monotonic() + wait
    while not one(conn, "SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)):
        if time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    else:
        return
    holder = lock_holder(conn) or "a session that ended just now"
    raise LockHeld(
        f"another migration run holds the lock on this database ({holder}). "
        "Wait for it to finish; if it is stuck, end that backend with pg_terminate_backend(pid)."
    )


def release_lock(conn: psycopg.Connection) -> None:
    if not conn.closed:
        conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


def ensure_ledger(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute(LEDGER_DDL)


def ledger_exists(conn: psycopg.Connection) -> bool:
    return one(conn, "SELECT to_regclass(%s) IS NOT NULL", (f"{OWN_SCHEMA}.ledger",))


def entries(conn: psycopg.Connection) -> list[LedgerEntry]:
    if not ledger_exists(conn):
        return []
    rows = conn.execute(
        f"""SELECT attempt, step, kind, name, sha256, transactional, outcome, started_at, finished_at, applied_by
              FROM {OWN_SCHEMA}.ledger ORDER BY attempt"""
    ).fetchall()
    return [LedgerEntry(*r) for r in rows]


def applied(conn: psycopg.Connection) -> dict[str, LedgerEntry]:
    """The last 'applied' entry of every step."""
    return {e.step: e for e in entries(conn) if e.outcome == "applied"}


def is_done(entry: LedgerEntry | None, sha256: str, *, reruns_when_changed: bool) -> bool:
    """Whether a step needs no run: it was applied, and, for a step that runs again whenever it changes
    (a repeatable migration file, a table's conversion), applied with this content."""
    return entry is not None and (not reruns_when_changed or entry.sha256 == sha256)


def interrupted_steps(conn: psycopg.Connection) -> list[LedgerEntry]:
    """'started' rows left by a run that died (call while holding the lock)."""
    return [e for e in entries(conn) if e.outcome == "started"]


def resolve_interrupted(conn: psycopg.Connection, *, force: bool = False) -> list[LedgerEntry]:
    """Apply the crash rule to rows left 'started'. Returns the entries it marked."""
    stale = interrupted_steps(conn)
    blocking = [e for e in stale if not e.transactional and not force]
    if blocking:
        e = blocking[0]
        raise LedgerError(
            f"step {e.step} ({e.name}) was interrupted on {e.started_at:%Y-%m-%d %H:%M:%S} by {e.applied_by} "
            "and is not transactional, so part of it may have run. Inspect the database, then run again with "
            "--resolve-interrupted to mark it and go on."
        )
    for e in stale:
        conn.execute(
            f"UPDATE {OWN_SCHEMA}.ledger SET outcome = 'interrupted', finished_at = clock_timestamp() "
            "WHERE attempt = %s",
            (e.attempt,),
        )
    return stale


def record_start(conn: psycopg.Connection, step: str, kind: str, name: str, sha256: str, transactional: bool) -> int:
    """Commit a 'started' row (``conn`` in autocommit) and return its attempt number."""
    return one(
        conn,
        f"""INSERT INTO {OWN_SCHEMA}.ledger (step, kind, name, sha256, transactional, outcome, applied_by)
            VALUES (%s, %s, %s, %s, %s, 'started', %s) RETURNING attempt""",
        (step, kind, name, sha256, transactional, who()),
    )


def record_finish(conn: psycopg.Connection, attempt: int, outcome: str, details: dict | None = None) -> None:
    from psycopg.types.json import Jsonb

    conn.execute(
        f"""UPDATE {OWN_SCHEMA}.ledger
               SET outcome = %s, finished_at = clock_timestamp(),
                   duration_ms = (extract(epoch FROM clock_timestamp() - started_at) * 1000)::bigint,
                   details = %s
             WHERE attempt = %s""",
        (outcome, Jsonb(details or {}), attempt),
    )
