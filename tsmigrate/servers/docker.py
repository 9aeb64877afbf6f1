"""A throwaway TimescaleDB server in Docker, through testcontainers."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from . import ServerInfo, ServerStartError, wait_until_ready

if TYPE_CHECKING:  # imported where a container starts: testcontainers is needed only there
    from testcontainers.community.postgres import PostgresContainer

# Pinned: the same TimescaleDB and PostgreSQL majors as the MS5.0 target image.
TIMESCALEDB_IMAGE = "timescale/timescaledb:2.19.3-pg15"


def docker_available(timeout: int = 3) -> bool:
    """True when a Docker engine answers a ping."""
    try:
        import docker

        client = docker.from_env(timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no socket, no permission, engine down: all mean "not reachable"
        return False


class DockerServer:
    def __init__(
        self, image: str = TIMESCALEDB_IMAGE, ready_timeout: float = 120.0, settings: dict[str, str] | None = None
    ):
        self.image = image
        self.ready_timeout = ready_timeout
        # Server settings as `postgres -c` options (timescaledb.license = apache, say).
        self.settings = {"timescaledb.telemetry_level": "off", "fsync": "off", **(settings or {})}
        self._container: PostgresContainer | None = None
        self.info: ServerInfo | None = None

    def start(self) -> ServerInfo:
        from testcontainers.community.postgres import PostgresContainer

        password = secrets.token_urlsafe(18)
        container = PostgresContainer(
            self.image, username="postgres", password=password, dbname="postgres", driver=None
        )
        container.with_command(" ".join(["postgres", *(f"-c {key}={value}" for key, value in self.settings.items())]))
        try:
            container.start()  # waits with testcontainers' own exec strategy (psql select version())
        except Exception as exc:
            try:
                container.stop()
            except Exception:
                pass
            raise ServerStartError(f"could not start {self.image} in Docker: {exc}") from None
        self._container = container
        host, port = container.get_container_host_ip(), int(container.get_exposed_port(5432))
        info = ServerInfo("docker", host, port, "postgres", password)
        try:
            version = wait_until_ready(
                info.conninfo(),
                self.ready_timeout,
                describe=f"{self.image} at {host}:{port}",
                log_tail=lambda: container.get_logs()[1].decode(errors="replace")[-2000:],
            )
        except ServerStartError:
            self.stop()
            raise
        self.info = ServerInfo("docker", host, port, "postgres", password, version)
        return self.info

    def stop(self) -> None:
        if self._container is not None:
            self._container.stop()
            self._container = None

    def __enter__(self) -> ServerInfo:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
