"""Pre-flight: TimescaleDB's background jobs that failed before the window (after Phase 3 the database has them).

Told as advisories with their cause: a job failing now will be failing after the run too, and a job that
could not start says the server is short of worker slots, which the run's new policies will need.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from ..findings import Finding
from ..jobs import job_failures
from .checks import finding

LOOK_BACK = timedelta(hours=24)


def failing_jobs(conn: psycopg.Connection, look_back: timedelta = LOOK_BACK) -> list[Finding]:
    _, failures = job_failures(conn, datetime.now(UTC) - look_back)
    return [finding("PF080", str(f)) for f in failures]
