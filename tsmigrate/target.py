"""Which database the suite works on, and how to name it without leaking its password.

A target comes from a DSN (``--dsn`` or the ``dsn`` ini key) or from libpq's own
conventions (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGPASSFILE, PGSERVICE...).
With neither, there is no target: we say so instead of guessing localhost.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .session import merge_options, run_session_options

# Environment variables that name a server or database (PGPASSWORD alone names none).
TARGET_ENV_VARS = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGDATABASE", "PGSERVICE", "PGSERVICEFILE")
REDACTED = "***"

_URI_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)", re.IGNORECASE)
_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]+)", re.IGNORECASE)


class TargetError(ValueError):
    """No usable target: the message says what was given and what to do."""


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Hide passwords in DSNs (URI and key=value forms) and any known secret."""
    text = _URI_PASSWORD.sub(lambda m: m.group(1) + REDACTED + m.group(3), text)
    text = _KV_PASSWORD.sub(lambda m: m.group(1) + REDACTED, text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def conninfo_params(conninfo: str) -> dict[str, str]:
    """A conninfo's parameters (libpq's parser gives every value as text). Raises psycopg.ProgrammingError."""
    return {key: str(value) for key, value in conninfo_to_dict(conninfo).items() if value is not None}


def password_of(conninfo: str) -> str | None:
    try:
        return conninfo_params(conninfo).get("password") or None
    except psycopg.ProgrammingError:
        return None


@dataclass(frozen=True)
class Target:
    """A database to work on. ``conninfo`` may hold a password: never print it, use ``describe()``."""

    conninfo: str
    source: str

    def __repr__(self) -> str:  # keeps the password out of tracebacks and assertion output
        return f"Target({self.describe()!r}, source={self.source!r})"

    @property
    def secrets(self) -> tuple[str, ...]:
        found = [password_of(self.conninfo), os.environ.get("PGPASSWORD")]
        return tuple(s for s in found if s)

    def params(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """Connection parameters as libpq will see them (DSN first, then environment)."""
        env = os.environ if env is None else env
        params = conninfo_params(self.conninfo)
        for key, var in (
            ("host", "PGHOST"),
            ("port", "PGPORT"),
            ("user", "PGUSER"),
            ("dbname", "PGDATABASE"),
            ("service", "PGSERVICE"),
        ):
            if key not in params and env.get(var):
                params[key] = env[var]
        return params

    def describe(self) -> str:
        """host:port/dbname as user, password never included."""
        p = self.params()
        if "service" in p and "host" not in p:
            where = f"service {p['service']}"
        else:
            where = f"{p.get('host', 'localhost')}:{p.get('port', '5432')}"
        db = p.get("dbname", p.get("user", "?"))
        user = f" as {p['user']}" if "user" in p else ""
        return f"{where}/{db}{user}"

    @property
    def dbname(self) -> str | None:
        return self.params().get("dbname")

    def with_dbname(self, dbname: str) -> Target:
        params = conninfo_params(self.conninfo)
        params["dbname"] = dbname
        return Target(psycopg.conninfo.make_conninfo("", **params), f"{self.source} (database {dbname})")

    def for_client_programs(self) -> tuple[str, dict[str, str]]:
        """A conninfo without its password for a command line (ps shows it), and an environment carrying it and
        the run's session settings (PGOPTIONS; in the conninfo too when the DSN has options of its own, since
        libpq then ignores PGOPTIONS)."""
        params = conninfo_params(self.conninfo) if self.conninfo else {}
        password = params.pop("password", None)
        env = dict(os.environ)
        if password:
            env["PGPASSWORD"] = password
        env["PGOPTIONS"] = merge_options(env.get("PGOPTIONS"), run_session_options())
        if params.get("options"):
            params["options"] = merge_options(params["options"], run_session_options())
        return (psycopg.conninfo.make_conninfo("", **params) if params else ""), env

    def session_options(self, own: str | None = None) -> str:
        """The ``options`` a connection of the run sends: the DSN's (else PGOPTIONS), then the run's session
        settings (statement and lock timeouts off, see tsmigrate.session), then the caller's ``own``."""
        given = conninfo_params(self.conninfo).get("options") if self.conninfo else None
        return merge_options(given or os.environ.get("PGOPTIONS"), run_session_options(), own)

    def connect(self, *, autocommit: bool = True, options: str | None = None, **kwargs) -> psycopg.Connection:
        """Open a connection with the run's session settings (``options`` are added after them); failures name
        the target without its password."""
        kwargs.setdefault("connect_timeout", 10)
        kwargs.setdefault("application_name", "tsmigrate")
        kwargs["options"] = self.session_options(options)
        try:
            return psycopg.connect(self.conninfo, autocommit=autocommit, **kwargs)
        except psycopg.OperationalError as exc:
            raise TargetError(
                f"cannot connect to {self.describe()} ({self.source}): "
                f"{redact(str(exc).strip(), self.secrets)}\n"
                "Check that the server runs and accepts connections, and the DSN or PG* variables."
            ) from None


def resolve_target(dsn: str | None, env: Mapping[str, str] | None = None) -> Target:
    """The target from an explicit DSN, else from libpq environment variables."""
    env = os.environ if env is None else env
    if dsn is not None and dsn.strip():
        try:
            conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            raise TargetError(
                f"the DSN given is not valid: {redact(str(exc), (password_of(dsn) or '',))}. "
                "Write it as 'postgresql://user@host:5432/dbname' or 'host=... dbname=...'."
            ) from None
        return Target(dsn.strip(), "--dsn")
    named = [var for var in TARGET_ENV_VARS if env.get(var)]
    if named:
        return Target("", "environment (" + ", ".join(named) + ")")
    raise TargetError(
        "no target database: give --dsn 'postgresql://user@host:5432/factory_telemetry' "
        "(or 'dsn' in pytest.ini), or set libpq variables (PGHOST, PGDATABASE, PGUSER, PGSERVICE...), "
        "or run the demo on a throwaway server with --demo."
    )
