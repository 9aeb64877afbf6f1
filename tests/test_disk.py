"""Room on the server, for real: a cluster whose data directory is on a small tmpfs (its pg_wal on the machine's
own disk), replication slots, a role that may not read where the data directory is; and the causes the run, the
restore and the rehearsal name when a resource runs out (tsmigrate/causes.py)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from testbed.conditions import fill
from tsmigrate.findings import ADVISORY, BLOCKING
from tsmigrate.plan import load_plan
from tsmigrate.preflight import disk
from tsmigrate.serverfiles import locate

from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
PLAN = load_plan(PROJECT / "migrations")
READ_ONLY = "-c default_transaction_read_only=on"

pytestmark = pytest.mark.needs_local_cluster


def read_only(conninfo: str) -> psycopg.Connection:
    return psycopg.connect(conninfo, autocommit=True, options=READ_ONLY)


def where(findings, code):
    return [(f.severity, f.location()) for f in findings if f.code == code]


def test_the_data_directory_and_its_wal_directory_are_found_and_measured(cluster_on_small_filesystem):
    cluster, info, target = cluster_on_small_filesystem
    with read_only(target.conninfo) as conn:
        files = locate(conn)
    assert files.data_directory == str(cluster.data_dir) and files.measured, files
    assert files.wal_directory == str(cluster.wal_dir) and files.wal_room is not None, files
    assert files.data_room.total < 200 * 2**20 < files.wal_room.total, files
    assert files.log_file == str(cluster.log_file), files


@pytest.mark.finding("PF065", BLOCKING)
def test_pf065_planned_tables_fit_once_but_not_twice(marked_finding, cluster_on_small_filesystem):
    code, severity = marked_finding
    cluster, info, target = cluster_on_small_filesystem
    with read_only(target.conninfo) as conn:
        need = disk.disk_need(conn, PLAN)
        assert disk.data_directory_room(conn, PLAN) == []   # 160 MiB: room enough
        fill(cluster.base.parent, leave=need.largest_offline[1] // 2)   # not a second copy of even the largest
        found = disk.data_directory_room(conn, PLAN)
    assert where(found, code) == [(severity, str(cluster.data_dir))], found
    message = found[0].message
    assert "MiB free in " + str(cluster.data_dir) in message and "needs about" in message, message
    assert "second copy of factory_telemetry.energy_consumption" in message and "Free at least" in message, message
    print(found[0])
