# Wiring only: the project's own tests use a local throwaway cluster of their own, or the server
# TSMIGRATE_TEST_DSN names; the community edition's fixtures (they skip, with the reason, under the apache
# edition); the apache edition's (a second server started as one where the build is the community one); and
# the real conditions that findings are about, and the least-privilege site of docs/security.md.
from testbed.apache import apache_legacy_db, apache_server, apache_template
from testbed.community import aged_legacy_db, aged_template, community_server
from testbed.compressed import compressed_db, compressed_template
from testbed.conditions import (
    app_login,
    cluster_on_small_filesystem,
    cluster_with_small_wal_disk,
    cluster_without_preload,
    login_role,
    marked_finding,
    server_without_timescaledb,
    standby,
    tiny_filesystem,
    upgraded_timescaledb,
)
from testbed.legacy import legacy_db, legacy_template, run_suite
from testbed.privileges import least_privilege_site
from testbed.replication import logical_legacy_db, logical_server, logical_template

from fixtures.servers import TEST_DSN_ENV, server_fixture

# Only the project's tests need these plugins. pytest takes pytest_plugins from a conftest below the root only
# when it is an initial one, as here: `pytest tests ...` (make test) names this directory.
pytest_plugins = ("pytester", "testbed.local_clusters")

local_server = server_fixture(scope="session", kind="local", external_env=TEST_DSN_ENV)
