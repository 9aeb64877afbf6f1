"""The throwaway-server layer against real PostgreSQL clusters on this machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import sys
import textwrap
import threading
from pathlib import Path

import psycopg
import pytest

from tsmigrate.servers import ServerStartError, throwaway_server
from tsmigrate.servers.docker import docker_available
from tsmigrate.servers.local import LocalCluster
from tsmigrate.timescale import installed_timescaledb, server_timescaledb

PROJECT = Path(__file__).resolve().parents[1]


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
        conn.execute("INSERT INTO readings SELECT t, 1 FROM generate_series(now() - interval '5 hours', now(), interval '10 minutes') t")
        chunks = conn.execute("SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'readings'").fetchone()[0]
        assert chunks >= 5


def test_local_cluster_runs_as_unprivileged_user_when_root(local_server):
    with psycopg.connect(local_server.conninfo(), autocommit=True) as conn:
        data_dir = conn.execute("SHOW data_directory").fetchone()[0]
    owner = Path(data_dir).stat().st_uid
    if os.geteuid() == 0:
        assert owner != 0, "PostgreSQL refuses root: the cluster must belong to another user"
    else:
        assert owner == os.geteuid()


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


def test_cluster_is_removed_after_a_test_that_failed(tmp_path):
    """Run a failing test that uses the server fixture, in a separate pytest; its cluster must be gone."""
    record = tmp_path / "cluster-dir.txt"
    test_file = tmp_path / "test_fails.py"
    test_file.write_text(textwrap.dedent(f"""
        import psycopg
        def test_uses_server_then_fails(local_server):
            with psycopg.connect(local_server.conninfo()) as conn:
                data_dir = conn.execute("SHOW data_directory").fetchone()[0]
            open({str(record)!r}, "w").write(data_dir)
            assert False, "this test fails on purpose"
    """))
    (tmp_path / "conftest.py").write_text(
        "pytest_plugins = ('tsmigrate.plugin', 'fixtures.servers')\n"
        "from fixtures.servers import server_fixture\nlocal_server = server_fixture(kind='local')\n")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(PROJECT)})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "this test fails on purpose" in result.stdout
    data_dir = Path(record.read_text())
    assert data_dir.name == "data" and data_dir.parent.name.startswith("tsmigrate-cluster-")
    assert not data_dir.parent.exists(), f"{data_dir.parent} was left behind"


def test_cluster_is_removed_when_the_block_raises():
    with pytest.raises(RuntimeError):
        with LocalCluster() as info:
            with psycopg.connect(info.conninfo()) as conn:
                base = Path(conn.execute("SHOW data_directory").fetchone()[0]).parent
            raise RuntimeError("boom")
    assert not base.exists()


def test_unknown_server_kind_is_refused():
    with pytest.raises(ValueError, match="unknown server kind 'vm'"):
        throwaway_server("vm")


@pytest.mark.skipif(not docker_available(), reason="no Docker engine answers on this machine")
def test_docker_server_runs_pinned_timescaledb():
    with throwaway_server("docker") as info:
        with psycopg.connect(info.conninfo(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            assert conn.execute("SELECT extversion FROM pg_extension WHERE extname='timescaledb'").fetchone()[0] == "2.19.3"
