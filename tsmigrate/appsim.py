"""The MS5.0 application, as far as a migration cares: telemetry inserted every few hundred milliseconds.

A :class:`TelemetryWriter` inserts one ``metric_hist`` row per interval in its own autocommit session
(as a login role of the application), reconnecting after an error as a connection pool would. It
keeps the ids of the rows whose INSERT returned (committed), the errors it met and its slowest
insert, so that a run can be judged on what matters: no committed row lost, how long writes waited.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import psycopg


class TelemetryWriter(threading.Thread):
    def __init__(self, conninfo: str, *, schema: str = "factory_telemetry", interval: float = 0.1,
                 statement_timeout_s: float = 600):
        super().__init__(name="telemetry-writer", daemon=True)
        self.conninfo, self.schema, self.interval = conninfo, schema, interval
        self.statement_timeout_s = statement_timeout_s
        self.committed: list[int] = []
        self.errors: Counter[str] = Counter()
        self.longest_wait = 0.0          # seconds, the slowest INSERT that committed
        self.attempts = 0
        self._stop_event = threading.Event()

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.conninfo, autocommit=True, connect_timeout=3, application_name="ms5 telemetry",
                               options=f"-c statement_timeout={int(self.statement_timeout_s * 1000)}")

    def run(self) -> None:
        conn = None
        while not self._stop_event.is_set():
            self.attempts += 1
            try:
                if conn is None or conn.closed:
                    conn = self._connect()
                    metric = conn.execute(f'SELECT id FROM "{self.schema}".metric_def ORDER BY id LIMIT 1').fetchone()[0]
                started = time.monotonic()
                new_id = conn.execute(f'INSERT INTO "{self.schema}".metric_hist (metric_def_id, ts, value_real) '
                                      "VALUES (%s, now(), random()) RETURNING id", (metric,)).fetchone()[0]
                self.longest_wait = max(self.longest_wait, time.monotonic() - started)
                self.committed.append(new_id)
            except psycopg.Error as exc:
                self.errors[(str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]] += 1
                if conn is not None:
                    conn.close()
                conn = None
            self._stop_event.wait(self.interval)
        if conn is not None:
            conn.close()

    def stop(self, timeout: float = 30) -> None:
        self._stop_event.set()
        self.join(timeout)

    def missing(self, conn: psycopg.Connection) -> list[int]:
        """Ids the writer saw committed that the database does not hold."""
        if not self.committed:
            return []
        return [r[0] for r in conn.execute(
            f'SELECT i FROM unnest(%s::bigint[]) i WHERE NOT EXISTS (SELECT 1 FROM "{self.schema}".metric_hist m '
            "WHERE m.id = i)", (self.committed,)).fetchall()]

    def describe(self) -> str:
        errors = "; ".join(f"{n}x {text}" for text, n in self.errors.most_common(3)) or "none"
        return (f"{len(self.committed)} rows committed of {self.attempts} tries, longest insert "
                f"{self.longest_wait:.2f} s, errors: {errors}")
