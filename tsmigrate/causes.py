"""Why something failed, in the operator's words: one classifier for the run's last line, the restore and the
rehearsal.

A server error (its SQLSTATE and text), a client program's error output or the last lines of a server log go in;
a :class:`Cause` comes out when the failure is a known one: which resource ran out (disk, the lock table,
background-worker slots, connection slots, memory), where, and what closes it. A failure of the statement itself
(a syntax error, a constraint) has no cause here: its own message already says what to fix.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

DISK_FULL = "disk full"
WAL_FULL = "server stopped: WAL disk full"
LOCK_TABLE_FULL = "out of shared memory (lock table full)"
NO_WORKER_SLOTS = "no background worker slots"
NO_CONNECTION_SLOTS = "no connection slots"
OUT_OF_MEMORY = "out of memory"
TEMP_FILE_LIMIT = "temp_file_limit reached"
SERVER_STOPPED = "server stopped"


@dataclass(frozen=True)
class Cause:
    kind: str  # one of the names above: what the last line calls it
    what: str  # what ran out, where (a directory, a setting's value)
    fix: str  # what to do, a sentence ending with '.'
    path: str | None = None  # the directory (on the server's machine) that is full, when known
    resource: bool = True  # a server resource ran out: fixing the statement would not help

    def words(self) -> str:
        return f"{self.kind}: {self.what}. {self.fix}"

    def to_dict(self) -> dict:
        return asdict(self)


# Messages as PostgreSQL and its client programs write them (English; a server with another lc_messages still
# gives the SQLSTATE, and errno's text "No space left on device" comes from the C library in the server's locale).
_NO_SPACE = re.compile(
    r"No space left on device|could not extend file|disk quota exceeded|could not write init file", re.IGNORECASE
)
_FILE = re.compile(
    r"(?:could not (?:extend|write to|write|create|open|fsync|allocate space for) file|"
    r"could not write to file|could not write block \d+ of|could not create (?:directory|file)) "
    r'"([^"]+)"',
    re.IGNORECASE,
)
_WAL_FILE = re.compile(r'"(?:[^"]*/)?pg_wal/[^"]*"|\bpg_wal\b')
_LOCKS = re.compile(r"out of shared memory|max_locks_per_transaction", re.IGNORECASE)
_WORKERS = re.compile(
    r"no available background worker slots|out of background worker slots|"
    r"could not register background process|max_worker_processes|"
    r"background worker .*failed to start|job \d+ .*failed to start|failed to start (?:job|background)",
    re.IGNORECASE,
)
_CONNECTIONS = re.compile(r"too many clients already|remaining connection slots are reserved", re.IGNORECASE)
_STOPPED = re.compile(
    r"server closed the connection unexpectedly|connection refused|could not connect|"
    r"the database system is (?:shutting down|in recovery mode|starting up)|"
    r"terminating connection because of crash|consuming input failed|"
    r"server conn crashed|no connection to the server|connection is (?:lost|closed|bad)",
    re.IGNORECASE,
)
_SERVER_DOWN = re.compile(
    r"PANIC:|database system is shut down|was terminated by signal|"
    r"received (?:smart|fast|immediate) shutdown request|all server processes terminated"
)
_LOCK_SETTING = re.compile(r"max_locks_per_transaction\D{0,20}(\d+)")

# SQLSTATEs (PostgreSQL's errcodes.txt): class 53 is insufficient resources, 57P0x the server going away.
DISK_FULL_STATE = "53100"
OUT_OF_MEMORY_STATE = "53200"
TOO_MANY_CONNECTIONS_STATE = "53300"
LIMIT_EXCEEDED_STATE = "53400"
SERVER_GONE_STATES = {"57P01", "57P02", "57P03", "08000", "08003", "08006", "08001", "08004"}


def _parts(error) -> tuple[str | None, str]:
    """(SQLSTATE, the whole text: message, detail, hint) of a psycopg error, a MigrationError, any exception, or a
    string (a client program's error output, a server log's lines)."""
    if error is None:
        return None, ""
    if isinstance(error, str):
        return None, error
    state = getattr(error, "sqlstate", None)
    texts = [str(error)]
    diag = getattr(error, "diag", None)
    if diag is not None:
        texts += [diag.message_primary or "", diag.message_detail or "", diag.message_hint or ""]
    texts += [getattr(error, "server_message", "") or "", getattr(error, "hint", "") or ""]
    cause = error.__cause__ or error.__context__
    if cause is not None and cause is not error:
        inner_state, inner_text = _parts(cause)
        state = state or inner_state
        texts.append(inner_text)
    return state, "\n".join(t for t in texts if t)


def _server_path(relative: str, data_directory: str | None) -> str:
    """A server file named in a message ("base/16384/16999"), as a path on the server's machine."""
    if relative.startswith("/") or not data_directory:
        return relative
    return str(Path(data_directory) / relative)


def _full_directory(text: str, data_directory: str | None, wal_directory: str | None) -> tuple[str | None, bool]:
    """(the directory that is full, whether it is the WAL's)."""
    match = _FILE.search(text)
    named = match.group(1) if match else None
    if named and _WAL_FILE.search(f'"{named}"'):
        return wal_directory or _server_path("pg_wal", data_directory), True
    if named and "pgsql_tmp" in named:
        return _server_path(str(Path(named).parent), data_directory), False
    if named and not named.startswith("/") and data_directory:
        return data_directory, False
    if named:
        return str(Path(named).parent), False
    return data_directory, False


def classify(
    error,
    *,
    data_directory: str | None = None,
    wal_directory: str | None = None,
    server_log: str | None = None,
    settings: dict[str, str] | None = None,
) -> Cause | None:
    """The cause of ``error`` (an exception or text), or None when it is not a known resource failure.

    ``data_directory``/``wal_directory``: the server's, when known, to name the full filesystem; ``server_log``:
    the last lines of the server's log, read when the server stopped (the error is then only 'connection lost');
    ``settings``: current values (max_locks_per_transaction, ...) to say what to raise them to.
    """
    state, text = _parts(error)
    settings = settings or {}
    if state == DISK_FULL_STATE or _NO_SPACE.search(text):
        where, wal = _full_directory(text, data_directory, wal_directory)
        place = where or "the server's data directory (SHOW data_directory)"
        if wal:
            return Cause(
                WAL_FULL,
                f"the WAL directory {place} has no room left (No space left on device)",
                f"Free disk in {place} (or grow its filesystem), start the server if it stopped (it "
                "recovers on its own), then run the pre-flight again: it measures the room the run needs.",
                where,
            )
        return Cause(
            DISK_FULL,
            f"no room left in {place} (No space left on device)",
            f"Free disk in {place} (or grow its filesystem) until the pre-flight's disk check passes, then run again.",
            where,
        )
    if (state == OUT_OF_MEMORY_STATE and _LOCKS.search(text)) or "max_locks_per_transaction" in text:
        now = settings.get("max_locks_per_transaction") or (_LOCK_SETTING.search(text) or [None, None])[1]
        to = f"to {int(now) * 2} or more (it is {now})" if now and str(now).isdigit() else "(double it, at least)"
        return Cause(
            LOCK_TABLE_FULL,
            "the server's lock table is full: the transaction needs more locks than "
            "max_locks_per_transaction x (max_connections + max_prepared_transactions) "
            "allows",
            f"Raise max_locks_per_transaction {to} in postgresql.conf and restart the server, then run "
            "the pre-flight again.",
        )
    if _WORKERS.search(text):
        return Cause(
            NO_WORKER_SLOTS,
            "the server has no free background-worker slot (max_worker_processes, timescaledb.max_background_workers)",
            "Raise max_worker_processes and timescaledb.max_background_workers in postgresql.conf (workers "
            "at least the TimescaleDB databases plus concurrent jobs) and restart the server.",
        )
    if state == TOO_MANY_CONNECTIONS_STATE or _CONNECTIONS.search(text):
        return Cause(
            NO_CONNECTION_SLOTS,
            "the server has no free connection slot",
            "Stop idle clients or raise max_connections (restart needed), then run again.",
        )
    if state == LIMIT_EXCEEDED_STATE and "temp_file_limit" in text:
        return Cause(
            TEMP_FILE_LIMIT,
            "a sort or hash spilled more temporary files than temp_file_limit allows",
            "Raise temp_file_limit for the run's role (ALTER ROLE ... SET temp_file_limit = -1), then run again.",
        )
    if state == OUT_OF_MEMORY_STATE or re.search(r"\bout of memory\b", text, re.IGNORECASE):
        return Cause(
            OUT_OF_MEMORY,
            "the server ran out of memory",
            "Lower maintenance_work_mem and work_mem for the run, or give the server more memory, then run again.",
        )
    if (
        state in SERVER_GONE_STATES
        or (isinstance(error, BaseException) and _is_connection_error(error))
        or _STOPPED.search(text)
    ):
        if server_log:
            logged = classify(
                _worst_lines(server_log), data_directory=data_directory, wal_directory=wal_directory, settings=settings
            )
            if logged is not None:
                return (
                    logged
                    if logged.kind != DISK_FULL
                    else Cause(
                        SERVER_STOPPED + " (disk full)",
                        logged.what + ": the server stopped",
                        logged.fix.replace(
                            "then run again", "start the server (it recovers on its own), then run again"
                        ),
                        logged.path,
                    )
                )
            if _SERVER_DOWN.search(server_log):  # not one session ended: the server itself went down
                return Cause(
                    SERVER_STOPPED,
                    "the server stopped; its log says: " + _worst_lines(server_log).splitlines()[-1][:300],
                    "Read the server's log, start the server, then run again.",
                    resource=False,
                )
        return None
    return None


def _is_connection_error(error: BaseException) -> bool:
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        return False
    return isinstance(error, psycopg.OperationalError) and getattr(error, "sqlstate", None) is None


def _worst_lines(log: str) -> str:
    """A server log's PANIC and FATAL lines (with the lines just before them), else its last lines: what tells why
    the server stopped."""
    lines = log.splitlines()
    worst = [i for i, line in enumerate(lines) if "PANIC:" in line]
    worst = worst or [
        i
        for i, line in enumerate(lines)
        if re.search(r"\b(FATAL|ERROR):", line) and "the database system is" not in line
    ]
    if not worst:
        return "\n".join(lines[-5:])
    return "\n".join(lines[max(0, worst[0] - 2) : worst[0] + 2])


def tail(path: str | Path | None, lines: int = 200) -> str | None:
    """The last lines of a (server log) file, or None when it cannot be read from here."""
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 64 * 1024))
            return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
    except OSError:
        return None
