# Wiring only: the project's own tests use a local throwaway cluster of their own, or the server
# TSMIGRATE_TEST_DSN names; the community edition's fixtures (they skip, with the reason, under the apache
# edition); and the apache edition's (a second server started as one where the build is the community one).
from fixtures.apache import apache_legacy_db, apache_server, apache_template  # noqa: F401
from fixtures.community import aged_legacy_db, aged_template, community_server  # noqa: F401
from fixtures.servers import TEST_DSN_ENV, server_fixture

local_server = server_fixture(scope="session", kind="local", external_env=TEST_DSN_ENV)
