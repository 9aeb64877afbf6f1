"""Pre-flight findings about the server and its sessions (PF001-PF017; the role's privileges:
test_least_privilege.py), each made for real on a throwaway server and read back from the check the pre-flight
suite runs: code, severity and location.

Another PostgreSQL major version (PF001) cannot be made on this machine and is judged on the server's real answer
with that value changed, as the test says (PF036, which is judged the same way, is in tests/test_restorable.py). A
pg_dump of another major version is a two-line stand-in script (PF006).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tsmigrate import fence
from tsmigrate.convert.connections import SLOT_MARGIN, conversion_jobs, free_connection_slots
from tsmigrate.findings import ADVISORY, BLOCKING, Finding
from tsmigrate.janitor import drop_database
from tsmigrate.plan import load_plan
from tsmigrate.preflight import environment, privileges
from tsmigrate.target import Target
from tsmigrate_tools.appsim import TelemetryWriter

PROJECT = Path(__file__).resolve().parents[1]
READ_ONLY = "-c default_transaction_read_only=on"  # the pre-flight's own session
PLAN = load_plan(PROJECT / "migrations")
PLANNED = sorted(f"{PLAN.schema}.{h.table}" for h in PLAN.hypertables)


def read_only(conninfo: str) -> psycopg.Connection:
    return psycopg.connect(conninfo, autocommit=True, options=READ_ONLY)


def where(findings: list[Finding], code: str) -> list[tuple[str, str | None, str | None]]:
    """(severity, location, table) of each finding of ``code``."""
    return [(f.severity, f.location(), f.table) for f in findings if f.code == code]


def as_role(target: Target, role: str, password: str) -> str:
    return make_conninfo(target.conninfo, user=role, password=password)


def wait_for(condition, what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {within:g} s")
        time.sleep(0.05)


# -- the server and TimescaleDB ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "major",
    [
        pytest.param(12, marks=pytest.mark.finding("PF001", BLOCKING)),
        pytest.param(16, marks=pytest.mark.finding("PF001", ADVISORY)),
    ],
)
def test_pf001_a_postgresql_version_other_than_15(major, marked_finding, local_server):
    """Only PostgreSQL 15 is installed here: the server's real server_version_num is judged with its major
    version changed (the check's only input)."""
    code, severity = marked_finding
    with read_only(local_server.conninfo()) as conn:
        assert environment.server_version(conn) == [], "the server runs 15: nothing to say"
        real = int(conn.execute("SHOW server_version_num").fetchone()[0])
        found = environment.server_version(conn, major * 10000 + real % 10000)
    assert where(found, code) == [(severity, "", None)] and f"PostgreSQL {major}" in found[0].message


@pytest.mark.finding("PF002", BLOCKING)
def test_pf002_a_server_without_timescaledb(server_without_timescaledb, marked_finding):
    code, severity = marked_finding
    with read_only(server_without_timescaledb.conninfo()) as conn:
        found = environment.timescaledb_ready(conn, PLAN)
    assert where(found, code) == [(severity, "", None)] and [f.code for f in found] == [code]


@pytest.mark.finding("PF003", BLOCKING)
def test_pf003_timescaledb_installed_but_not_preloaded(cluster_without_preload, marked_finding):
    code, severity = marked_finding
    with read_only(cluster_without_preload.info.conninfo()) as conn:
        found = environment.timescaledb_ready(conn, PLAN)
    assert where(found, code) == [(severity, "", None)]
    assert "not in shared_preload_libraries (empty)" in found[0].message


@pytest.mark.parametrize(
    "allow",
    [
        pytest.param(False, marks=pytest.mark.finding("PF004", BLOCKING)),
        pytest.param(True, marks=pytest.mark.finding("PF004", ADVISORY)),
    ],
)
def test_pf004_the_apache_edition_against_a_plan_that_compresses(allow, marked_finding, apache_server, tmp_path):
    """On the apache edition's server: the system's when it is apache, else one the community build started with
    timescaledb.license = apache (tests/testbed/apache.py)."""
    code, severity = marked_finding
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text(
        (PROJECT / "migrations" / "plan.toml")
        .read_text()
        .replace("allow_apache_edition = true", f"allow_apache_edition = {str(allow).lower()}")
    )
    with read_only(apache_server.conninfo()) as conn:
        found = environment.timescaledb_ready(conn, load_plan(tmp_path))
    assert where(found, code) == [(severity, str(plan_file), None)]
    assert "apache edition" in found[0].message and "compression" in found[0].message


@pytest.mark.finding("PF005", ADVISORY)
def test_pf005_timescaledb_upgraded_under_a_database_on_the_old_version(upgraded_timescaledb, marked_finding):
    code, severity = marked_finding
    server, database, old, new = upgraded_timescaledb
    with read_only(server.conninfo(database)) as conn:
        found = environment.timescaledb_ready(conn, None)
    assert where(found, code) == [(severity, "", None)]
    assert f"timescaledb {old} is created in this database, {new} is installed" in found[0].message


# -- client programs, privileges, standby, slots -----------------------------------------------------------

PG_DUMP_OF_13 = '#!/bin/sh\necho "$(basename "$0") (PostgreSQL) 13.16"\n'


@pytest.mark.parametrize(
    "programs",
    [
        pytest.param("missing", marks=pytest.mark.finding("PF006", BLOCKING)),
        pytest.param("of PostgreSQL 13", marks=pytest.mark.finding("PF006", BLOCKING)),
    ],
)
def test_pf006_client_programs_missing_or_older_than_the_server(
    programs, marked_finding, local_server, tmp_path, monkeypatch
):
    """The programs are looked up on PATH: a directory without them, or with PostgreSQL 13's (two-line stand-ins
    that answer --version as pg_dump 13 does; no older client is installed here)."""
    code, severity = marked_finding
    if programs != "missing":
        for name in ("pg_dump", "pg_restore"):
            (tmp_path / name).write_text(PG_DUMP_OF_13)
            (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("TSMIGRATE_PG_BINDIR", raising=False)  # the programs are found there first
    with read_only(local_server.conninfo()) as conn:
        found = environment.client_tools(conn)
    assert where(found, code) == [(severity, "", None)] * 2
    expected = (
        ("pg_dump not found", "pg_restore not found")
        if programs == "missing"
        else (
            f"pg_dump ({tmp_path / 'pg_dump'}) is version 13, the server is 15",
            f"pg_restore ({tmp_path / 'pg_restore'}) is version 13, the server is 15",
        )
    )
    assert [f.message[: len(e)] for f, e in zip(found, expected, strict=True)] == list(expected)


@pytest.mark.finding("PF007", BLOCKING)
def test_pf007_a_role_that_owns_nothing(marked_finding, legacy_db, login_role, local_server):
    code, severity = marked_finding
    role = login_role()
    with read_only(as_role(legacy_db, role, local_server.password)) as conn:
        found = privileges.ownership(conn, [], PLAN)
    assert {f.table for f in found if f.code == code and f.severity == severity} == set(PLANNED)
    assert f"role {role} does not own factory_telemetry.metric_hist (owner " in found[0].message


@pytest.mark.finding("PF008", BLOCKING)
def test_pf008_a_standby(standby, marked_finding):
    code, severity = marked_finding
    with read_only(standby.conninfo()) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        found = environment.primary_server(conn)
    assert where(found, code) == [(severity, "", None)]


@pytest.mark.finding("PF009", BLOCKING)
def test_pf009_idle_clients_take_the_connection_slots(cluster_without_preload, marked_finding):
    code, severity = marked_finding
    conninfo = cluster_without_preload.info.conninfo()
    with read_only(conninfo) as conn:
        assert environment.connection_slots(conn, needed=4) == []
        free = conn.execute("""SELECT current_setting('max_connections')::int
                                    - current_setting('superuser_reserved_connections')::int
                                    - (SELECT count(*) FROM pg_stat_activity
                                        WHERE backend_type = 'client backend')""").fetchone()[0]
        idle = [psycopg.connect(conninfo, application_name="idle client") for _ in range(free - 3)]
        try:
            found = environment.connection_slots(conn, needed=4)
        finally:
            for c in idle:
                c.close()
    assert where(found, code) == [(severity, "", None)]
    assert found[0].message == "3 connection slots free; the run needs 4"


@pytest.mark.finding("PF009", BLOCKING)
def test_pf009_a_plan_whose_jobs_the_free_slots_cannot_hold(cluster_without_preload, marked_finding):
    """The conversions copy and build indexes on the plan's ``jobs`` connections: the slots for them must be free."""
    code, severity = marked_finding
    with read_only(cluster_without_preload.info.conninfo()) as conn:
        free = free_connection_slots(conn)
        assert environment.connection_slots(conn, replace(PLAN, jobs=free - 3)) == []
        found = environment.connection_slots(conn, replace(PLAN, jobs=free))
    assert where(found, code) == [(severity, "", None)]
    assert found[0].message.startswith(f"{free} connection slots free; the run needs {free + 3} (3 of its own")
    assert "lower jobs in plan.toml" in found[0].message


def test_default_jobs_are_the_servers_maintenance_workers_plus_one_within_the_free_slots(cluster_without_preload):
    """[plan] jobs left out: one parallel CREATE INDEX's worth of connections, never the last SLOT_MARGIN slots."""
    conninfo = cluster_without_preload.info.conninfo()
    with read_only(conninfo) as conn:
        workers = conn.execute("SELECT current_setting('max_parallel_maintenance_workers')::int").fetchone()[0]
        free = free_connection_slots(conn)
        assert conversion_jobs(conn, None) == max(1, min(workers + 1, free - SLOT_MARGIN))
        assert conversion_jobs(conn, 7) == 7  # the plan's own
        idle = [psycopg.connect(conninfo, application_name="idle client") for _ in range(free - SLOT_MARGIN - 1)]
        try:
            assert free_connection_slots(conn) == SLOT_MARGIN + 1
            assert conversion_jobs(conn, None) == 1
        finally:
            for c in idle:
                c.close()


# -- other sessions on the target ------------------------------------------------------------------------


@pytest.mark.finding("PF010", ADVISORY)
def test_pf010_a_transaction_left_open(marked_finding, legacy_db):
    code, severity = marked_finding
    with legacy_db.connect(application_name="report tool") as other:
        other.execute("BEGIN")
        other.execute("SELECT count(*) FROM factory_telemetry.metric_def")
        with read_only(legacy_db.conninfo) as conn:
            # Open for longer than 0 s; the suite's limit is 300 s.
            found = environment.activity(conn, PLAN, long_after_s=0)
        pid = other.info.backend_pid
    assert where(found, code) == [(severity, "", None)]
    assert f"backend pid {pid}" in found[0].message and "'report tool'" in found[0].message


@pytest.mark.finding("PF011", BLOCKING)
def test_pf011_another_session_holds_a_lock_on_a_table_to_convert(marked_finding, legacy_db):
    code, severity = marked_finding
    with legacy_db.connect(application_name="hmi") as other:
        other.execute("BEGIN")
        other.execute(
            "UPDATE factory_telemetry.metric_hist SET value_real = value_real "
            "WHERE id = (SELECT min(id) FROM factory_telemetry.metric_hist)"
        )
        with read_only(legacy_db.conninfo) as conn:
            found = environment.activity(conn, PLAN)
        pid = other.info.backend_pid
    assert where(found, code) == [(severity, "", "factory_telemetry.metric_hist")]
    assert f"backend pid {pid}" in found[0].message and "RowExclusiveLock" in found[0].message


@pytest.mark.parametrize(
    "writer",
    [
        pytest.param("a superuser", marks=pytest.mark.finding("PF014", BLOCKING)),
        pytest.param("a login role of the application", marks=pytest.mark.finding("PF014", ADVISORY)),
    ],
)
def test_pf014_rows_written_while_the_preflight_watches(writer, marked_finding, legacy_db, app_login, local_server):
    """A superuser is never fenced, so its writes block; the application's login role is fenced by the run."""
    code, severity = marked_finding
    conninfo = legacy_db.conninfo if writer == "a superuser" else as_role(legacy_db, app_login, local_server.password)
    telemetry = TelemetryWriter(conninfo, interval=0.05, limit=60)
    telemetry.start()
    try:
        wait_for(lambda: telemetry.committed, "the writer's first committed row")
        with read_only(legacy_db.conninfo) as conn:
            found = environment.maintenance_window(conn, PLAN, sample_seconds=1.0)
    finally:
        telemetry.stop()
    assert where(found, code) == [(severity, "", None)], found
    assert "rows are being written" in found[0].message and "metric_hist" in found[0].message


@pytest.mark.finding("PF015", ADVISORY)
def test_pf015_another_session_connected(marked_finding, legacy_db, app_login, local_server):
    code, severity = marked_finding
    with psycopg.connect(as_role(legacy_db, app_login, local_server.password), application_name="line 2 HMI") as hmi:
        with read_only(legacy_db.conninfo) as conn:
            found = environment.maintenance_window(conn, PLAN, sample_seconds=0.2)
        pid = hmi.info.backend_pid
    assert where(found, code) == [(severity, "", None)]
    assert found[0].message.startswith(f"pid {pid} role {app_login} application 'line 2 HMI'")
    assert found[0].message.endswith("(the run's fence ends it)")


@pytest.mark.parametrize(
    "lifted",
    [
        pytest.param(True, marks=pytest.mark.finding("PF016", ADVISORY)),
        pytest.param(False, marks=pytest.mark.finding("PF016", BLOCKING)),
    ],
)
def test_pf016_a_fence_left_by_a_run_that_died(lifted, marked_finding, legacy_db, app_login):
    code, severity = marked_finding
    run = legacy_db.connect()
    fence.Fence(run, PLAN.application_roles).raise_()
    run.close()  # the run's session ends without lifting it, as when the run is killed
    try:
        with read_only(legacy_db.conninfo) as conn, legacy_db.connect() as writable:
            wait_for(
                lambda: all(fence.is_stale(conn, f) for f in fence.fences(conn, legacy_db.dbname)),
                "the end of the run's session",
            )
            found = environment.stale_fences(conn, writable if lifted else None)
            can_login = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (app_login,)).fetchone()[0]
    finally:
        with legacy_db.connect() as admin:
            fence.lift_stale(admin, legacy_db.dbname)
    assert where(found, code) == [(severity, "", None)]
    assert found[0].message.startswith(f"role {app_login} ") and can_login is lifted


@pytest.mark.finding("PF017", BLOCKING)
def test_pf017_a_role_that_cannot_fence_the_application(marked_finding, legacy_db, app_login, login_role, local_server):
    code, severity = marked_finding
    role = login_role()  # neither superuser nor CREATEROLE
    with read_only(as_role(legacy_db, role, local_server.password)) as conn:
        found = environment.maintenance_window(conn, PLAN, sample_seconds=0.2)
    assert where(found, code) == [(severity, str(PLAN.path), None)]
    assert f"the run must fence {app_login} but role {role} has neither CREATEROLE nor superuser" in found[0].message


# -- the database and the disk ------------------------------------------------------------------------


@pytest.mark.finding("PF012", ADVISORY)
def test_pf012_a_database_not_in_utf8(marked_finding, local_server):
    code, severity = marked_finding
    with psycopg.connect(local_server.conninfo(), autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0").format(
                sql.Identifier("pf012_sql_ascii")
            )
        )
        try:
            with read_only(local_server.conninfo("pf012_sql_ascii")) as conn:
                found = environment.encoding_and_timezone(conn)
        finally:
            drop_database(admin, "pf012_sql_ascii")
    assert where(found, code) == [(severity, "", None)] and "SQL_ASCII" in found[0].message


@pytest.mark.finding("PF013", BLOCKING)
def test_pf013_a_disk_too_small_for_the_backup(marked_finding, legacy_db, tiny_filesystem):
    code, severity = marked_finding
    backups = tiny_filesystem / "backups"
    with read_only(legacy_db.conninfo) as conn:
        found = environment.room_for_backup(conn, backups)
    assert where(found, code) == [(severity, str(backups), None)] and "GiB free in" in found[0].message


def test_the_checks_above_find_nothing_on_a_quiet_primary(legacy_db, tmp_path):
    """The same checks on a healthy target say nothing: each finding above comes from its condition."""
    with read_only(legacy_db.conninfo) as conn:
        found = (
            environment.server_version(conn)
            + environment.client_tools(conn)
            + privileges.privileges(conn, PLAN)
            + environment.primary_server(conn)
            + environment.connection_slots(conn)
            + environment.activity(conn, PLAN)
            + environment.maintenance_window(conn, PLAN, sample_seconds=0.2)
            + environment.stale_fences(conn, None)
            + environment.encoding_and_timezone(conn)
            + environment.room_for_backup(conn, tmp_path / "backups")
        )
    assert found == []
