# Wiring only: the project's own tests use a local throwaway cluster of their own.
from fixtures.servers import server_fixture

local_server = server_fixture(scope="session", kind="local")
