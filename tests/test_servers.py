"""The throwaway-server layer against real PostgreSQL clusters on this machine."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import psycopg
import pytest
from testbed.local_clusters import NEEDS_LOCAL_CLUSTER

from fixtures.servers import TEST_DSN_ENV
from tsmigrate.janitor import ScratchDatabase
from tsmigrate.servers import ServerStartError, throwaway_server, timescale_of
from tsmigrate.servers.docker import docker_available
from tsmigrate.servers.external import ExternalServer
from tsmigrate.servers.local import LocalCluster
from tsmigrate.timescale import APACHE, installed_timescaledb, server_timescaledb

PROJECT = Path(__file__).resolve().parents[1]


@pytest.mark.needs_local_cluster
def test_local_cluster_loads_timescaledb(local_server):
    installed = installed_timescaledb()
    assert installed is not None, "make setup installs TimescaleDB for the local PostgreSQL"
    with psycopg.connect(local_server.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE ts_smoke")
    with psycopg.connect(local_server.conninfo("ts_smoke"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION timescaledb")
        ts = server_timescaledb(conn)
        assert ts.preloaded
        assert ts.installed_version == installed.version
        assert ts.edition == installed.edition
        conn.execute("CREATE TABLE readings (ts timestamptz NOT NULL, value double precision)")
        conn.execute("SELECT create_hypertable('readings', 'ts', chunk_time_interval => interval '1 hour')")
        conn.execute(
            "INSERT INTO readings SELECT t, 1 "
            "FROM generate_series(now() - interval '5 hours', now(), interval '10 minutes') t"
        )
        chunks = conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'readings'"
        ).fetchone()[0]
        assert chunks >= 5


@pytest.mark.needs_local_cluster
def test_local_cluster_runs_as_unprivileged_user_when_root(local_server):
    with psycopg.connect(local_server.conninfo(), autocommit=True) as conn:
        data_dir = conn.execute("SHOW data_directory").fetchone()[0]
    owner = Path(data_dir).stat().st_uid
    if os.geteuid() == 0:
        assert owner != 0, "PostgreSQL refuses root: the cluster must belong to another user"
    else:
        assert owner == os.geteuid()


@pytest.mark.needs_local_cluster
def test_readiness_timeout_is_a_clear_error_and_leaves_nothing():
    parent = Path(tempfile.mkdtemp(prefix="tsmigrate-test-"))
    parent.chmod(0o755)  # the cluster's user must get through it
    try:
        cluster = LocalCluster(ready_timeout=0.001, parent_dir=str(parent))
        with pytest.raises(ServerStartError) as raised:
            cluster.start()
        message = str(raised.value)
        assert "did not accept connections within 0.001 s" in message
        assert "readiness timeout" in message
        assert list(parent.iterdir()) == [], "the half-started cluster was left behind"
        assert cluster.base is None
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.needs_local_cluster
def test_two_clusters_at_once_get_two_ports():
    infos, errors = [], []

    def start():
        try:
            cluster = LocalCluster()
            infos.append((cluster, cluster.start()))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert not errors
        ports = {info.port for _, info in infos}
        assert len(ports) == 2
        for _, info in infos:
            with psycopg.connect(info.conninfo(), autocommit=True) as conn:
                assert conn.execute("SHOW port").fetchone()[0] == str(info.port)
    finally:
        for cluster, _ in infos:
            cluster.stop()


@pytest.mark.needs_local_cluster
def test_cluster_is_removed_after_a_test_that_failed(tmp_path):
    """Run a failing test that uses the server fixture, in a separate pytest; its cluster must be gone."""
    record = tmp_path / "cluster-dir.txt"
    test_file = tmp_path / "test_fails.py"
    test_file.write_text(
        textwrap.dedent(f"""
        import psycopg
        def test_uses_server_then_fails(local_server):
            with psycopg.connect(local_server.conninfo()) as conn:
                data_dir = conn.execute("SHOW data_directory").fetchone()[0]
            open({str(record)!r}, "w").write(data_dir)
            assert False, "this test fails on purpose"
    """)
    )
    (tmp_path / "conftest.py").write_text(
        "pytest_plugins = ('tsmigrate.plugin', 'fixtures.servers')\n"
        "from fixtures.servers import server_fixture\nlocal_server = server_fixture(kind='local')\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "this test fails on purpose" in result.stdout
    data_dir = Path(record.read_text())
    assert data_dir.name == "data" and data_dir.parent.name.startswith("tsmigrate-cluster-")
    assert not data_dir.parent.exists(), f"{data_dir.parent} was left behind"


@pytest.mark.needs_local_cluster
def test_cluster_is_removed_when_the_block_raises():
    with pytest.raises(RuntimeError), LocalCluster() as info:
        with psycopg.connect(info.conninfo()) as conn:
            base = Path(conn.execute("SHOW data_directory").fetchone()[0]).parent
        raise RuntimeError("boom")
    assert not base.exists()


def test_unknown_server_kind_is_refused():
    with pytest.raises(ValueError, match="unknown server kind 'vm'"):
        throwaway_server("vm")


@pytest.mark.skipif(not docker_available(), reason="no Docker engine answers on this machine")
def test_docker_server_runs_pinned_timescaledb():
    with throwaway_server("docker") as info, psycopg.connect(info.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        assert conn.execute("SELECT extversion FROM pg_extension WHERE extname='timescaledb'").fetchone()[0] == "2.19.3"


# -- an external server for the tests (CI's service container) ------------------------------------------------


def uri_of(info) -> str:
    return f"postgresql://{info.user}:{info.password}@{info.host}:{info.port}/postgres"


def test_an_external_server_is_used_as_it_is_and_left_running(local_server):
    server = ExternalServer(uri_of(local_server), source=TEST_DSN_ENV)
    with server as info:
        assert (info.kind, info.host, info.port, info.user) == (
            "external",
            local_server.host,
            local_server.port,
            local_server.user,
        )
        assert info.version == local_server.version
        assert local_server.password not in repr(info) and local_server.password not in info.describe()
        with psycopg.connect(info.conninfo(), autocommit=True) as conn:
            assert conn.execute("SELECT inet_server_port()").fetchone()[0] == local_server.port
    with psycopg.connect(local_server.conninfo(), autocommit=True) as conn:  # not ours: still running
        assert conn.execute("SELECT 1").fetchone()[0] == 1


@pytest.mark.parametrize(
    "dsn, says",
    [
        ("postgresql://postgres:hunter2-pw@127.0.0.1:1/postgres", "is not reachable"),
        ("host=127.0.0.1 password=hunter2-pw bogus_key=1", "is not a valid DSN"),
    ],
    ids=["unreachable", "invalid"],
)
def test_an_external_server_that_cannot_be_used_is_a_clear_error_without_its_password(dsn, says):
    with pytest.raises(ServerStartError) as raised:
        ExternalServer(dsn, source=TEST_DSN_ENV, ready_timeout=1).start()
    message = str(raised.value)
    assert f"the server {TEST_DSN_ENV} names" in message and says in message, message
    assert "hunter2-pw" not in message


def test_an_external_server_needs_a_superuser(local_server):
    with psycopg.connect(local_server.conninfo(), autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS tsmigrate_plain_login")
        admin.execute("CREATE ROLE tsmigrate_plain_login LOGIN PASSWORD 'plain-pw'")
    try:
        dsn = f"postgresql://tsmigrate_plain_login:plain-pw@{local_server.host}:{local_server.port}/postgres"
        with pytest.raises(ServerStartError, match="lets tsmigrate_plain_login in, who is not a superuser"):
            ExternalServer(dsn, source=TEST_DSN_ENV).start()
    finally:
        with psycopg.connect(local_server.conninfo(), autocommit=True) as admin:
            admin.execute("DROP ROLE tsmigrate_plain_login")


def test_with_the_variable_set_the_tests_run_on_that_server_and_say_so(local_server, tmp_path):
    """A pytest run wired like tests/conftest.py, given this session's server as the external one."""
    record = tmp_path / "port.txt"
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent("""
        pytest_plugins = ("tsmigrate.plugin", "fixtures.servers", "testbed.local_clusters")
        from testbed.apache import apache_server  # noqa: F401
        from fixtures.servers import TEST_DSN_ENV, server_fixture
        local_server = server_fixture(kind="local", external_env=TEST_DSN_ENV)
    """)
    )
    (tmp_path / "test_external.py").write_text(
        textwrap.dedent(f"""
        import psycopg
        import pytest

        def test_on_the_tests_server(local_server):
            with psycopg.connect(local_server.conninfo()) as conn:
                open({str(record)!r}, "w").write(str(conn.execute("SELECT inet_server_port()").fetchone()[0]))

        def test_on_the_apache_edition(apache_server):
            pass

        @pytest.mark.needs_local_cluster
        def test_with_a_cluster_of_its_own():
            raise AssertionError("must not run beside an external server")
    """)
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", "test_external.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(PROJECT), str(PROJECT / "tests")]),
            TEST_DSN_ENV: uri_of(local_server),
        },
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert int(record.read_text()) == local_server.port, "the test ran on a server of its own, not the external one"
    assert NEEDS_LOCAL_CLUSTER in output
    assert local_server.password not in output
    edition = timescale_of(local_server).edition
    served = f"external server {local_server.host}:{local_server.port}"
    assert re.search(
        rf"^local_server: {served}, PostgreSQL .*, {edition} edition .*: 1 passed$", result.stdout, re.MULTILINE
    ), result.stdout
    if edition == APACHE:
        assert re.search(
            rf"^apache_server: the server of local_server, {served}, .*apache edition .*: 1 passed$",
            result.stdout,
            re.MULTILINE,
        ), result.stdout
    elif not docker_available():
        assert "no Docker engine answers to start one with timescaledb.license = apache" in output


def test_the_apache_edition_server_refuses_what_that_edition_lacks(apache_server, local_server):
    with (
        ScratchDatabase(apache_server.conninfo(), "apache_probe") as name,
        psycopg.connect(apache_server.conninfo(name), autocommit=True) as conn,
    ):
        conn.execute("CREATE EXTENSION timescaledb")
        assert server_timescaledb(conn).edition == APACHE
        conn.execute("CREATE TABLE readings (ts timestamptz NOT NULL, value double precision)")
        conn.execute("SELECT create_hypertable('readings', 'ts')")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match='"apache" license'):
            conn.execute("ALTER TABLE readings SET (timescaledb.compress)")
    # On the community build it is a second server, started as the apache edition; on the apache build, the usual one.
    assert (apache_server == local_server) == (timescale_of(local_server).edition == APACHE)
