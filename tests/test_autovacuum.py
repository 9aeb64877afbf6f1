"""Autovacuum at work on a table to convert, as on any busy production server (found by `make soak`: the
pre-flight called an autovacuum worker a lock holder and said NO-GO).

The condition is real: a server whose autovacuum launcher looks every second, and a table with dead rows
whose autovacuum is throttled (cost limit 1, delay 10 ms: at most 40 ms asleep at a time, so a cancel lands
within a lock try, as with production's 2 ms), so a worker holds its lock on the table for minutes.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from tsmigrate.convert.online import convert_online
from tsmigrate.db import is_hypertable
from tsmigrate.janitor import ScratchDatabase
from tsmigrate.plan import parse_plan
from tsmigrate.preflight.environment import activity
from tsmigrate.servers.local import LocalCluster

pytestmark = pytest.mark.needs_local_cluster
ROWS = 400_000


@pytest.fixture(scope="module")
def eager_autovacuum_server():
    with LocalCluster(timescaledb=True, settings={"autovacuum_naptime": "1"}) as info:
        yield info


@pytest.fixture
def vacuumed(eager_autovacuum_server):
    """(conninfo, pid of the autovacuum worker holding its lock on public.readings)."""
    server = eager_autovacuum_server
    with ScratchDatabase(server.conninfo(), "autovacuum_subject") as name:
        conninfo = server.conninfo(name)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            conn.execute("""CREATE TABLE readings (id bigint PRIMARY KEY, ts timestamptz NOT NULL, v double precision)
                            WITH (autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0,
                                  autovacuum_vacuum_cost_delay = 10, autovacuum_vacuum_cost_limit = 1)""")
            conn.execute(
                "INSERT INTO readings SELECT i, now() - i * interval '1 second', i FROM generate_series(1, %s) i",
                (ROWS,),
            )
            conn.execute("UPDATE readings SET v = v + 1")  # a dead row for every row
            pid, deadline = None, time.monotonic() + 60
            while pid is None and time.monotonic() < deadline:
                time.sleep(0.2)
                pid = conn.execute("""SELECT a.pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
                                       WHERE a.backend_type = 'autovacuum worker' AND l.granted
                                         AND l.relation = 'readings'::regclass""").fetchone()
            assert pid is not None, "no autovacuum worker took the table within 60 s"
        yield conninfo, pid[0]


def plan():
    return parse_plan(
        {
            "plan": {"schema": "public"},
            "hypertables": {"readings": {"time_column": "ts", "chunk_interval": "1 day", "keep_unique": ["id"]}},
        }
    )


def test_an_autovacuum_at_work_is_no_lock_holder_for_the_preflight(vacuumed):
    conninfo, pid = vacuumed
    with psycopg.connect(conninfo, autocommit=True) as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_locks WHERE pid = %s AND granted AND relation = 'readings'::regclass", (pid,)
            ).fetchone()[0]
            >= 1
        ), "it holds its lock"
        assert [f for f in activity(conn, plan(), grace_s=0) if f.code == "PF011"] == []


def test_an_online_conversion_is_not_held_up_by_an_autovacuum(vacuumed):
    """Its locks are tried for 300 ms at a time, never the deadlock_timeout after which PostgreSQL would cancel the
    autovacuum itself: the conversion cancels it, as PostgreSQL would. Throttled as it is, the autovacuum would
    hold the table for longer than all 30 tries."""
    conninfo, _pid = vacuumed
    with psycopg.connect(conninfo, autocommit=True) as conn:
        result = convert_online(
            lambda: psycopg.connect(conninfo, autocommit=True),
            conn,
            "public",
            plan().hypertables[0],
            has_compression=False,
            own_xids=set(),
        )
        assert is_hypertable(conn, "public", "readings") and result.rows == ROWS
        assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == ROWS


def test_an_offline_conversion_cancels_the_autovacuum_even_where_deadlock_timeout_is_long(vacuumed):
    """With deadlock_timeout above the conversion's lock timeout (5 s a try) PostgreSQL never cancels the
    autovacuum itself; the conversion does, before it asks for its lock."""
    from tsmigrate.convert import convert_table

    conninfo, _pid = vacuumed
    with psycopg.connect(conninfo, autocommit=True, options="-c deadlock_timeout=60s") as conn:
        with conn.transaction():
            result = convert_table(conn, "public", plan().hypertables[0], has_compression=False)
        assert is_hypertable(conn, "public", "readings") and result.rows == ROWS
