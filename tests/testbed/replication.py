"""A server with wal_level = logical for the project's tests: publications and logical replication slots are
real there (the tests' own server runs the default wal_level, where a logical slot cannot be created)."""

from __future__ import annotations

import pytest

from fixtures.servers import start_server
from testbed.legacy import clone_for, legacy_template_on
from tsmigrate.plugin import options_of
from tsmigrate.servers import ServerInfo
from tsmigrate.servers.local import LocalCluster
from tsmigrate.target import Target

LOGICAL = {"wal_level": "logical", "max_replication_slots": "4", "max_wal_senders": "4"}


@pytest.fixture(scope="session")
def logical_server(request: pytest.FixtureRequest) -> ServerInfo:
    """A local cluster started with wal_level = logical (needs local PostgreSQL binaries)."""
    cluster = LocalCluster(timescaledb=True, settings=LOGICAL, ready_timeout=options_of(request.config).ready_timeout)
    return start_server(request, cluster, required=False, note="started with wal_level = logical")


@pytest.fixture(scope="session")
def logical_template(logical_server: ServerInfo) -> str:
    """The tiny legacy MS5.0 database on the logical server, to clone from."""
    yield from legacy_template_on(logical_server)


@pytest.fixture
def logical_legacy_db(request: pytest.FixtureRequest, logical_server: ServerInfo, logical_template: str) -> Target:
    """A fresh copy of the legacy database on the wal_level = logical server, dropped afterwards."""
    yield from clone_for(request, logical_server, logical_template)
