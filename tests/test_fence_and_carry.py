"""The pieces the production-conditions work rests on, each on its own against a real server: the fence,
the write sample of the pre-flight, and the carry-over of rows written after a backup's snapshot."""

from __future__ import annotations

import threading

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tsmigrate import fence
from tsmigrate.activity import other_sessions, sample_writes
from tsmigrate.janitor import create_database
from tsmigrate.late_writes import RunsOwnRowChanges, carry_over, parse_snapshot
from tsmigrate.target import Target

SCHEMA = "factory_telemetry"


def role_state(target: Target, role: str) -> tuple[bool, str | None]:
    with target.connect() as conn:
        return conn.execute(
            "SELECT rolcanlogin, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (role,)
        ).fetchone()


def as_role(target: Target, role: str, password: str) -> str:
    return make_conninfo(target.conninfo, user=role, password=password)


def test_a_fence_ends_the_roles_sessions_keeps_them_out_and_gives_everything_back(legacy_db, app_login, local_server):
    app = psycopg.connect(as_role(legacy_db, app_login, local_server.password), autocommit=True)
    with legacy_db.connect() as run_session, fence.Fence(run_session, ("ms5_user_production",)) as fenced:
        assert [f.role for f in fenced.fenced] == [app_login]
        can_login, comment = role_state(legacy_db, app_login)
        assert not can_login and comment.startswith(fence.MARK) and "line 2 HMI" in comment
        with pytest.raises(psycopg.OperationalError):
            app.execute("SELECT 1")  # its session was ended
        with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
            psycopg.connect(as_role(legacy_db, app_login, local_server.password))
        assert not fence.is_stale(run_session, fence.fences(run_session, legacy_db.dbname)[0])
    assert role_state(legacy_db, app_login) == (True, "line 2 HMI")
    psycopg.connect(as_role(legacy_db, app_login, local_server.password)).close()


def test_a_fence_whose_run_died_is_found_stale_and_lifted(legacy_db, app_login):
    dead = legacy_db.connect()
    fence.Fence(dead, ("ms5_user_production",)).raise_()
    dead.close()  # the run is gone; its records stay in the roles' comments
    with legacy_db.connect() as conn:
        for _ in range(50):  # the server ends the closed session within moments
            if all(fence.is_stale(conn, f) for f in fence.fences(conn, legacy_db.dbname)):
                break
            conn.execute("SELECT pg_sleep(0.1)")
        lifted = fence.lift_stale(conn, legacy_db.dbname)
    assert [f.role for f in lifted] == [app_login]
    assert role_state(legacy_db, app_login) == (True, "line 2 HMI")


def test_superusers_and_the_runs_own_role_are_never_fenced(legacy_db):
    with legacy_db.connect() as conn:
        me = conn.execute("SELECT current_user").fetchone()[0]
        assert me not in fence.roles_to_fence(conn, (me, "ms5_user_production"))


def test_the_write_sample_sees_a_writer_and_names_its_session(legacy_db, app_login, local_server):
    stop = threading.Event()

    def write() -> None:
        with psycopg.connect(
            as_role(legacy_db, app_login, local_server.password), autocommit=True, application_name="line 2 HMI"
        ) as conn:
            metric = conn.execute(f"SELECT id FROM {SCHEMA}.metric_def LIMIT 1").fetchone()[0]
            while not stop.is_set():
                conn.execute(
                    f"INSERT INTO {SCHEMA}.metric_hist (metric_def_id, ts, value_real) VALUES (%s, now(), 1)", (metric,)
                )
                stop.wait(0.05)

    with legacy_db.connect() as conn:
        assert not sample_writes(conn, 0.5).writing, "a quiet database shows no writes"
        writer = threading.Thread(target=write)
        writer.start()
        try:
            sample = sample_writes(conn, 1.5)
            sessions = other_sessions(conn)
        finally:
            stop.set()
            writer.join(10)
    assert sample.writing and f"{SCHEMA}.metric_hist_id_seq" in sample.sequences_moved
    assert [(s.role, s.application) for s in sessions] == [(app_login, "line 2 HMI")]


def test_rows_committed_after_the_snapshot_are_carried_and_the_runs_own_are_not(legacy_db, local_server):
    with legacy_db.connect() as snap:
        snapshot = snap.execute("SELECT pg_current_snapshot()::text").fetchone()[0]
    restored_name = f"{legacy_db.dbname}_restored"
    with legacy_db.with_dbname("postgres").connect() as admin:
        # The "restored" database: the state the snapshot saw (nobody has written since).
        create_database(admin, restored_name, template=legacy_db.dbname)
    restored = legacy_db.with_dbname(restored_name)
    try:
        with legacy_db.connect() as conn:
            metric = conn.execute(f"SELECT id FROM {SCHEMA}.metric_def LIMIT 1").fetchone()[0]
            new_ids = [
                conn.execute(
                    f"INSERT INTO {SCHEMA}.metric_hist (metric_def_id, ts, value_real) "
                    "VALUES (%s, now(), 7) RETURNING id",
                    (metric,),
                ).fetchone()[0]
                for _ in range(3)
            ]
            updated = conn.execute(
                f"UPDATE {SCHEMA}.metric_hist SET value_real = 99 WHERE id = "
                f"(SELECT min(id) FROM {SCHEMA}.metric_hist) RETURNING id"
            ).fetchone()[0]
            with conn.transaction():  # a step of the run: its rows are not the application's
                own_id = conn.execute(
                    f"INSERT INTO {SCHEMA}.metric_hist (metric_def_id, ts, value_real) "
                    "VALUES (%s, now(), 8) RETURNING id",
                    (metric,),
                ).fetchone()[0]
                own_xid = int(conn.execute("SELECT pg_current_xact_id()::text").fetchone()[0])
        report = carry_over(legacy_db, restored, snapshot, {own_xid}, [(SCHEMA, "metric_hist")])
        table = report.tables[0]
        assert (table.found, table.inserted, table.updated, table.left) == (4, 3, 1, 0), table
        with restored.connect() as conn:
            ids = {
                r[0]
                for r in conn.execute(f"SELECT id FROM {SCHEMA}.metric_hist WHERE id = ANY(%s)", ([*new_ids, own_id],))
            }
            value = conn.execute(f"SELECT value_real FROM {SCHEMA}.metric_hist WHERE id = %s", (updated,)).fetchone()[0]
            next_id = conn.execute(f"SELECT nextval('{SCHEMA}.metric_hist_id_seq')").fetchone()[0]
        assert ids == set(new_ids) and value == 99
        assert next_id > own_id, "the restored sequence never hands out an id the failed copy holds"
        assert report.describe().startswith("4 of 4 rows committed by others after the backup were carried over")
    finally:
        with legacy_db.with_dbname("postgres").connect() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(restored_name)))


@pytest.fixture
def restored_copy(legacy_db):
    """(snapshot, restored): a copy of ``legacy_db`` as a snapshot taken now sees it, as a restore would make."""
    with legacy_db.connect() as snap:
        snapshot = snap.execute("SELECT pg_current_snapshot()::text").fetchone()[0]
    name = f"{legacy_db.dbname}_restored"
    with legacy_db.with_dbname("postgres").connect() as admin:
        create_database(admin, name, template=legacy_db.dbname)
    yield snapshot, legacy_db.with_dbname(name)
    with legacy_db.with_dbname("postgres").connect() as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def delete_some(target: Target, table: str, n: int) -> list[int]:
    """As the application would: delete ``n`` rows of ``table`` (children first where they reference them)."""
    with target.connect() as conn:
        ids = [
            r[0]
            for r in conn.execute(
                sql.SQL("SELECT id FROM {} ORDER BY id DESC LIMIT %s").format(sql.Identifier(SCHEMA, table)), (n,)
            )
        ]
        conn.execute(sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(sql.Identifier(SCHEMA, table)), (ids,))
    return ids


def ids_in(target: Target, table: str, ids: list[int]) -> set[int]:
    with target.connect() as conn:
        return {
            r[0]
            for r in conn.execute(
                sql.SQL("SELECT id FROM {} WHERE id = ANY(%s)").format(sql.Identifier(SCHEMA, table)), (ids,)
            )
        }


def test_rows_deleted_by_others_after_the_snapshot_are_deleted_again(legacy_db, restored_copy):
    snapshot, restored = restored_copy
    gone = delete_some(legacy_db, "oee_calculations", 4)
    nothing_of_the_run = RunsOwnRowChanges(frozenset(), frozenset())
    report = carry_over(
        legacy_db,
        restored,
        snapshot,
        set(),
        [(SCHEMA, "oee_calculations"), (SCHEMA, "metric_hist")],
        nothing_of_the_run,
    )
    assert ids_in(restored, "oee_calculations", gone) == set(), "the application's deletions came back"
    table = next(t for t in report.tables if t.table == f"{SCHEMA}.oee_calculations")
    assert (table.deleted, table.deletions_left, report.left) == (4, [], [])
    assert (
        "4 rows deleted by others after the backup were deleted again (factory_telemetry.oee_calculations 4)"
        in report.describe()
    )
    with legacy_db.connect() as a, restored.connect() as b:
        counts = [c.execute(f"SELECT count(*) FROM {SCHEMA}.oee_calculations").fetchone()[0] for c in (a, b)]
    assert counts[0] == counts[1]


def test_deletions_that_cannot_be_told_from_the_runs_own_are_named_not_carried(legacy_db, restored_copy):
    snapshot, restored = restored_copy
    gone = delete_some(legacy_db, "oee_calculations", 3)
    # One of the run's applied files deletes from the same table: whose deletions these are cannot be told.
    runs_own = RunsOwnRowChanges.of_files(["DELETE FROM factory_telemetry.oee_calculations WHERE false;"])
    report = carry_over(legacy_db, restored, snapshot, set(), [(SCHEMA, "oee_calculations")], runs_own)
    assert ids_in(restored, "oee_calculations", gone) == set(gone), "rows were deleted on a guess"
    (table,) = report.tables
    assert table.deleted == 0 and sorted(table.deletions_left) == sorted(f"({i})" for i in gone)
    assert report.left == [table]
    text = report.describe()
    assert "NOT carried: 3 rows of factory_telemetry.oee_calculations deleted after the backup are back" in text
    assert all(f"({i})" in text for i in gone)


def test_a_snapshot_is_read_as_postgresql_writes_it():
    assert parse_snapshot("100:105:101,103") == (100, 105, [101, 103])
    assert parse_snapshot("7:7:") == (7, 7, [])


def test_timescaledbs_own_sequences_are_not_carried(legacy_db, restored_copy):
    """A failed conversion's rolled-back create_hypertable moves TimescaleDB's catalog sequence in the failed copy;
    carrying it would need a superuser (the restore of a least-privilege run failed on it) and carries no row."""
    snapshot, restored = restored_copy
    for target in (legacy_db, restored):  # both hold the extension, as a restore of such a database does
        with target.connect() as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    with legacy_db.connect() as conn:
        conn.execute("CREATE TABLE public.probe (ts timestamptz NOT NULL)")
        with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
            conn.execute("SELECT create_hypertable('public.probe', 'ts')")
            conn.execute("SELECT 1 / 0")
        ahead = conn.execute(
            "SELECT last_value FROM pg_sequences WHERE schemaname = '_timescaledb_catalog' "
            "AND sequencename = 'hypertable_id_seq'"
        ).fetchone()[0]
    assert ahead is not None, "the rolled-back create_hypertable moved the catalog's sequence"
    report = carry_over(legacy_db, restored, snapshot, set(), [(SCHEMA, "metric_hist")])
    assert not any("_timescaledb" in line for line in report.sequences), report.sequences
