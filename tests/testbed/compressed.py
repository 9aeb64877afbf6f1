"""A legacy MS5.0 database after the window and its compression (community edition): converted by the execute
suite, every chunk older than its table's compress_after compressed, the policy jobs paused so nothing changes
under the tests. Built once per session as a template, cloned per test."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from testbed.legacy import clone_for, frozen_template
from tsmigrate.janitor import drop_database, thaw
from tsmigrate.plan import load_plan
from tsmigrate.servers import ServerInfo
from tsmigrate.target import Target

PROJECT = Path(__file__).resolve().parents[2]
COMPRESSED_TEMPLATE = "ms5_compressed_template"


@pytest.fixture(scope="session")
def compressed_template(community_server: ServerInfo, aged_template: str) -> str:
    plan = load_plan(PROJECT / "migrations")
    with psycopg.connect(community_server.conninfo(), autocommit=True) as admin:
        drop_database(admin, COMPRESSED_TEMPLATE)
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(COMPRESSED_TEMPLATE), sql.Identifier(aged_template)
            )
        )
        thaw(admin, COMPRESSED_TEMPLATE)
    conninfo = community_server.conninfo(COMPRESSED_TEMPLATE)
    with tempfile.TemporaryDirectory(prefix="tsmigrate-compressed-") as tmp:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "suites/execute",
                "--dsn",
                conninfo,
                f"--reports={tmp}/reports",
                f"--backups={tmp}/backups",
                "--write-sample=0.3",
                "-p",
                "no:cacheprovider",
            ],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=900,
            env=dict(os.environ),
        )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for h in plan.hypertables:
            conn.execute(
                "SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks(%s::regclass, "
                "older_than => %s::interval) c",
                (f"{plan.schema}.{h.table}", h.compress_after.text),
            )
        conn.execute(
            "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs "
            "WHERE hypertable_name IS NOT NULL"
        )
    yield frozen_template(community_server, COMPRESSED_TEMPLATE)
    with psycopg.connect(community_server.conninfo(), autocommit=True) as admin:
        drop_database(admin, COMPRESSED_TEMPLATE)


@pytest.fixture
def compressed_db(request: pytest.FixtureRequest, community_server: ServerInfo, compressed_template: str) -> Target:
    """A fresh copy of the converted, compressed legacy database for one test, dropped afterwards."""
    yield from clone_for(request, community_server, compressed_template, prefix="ms5_compressed")
