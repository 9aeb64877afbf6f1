# Wiring only: the project's own tests use a local throwaway cluster of their own, the community
# edition's fixtures (they skip, with the reason, under the apache edition), and the real conditions
# that findings are about.
from fixtures.community import aged_legacy_db, aged_template, community_server  # noqa: F401
from fixtures.conditions import (app_login, cluster_without_preload, login_role, marked_finding,  # noqa: F401
                                 server_without_timescaledb, standby, tiny_filesystem, upgraded_timescaledb)
from fixtures.servers import server_fixture

local_server = server_fixture(scope="session", kind="local")
