"""Pre-flight: background jobs that failed before the window, with their cause (advisories)."""

from __future__ import annotations

import pytest

from tsmigrate.preflight import background_jobs

pytestmark = [pytest.mark.order(1), pytest.mark.preflight]


def test_background_jobs_failing_before_the_window(readonly_conn, gate):
    gate(background_jobs.failing_jobs(readonly_conn))
