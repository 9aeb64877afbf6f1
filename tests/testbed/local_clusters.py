"""Tests that need PostgreSQL clusters on this machine skip, at their own line, when TSMIGRATE_TEST_DSN names an
external server for the tests: the ``needs_local_cluster`` marker, and the fixtures that start clusters of their
own. The project's tests only (tests/conftest.py loads it); an operator's run never meets these names."""

from __future__ import annotations

import pytest

from fixtures.servers import TEST_DSN_ENV, external_test_dsn

NEEDS_LOCAL_CLUSTER = (
    f"starts, stops or reads the files of PostgreSQL clusters on this machine; {TEST_DSN_ENV} "
    "names an external server for the tests, so none is assumed here"
)

# Fixtures that start clusters of their own on this machine: their tests need local PostgreSQL binaries too.
LOCAL_CLUSTER_FIXTURES = {
    "server_without_timescaledb",
    "cluster_without_preload",
    "standby",
    "upgraded_timescaledb",
    "own_cluster",
    "cluster_on_small_filesystem",
    "cluster_with_small_wal_disk",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "needs_local_cluster: starts, stops or reads the files of PostgreSQL "
        f"clusters on this machine (skipped when {TEST_DSN_ENV} is set)",
    )


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if not external_test_dsn():
        return
    for item in items:  # a skip marker, so the skip is reported at the test's own line
        if item.get_closest_marker("needs_local_cluster") is not None or LOCAL_CLUSTER_FIXTURES & set(
            getattr(item, "fixturenames", ())
        ):
            item.add_marker(pytest.mark.skip(reason=NEEDS_LOCAL_CLUSTER))
