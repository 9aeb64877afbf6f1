"""A server someone else runs (CI's service container, a developer's own): used as it is, never started or stopped.

It has the shape of the throwaway servers (``start()`` gives a :class:`ServerInfo`, ``stop()``), so the project's
tests can run on it; they create and drop databases of their own there and leave the rest alone.
"""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict

from ..db import one
from ..errors import first_line
from ..target import password_of, redact
from . import ServerInfo, ServerStartError, wait_until_ready


class ExternalServer:
    """``with ExternalServer(dsn, source="TSMIGRATE_TEST_DSN") as info: ...``; ``source`` names where the DSN came
    from."""

    def __init__(self, dsn: str, *, source: str, ready_timeout: float = 60.0):
        self.dsn = dsn
        self.source = source
        self.ready_timeout = ready_timeout
        self.info: ServerInfo | None = None

    def _fail(self, problem: str) -> ServerStartError:
        return ServerStartError(redact(f"the server {self.source} names {problem}", (password_of(self.dsn) or "",)))

    def start(self) -> ServerInfo:
        try:
            conninfo_to_dict(self.dsn)
        except psycopg.ProgrammingError as exc:
            raise self._fail(
                f"cannot be used: {self.source} is not a valid DSN ({first_line(exc)}); give "
                "'postgresql://user:password@host:port/postgres'"
            ) from None
        try:
            version = wait_until_ready(self.dsn, self.ready_timeout, describe=f"the server {self.source} names")
        except ServerStartError as exc:
            raise self._fail(f"is not reachable: {exc}") from None
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            # What libpq settled on (DSN, then PG* variables and the password file): the tests connect with it.
            info = ServerInfo(
                "external", conn.info.host, conn.info.port, conn.info.user, conn.info.password or "", version
            )
            if not one(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
                raise self._fail(
                    f"lets {info.user} in, who is not a superuser: the tests create databases, roles "
                    "and extensions there; give a superuser's DSN"
                )
            preload = one(conn, "SELECT current_setting('shared_preload_libraries')")
        if "timescaledb" not in [p.strip() for p in preload.split(",")]:
            raise self._fail(
                f"does not preload TimescaleDB (shared_preload_libraries = '{preload}'); use a "
                "timescale/timescaledb image or add timescaledb to shared_preload_libraries"
            )
        self.info = info
        return info

    def stop(self) -> None:
        """Nothing to stop: the server is not ours. The fixtures drop the databases they made."""
        self.info = None

    def __enter__(self) -> ServerInfo:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
