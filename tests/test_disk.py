"""Room on the server, for real: a cluster whose data directory is on a small tmpfs (its pg_wal on the machine's
own disk), replication slots, a role that may not read where the data directory is; and the causes the run, the
restore and the rehearsal name when a resource runs out (tsmigrate/causes.py)."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from testbed.conditions import fill
from testbed.legacy import fingerprints, fingerprints_as_before

from tsmigrate.causes import DISK_FULL, LOCK_TABLE_FULL, NO_CONNECTION_SLOTS, NO_WORKER_SLOTS, WAL_FULL, classify
from tsmigrate.db import is_hypertable
from tsmigrate.findings import ADVISORY, BLOCKING
from tsmigrate.fingerprint import compare
from tsmigrate.plan import load_plan
from tsmigrate.preflight import disk, rehearsal_check
from tsmigrate.report.words import next_steps
from tsmigrate.run import MigrationRun, StepFailed
from tsmigrate.serverfiles import locate
from tsmigrate.servers import wait_until_ready
from tsmigrate.summary import RunSummary

PROJECT = Path(__file__).resolve().parents[1]
PLAN = load_plan(PROJECT / "migrations")
READ_ONLY = "-c default_transaction_read_only=on"

pytestmark = pytest.mark.needs_local_cluster


def read_only(conninfo: str) -> psycopg.Connection:
    return psycopg.connect(conninfo, autocommit=True, options=READ_ONLY)


def where(findings, code):
    return [(f.severity, f.location()) for f in findings if f.code == code]


def test_the_data_directory_and_its_wal_directory_are_found_and_measured(cluster_on_small_filesystem):
    cluster, _info, target = cluster_on_small_filesystem
    with read_only(target.conninfo) as conn:
        files = locate(conn)
    assert files.data_directory == str(cluster.data_dir) and files.measured, files
    assert files.wal_directory == str(cluster.wal_dir) and files.wal_room is not None, files
    assert files.data_room.total < 200 * 2**20 < files.wal_room.total, files
    assert files.log_file == str(cluster.log_file), files


def test_a_server_in_a_docker_container_is_measured_inside_it():
    from tsmigrate.servers.docker import DockerServer, docker_available

    if not docker_available():
        pytest.skip("no Docker engine answers here")
    with DockerServer() as info, read_only(info.conninfo()) as conn:
        files = locate(conn)
    assert files.measured and files.data_room.where.startswith("container "), files
    assert files.data_directory == "/var/lib/postgresql/data" and files.data_room.free > 0, files


@pytest.mark.finding("PF065", BLOCKING)
def test_pf065_planned_tables_fit_once_but_not_twice(marked_finding, cluster_on_small_filesystem):
    code, severity = marked_finding
    cluster, _info, target = cluster_on_small_filesystem
    with read_only(target.conninfo) as conn:
        need = disk.disk_need(conn, PLAN)
        assert disk.data_directory_room(conn, PLAN) == []  # 160 MiB: room enough
        ballast = fill(cluster.base.parent, leave=need.largest_offline[1] // 2)  # not a second copy of the largest
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
    _cluster, _info, target = cluster_on_small_filesystem
    with psycopg.connect(target.conninfo, autocommit=True) as conn:
        settings = server_settings(conn)
        with pytest.raises(psycopg.Error) as raised, conn.transaction():
            conn.execute("SELECT count(pg_advisory_xact_lock(i)) FROM generate_series(1, 100000) i")
    cause = classify(raised.value, settings=settings)
    assert raised.value.sqlstate == "53200" and cause is not None and cause.kind == LOCK_TABLE_FULL, raised.value
    assert f"Raise max_locks_per_transaction to {int(settings['max_locks_per_transaction']) * 2}" in cause.fix


def test_a_statement_error_is_no_resource(local_server):
    with psycopg.connect(local_server.conninfo(), autocommit=True) as conn, pytest.raises(psycopg.Error) as raised:
        conn.execute("SELECT 1/0")
    assert classify(raised.value) is None


@pytest.mark.parametrize(
    "text, kind, path",
    [
        ('ERROR:  could not extend file "base/16384/16999": No space left on device', DISK_FULL, "/srv/pg/data"),
        ('PANIC:  could not write to file "pg_wal/xlogtemp.77": No space left on device', WAL_FULL, "/srv/wal"),
        (
            "pg_restore: error: could not execute query: ERROR:  could not write to file "
            '"base/pgsql_tmp/pgsql_tmp9.0": No space left on device',
            DISK_FULL,
            "/srv/pg/data/base/pgsql_tmp",
        ),
        (
            'LOG:  background worker "TimescaleDB Background Worker Scheduler" failed to start: '
            "no available background worker slots",
            NO_WORKER_SLOTS,
            None,
        ),
        ("FATAL:  sorry, too many clients already", NO_CONNECTION_SLOTS, None),
        ("failed to start job 1002: no available background worker slots", NO_WORKER_SLOTS, None),
        (
            "ERROR:  out of shared memory\nHINT:  You might need to increase max_locks_per_transaction.",
            LOCK_TABLE_FULL,
            None,
        ),
    ],
)
def test_server_words_for_a_resource_name_it_and_the_directory(text, kind, path):
    """The server's own words (as its log and client programs print them), told apart; paths made absolute."""
    cause = classify(text, data_directory="/srv/pg/data", wal_directory="/srv/wal")
    assert cause is not None and (cause.kind, cause.path) == (kind, path), cause
    assert cause.fix.endswith(".") and (path is None or path in cause.fix), cause


@pytest.mark.finding("PF068", BLOCKING)
def test_pf068_a_rehearsal_without_room_for_its_scratch_copy_names_the_disk(
    marked_finding, cluster_on_small_filesystem
):
    code, severity = marked_finding
    cluster, info, target = cluster_on_small_filesystem
    ballast = fill(cluster.base.parent, leave=512 << 10)  # the copy of template0 alone takes more
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


def test_a_backups_directory_on_the_data_directorys_filesystem_counts_there(cluster_on_small_filesystem):
    """Room for the conversion alone, not for the conversion and the backup on the same disk."""
    cluster, _info, target = cluster_on_small_filesystem
    backups = cluster.base.parent / "backups"
    with read_only(target.conninfo) as conn:
        need = disk.disk_need(conn, PLAN)
        ballast = fill(cluster.base.parent, leave=need.copies + need.database // 2 + (64 << 20) // 2)
        try:
            apart = disk.data_directory_room(conn, PLAN, backups_dir=Path("/var/tmp/elsewhere"))
            shared = disk.data_directory_room(conn, PLAN, backups_dir=backups)
        finally:
            ballast.unlink()
    assert apart == [], apart
    assert where(shared, "PF065") == [(BLOCKING, str(cluster.data_dir))], shared
    assert f"the backup in {backups}" in shared[0].message, shared


def test_the_preflight_says_no_go_with_the_free_and_needed_figures_and_the_fix(
    cluster_on_small_filesystem, run_suite, tmp_path
):
    cluster, _info, target = cluster_on_small_filesystem
    ballast = fill(cluster.base.parent, leave=1 << 20)
    try:
        result = run_suite("suites/preflight", "--dsn", target.conninfo, "--no-rehearse")
    finally:
        ballast.unlink()
    out = result.stdout
    assert result.returncode == 1 and f"NO-GO: {target.describe()}" in out, out[-3000:]
    blocking = [line.strip() for line in out.splitlines() if line.strip().startswith("BLOCKING PF065")]
    assert len(blocking) == 1 and f"MiB free in {cluster.data_dir}" in blocking[0], out[-3000:]
    assert "the run needs about" in blocking[0] and "Free at least" in blocking[0], blocking
    fix = out.splitlines()[
        out.splitlines().index(next(line for line in out.splitlines() if "BLOCKING PF065" in line)) + 1
    ]
    assert fix.strip().startswith("fix: Free room on that filesystem"), fix


@pytest.mark.finding("PF066", BLOCKING)
def test_pf066_a_role_that_may_not_read_where_the_data_directory_is_must_have_the_room_confirmed(
    marked_finding, legacy_db, login_role, local_server
):
    code, severity = marked_finding
    role = login_role()  # no superuser, no pg_read_all_settings
    with read_only(make_conninfo(legacy_db.conninfo, user=role, password=local_server.password)) as conn:
        unconfirmed = disk.data_directory_room(conn, PLAN)
        confirmed = disk.data_directory_room(conn, PLAN, operator_free_gib=1000)
        too_little = disk.data_directory_room(conn, PLAN, operator_free_gib=0.001)
    assert where(unconfirmed, code) == [(severity, "")], unconfirmed
    message = unconfirmed[0].message
    assert f"role {role} may not read the server's data_directory" in message, message
    assert "--server-free-disk=<GiB free>" in message and "needs about" in message, message
    assert confirmed == []
    assert where(too_little, "PF065") == [(BLOCKING, "--server-free-disk")], too_little


@pytest.mark.finding("PF067", BLOCKING)
def test_pf067_a_slot_limited_by_max_slot_wal_keep_size_would_be_invalidated(
    marked_finding, cluster_on_small_filesystem
):
    code, severity = marked_finding
    _cluster, info, target = cluster_on_small_filesystem  # max_slot_wal_keep_size = 1MB
    with psycopg.connect(info.conninfo(), autocommit=True) as admin:
        admin.execute("SELECT pg_create_physical_replication_slot('standby_b', true)")
        try:
            with read_only(target.conninfo) as conn:
                found = disk.replicas(conn, PLAN)
        finally:
            admin.execute("SELECT pg_drop_replication_slot('standby_b')")
    assert where(found, code) == [(severity, "")], found
    assert "replication slot standby_b (no replica is reading it" in found[0].message, found
    assert "max_slot_wal_keep_size" in found[0].message and "invalidated" in found[0].message, found


@pytest.mark.finding("PF069", ADVISORY)
def test_pf069_a_replica_without_a_slot_may_fall_further_behind_than_the_server_keeps(
    marked_finding, cluster_without_preload, standby
):
    code, severity = marked_finding
    primary = cluster_without_preload.info
    with psycopg.connect(primary.conninfo(), autocommit=True) as admin:
        admin.execute("ALTER SYSTEM SET max_wal_size = '32MB'")
        admin.execute("SELECT pg_reload_conf()")
        admin.execute(
            "CREATE TABLE written_again AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 200000) g"
        )  # what a restore writes again: more than 32 MB
        try:
            deadline = time.monotonic() + 30
            while not admin.execute("SELECT count(*) FROM pg_stat_replication").fetchone()[0]:
                assert time.monotonic() < deadline, "the standby did not connect"
                time.sleep(0.1)
            with read_only(primary.conninfo()) as conn:
                found = disk.replicas(conn, PLAN)
        finally:
            admin.execute("DROP TABLE written_again")
            admin.execute("ALTER SYSTEM RESET max_wal_size")
            admin.execute("SELECT pg_reload_conf()")
    assert where(found, code) == [(severity, "")], found
    assert "has no replication slot" in found[0].message and "32.0 MiB" in found[0].message, found


def test_the_disk_checks_find_nothing_on_a_server_with_room_and_no_replica(legacy_db):
    with read_only(legacy_db.conninfo) as conn:
        assert disk.data_directory_room(conn, PLAN) + disk.replicas(conn, PLAN) == []


# -- a run that meets a full disk: last ---------------------------------------------------------------------------
# (it changes the small disk's legacy database, which the tests above read)


def test_a_run_that_fills_the_data_directory_names_disk_full_where_and_what_to_do_and_loses_nothing(
    cluster_on_small_filesystem, tmp_path
):
    """The pre-flight would have said NO-GO; the disk fills after it (a ballast file written once the migration
    files are applied), so the first conversion meets a full data directory for real."""
    cluster, _info, target = cluster_on_small_filesystem
    before = fingerprints(target)
    run = MigrationRun(target, PROJECT / "migrations", PLAN, tmp_path / "backups")
    run.open()
    ballast = None
    try:
        for step in run.steps:
            if step.hypertable is not None and ballast is None:
                ballast = fill(cluster.base.parent, leave=256 << 10)
            try:
                run.apply(step)
            except StepFailed as exc:
                failed = str(exc)
                break
        else:
            pytest.fail("no step met the full disk")
        run.close()
    finally:
        run.close()
        if ballast is not None:
            ballast.unlink()
    line = run.state()

    assert run.cause is not None and run.cause.kind == DISK_FULL and run.cause.path == str(cluster.data_dir), failed
    assert f"disk full: no room left in {cluster.data_dir}" in line, line
    assert f"Free disk in {cluster.data_dir}" in line and "then run again" in line, line
    assert "convert factory_telemetry.metric_hist failed" in line, line
    assert line.startswith(("RESTORED:", "RESTORE FAILED:")), line
    assert compare(before, fingerprints_as_before(target, before)) == [], "no legacy row changed or went missing"
    with target.connect() as conn:
        assert not is_hypertable(conn, PLAN.schema, "metric_hist"), "the conversion was rolled back"


def start_again(cluster) -> None:
    """The server back up, as the operator would after freeing room (pg_ctl start; it recovers on its own)."""
    cluster._run(
        str(cluster._bindir / "pg_ctl"), "-D", str(cluster.data_dir), "-m", "immediate", "-w", "stop", check=False
    )
    cluster._run(
        str(cluster._bindir / "pg_ctl"),
        "-D",
        str(cluster.data_dir),
        "-l",
        str(cluster.log_file),
        "-W",
        "-o",
        f"-p {cluster.info.port}",
        "start",
    )
    wait_until_ready(cluster.info.conninfo(), 60)


def test_a_server_that_stops_for_want_of_wal_space_is_named_with_the_directory_and_what_to_do(
    cluster_with_small_wal_disk, tmp_path
):
    """A step writes more WAL than its disk holds: the server stops (PANIC). The run's session is only 'lost', the
    restore cannot connect; the server's log tells why, and the last line says it."""
    cluster, _info, target, wal_disk = cluster_with_small_wal_disk
    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    (migrations / "011_much_wal.sql").write_text(
        "CREATE TABLE factory_telemetry.much_wal AS SELECT g, repeat('x', 200) AS pad "
        "FROM generate_series(1, 600000) g;\n"
    )
    before = fingerprints(target)
    run = MigrationRun(target, migrations, PLAN, tmp_path / "backups")
    run.open()
    try:
        for step in run.steps:
            if step.label == "011_much_wal.sql":
                fill(wal_disk, leave=1 << 20)
            try:
                run.apply(step)
            except StepFailed:
                break
        else:
            pytest.fail("the step that writes more WAL than there is room for succeeded")
    finally:
        run.close()
        (wal_disk / "ballast").unlink(missing_ok=True)
    line = run.state()
    start_again(cluster)

    assert run.cause is not None and run.cause.kind == WAL_FULL, (run.cause, line)
    assert "server stopped: WAL disk full" in line and f"the WAL directory {wal_disk / 'pg_wal'}" in line, line
    assert f"Free disk in {wal_disk / 'pg_wal'}" in line and "start the server" in line, line
    assert "011_much_wal.sql failed" in line and line.startswith("RESTORE FAILED:"), line
    assert compare(before, fingerprints_as_before(target, before)) == [], "no legacy row changed or went missing"
    with target.connect() as conn:
        assert conn.execute("SELECT to_regclass('factory_telemetry.much_wal')").fetchone()[0] is None


def test_after_a_resource_failure_the_next_steps_give_its_fix_not_the_statement():
    cause = classify('could not extend file "base/1/2": No space left on device', data_directory="/srv/pg/data")
    summary = RunSummary(
        kind="execute",
        target="t",
        execute_failed="convert factory_telemetry.metric_hist",
        steps=[{"status": "failed"}],
        restore="RESTORED: ...",
        restored_identical=True,
        restore_complete=True,
        cause=cause.to_dict(),
    )
    first = next_steps(summary)[0]
    assert "Free disk in /srv/pg/data" in first and "statements are not at fault" in first, first
    assert "its error (file, line, statement)" not in " ".join(next_steps(summary))


def test_a_full_run_whose_disk_fills_after_the_go_ends_with_a_last_line_naming_disk_full(
    cluster_on_small_filesystem, run_suite, tmp_path
):
    """As a user runs it (`pytest suites/execute`): the pre-flight measures room enough and says GO; while step 011
    sleeps, a file fills the data directory's disk; the conversion after it meets the full disk for real."""
    cluster, info, target = cluster_on_small_filesystem
    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    (migrations / "011_a_moment.sql").write_text("SELECT pg_sleep(3);\n")
    before = fingerprints(target)
    filled = threading.Event()

    def fill_while_011_sleeps() -> None:
        deadline = time.monotonic() + 240
        with psycopg.connect(info.conninfo(), autocommit=True) as admin:
            while time.monotonic() < deadline:
                if admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(3)%'"
                ).fetchone()[0]:
                    fill(cluster.base.parent, leave=256 << 10)
                    filled.set()
                    return
                time.sleep(0.05)

    filler = threading.Thread(target=fill_while_011_sleeps, daemon=True)
    filler.start()
    try:
        result = run_suite("suites/execute", "--dsn", target.conninfo, "--migrations", str(migrations), "--no-rehearse")
    finally:
        filler.join(timeout=5)
        (cluster.base.parent / "ballast").unlink(missing_ok=True)
    out = result.stdout
    last = [line for line in out.splitlines() if line.strip()][-1].strip()

    assert filled.is_set(), "step 011 never ran: " + out[-3000:]
    assert result.returncode == 1, out[-3000:]
    assert (
        "convert factory_telemetry.metric_hist failed: disk full: no room left in " + str(cluster.data_dir) in last
    ), last
    assert f"Free disk in {cluster.data_dir}" in last, last
    assert compare(before, fingerprints_as_before(target, before)) == [], "no legacy row changed or went missing"


def test_one_session_ended_is_no_stopped_server():
    """A session killed by pg_terminate_backend: its log line is no cause (the server runs on)."""
    log = (
        "2026-12-03 17:00:00.000 UTC [77] FATAL:  terminating connection due to administrator command\n"
        "2026-12-03 17:00:00.100 UTC [78] LOG:  checkpoint complete"
    )
    lost = "consuming input failed: terminating connection due to administrator command"
    assert classify(lost, server_log=log) is None
    stopped = classify("connection refused", server_log=log + "\n... LOG:  received immediate shutdown request")
    assert stopped is not None and stopped.kind == "server stopped" and not stopped.resource, stopped
