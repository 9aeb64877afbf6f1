"""The run sets its own session: timeouts a site sets on the migrating role or the database never stop it."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from testbed.legacy import fingerprints, fingerprints_as_before

from tsmigrate import session
from tsmigrate.fingerprint import compare
from tsmigrate.target import Target

# As low as makes a run without its own session settings fail (the backup's snapshot transaction waits idle while
# pg_dump runs; the fingerprints and the conversions take longer than 50 ms).
SITE_TIMEOUTS = {"statement_timeout": "50ms", "lock_timeout": "10ms", "idle_in_transaction_session_timeout": "100ms"}


@pytest.fixture
def timed_out_migrator(local_server, legacy_db):
    """A superuser login with the site's timeouts set on it (ALTER ROLE ... SET), on the database (ALTER DATABASE
    ... SET) and on the pair (ALTER ROLE ... IN DATABASE ... SET); yields the target as that role."""
    role = "timed_out_migrator"
    with psycopg.connect(local_server.conninfo(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(local_server.password)
            )
        )
        for setting, value in SITE_TIMEOUTS.items():
            for statement in (
                "ALTER ROLE {role} SET {setting} = {value}",
                "ALTER DATABASE {db} SET {setting} = {value}",
            ):
                admin.execute(
                    sql.SQL(statement).format(
                        role=sql.Identifier(role),
                        db=sql.Identifier(legacy_db.dbname),
                        setting=sql.Identifier(setting),
                        value=sql.Literal(value),
                    )
                )
        admin.execute(
            sql.SQL("ALTER ROLE {} IN DATABASE {} SET statement_timeout = '40ms'").format(
                sql.Identifier(role), sql.Identifier(legacy_db.dbname)
            )
        )
    yield Target(make_conninfo(legacy_db.conninfo, user=role), f"test database {legacy_db.dbname} as {role}")
    # What the run created is owned by the role (in the database, and databases a failed run kept): hand it over.
    with psycopg.connect(local_server.conninfo(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
    with legacy_db.connect() as conn:
        conn.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    with psycopg.connect(local_server.conninfo(), autocommit=True) as admin:
        admin.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(role)))
        admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_the_sites_timeouts_are_what_a_plain_session_gets(timed_out_migrator):
    """The condition is real: a session that does not set its own gets the site's timeouts."""
    with psycopg.connect(timed_out_migrator.conninfo, autocommit=True) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "40ms"  # role in database wins
        assert conn.execute("SHOW lock_timeout").fetchone()[0] == "10ms"
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(0.2)")


def test_every_connection_of_the_run_sets_its_own_timeouts(timed_out_migrator):
    with timed_out_migrator.connect() as conn:
        assert [conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(s))).fetchone()[0] for s in SITE_TIMEOUTS] == [
            "0",
            "0",
            "0",
        ]
        conn.execute("SELECT pg_sleep(0.2)")
    # A connection that passes its own options keeps them, beside the run's.
    with timed_out_migrator.connect(options="-c default_transaction_read_only=on") as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "0"
    # So does a DSN that carries options of its own (libpq would otherwise take the run's instead of them).
    with_options = Target(make_conninfo(timed_out_migrator.conninfo, options="-c work_mem=7MB"), "a DSN with options")
    with with_options.connect() as conn:
        assert conn.execute("SELECT current_setting('work_mem'), current_setting('lock_timeout')").fetchone() == (
            "7MB",
            "0",
        )
    assert "work_mem=7MB" in with_options.for_client_programs()[0]
    # The client programs get them through PGOPTIONS.
    _, env = timed_out_migrator.for_client_programs()
    assert all(f"-c {s}=0" in env["PGOPTIONS"] for s in SITE_TIMEOUTS)


def test_the_overrides_are_read_from_the_catalog(timed_out_migrator):
    with timed_out_migrator.connect() as conn:
        overrides = session.overridden_settings(conn)
    found = {(o.setting, o.value, o.set_by) for o in overrides}
    db, role = timed_out_migrator.dbname, "timed_out_migrator"
    assert found == {
        ("statement_timeout", "40ms", f"role {role} in database {db}"),
        *((s, v, f"role {role}") for s, v in SITE_TIMEOUTS.items()),
        *((s, v, f"database {db}") for s, v in SITE_TIMEOUTS.items()),
    }


def test_a_full_run_ends_success_whatever_timeouts_the_role_and_database_set(
    timed_out_migrator, legacy_db, run_suite, tmp_path
):
    before = fingerprints(legacy_db)
    result = run_suite("suites", "--dsn", timed_out_migrator.conninfo)
    record = json.loads((tmp_path / "reports" / "latest.json").read_text())
    assert (result.returncode, record["verdict"]) == (0, "SUCCESS"), result.stdout[-5000:] + result.stderr[-2000:]
    assert compare(before, fingerprints_as_before(legacy_db, before)) == []
    overridden = {(o["setting"], o["value"], o["set_by"], o["run_value"]) for o in record["session_overrides"]}
    assert ("statement_timeout", "40ms", f"role timed_out_migrator in database {legacy_db.dbname}", "0") in overridden
    assert ("idle_in_transaction_session_timeout", "100ms", f"database {legacy_db.dbname}", "0") in overridden
    assert ("lock_timeout", "10ms", "role timed_out_migrator", "0") in overridden
    html = (tmp_path / "reports" / "latest.html").read_text()
    assert "Session settings the run overrode" in html and "idle_in_transaction_session_timeout" in html
