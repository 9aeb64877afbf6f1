"""Pre-flight: the verdict inputs, recorded so that execute can tell if anything changed since the GO."""

from __future__ import annotations

import pytest

from tsmigrate import preflight
from tsmigrate.plugin import summary_of

pytestmark = [pytest.mark.order(1), pytest.mark.preflight]


def test_record_what_the_verdict_depends_on(request, readonly_conn, migrations_dir):
    summary = summary_of(request.config)
    summary.verdict_inputs = preflight.verdict_inputs(readonly_conn, migrations_dir)
    assert summary.verdict_inputs["migrations"], f"no migration files found in {migrations_dir}"
