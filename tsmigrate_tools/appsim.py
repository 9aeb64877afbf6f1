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

from tsmigrate.db import one
from tsmigrate.errors import first_line


class TelemetryWriter(threading.Thread):
    """Inserts a metric row every ``interval`` s in its own autocommit session, as the application would.

    ``committed`` holds the ids of the rows the server acknowledged. When its session is lost it reconnects
    (``reconnect``) or stops; it never runs longer than ``limit`` seconds. ``marker``, if given, goes into
    each row's value_text so its rows can be told apart.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = "factory_telemetry",
        interval: float = 0.1,
        metric_def_id: object = None,
        marker: str | None = None,
        reconnect: bool = True,
        limit: float = 3600.0,
        statement_timeout_s: float = 600,
    ):
        super().__init__(name=f"telemetry-writer {marker or ''}".strip(), daemon=True)
        self.conninfo, self.schema, self.interval = conninfo, schema, interval
        self.metric_def_id, self.marker, self.reconnect, self.limit = metric_def_id, marker, reconnect, limit
        self.statement_timeout_s = statement_timeout_s
        self.committed: list[int] = []
        self.errors: list[str] = []
        self.longest_wait = 0.0  # seconds, the slowest INSERT that committed
        self.attempts = 0
        self.lost = threading.Event()  # its session was ended under it at least once
        self.login_refused = threading.Event()
        self._stop_event = threading.Event()

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(
            self.conninfo,
            autocommit=True,
            connect_timeout=3,
            application_name="ms5 telemetry",
            options=f"-c statement_timeout={int(self.statement_timeout_s * 1000)}",
        )
        if self.metric_def_id is None:
            self.metric_def_id = one(conn, f'SELECT id FROM "{self.schema}".metric_def ORDER BY id LIMIT 1')
        return conn

    def run(self) -> None:
        deadline = time.monotonic() + self.limit
        conn = None
        while not self._stop_event.is_set() and time.monotonic() < deadline:
            self.attempts += 1
            try:
                if conn is None:
                    if self.lost.is_set() and not self.reconnect:
                        return
                    conn = self._connect()
                started = time.monotonic()
                new_id = one(
                    conn,
                    f'INSERT INTO "{self.schema}".metric_hist (metric_def_id, ts, value_real, '
                    "value_text) VALUES (%s, now(), %s, %s) RETURNING id",
                    (self.metric_def_id, self.attempts, self.marker),
                )
                self.longest_wait = max(self.longest_wait, time.monotonic() - started)
                self.committed.append(new_id)
            except psycopg.Error as exc:
                text = first_line(exc)
                self.errors.append(text[:200])
                if "not permitted to log in" in text:
                    self.login_refused.set()
                if conn is not None:
                    self.lost.set()
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
        return [
            r[0]
            for r in conn.execute(
                f'SELECT i FROM unnest(%s::bigint[]) i WHERE NOT EXISTS (SELECT 1 FROM "{self.schema}".metric_hist m '
                "WHERE m.id = i)",
                (self.committed,),
            ).fetchall()
        ]

    def describe(self) -> str:
        errors = "; ".join(f"{n}x {text[:120]}" for text, n in Counter(self.errors).most_common(3)) or "none"
        return (
            f"{len(self.committed)} rows committed of {self.attempts} tries, longest insert "
            f"{self.longest_wait:.2f} s, errors: {errors}"
        )
