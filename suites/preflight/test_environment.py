"""Pre-flight: the server, TimescaleDB, client tools and activity (privileges: test_privileges.py) on the target."""

from __future__ import annotations

import pytest

from tsmigrate.preflight import environment

pytestmark = [pytest.mark.order(1), pytest.mark.preflight]


def test_server_version(readonly_conn, gate):
    gate(environment.server_version(readonly_conn))


def test_timescaledb_available_preloaded_and_edition_fits_plan(readonly_conn, plan, gate):
    gate(environment.timescaledb_ready(readonly_conn, plan))


def test_client_tools_match_server(readonly_conn, gate):
    gate(environment.client_tools(readonly_conn))


def test_server_is_primary(readonly_conn, gate):
    gate(environment.primary_server(readonly_conn))


def test_free_connection_slots(readonly_conn, plan, gate):
    gate(environment.connection_slots(readonly_conn, plan))


def test_no_long_transactions_or_locks_on_tables_to_convert(readonly_conn, plan, gate):
    gate(environment.activity(readonly_conn, plan))


def test_no_fence_left_by_a_run_that_died(readonly_conn, target, gate):
    with target.connect() as writable:  # the only write of the pre-flight: undoing a dead run's fence
        gate(environment.stale_fences(readonly_conn, writable))


def test_maintenance_window_nobody_else_writing(readonly_conn, plan, run_options, gate):
    gate(environment.maintenance_window(readonly_conn, plan, run_options.write_sample))


def test_encoding_and_time_zone(readonly_conn, gate):
    gate(environment.encoding_and_timezone(readonly_conn))


def test_room_for_the_backup(readonly_conn, run_options, gate):
    gate(environment.room_for_backup(readonly_conn, run_options.backups))
