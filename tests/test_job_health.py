"""Background jobs judged for the run: a failure a later run cleared is told, not failed on; a job whose
latest run failed fails the post-flight; a job that could not start names the worker slots.

Real jobs on real servers (TimescaleDB's community edition: user-defined jobs and the scheduler), no fake:
a procedure that fails on its first call and succeeds on the next makes the transient failure, one that
always fails makes the broken job, and a server started with too few worker processes makes 'failed to
start'. Under the apache edition these tests skip, with the reason.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import psycopg
import pytest
from testbed.legacy import fingerprints

from tsmigrate.findings import ADVISORY
from tsmigrate.jobs import FAILED_TO_START, job_failures
from tsmigrate.preflight.background_jobs import failing_jobs
from tsmigrate.servers.local import LocalCluster, pg_bindir
from tsmigrate.target import Target

FLAKY_JOB = """
CREATE TABLE public.flaky_calls (n int);
CREATE PROCEDURE public.flaky(job_id int, config jsonb) LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.flaky_calls VALUES (1);
  IF (SELECT count(*) FROM public.flaky_calls) = 1 THEN
    COMMIT;   -- the call is counted, then this run fails; the next one succeeds
    RAISE EXCEPTION 'flaky: first call fails';
  END IF;
END $$;
CREATE PROCEDURE public.broken(job_id int, config jsonb) LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'broken: every call fails'; END $$;
"""


def wait_for(conn: psycopg.Connection, query: str, params=(), timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not conn.execute(query, params).fetchone()[0]:
        assert time.monotonic() < deadline, f"waited {timeout} s for: {query} {params}"
        time.sleep(0.5)


def add_job(conn: psycopg.Connection, proc: str, every: str = "1 second") -> int:
    return conn.execute(
        "SELECT add_job(%s::regproc, %s::interval, initial_start => now())", (f"public.{proc}", every)
    ).fetchone()[0]


def make_flaky_and_broken_jobs(target: Target) -> tuple[int, int]:
    """A job whose first run failed and whose second succeeded, and a job whose every run fails; both have run
    (the scheduler ran them in the background) when this returns."""
    with target.connect() as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")  # a legacy database may not have it yet
        conn.execute(FLAKY_JOB)
        flaky, broken = add_job(conn, "flaky"), add_job(conn, "broken", "1 hour")
        wait_for(
            conn,
            """SELECT total_successes >= 1 AND total_failures >= 1
                            FROM timescaledb_information.job_stats WHERE job_id = %s""",
            (flaky,),
        )
        wait_for(conn, "SELECT total_failures >= 1 FROM timescaledb_information.job_stats WHERE job_id = %s", (broken,))
        conn.execute("SELECT alter_job(%s, scheduled => false)", (flaky,))  # no more runs: the state stays
    return flaky, broken


def test_a_failure_a_later_run_cleared_is_told_and_a_failing_job_is_not_cleared(community_server, legacy_db):
    since = datetime.now(UTC)
    flaky, broken = make_flaky_and_broken_jobs(legacy_db)
    with legacy_db.connect() as conn:
        _, failures = job_failures(conn, since)
    by_job = {}
    for f in failures:
        by_job.setdefault(f.job_id, []).append(f)
    assert [f.cleared for f in by_job[flaky]] == [True], by_job[flaky]
    assert "flaky: first call fails" in by_job[flaky][0].message and "a later run succeeded" in str(by_job[flaky][0])
    assert by_job[broken] and not any(f.cleared for f in by_job[broken]), by_job[broken]
    assert "broken: every call fails" in by_job[broken][0].message
    assert "its latest run has not succeeded" in str(by_job[broken][0])
    # Runs before the window judged are not this run's: only each job's latest state is.
    with legacy_db.connect() as conn:
        _, later = job_failures(conn, datetime.now(UTC))
    assert [f.job_id for f in later] == [broken], later


@pytest.mark.finding("PF080", ADVISORY)
def test_jobs_failing_before_the_window_are_preflight_advisories(community_server, legacy_db):
    flaky, broken = make_flaky_and_broken_jobs(legacy_db)
    with legacy_db.connect() as conn:
        found = failing_jobs(conn)
    assert {f.code for f in found} == {"PF080"} and {f.severity for f in found} == {ADVISORY}
    assert any(f"job {flaky} " in f.message and "a later run succeeded" in f.message for f in found), found
    assert any(f"job {broken} " in f.message and "broken: every call fails" in f.message for f in found), found


def test_yesterdays_transient_failure_does_not_fail_the_run_but_a_broken_job_does(
    community_server, aged_legacy_db, run_suite, tmp_path
):
    """A job that failed once before the run, cleared by its next run, is not the run's failure (it used to
    fail every post-flight for 24 hours); a job whose latest run failed still fails the post-flight."""
    flaky, broken = make_flaky_and_broken_jobs(aged_legacy_db)
    with aged_legacy_db.connect() as conn:
        conn.execute("SELECT delete_job(%s)", (broken,))
    before = fingerprints(aged_legacy_db)
    result = run_suite("suites", "--dsn", aged_legacy_db.conninfo, "--no-rehearse")
    rec = json.loads((tmp_path / "reports" / "latest.json").read_text())
    assert result.returncode == 0 and rec["verdict"] == "SUCCESS", result.stdout[-4000:]
    assert any(f["code"] == "PF080" and f"job {flaky} " in f["message"] for f in rec["findings"]), rec["findings"]

    # Now a job that is broken: its latest run failed. The post-flight fails on it, naming it.
    with aged_legacy_db.connect() as conn:
        broken = add_job(conn, "broken", "1 hour")
        wait_for(conn, "SELECT total_failures >= 1 FROM timescaledb_information.job_stats WHERE job_id = %s", (broken,))
    reports = tmp_path / "reports-post"
    result = run_suite("suites/postflight", "--dsn", aged_legacy_db.conninfo, f"--reports={reports}")
    rec = json.loads((reports / "latest.json").read_text())
    assert result.returncode == 1 and rec["verdict"] == "FAILED", result.stdout[-4000:]
    assert [t for t in rec["failed_tests"] if "test_background_jobs_healthy" in t], rec["failed_tests"]
    assert f"job {broken} (broken) failed" in result.stdout and "broken: every call fails" in result.stdout
    assert set(fingerprints(aged_legacy_db)) >= set(before)


@pytest.fixture
def starved_server(community_server):
    """A community-edition server with so few worker processes that TimescaleDB's scheduler gets no worker
    for a job: the logical replication launcher, TimescaleDB's launcher and one database's scheduler take them
    all (a real shortage, as on a server shared by more TimescaleDB databases than its settings serve)."""
    with LocalCluster(timescaledb=True, bindir=pg_bindir(), settings={"max_worker_processes": "3"}) as info:
        with psycopg.connect(info.conninfo(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE starved")
        yield Target(info.conninfo("starved"), "starved server")


def test_a_job_that_cannot_start_names_the_worker_slots_and_the_setting(starved_server):
    with starved_server.connect() as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        since = datetime.now(UTC)
        conn.execute(FLAKY_JOB)
        job = add_job(conn, "broken")
        wait_for(
            conn,
            "SELECT total_failures >= 1 FROM timescaledb_information.job_stats WHERE job_id = %s",
            (job,),
            timeout=90,
        )
        _, failures = job_failures(conn, since)
    mine = [f for f in failures if f.job_id == job]
    assert mine and FAILED_TO_START in mine[0].message, failures
    text = str(mine[0])
    assert "max_worker_processes = 3" in text and "ALTER SYSTEM SET max_worker_processes" in text, text
    assert "broken: every call fails" not in text  # it never ran: the cause is the slot, not the procedure
