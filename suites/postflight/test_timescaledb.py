"""Post-flight TimescaleDB state: what the plan asked for, one test per planned hypertable.

Compression and the policies' background jobs exist only in the community edition: under the
apache edition those tests skip with the reason (the ``needs_community`` marker).
"""

from __future__ import annotations

import pytest

from tsmigrate import tsverify

pytestmark = [pytest.mark.order(3), pytest.mark.postflight]


def test_hypertable_as_planned(readonly_conn, plan, hypertable, expect_none):
    problems = tsverify.hypertable_problems(readonly_conn, plan.schema, hypertable)
    expect_none(problems)


def test_chunks_cover_the_data(readonly_conn, plan, hypertable, expect_none):
    account, problems = tsverify.chunk_problems(readonly_conn, plan.schema, hypertable)
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
    account, problems = tsverify.policy_problems(readonly_conn, plan.schema, hypertable, "compression")
    expect_none(problems)


@pytest.mark.needs_community
def test_retention_policy_scheduled(readonly_conn, plan, hypertable, expect_none):
    if hypertable.drop_after is None:
        pytest.skip(f"the plan has no drop_after (retention) for {hypertable.table}")
    account, problems = tsverify.policy_problems(readonly_conn, plan.schema, hypertable, "retention")
    expect_none(problems)


@pytest.mark.needs_community
def test_no_recent_job_errors(readonly_conn, expect_none):
    jobs, problems = tsverify.recent_job_errors(readonly_conn, hours=24)
    expect_none(problems, f"{len(problems)} background job runs failed in the last 24 hours ({jobs} jobs):")
