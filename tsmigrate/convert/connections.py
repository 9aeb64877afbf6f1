"""How many connections a conversion copies and builds indexes on: the server's cores to spare, within its free
connection slots.

The default is what the server's own administrator allows one index build (``max_parallel_maintenance_workers``,
plus the leader), so the conversion loads the server no more than one parallel CREATE INDEX would. It never takes
the last free connection slots: SLOT_MARGIN of them stay for the application, the run's own sessions and an
operator's psql. The plan's ``jobs`` ([plan] jobs = N) overrides the default; the pre-flight checks that the slots
for it are free (PF009).
"""

from __future__ import annotations

import psycopg

from ..db import one

# Free slots left to others: the run's own sessions (the step, the ledger, the writer of the progress lines), the
# application's pool reconnecting, an operator's psql.
SLOT_MARGIN = 4


def free_connection_slots(conn: psycopg.Connection) -> int:
    """Connection slots a role without superuser can still take on the server."""
    return int(
        one(
            conn,
            """SELECT current_setting('max_connections')::int
                    - current_setting('superuser_reserved_connections')::int
                    - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')""",
        )
    )


def default_jobs(conn: psycopg.Connection) -> int:
    """max_parallel_maintenance_workers + 1, within the free slots less SLOT_MARGIN, at least 1."""
    workers = int(one(conn, "SELECT current_setting('max_parallel_maintenance_workers')::int"))
    return max(1, min(workers + 1, free_connection_slots(conn) - SLOT_MARGIN))


def conversion_jobs(conn: psycopg.Connection, configured: int | None) -> int:
    """The plan's ``jobs`` where it sets one, else the server's default (:func:`default_jobs`)."""
    return configured if configured is not None else default_jobs(conn)
