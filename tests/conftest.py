# Wiring only: the project's own tests use a local throwaway cluster of their own, and the community
# edition's fixtures (they skip, with the reason, under the apache edition).
from fixtures.community import aged_legacy_db, aged_template, community_server  # noqa: F401
from fixtures.servers import server_fixture

local_server = server_fixture(scope="session", kind="local")
