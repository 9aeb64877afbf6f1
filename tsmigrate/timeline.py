"""What the server goes through while the run changes it: a sampler thread on its own connection.

    with Sampler(target, interval=2.0, replica_lag_warn_bytes=...) as sampler:   # a first sample at once
        ...                                                                     # the run
    sampler.to_dict()          # {"interval_seconds": ..., "samples": [...]}: the record's ``timeline``

Every ``interval`` seconds one sample: the database's size, the WAL written since the start, temporary files and
bytes, sessions by state, the sessions waiting on a lock and the pids they wait for (pg_blocking_pids),
checkpoints, each replica's lag and each replication slot's retained WAL; where the server's data directory is on
this machine (tsmigrate.serverfiles), its free room, and the host's CPU and memory (psutil).

The sampler connects to the maintenance database (``postgres``), never to the target: a restore after a failure
renames and drops the target, which no session of ours may hold open. It never raises into the run: a sample that
fails is recorded with its error, and the next one reconnects. It keeps at most ``max_samples`` samples (past
that, every other one is dropped and the interval doubles), so a long window costs a bounded record.
"""

from __future__ import annotations

import functools
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from .db import one
from .errors import first_line
from .serverfiles import ServerFiles, locate
from .target import Target, redact

log = logging.getLogger(__name__)

APPLICATION_NAME = "tsmigrate timeline sampler"
MAX_SAMPLES = 2000
MAX_WAITERS = 10  # sessions waiting on a lock named per sample; the count is always whole

_SAMPLE_SQL = """
SELECT pg_database_size(d.oid),
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
       s.temp_files, s.temp_bytes,
       b.checkpoints_timed + b.checkpoints_req
  FROM pg_database d, pg_stat_database s, pg_stat_bgwriter b
 WHERE d.datname = %(db)s AND s.datid = d.oid"""

_SESSIONS_SQL = """
SELECT coalesce(state, 'unknown'), count(*) FROM pg_stat_activity
 WHERE datname = %(db)s AND pid <> pg_backend_pid() AND backend_type = 'client backend' GROUP BY 1"""

_WAITERS_SQL = """
SELECT pid, pg_blocking_pids(pid), application_name, wait_event FROM pg_stat_activity
 WHERE datname = %(db)s AND wait_event_type = 'Lock' ORDER BY pid"""

_REPLICAS_SQL = """
SELECT application_name, coalesce(client_addr::text, 'local'), state,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint
  FROM pg_stat_replication WHERE NOT pg_is_in_recovery() ORDER BY 1"""

_SLOTS_SQL = """
SELECT slot_name, slot_type, active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint
  FROM pg_replication_slots WHERE NOT pg_is_in_recovery() ORDER BY 1"""


@dataclass
class Sample:
    at: float  # seconds since the epoch
    values: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # a sample that failed, in the server's words

    def to_dict(self) -> dict:
        return {"at": round(self.at, 3), **({"error": self.error} if self.error else {}), **self.values}


def _mib(n: float | None) -> str:
    return "?" if n is None else f"{n / 2**20:.0f} MiB"


def _lag_words(replica: dict, lag: int | None, limit: int | None) -> str:
    return (
        f"replica {replica['name'] or replica['address']} lags {_mib(lag)} behind (the plan's replica_lag_warn_mb "
        f"is {_mib(limit)}); the primary keeps its WAL until it catches up"
    )


def _host_figures() -> dict[str, float]:
    try:
        import psutil
    except ImportError:  # a dependency of the package: missing only in a broken install
        return {}
    return {"cpu_percent": psutil.cpu_percent(interval=None), "memory_percent": psutil.virtual_memory().percent}


class Sampler:
    """A daemon thread sampling the server (see the module's docstring). ``needed_bytes`` says what the remaining
    steps need in the data directory (None when unknown): the live log warns when the free room falls under it."""

    def __init__(
        self,
        target: Target,
        *,
        interval: float = 2.0,
        replica_lag_warn_bytes: int | None = None,
        needed_bytes: Callable[[], int | None] = lambda: None,
        max_samples: int = MAX_SAMPLES,
        server_files: ServerFiles | None = None,
    ):
        self.target = target
        self.interval = max(0.05, float(interval))
        self.replica_lag_warn_bytes = replica_lag_warn_bytes
        self.needed_bytes = needed_bytes
        self.max_samples = max(2, max_samples)
        self.server_files = server_files
        self.samples: list[Sample] = []
        self.warnings: list[str] = []  # every warning the live log gave, in order
        self.dbname: str | None = target.dbname
        self._start_lsn: str | None = None
        self._start: dict[str, int] = {}
        self._conn: psycopg.Connection | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned: set[str] = set()  # conditions warned about and not yet cleared

    # -- lifecycle ---------------------------------------------------------------------------------------
    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Learn the database's name and where its files are (best effort), take a first sample, start the thread."""
        try:
            with self.target.connect(connect_timeout=5, application_name=APPLICATION_NAME) as conn:
                self.dbname = str(one(conn, "SELECT current_database()"))
                if self.server_files is None:
                    self.server_files = locate(conn)
        except Exception as exc:
            log.info("timeline: the target could not be read at the start (%s)", redact(first_line(exc)))
        _host_figures()  # psutil's CPU figure is over the time since its last call: the first one primes it
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="tsmigrate-timeline", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """A last sample, then the thread ends and its connection closes (bounded: a sample has a timeout)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=15)
        self._thread = None
        self.sample()
        self._close()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._close()
            # The maintenance database: a restore must be free to rename and drop the target.
            self._conn = self.target.with_dbname("postgres").connect(
                connect_timeout=5,
                application_name=APPLICATION_NAME,
                options="-c statement_timeout=5000 -c lock_timeout=1000",
            )
        return self._conn

    # -- one sample --------------------------------------------------------------------------------------
    def sample(self) -> Sample:
        """One sample, appended; a failure is recorded as such, never raised."""
        taken = Sample(time.time())
        try:
            taken.values = self._read()
        except Exception as exc:
            taken.error = redact(first_line(exc))[:300]
            if isinstance(exc, psycopg.Error):
                self._close()  # the next sample reconnects
        self._keep(taken)
        try:
            self._warn(taken)
        except Exception as exc:  # the warnings are advice: never the run's failure
            log.info("timeline: %s", first_line(exc))
        return taken

    def _read(self) -> dict[str, Any]:
        conn = self._connection()
        params = {"db": self.dbname}
        row = conn.execute(_SAMPLE_SQL, params).fetchone()
        if row is None or not self.dbname:
            raise LookupError(f"no database {self.dbname} on the server (renamed or dropped by a restore?)")
        size, lsn, temp_files, temp_bytes, checkpoints = row
        if not self._start:
            self._start_lsn = lsn
            self._start = {"temp_files": temp_files, "temp_bytes": temp_bytes, "checkpoints": checkpoints}
        wal = None
        if lsn is not None and self._start_lsn is not None:
            wal = int(one(conn, "SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", (lsn, self._start_lsn)))
        waiters = conn.execute(_WAITERS_SQL, params).fetchall()
        values: dict[str, Any] = {
            "database_bytes": int(size),
            "wal_bytes": wal,
            "temp_files": int(temp_files - self._start["temp_files"]),
            "temp_bytes": int(temp_bytes - self._start["temp_bytes"]),
            "checkpoints": int(checkpoints - self._start["checkpoints"]),
            "sessions": {state: int(n) for state, n in conn.execute(_SESSIONS_SQL, params).fetchall()},
            "lock_waits": len(waiters),
            "waiting": [
                {"pid": pid, "blocked_by": list(by or []), "application": app or "", "wait_event": event or ""}
                for pid, by, app, event in waiters[:MAX_WAITERS]
            ],
            "replicas": [
                {"name": name or "", "address": address, "state": state or "", "lag_bytes": lag}
                for name, address, state, lag in conn.execute(_REPLICAS_SQL).fetchall()
            ],
            "slots": [
                {"name": name, "type": kind, "active": bool(active), "retained_bytes": retained}
                for name, kind, active, retained in conn.execute(_SLOTS_SQL).fetchall()
            ],
        }
        files = self.server_files
        if files is not None and files.data_directory and files.data_room and files.data_room.where == "this machine":
            try:
                values["free_bytes"] = shutil.disk_usage(files.data_directory).free
            except OSError:
                pass
        values.update(_host_figures())
        return values

    def _keep(self, taken: Sample) -> None:
        self.samples.append(taken)
        if len(self.samples) > self.max_samples:
            # Bounded: every other sample goes (the first and the newest stay), and sampling slows to match.
            self.samples = [*self.samples[:-1:2], self.samples[-1]]
            self.interval *= 2

    # -- the live log's warnings -------------------------------------------------------------------------
    def _warn(self, taken: Sample) -> None:
        v = taken.values
        free = v.get("free_bytes")
        needed = self.needed_bytes() if free is not None else None
        short = free is not None and needed is not None and free < needed
        self._condition(
            "disk",
            short,
            lambda: (
                f"free room in the server's data directory {self._data_directory()} is {_mib(free)}, under "
                f"the {_mib(needed)} the remaining steps need: free room there now, or the next conversion may run "
                "out of disk"
            ),
        )
        limit = self.replica_lag_warn_bytes
        for replica in v.get("replicas", []):
            lag = replica.get("lag_bytes")
            self._condition(
                f"replica {replica['name']} {replica['address']}",
                limit is not None and lag is not None and lag > limit,
                functools.partial(_lag_words, replica, lag, limit),
            )

    def _data_directory(self) -> str:
        return (self.server_files.data_directory if self.server_files else None) or "?"

    def _condition(self, key: str, holds: bool, words: Callable[[], str]) -> None:
        """Warn once when a condition starts to hold; again only after it cleared."""
        if holds and key not in self._warned:
            self._warned.add(key)
            text = words()
            self.warnings.append(text)
            log.warning("timeline: %s", text)
        elif not holds:
            self._warned.discard(key)

    # -- the record --------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "interval_seconds": self.interval,
            "database": self.dbname,
            "data_directory_here": bool(self.server_files and self.server_files.data_room),
            "samples": [s.to_dict() for s in self.samples],
            "warnings": list(self.warnings),
        }
