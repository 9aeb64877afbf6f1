"""Post-flight TimescaleDB state: what the plan asked for, one test per planned hypertable.

Compression and the policies' background jobs exist only in the community edition: under the
apache edition those tests skip with the reason (the ``needs_community`` marker).
"""

from __future__ import annotations

import warnings

import pytest

from tsmigrate import tsverify
from tsmigrate.jobs import JobClearedWarning, job_failures

pytestmark = [pytest.mark.order(3), pytest.mark.postflight]


def test_hypertable_as_planned(readonly_conn, plan, hypertable, expect_none):
    problems = tsverify.hypertable_problems(readonly_conn, plan.schema, hypertable)
    expect_none(problems)


def test_chunks_cover_the_data(readonly_conn, plan, hypertable, expect_none):
    _account, problems = tsverify.chunk_problems(readonly_conn, plan.schema, hypertable)
    expect_none(problems)


@pytest.mark.needs_community
def test_compression_settings_as_planned(readonly_conn, plan, hypertable, expect_none):
    if not hypertable.wants_compression:
        pytest.skip(f"the plan asks no compression for {hypertable.table}")
    problems = tsverify.compression_settings_problems(readonly_conn, plan.schema, hypertable)
    expect_none(problems)


@pytest.mark.needs_community
def test_compression_policy_scheduled(readonly_conn, plan, hypertable, expect_none):
    if hypertable.compress_after is None:
        pytest.skip(f"the plan has no compress_after for {hypertable.table}")
    _account, problems = tsverify.policy_problems(readonly_conn, plan.schema, hypertable, "compression")
    expect_none(problems)


@pytest.mark.needs_community
def test_retention_policy_scheduled(readonly_conn, plan, hypertable, expect_none):
    if hypertable.drop_after is None:
        pytest.skip(f"the plan has no drop_after (retention) for {hypertable.table}")
    _account, problems = tsverify.policy_problems(readonly_conn, plan.schema, hypertable, "retention")
    expect_none(problems)


@pytest.mark.needs_community
def test_background_jobs_healthy(readonly_conn, jobs_judged_since, expect_none):
    """Job runs since the run's start, and each job's latest state: a failure a later run cleared is reported
    (a warning), a job whose latest run failed fails the check; both with their cause."""
    since, window = jobs_judged_since
    jobs, failures = job_failures(readonly_conn, since)
    for cleared in (f for f in failures if f.cleared):
        warnings.warn(JobClearedWarning(f"{cleared} (cleared: not failed on)"), stacklevel=1)  # names the check
    failing = [f for f in failures if not f.cleared]
    expect_none(map(str, failing), f"{len(failing)} background job(s) failing ({jobs} jobs, runs judged {window}):")
