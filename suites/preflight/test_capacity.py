"""Pre-flight: room on the server for the run and for the converted database (the lock table, TimescaleDB's
background workers), computed from the plan and the live data."""

from __future__ import annotations

import pytest

from tsmigrate.preflight import capacity

pytestmark = [pytest.mark.order(1), pytest.mark.preflight]


def test_lock_table_holds_the_conversions_and_the_converted_database(readonly_conn, plan, gate):
    gate(capacity.lock_table(readonly_conn, plan))


def test_background_workers_serve_every_timescaledb_database_and_job(readonly_conn, plan, target, run_options, gate):
    gate(
        capacity.background_workers(
            readonly_conn, plan, target, rehearse=run_options.rehearse, keep_failed=run_options.keep_failed
        )
    )
