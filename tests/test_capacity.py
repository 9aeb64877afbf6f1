"""The pre-flight's capacity checks (tsmigrate/preflight/capacity.py), each condition made for real on a throwaway
cluster: a table of thousands of one-hour chunks on a small lock table, more TimescaleDB databases than the
background workers serve; and the online conversion of that table on that same lock table.
"""

from __future__ import annotations

import time

import psycopg
import pytest
from psycopg import sql

from tsmigrate.convert.history import chunks_between, time_range
from tsmigrate.convert.online import convert_online
from tsmigrate.db import is_hypertable
from tsmigrate.findings import ADVISORY, BLOCKING
from tsmigrate.janitor import ScratchDatabase
from tsmigrate.plan import parse_plan
from tsmigrate.preflight import capacity
from tsmigrate.servers.local import LocalCluster
from tsmigrate.target import Target

pytestmark = pytest.mark.needs_local_cluster

READ_ONLY = "-c default_transaction_read_only=on"  # the pre-flight's own session
DAYS = 150  # of one-hour chunks: 3,600 chunks
ROWS_PER_HOUR = 2
# A lock table that holds a read of the whole converted hypertable (TimescaleDB's own need: 3,600 chunks × (the
# chunk and its 2 indexes)), but not the offline conversion (every chunk created and indexed in one transaction),
# nor an online copy that creates every chunk in one transaction: 144 × (50 + 3 + 16 + 10 + 1 + 0) = 11,520.
SMALL_LOCK_TABLE = {
    "max_locks_per_transaction": "144",
    "max_connections": "50",
    "autovacuum_max_workers": "3",
    "max_worker_processes": "16",
    "max_wal_senders": "10",
}


def plan(*, online: bool | None = None, **spec):
    entry = {"time_column": "ts", "chunk_interval": "1 hour", **spec}
    if online is not None:
        entry["online"] = online
    return parse_plan({"plan": {"schema": "public"}, "hypertables": {"readings": entry}})


def legacy_readings(conn: psycopg.Connection, *, days: int = DAYS, analyze: bool = True) -> None:
    """An MS5.0-shaped legacy table: a bigserial key without the time column, a (machine, time) index, rows every
    half hour over ``days`` days."""
    conn.execute("""CREATE TABLE readings (id bigserial PRIMARY KEY, ts timestamptz NOT NULL,
                                           machine_id int NOT NULL, value double precision, quality text)
                    WITH (autovacuum_enabled = false)""")
    conn.execute("CREATE INDEX readings_machine_ts ON readings (machine_id, ts)")
    conn.execute(
        "INSERT INTO readings (ts, machine_id, value) SELECT timestamptz '2025-01-01 00:00+00' + "
        "g * (interval '1 hour' / %s), g %% 7, g FROM generate_series(0, %s) g",
        (ROWS_PER_HOUR, days * 24 * ROWS_PER_HOUR - 1),
    )
    if analyze:
        conn.execute("ANALYZE readings")


def read_only(conninfo: str) -> psycopg.Connection:
    return psycopg.connect(conninfo, autocommit=True, options=READ_ONLY)


# -- the history of a table, read cheaply ------------------------------------------------------------------


def test_the_time_range_comes_from_an_index_on_the_time_column_else_from_the_statistics(local_server):
    with (
        ScratchDatabase(local_server.conninfo(), "capacity_history") as name,
        psycopg.connect(local_server.conninfo(name), autocommit=True) as conn,
    ):
        legacy_readings(conn, days=3, analyze=False)
        assert time_range(conn, "public", "readings", "ts")[0] is None, "no index, no statistics: unknown"
        conn.execute("ANALYZE readings")
        first, last, source = time_range(conn, "public", "readings", "ts")
        assert "pg_stats" in source and chunks_between(first, last, 3600) in (72, 73)
        conn.execute("CREATE INDEX readings_ts ON readings (ts)")
        first, last, source = time_range(conn, "public", "readings", "ts")
        assert source == "min and max read from index readings_ts"
        assert (last - first).total_seconds() == 3 * 86400 - 1800


@pytest.mark.finding("PF063", ADVISORY)
def test_pf063_a_table_never_analyzed_without_an_index_on_its_time(local_server, marked_finding):
    code, severity = marked_finding
    with ScratchDatabase(local_server.conninfo(), "capacity_unknown") as name:
        with psycopg.connect(local_server.conninfo(name), autocommit=True) as conn:
            legacy_readings(conn, days=2, analyze=False)
        with read_only(local_server.conninfo(name)) as conn:
            found = capacity.lock_table(conn, plan())
    assert [(f.code, f.severity, f.table) for f in found] == [(code, severity, "public.readings")]
    assert "never analyzed" in found[0].message


# -- thousands of chunks on a small lock table --------------------------------------------------------------


@pytest.fixture(scope="module")
def small_lock_table():
    with LocalCluster(timescaledb=True, settings=SMALL_LOCK_TABLE) as info:
        yield info


@pytest.fixture
def long_history(small_lock_table):
    """The conninfo of a database holding ``readings``: 150 days of rows, 3,600 one-hour chunks to be."""
    with ScratchDatabase(small_lock_table.conninfo(), "long_history") as name:
        conninfo = small_lock_table.conninfo(name)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            legacy_readings(conn)
        yield conninfo


@pytest.mark.finding("PF060", BLOCKING)
def test_pf060_the_offline_conversion_of_thousands_of_chunks_on_a_small_lock_table(long_history, marked_finding):
    code, severity = marked_finding
    with read_only(long_history) as conn:
        found = capacity.lock_table(conn, plan(online=False))
        needs = capacity.lock_needs(conn, plan(online=False))
    history = needs.histories[0]
    assert history.chunks == DAYS * 24 + 1 and history.indexes == 2 and history.keys == 1
    assert "pg_stats" in history.source  # no index leads with ts: the statistics' bounds
    assert [(f.code, f.severity, f.table) for f in found] == [(code, severity, "public.readings")]
    message = found[0].message
    assert f"up to {history.chunks} chunks" in message and f"about {history.offline_locks} locks" in message
    assert (
        "max_locks_per_transaction 144 × (max_connections 50 + autovacuum_max_workers 3 + max_worker_processes 16 "
        "+ max_wal_senders 10 + 1 + max_prepared_transactions 0) = 11520 locks"
    ) in message
    setting = needs.table.setting_for(history.offline_locks)
    assert f"ALTER SYSTEM SET max_locks_per_transaction = {setting};" in message
    assert setting * 80 >= history.offline_locks, "the setting named holds the need (80 server processes)"
    assert "online = true" in message, "the online path fits this lock table: the finding offers it"


def test_the_online_conversion_of_that_table_fits_that_lock_table_and_succeeds(long_history):
    """The same table, online: the pre-flight finds the lock table big enough, and the conversion creates and
    indexes its 3,600 chunks in batches of transactions, swaps, and compares every row, on that lock table."""
    entry = plan(online=True)
    with read_only(long_history) as conn:
        assert capacity.lock_table(conn, entry) == []
        expected = conn.execute("SELECT count(*), count(DISTINCT date_trunc('hour', ts)) FROM readings").fetchone()
    with psycopg.connect(long_history, autocommit=True) as conn:
        result = convert_online(
            lambda: psycopg.connect(long_history, autocommit=True),
            conn,
            "public",
            entry.hypertables[0],
            has_compression=False,
            own_xids=set(),
        )
        assert is_hypertable(conn, "public", "readings")
        chunks = conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'readings'"
        ).fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
        chunk_indexes = conn.execute("""SELECT count(*) FROM pg_index x JOIN pg_inherits i ON i.inhrelid = x.indrelid
                                         WHERE i.inhparent = 'readings'::regclass""").fetchone()[0]
    assert (rows, chunks) == tuple(expected) == (DAYS * 24 * ROWS_PER_HOUR, DAYS * 24)
    assert result.rows == rows and result.chunks == chunks
    assert chunk_indexes == 2 * chunks, "each chunk has the key (id, ts) and the machine index"


# -- background workers --------------------------------------------------------------------------------------

TIMESCALE_DATABASES = ("plant_a", "plant_b", "plant_c")


def databases_with_timescaledb(server) -> None:
    for name in TIMESCALE_DATABASES:
        with psycopg.connect(server.conninfo(), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        with psycopg.connect(server.conninfo(name), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION timescaledb")


@pytest.mark.finding("PF062", BLOCKING)
def test_pf062_more_timescaledb_databases_than_background_workers(marked_finding):
    """Three databases with TimescaleDB and two workers: NO-GO, for the target (one of them), the rehearsal's copy
    and the copy a failed run keeps."""
    code, severity = marked_finding
    with LocalCluster(timescaledb=True, settings={"timescaledb.max_background_workers": "2"}) as server:
        databases_with_timescaledb(server)
        target = Target(server.conninfo("plant_a"), "test")
        with read_only(target.conninfo) as conn:
            found = capacity.background_workers(conn, plan(), target)
            assert capacity.background_workers(conn, plan(), target, rehearse=False, keep_failed=False) != [], (
                "three databases need three workers, even without copies"
            )
    assert [(f.code, f.severity, f.location(), f.table) for f in found] == [(code, severity, "", None)]
    message = found[0].message
    assert "3 TimescaleDB databases" in message and "3 found by connecting (plant_a, plant_b, plant_c)" in message
    assert "timescaledb.max_background_workers is 2, needs at least 4" in message
    assert "ALTER SYSTEM SET timescaledb.max_background_workers = 4;" in message and "restart" in message


def test_enough_workers_and_a_database_the_role_cannot_enter_counted_by_its_scheduler():
    """With enough workers, no finding. A database the pre-flight's role may not connect to is counted by the
    TimescaleDB scheduler running in it (pg_stat_activity's application_name: backend_type shows only to roles with
    pg_read_all_stats)."""
    with LocalCluster(
        timescaledb=True, settings={"timescaledb.max_background_workers": "8", "max_worker_processes": "20"}
    ) as server:
        databases_with_timescaledb(server)
        with psycopg.connect(server.conninfo(), autocommit=True) as admin:
            admin.execute("REVOKE CONNECT ON DATABASE plant_c FROM PUBLIC")
            admin.execute("CREATE ROLE watcher LOGIN PASSWORD 'watcher-secret'")
            deadline = time.monotonic() + 30
            while (
                admin.execute(
                    "SELECT count(DISTINCT datname) FROM pg_stat_activity WHERE backend_type = %s",
                    (capacity.SCHEDULER_BACKEND,),
                ).fetchone()[0]
                < 3
            ):
                assert time.monotonic() < deadline, "TimescaleDB's schedulers did not start within 30 s"
                time.sleep(0.2)
        target = Target(
            psycopg.conninfo.make_conninfo(server.conninfo("plant_a"), user="watcher", password="watcher-secret"),
            "test",
        )
        with read_only(target.conninfo) as conn:
            assert capacity.background_workers(conn, plan(), target) == []
            dbs = capacity.timescale_databases(conn, target)
    assert sorted(dbs.checked) == ["plant_a", "plant_b"] and dbs.running == ["plant_c"]
    assert "1 seen running a scheduler in pg_stat_activity" in dbs.describe() and "(plant_c)" in dbs.describe()


@pytest.mark.finding("PF061", BLOCKING)
def test_pf061_a_database_already_timescaledb_whose_hypertable_outgrew_the_lock_table(local_server, marked_finding):
    """After Phase 3: ``readings`` is a hypertable already, with more chunks × (1 + indexes) than the lock table
    holds. A read of all of it, and pg_dump, would fail: NO-GO naming it, though nothing is left to convert."""
    code, severity = marked_finding
    with ScratchDatabase(local_server.conninfo(), "capacity_converted") as name:
        with psycopg.connect(local_server.conninfo(name), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            conn.execute("CREATE TABLE readings (ts timestamptz NOT NULL, machine_id int, a int, b int, c int, d int)")
            for column in ("machine_id", "a", "b", "c", "d"):
                conn.execute(sql.SQL("CREATE INDEX ON readings ({}, ts)").format(sql.Identifier(column)))
            conn.execute("SELECT create_hypertable('readings', by_range('ts', interval '1 hour'))")
            slots = capacity.lock_table_of(conn).slots
            chunks = slots // 6 + 50  # each chunk and its 5 indexes (create_hypertable added none: ts leads none)
            for start in range(0, chunks, 200):  # 200 chunks a transaction: creating them needs locks too
                conn.execute(
                    "INSERT INTO readings SELECT timestamptz '2025-01-01 00:00+00' + g * interval '1 hour', "
                    "g, g, g, g, g FROM generate_series(%s::int, %s::int) g",
                    (start, min(start + 200, chunks) - 1),
                )
        with read_only(local_server.conninfo(name)) as conn:
            found = capacity.lock_table(conn, plan())
    assert [(f.code, f.severity, f.table) for f in found] == [(code, severity, "public.readings")]
    assert f"a read of all of public.readings (up to {chunks} chunks" in found[0].message
    assert "ALTER SYSTEM SET max_locks_per_transaction = " in found[0].message


def test_the_online_key_build_after_the_copy_counts_where_the_keys_go_after_the_copy():
    """Few chunks: the online path builds the keys once the rows are in, on every chunk in one transaction."""
    after = capacity.History("public.t", None, None, "index", "1 hour", 500, 1, 1, True, keys_after_copy=True)
    assert after.online_key_locks == 500 * capacity.LOCKS_PER_CHUNK_KEY + capacity.LOCKS_OF_THE_STEP
    assert after.conversion_locks() == after.online_key_locks > after.read_locks
    first = capacity.History("public.t", None, None, "index", "1 hour", 500, 1, 1, True, keys_after_copy=False)
    assert first.online_key_locks == 0 and first.conversion_locks() == max(first.online_batch_locks, first.read_locks)
