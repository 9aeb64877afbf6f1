"""Room on the server, for real: a cluster whose data directory is on a small tmpfs (its pg_wal on the machine's
own disk), replication slots, a role that may not read where the data directory is; and the causes the run, the
restore and the rehearsal name when a resource runs out (tsmigrate/causes.py)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from testbed.conditions import fill
from pathlib import Path

from tsmigrate.causes import (DISK_FULL, LOCK_TABLE_FULL, NO_CONNECTION_SLOTS, NO_WORKER_SLOTS, WAL_FULL,
                              classify)
from tsmigrate.findings import ADVISORY, BLOCKING
from tsmigrate.plan import load_plan
from tsmigrate.preflight import disk, rehearsal_check
from tsmigrate.serverfiles import locate

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
        ballast = fill(cluster.base.parent, leave=need.largest_offline[1] // 2)   # not a second copy of the largest
        try:
            found = disk.data_directory_room(conn, PLAN)
        finally:
            ballast.unlink()
    assert where(found, code) == [(severity, str(cluster.data_dir))], found
    message = found[0].message
    assert "MiB free in " + str(cluster.data_dir) in message and "needs about" in message, message
    assert "second copy of factory_telemetry.energy_consumption" in message and "Free at least" in message, message


# -- the causes of failures, made for real -----------------------------------------------------------------------

def server_settings(conn: psycopg.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT name, setting FROM pg_settings WHERE name = 'max_locks_per_transaction'"))


def test_a_full_lock_table_is_named_with_the_setting_to_raise(cluster_on_small_filesystem):
    cluster, info, target = cluster_on_small_filesystem
    with psycopg.connect(target.conninfo, autocommit=True) as conn:
        settings = server_settings(conn)
        with pytest.raises(psycopg.Error) as raised, conn.transaction():
            conn.execute("SELECT count(pg_advisory_xact_lock(i)) FROM generate_series(1, 100000) i")
    cause = classify(raised.value, settings=settings)
    assert raised.value.sqlstate == "53200" and cause is not None and cause.kind == LOCK_TABLE_FULL, raised.value
    assert f"Raise max_locks_per_transaction to {int(settings['max_locks_per_transaction']) * 2}" in cause.fix


def test_a_statement_error_is_no_resource(local_server):
    with psycopg.connect(local_server.conninfo(), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as raised:
            conn.execute("SELECT 1/0")
    assert classify(raised.value) is None


@pytest.mark.parametrize("text, kind, path", [
    ('ERROR:  could not extend file "base/16384/16999": No space left on device', DISK_FULL, "/srv/pg/data"),
    ('PANIC:  could not write to file "pg_wal/xlogtemp.77": No space left on device', WAL_FULL, "/srv/wal"),
    ("pg_restore: error: could not execute query: ERROR:  could not write to file \"base/pgsql_tmp/pgsql_tmp9.0\": "
     "No space left on device", DISK_FULL, "/srv/pg/data/base/pgsql_tmp"),
    ('LOG:  background worker "TimescaleDB Background Worker Scheduler" failed to start: no available background '
     'worker slots', NO_WORKER_SLOTS, None),
    ("FATAL:  sorry, too many clients already", NO_CONNECTION_SLOTS, None),
])
def test_server_words_for_a_resource_name_it_and_the_directory(text, kind, path):
    """The server's own words (as its log and client programs print them), told apart; paths made absolute."""
    cause = classify(text, data_directory="/srv/pg/data", wal_directory="/srv/wal")
    assert cause is not None and (cause.kind, cause.path) == (kind, path), cause
    assert cause.fix.endswith(".") and (path is None or path in cause.fix), cause


@pytest.mark.finding("PF068", BLOCKING)
def test_pf068_a_rehearsal_without_room_for_its_scratch_copy_names_the_disk(marked_finding,
                                                                            cluster_on_small_filesystem):
    code, severity = marked_finding
    cluster, info, target = cluster_on_small_filesystem
    ballast = fill(cluster.base.parent, leave=512 << 10)   # the copy of template0 alone takes more
    try:
        found = rehearsal_check.rehearsal(target, PROJECT / "migrations", [], PLAN)
    finally:
        ballast.unlink()
    assert where(found, code) == [(severity, str(cluster.data_dir))], found
    assert "disk full" in found[0].message and "statement" not in found[0].hint.replace("statements are not", ""), found
    assert f"Free disk in {cluster.data_dir}" in found[0].hint, found[0].hint
    with psycopg.connect(info.conninfo(), autocommit=True) as admin:
        left = admin.execute("SELECT datname FROM pg_database WHERE datname LIKE '%rehearsal%'").fetchall()
    assert left == [], "the scratch copy that could not be made is not left behind"
