"""Throwaway PostgreSQL/TimescaleDB servers behind one interface.

``throwaway_server(kind)`` gives a context manager whose ``__enter__`` returns a
:class:`ServerInfo`; leaving it stops the server and removes everything it made,
also after a failure. ``local`` runs initdb/pg_ctl on this machine; ``docker`` uses
testcontainers with a pinned TimescaleDB image; ``auto`` picks docker when an engine
answers, else local. ``external.ExternalServer`` has the same shape for a server someone
else runs (CI's service container): used as it is, never started or stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg.conninfo import make_conninfo

from ..db import one
from ..errors import first_line
from ..timescale import ServerTimescale, server_timescaledb

SERVER_KINDS = ("auto", "local", "docker")


class ServerStartError(RuntimeError):
    """A throwaway server could not be started; the message says why and where its log is."""


@dataclass(frozen=True)
class ServerInfo:
    kind: str
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    version: str = ""

    def conninfo(self, dbname: str = "postgres") -> str:
        # No password (an external server's may come from PGPASSWORD or a password file): leave it to libpq.
        return make_conninfo(
            host=self.host, port=self.port, user=self.user, password=self.password or None, dbname=dbname
        )

    def describe(self) -> str:
        return f"{self.kind} server {self.host}:{self.port}"


def timescale_of(info: ServerInfo) -> ServerTimescale:
    """The TimescaleDB the server offers, edition included (from its license setting), asked in its postgres
    database."""
    with psycopg.connect(info.conninfo(), autocommit=True, connect_timeout=10) as conn:
        return server_timescaledb(conn)


def wait_until_ready(
    conninfo: str,
    timeout: float,
    *,
    alive: Callable[[], bool] = lambda: True,
    describe: str = "server",
    log_tail: Callable[[], str] = lambda: "",
) -> str:
    """Poll until the server answers a query, at most ``timeout`` seconds. Returns its version."""
    deadline = time.monotonic() + timeout
    last_error = "no attempt made"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            with psycopg.connect(conninfo, connect_timeout=max(1, int(min(remaining, 5))), autocommit=True) as conn:
                return one(conn, "SHOW server_version")
        except psycopg.OperationalError as exc:
            last_error = first_line(exc)
        if not alive():
            raise ServerStartError(f"{describe} stopped while starting: {last_error}\n{log_tail()}")
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
    raise ServerStartError(
        f"{describe} did not accept connections within {timeout:g} s (last error: {last_error}).\n"
        f"{log_tail()}\nA slow machine may need a longer readiness timeout."
    )


def throwaway_server(kind: str = "auto", **options):
    """A server context manager of the kind asked for ('auto' prefers docker when reachable)."""
    from .docker import DockerServer, docker_available
    from .local import LocalCluster

    if kind not in SERVER_KINDS:
        raise ValueError(f"unknown server kind {kind!r}; use one of {', '.join(SERVER_KINDS)}")
    if kind == "auto":
        kind = "docker" if docker_available() else "local"
    if kind == "docker":
        return DockerServer(ready_timeout=options.get("ready_timeout", 120.0), settings=options.get("settings"))
    return LocalCluster(**options)
