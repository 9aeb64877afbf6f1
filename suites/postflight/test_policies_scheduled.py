"""Post-flight, last: the compression and retention policies the conversion created paused are scheduled,
now that every check of the data and structure has seen the data as migrated (a retention run cannot drop
rows before they were counted, and a compression run cannot deadlock a check). After a failed check of the
data or structure (integrity, TimescaleDB state, application access) they stay paused. A benchmark below its
target does not hold them: it is a performance target, and compression is often its remedy."""

from __future__ import annotations

import pytest

from tsmigrate.convert.policies import paused_jobs, schedule_paused_jobs
from tsmigrate.plugin import summary_of

pytestmark = [pytest.mark.order(4), pytest.mark.postflight]


def test_policies_scheduled_once_every_check_of_the_data_passed(request, target, readonly_conn):
    summary = summary_of(request.config)
    waiting = paused_jobs(readonly_conn)
    if not waiting:
        pytest.skip("no policy job waits for the post-flight")
    if summary.data_failures:
        pytest.fail(
            f"policy jobs {', '.join(map(str, waiting))} stay paused: {len(summary.data_failures)} check(s) "
            "of the data and structure failed. Fix them and run `pytest suites/postflight` again: it "
            "schedules them once every such check passes.",
            pytrace=False,
        )
    with target.connect() as conn:
        summary.record_policy_schedule(schedule_paused_jobs(conn))
        still_paused = conn.execute(
            "SELECT job_id FROM timescaledb_information.jobs WHERE job_id = ANY(%s) AND NOT scheduled", (waiting,)
        ).fetchall()
    if summary.below_target:
        print(f"{len(summary.below_target)} benchmark(s) below target do not hold the policy jobs: scheduled")
    print("\n".join(summary.policy_schedule))
    assert not still_paused, f"jobs {still_paused} are still paused after alter_job(scheduled => true)"
    assert paused_jobs(readonly_conn) == [], "tsmigrate.paused_jobs still lists jobs after scheduling them"
