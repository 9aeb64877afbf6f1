"""A site as docs/security.md describes it: MS5.0's objects owned by a role of their own (``ms5_owner``), the
timescaledb extension created by a superuser, and the run's least-privilege login role (``migrator``) made by
the document's own statement. Names get a suffix (roles are the server's, shared by every test database)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tsmigrate.janitor import drop_database
from tsmigrate.target import Target

# Every object of MS5.0 (its schema's and its views in public), handed to the owner role as a site has it.
HAND_OVER = """
DO $$
DECLARE o record;
BEGIN
  FOR o IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname IN ('factory_telemetry', 'public') AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('e', 'a', 'i'))
  LOOP
    EXECUTE format('ALTER %s %s OWNER TO %I',
                   CASE o.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                                  ELSE 'TABLE' END, o.name, %(owner)s);
  END LOOP;
  FOR o IN SELECT p.oid::regprocedure AS name, p.prokind FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname IN ('factory_telemetry', 'public')
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
  LOOP
    EXECUTE format('ALTER %s %s OWNER TO %I', CASE o.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
                   o.name, %(owner)s);
  END LOOP;
  FOR o IN SELECT t.oid::regtype AS name FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
            WHERE n.nspname = 'factory_telemetry' AND t.typtype IN ('e', 'd') LOOP
    EXECUTE format('ALTER TYPE %s OWNER TO %I', o.name, %(owner)s);
  END LOOP;
END $$"""


@dataclass
class Site:
    target: Target  # as the superuser
    owner: str  # the role that owns MS5.0's objects (ms5_owner)
    migrator: str  # the run's login role
    password: str

    @property
    def migrator_dsn(self) -> str:
        return make_conninfo(self.target.conninfo, user=self.migrator, password=self.password)

    def as_migrator(self) -> Target:
        return Target(self.migrator_dsn, f"{self.target.describe()} as {self.migrator}")

    def run_as_superuser(self, statement: sql.Composable | str, params=None) -> None:
        with self.target.connect() as conn:
            conn.execute(statement, params)


def _names(*parts: str) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, parts))


@pytest.fixture
def least_privilege_site(legacy_db, local_server) -> Site:
    """``legacy_db`` as a site keeps it, with the run's role made as docs/security.md says:
    CREATE ROLE migrator LOGIN CREATEROLE CREATEDB IN ROLE ms5_owner, pg_signal_backend, pg_monitor."""
    suffix = uuid.uuid4().hex[:8]
    owner, migrator = f"ms5_owner_{suffix}", f"migrator_{suffix}"
    with legacy_db.connect() as conn:
        # LOGIN (docs/security.md): TimescaleDB runs the policies' jobs as the tables' owner, only for a role that may
        # log in; it has no password, so nobody logs in as it from outside.
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(owner)))
        conn.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(legacy_db.dbname), sql.Identifier(owner))
        )
        conn.execute(sql.SQL("ALTER SCHEMA factory_telemetry OWNER TO {}").format(sql.Identifier(owner)))
        conn.execute(sql.SQL(HAND_OVER.replace("%(owner)s", "{}")).format(*[sql.Literal(owner)] * 3))
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")  # by a superuser, before the window
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEROLE CREATEDB IN ROLE {}, pg_signal_backend, pg_monitor").format(
                sql.Identifier(migrator), sql.Identifier(owner)
            )
        )
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(migrator), sql.Literal(local_server.password))
        )
    yield Site(legacy_db, owner, migrator, local_server.password)
    admin_conninfo = local_server.conninfo()
    with psycopg.connect(admin_conninfo, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY(%s)", ([owner, migrator],)
        )
        for (name,) in admin.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (legacy_db.dbname + "_",)
        ).fetchall():
            drop_database(admin, name)  # a restore's kept copy: owned by these roles
    with legacy_db.connect() as conn:
        conn.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(_names(owner, migrator)))
        conn.execute(sql.SQL("DROP OWNED BY {}").format(_names(owner, migrator)))
        conn.execute(sql.SQL("DROP ROLE {}").format(_names(migrator, owner)))
