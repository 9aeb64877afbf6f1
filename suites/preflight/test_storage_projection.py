"""Pre-flight: the storage per month the planned tables will take once migrated, projected from the live tables
before the window, against the plan's max_storage_gb_per_month (the post-flight's storage benchmark measures the
same figure after the migration). A projection over it is an advisory (PF075) naming the table and what to change
in plan.toml: the migration itself is what brings compression, so it is not held up by storage."""

from __future__ import annotations

import pytest

from tsmigrate.preflight import storage

pytestmark = [pytest.mark.order(1), pytest.mark.preflight]


def test_storage_per_month_projected_before_the_window(readonly_conn, plan, gate):
    projection = storage.project_live(readonly_conn, plan)
    if projection is None:
        pytest.skip("no planned table holds data spanning any time: nothing to project storage from")
    print(projection.figure(plan.benchmarks.max_storage_gb_per_month).sentence())
    gate(storage.storage_target(projection, plan))
