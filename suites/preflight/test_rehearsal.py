"""Pre-flight: apply the pending steps to a scratch copy of the target; the first failure is NO-GO."""

from __future__ import annotations

import pytest

from tsmigrate.preflight import files, rehearsal_check

pytestmark = [pytest.mark.order(1), pytest.mark.preflight]


def test_rehearsal_on_a_scratch_copy(readonly_conn, target, migrations_dir, plan, run_options, gate, window_estimate):
    if not run_options.rehearse:
        pytest.skip("rehearsal turned off (--no-rehearse)")
    pending = files.pending_files(readonly_conn, migrations_dir)
    if not pending and not plan:
        pytest.skip("nothing pending to rehearse")
    gate(rehearsal_check.rehearsal(target, migrations_dir, pending, plan, on_estimate=window_estimate))
