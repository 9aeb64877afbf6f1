"""Pre-flight: apply the pending steps to a scratch copy of the target; the first failure is NO-GO."""

from __future__ import annotations

import logging

import pytest

from tsmigrate import preflight
from tsmigrate.rehearsal import RehearsalUnavailable, rehearse

pytestmark = [pytest.mark.order(1), pytest.mark.preflight]
log = logging.getLogger(__name__)


def test_rehearsal_on_a_scratch_copy(readonly_conn, target, migrations_dir, plan, run_options, gate):
    if not run_options.rehearse:
        pytest.skip("rehearsal turned off (--no-rehearse)")
    pending = preflight.pending_files(readonly_conn, migrations_dir)
    if not pending and not plan:
        pytest.skip("nothing pending to rehearse")
    try:
        result = rehearse(target, pending, plan)
    except RehearsalUnavailable as exc:
        gate([preflight.finding("PF040", f"no rehearsal: {exc}", severity="advisory")])
        return
    for label, seconds in result.steps:
        log.info("rehearsal: %-40s %8.2f s", label, seconds)
    if result.error is not None:
        error = result.error
        path = getattr(error, "file", None)
        gate([preflight.finding("PF040", f"{result.failed_step} failed on the scratch copy: {error}",
                                path=str(migrations_dir / path) if path else None,
                                line=getattr(error, "line", None))])
