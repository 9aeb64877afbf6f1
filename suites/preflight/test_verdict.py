"""Pre-flight: what the verdict depends on, recorded before the first check (fixtures/gate.py), judges migration
files; execute refuses to start when any of it changed since the GO."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.order(1), pytest.mark.preflight]


def test_the_verdict_judges_migration_files(target, verdict_inputs, migrations_dir):
    assert verdict_inputs is not None, "the verdict inputs were not recorded (fixtures/gate.py)"
    assert verdict_inputs["migrations"], (
        f"no migration files found in {migrations_dir}: point --migrations at the directory that holds them"
    )
