"""The health of TimescaleDB's background jobs, judged for a window of time: which runs failed since a moment,
whether a later run of the same job cleared the failure, and why a job could not start.

A job that failed once and succeeded on its next try (a busy server had no worker slot for a second) is not
broken; a job whose latest run failed is. Both are told with their cause; only the second fails a check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from .causes import classify
from .db import one, timescaledb_version


class JobClearedWarning(UserWarning):
    """A background job failed in the window judged, and a later run of it succeeded: told, not failed on."""


FAILED_TO_START = "failed to start"  # TimescaleDB's words when the server gave the scheduler no worker


@dataclass(frozen=True)
class JobFailure:
    job_id: int
    proc: str
    started: datetime | None
    message: str
    sqlstate: str | None
    cleared_at: datetime | None  # a later run of the same job that succeeded, when there was one
    cause: str  # why, in words, with the setting or statement that fixes it

    @property
    def cleared(self) -> bool:
        return self.cleared_at is not None

    def __str__(self) -> str:
        when = f" at {self.started:%Y-%m-%d %H:%M:%S %Z}" if self.started else ""
        code = f" (SQLSTATE {self.sqlstate})" if self.sqlstate else ""
        head = f"job {self.job_id} ({self.proc}) failed{when}: {self.message}{code}"
        if self.cleared:
            return f"{head}; a later run succeeded at {self.cleared_at:%Y-%m-%d %H:%M:%S %Z}. {self.cause}"
        return f"{head}; its latest run has not succeeded since. {self.cause}"


def worker_slots_cause(conn: psycopg.Connection) -> str:
    """Why a job could not start, with the settings that decide it and the statements that raise them."""
    processes = int(one(conn, "SELECT current_setting('max_worker_processes')"))
    timescale = one(conn, "SELECT current_setting('timescaledb.max_background_workers', true)")
    parallel = int(one(conn, "SELECT current_setting('max_parallel_workers')"))
    in_use = one(
        conn,
        """SELECT count(*) FROM pg_stat_activity
                           WHERE backend_type NOT IN ('client backend', 'autovacuum launcher', 'autovacuum worker',
                                                      'checkpointer', 'background writer', 'walwriter', 'archiver',
                                                      'startup', 'walreceiver', 'walsender', 'logger')""",
    )
    wanted = max(processes + 4, int(timescale or 0) + parallel + 1)
    return (
        f"Cause: no background worker slot was free when TimescaleDB's scheduler tried to start it "
        f"(max_worker_processes = {processes}, {in_use} background workers running now, "
        f"timescaledb.max_background_workers = {timescale or 'not set'}, max_parallel_workers = {parallel}; the "
        f"server log says 'no available background worker slots' or 'failed to start a background worker'). "
        f"Fix: ALTER SYSTEM SET max_worker_processes = {wanted}; and raise timescaledb.max_background_workers "
        f"to at least the TimescaleDB databases plus the jobs that run at once, then restart the server."
    )


def _cause(conn: psycopg.Connection, job_id: int, message: str, sqlstate: str | None = None) -> str:
    if FAILED_TO_START in message:
        return worker_slots_cause(conn)
    resource = classify(f"{message} {sqlstate or ''}")  # a resource (disk, locks, memory): its fix, not the job's
    if resource is not None:
        return f"Cause: {resource.kind}: {resource.what}. Fix: {resource.fix} Then CALL run_job({job_id})."
    if "crash" in message:
        return (
            f"Cause: the job's worker ended without a result (see the server log at that time). Fix: the cause "
            f"the log names, then CALL run_job({job_id})."
        )
    return (
        f"Fix: the cause in the message (SELECT * FROM timescaledb_information.job_history WHERE job_id = "
        f"{job_id}), then CALL run_job({job_id})."
    )


def _history_query(conn: psycopg.Connection) -> str | None:
    """Failed runs since %(since)s, each with the first later success of the same job (or NULL)."""
    if one(conn, "SELECT to_regclass('timescaledb_information.job_history')"):
        # job_history (2.15+): a row per run, kept for a month by default.
        return """SELECT h.job_id, h.proc_name, h.start_time, coalesce(h.err_message, 'no message'), h.sqlerrcode,
                         (SELECT min(l.finish_time) FROM timescaledb_information.job_history l
                           WHERE l.job_id = h.job_id AND l.succeeded AND l.start_time > h.start_time),
                         CASE WHEN isfinite(s.last_successful_finish) THEN s.last_successful_finish END
                    FROM timescaledb_information.job_history h
                    LEFT JOIN timescaledb_information.job_stats s ON s.job_id = h.job_id
                   WHERE h.start_time >= %(since)s
                     AND (h.succeeded IS FALSE OR (h.succeeded IS NULL AND h.finish_time IS NULL AND h.pid IS NULL))
                   ORDER BY h.start_time"""
    if one(conn, "SELECT to_regclass('timescaledb_information.job_errors')"):
        # job_errors (2.9 to 2.14): failures only; a later success shows in job_stats.
        return """SELECT e.job_id, e.proc_name, e.start_time, coalesce(e.err_message, 'no message'), e.sqlerrcode,
                         NULL::timestamptz,
                         CASE WHEN isfinite(s.last_successful_finish) THEN s.last_successful_finish END
                    FROM timescaledb_information.job_errors e
                    LEFT JOIN timescaledb_information.job_stats s ON s.job_id = e.job_id
                   WHERE e.start_time >= %(since)s ORDER BY e.start_time"""
    return None


def job_failures(conn: psycopg.Connection, since: datetime) -> tuple[int, list[JobFailure]]:
    """(jobs on the database, runs that failed since ``since`` and jobs whose latest run failed, oldest first).

    A failure is cleared when a later run of the same job succeeded. Where TimescaleDB keeps no history of
    runs (before 2.9), only each job's latest state is known.
    """
    if timescaledb_version(conn) is None:
        return 0, []
    jobs = one(conn, "SELECT count(*) FROM timescaledb_information.jobs")
    failures: list[JobFailure] = []
    query = _history_query(conn)
    if query is not None:
        for job_id, proc, started, message, sqlstate, later_success, last_success in conn.execute(
            query, {"since": since}
        ).fetchall():
            cleared = later_success or (last_success if last_success and started and last_success > started else None)
            failures.append(
                JobFailure(job_id, proc, started, message, sqlstate, cleared, _cause(conn, job_id, message, sqlstate))
            )
    # Each job's latest state, also for a failure older than ``since`` that no run has cleared.
    seen = {f.job_id for f in failures if not f.cleared}
    for job_id, proc, started in conn.execute(
        """SELECT s.job_id, j.proc_name,
                      CASE WHEN isfinite(s.last_run_started_at) THEN s.last_run_started_at END
                 FROM timescaledb_information.job_stats s JOIN timescaledb_information.jobs j ON j.job_id = s.job_id
                WHERE s.last_run_status = 'Failed' ORDER BY s.job_id"""
    ).fetchall():
        if job_id not in seen:
            failures.append(
                JobFailure(job_id, proc, started, "its latest run failed", None, None, _cause(conn, job_id, ""))
            )
    return jobs, failures
