"""Who else is on the target, and whether rows are being written: the maintenance window, observed.

Writes are seen two ways over a short sample: the tuple counters of ``pg_stat_user_tables`` (a
backend flushes them about once a second while it works) and the sequences' ``last_value`` (which
moves at once, even before the writer commits). TimescaleDB's own schemas are left out: its background
jobs write there (job statistics, compressed chunks) on their own. Rows the application writes into a
hypertable's chunks still show through the sequence that gives them their ids.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import psycopg

from .tool_objects import OWN_SCHEMA

# TimescaleDB's own schemas change under its background jobs; they are not the application's writes.
_NOT_APPLICATION = (
    "pg_catalog",
    "information_schema",
    OWN_SCHEMA,
    "timescaledb_information",
    "timescaledb_experimental",
    "_timescaledb_catalog",
    "_timescaledb_config",
    "_timescaledb_cache",
    "_timescaledb_functions",
    "_timescaledb_internal",
)


@dataclass(frozen=True)
class Session:
    pid: int
    role: str
    application: str
    client: str
    state: str
    last_query: str

    def __str__(self) -> str:
        return (
            f"pid {self.pid} role {self.role} application '{self.application}' from {self.client} "
            f"({self.state}; last ran: {self.last_query})"
        )


@dataclass
class WriteSample:
    seconds: float
    rows_changed: dict[str, int] = field(default_factory=dict)  # table -> inserts+updates+deletes
    sequences_moved: dict[str, int] = field(default_factory=dict)  # sequence -> values taken

    @property
    def writing(self) -> bool:
        return bool(self.rows_changed or self.sequences_moved)

    def describe(self) -> str:
        parts = [f"{t} {n} rows" for t, n in sorted(self.rows_changed.items(), key=lambda kv: -kv[1])]
        parts += [f"sequence {s} +{n}" for s, n in sorted(self.sequences_moved.items(), key=lambda kv: -kv[1])]
        return (
            f"in {self.seconds:.1f} s: "
            + ", ".join(parts[:8])
            + (f" and {len(parts) - 8} more" if len(parts) > 8 else "")
        )


def other_sessions(conn: psycopg.Connection) -> list[Session]:
    """Client sessions on this database other than ours (and other than tsmigrate's own runs)."""
    rows = conn.execute("""
        SELECT pid, coalesce(usename, '?'), coalesce(application_name, ''),
               coalesce(client_addr::text, 'local socket'), coalesce(state, '?'),
               left(regexp_replace(coalesce(query, ''), '\\s+', ' ', 'g'), 100)
          FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
           AND application_name NOT LIKE 'tsmigrate%%'
         ORDER BY backend_start""").fetchall()
    return [Session(*r) for r in rows]


def _counters(conn: psycopg.Connection) -> tuple[dict[str, int], dict[str, int]]:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    tables: dict[str, int] = dict(
        conn.execute(
            """
        SELECT schemaname || '.' || relname, n_tup_ins + n_tup_upd + n_tup_del
          FROM pg_stat_user_tables WHERE schemaname <> ALL(%s)""",
            (list(_NOT_APPLICATION),),
        ).fetchall()
    )
    # pg_sequences shows last_value only where the role may read the sequence (NULL elsewhere: never "moved");
    # a has_sequence_privilege() by name would fail on a schema the role may not use.
    sequences: dict[str, int] = dict(
        conn.execute(
            """
        SELECT schemaname || '.' || sequencename, coalesce(last_value, 0)
          FROM pg_sequences WHERE schemaname <> ALL(%s)""",
            (list(_NOT_APPLICATION),),
        ).fetchall()
    )
    return tables, sequences


def sample_writes(conn: psycopg.Connection, seconds: float = 2.0) -> WriteSample:
    """Rows changed and sequence values taken by others over ``seconds`` (``conn`` must not write)."""
    started = time.monotonic()
    tables_before, sequences_before = _counters(conn)
    time.sleep(seconds)
    tables_after, sequences_after = _counters(conn)
    sample = WriteSample(time.monotonic() - started)
    sample.rows_changed = {
        t: n - tables_before.get(t, 0) for t, n in tables_after.items() if n > tables_before.get(t, 0)
    }
    sample.sequences_moved = {
        s: v - sequences_before.get(s, 0) for s, v in sequences_after.items() if v > sequences_before.get(s, 0)
    }
    return sample
