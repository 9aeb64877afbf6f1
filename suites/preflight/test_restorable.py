"""Pre-flight: a backup of the target restores with its TimescaleDB version (NULL-compressed batches)."""

from __future__ import annotations

import pytest

from tsmigrate.preflight import restorable

pytestmark = [pytest.mark.order(1), pytest.mark.preflight]


def test_a_backup_of_the_target_restores_with_its_timescaledb(readonly_conn, plan, gate):
    gate(restorable.restorable_backups(readonly_conn, plan))
