"""The session every connection of the run sets for itself, and what of the site's it overrides.

Sites often set ``statement_timeout``, ``lock_timeout`` or ``idle_in_transaction_session_timeout`` on every role
(``ALTER ROLE ... SET``), on the database (``ALTER DATABASE ... SET``) or on the pair (``ALTER ROLE ... IN DATABASE
... SET``). A backup, a conversion or a restore takes longer than such limits allow, and the backup's snapshot
transaction waits idle while pg_dump reads it. So, as pg_dump does, every session of the run sets the three to 0
when it connects (the startup packet's ``options``, PGOPTIONS for the client programs); where the run wants a
limit (a conversion's lock tries) it sets one with SET LOCAL inside its own transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from .db import display_name

# What every session of the run sets at connect time.
RUN_SESSION_SETTINGS: dict[str, str] = {
    "statement_timeout": "0",
    "lock_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
}


def run_session_options() -> str:
    """The run's settings as libpq ``options`` (PGOPTIONS) text."""
    return " ".join(f"-c {name}={value}" for name, value in RUN_SESSION_SETTINGS.items())


def merge_options(*parts: str | None) -> str:
    """libpq ``options`` texts joined in order: for a setting given twice, the later one wins."""
    return " ".join(p.strip() for p in parts if p and p.strip())


@dataclass(frozen=True)
class Override:
    """A setting of the site's (role, database, or the pair) that the run's sessions set otherwise."""

    setting: str
    value: str  # what the site set
    set_by: str  # "role migrator", "database factory_telemetry", "role migrator in database factory_telemetry"
    statement: str  # how the site set it, as SQL a DBA recognises
    run_value: str  # what the run's sessions use instead

    def to_dict(self) -> dict[str, str]:
        return {
            "setting": self.setting,
            "value": self.value,
            "set_by": self.set_by,
            "statement": self.statement,
            "run_value": self.run_value,
        }

    def __str__(self) -> str:
        return f"{self.setting} = {self.value} ({self.set_by}): the run sets {self.run_value}"


# pg_db_role_setting is readable by every role. 0 stands for "every role" or "every database".
_SITE_SETTINGS = """
SELECT r.rolname, d.datname, s.setconfig
  FROM pg_db_role_setting s
  LEFT JOIN pg_roles r ON r.oid = s.setrole
  LEFT JOIN pg_database d ON d.oid = s.setdatabase
 WHERE s.setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = session_user))
   AND s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
 ORDER BY s.setrole <> 0 AND s.setdatabase <> 0, s.setrole <> 0
"""


def overridden_settings(conn: psycopg.Connection) -> list[Override]:
    """The run's session settings that the connected role and database set otherwise (ALTER ROLE/DATABASE ... SET),
    most specific last, as PostgreSQL applies them."""
    found = []
    for role, database, config in conn.execute(_SITE_SETTINGS).fetchall():
        for item in config or ():
            name, _, value = item.partition("=")
            if name not in RUN_SESSION_SETTINGS or value == RUN_SESSION_SETTINGS[name]:
                continue
            who, where = display_name(role or ""), display_name(database or "")
            if role and database:
                set_by, statement = f"role {role} in database {database}", f"ALTER ROLE {who} IN DATABASE {where}"
            elif role:
                set_by, statement = f"role {role}", f"ALTER ROLE {who}"
            else:
                set_by, statement = f"database {database}", f"ALTER DATABASE {where}"
            found.append(
                Override(name, value, set_by, f"{statement} SET {name} = '{value}'", RUN_SESSION_SETTINGS[name])
            )
    return found
