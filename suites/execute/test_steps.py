"""The migration steps, one test each, in order: migration files by version, then conversions.

The first change fences the application and takes the backup; after a failed step the rest are
skipped, and the execute phase ends by restoring the backup and proving it (see fixtures/run.py).
"""

from __future__ import annotations

import pytest

from tsmigrate.db import is_hypertable
from tsmigrate.run import RunStopped, StepFailed

pytestmark = [pytest.mark.order(2), pytest.mark.execute]


def test_step(step, migration_run, target):
    if migration_run.failed is not None:
        pytest.skip(f"not run: {migration_run.failed.label} failed before it")
    failure = stopped = None
    try:
        outcome = migration_run.apply(step)
    except RunStopped as exc:
        stopped = str(exc)
    except StepFailed as exc:
        failure = str(exc)
    # Outside the except blocks, so the report shows no chained traceback.
    if stopped is not None:
        pytest.exit(stopped, returncode=2)
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    if outcome.status == "already applied":
        pytest.skip(f"{step.label} already applied on {outcome.details['applied_at']} by {outcome.details['by']}")
    try:
        entry = migration_run.applied_entry(step)
    except StepFailed as exc:
        failure = str(exc)
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    assert entry is not None and entry.sha256 == step.sha256, f"{step.label}: the ledger does not record it as applied"
    if step.hypertable is not None:
        with target.connect() as conn:
            assert is_hypertable(conn, migration_run.schema, step.hypertable.table), (
                f"{step.label}: {step.hypertable.table} is not a hypertable after its conversion"
            )
