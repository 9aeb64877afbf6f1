"""Pre-flight: room on the server for the run (data directory, WAL directory) and for its replicas' WAL."""

from __future__ import annotations

import pytest

from tsmigrate.preflight import disk

pytestmark = [pytest.mark.order(1), pytest.mark.preflight]


def test_room_in_the_servers_data_directory(readonly_conn, plan, run_options, gate):
    gate(disk.data_directory_room(readonly_conn, plan, run_options.server_free_disk, backups_dir=run_options.backups))


def test_replicas_and_slots_bear_the_runs_wal(readonly_conn, plan, gate):
    gate(disk.replicas(readonly_conn, plan))
