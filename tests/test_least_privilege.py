"""The run as the least-privilege role of docs/security.md, not as a superuser: the pre-flight, the whole
migration, and a failed one with its automatic restore; and each missing privilege named by the pre-flight with
the statement that grants it."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from testbed.conditions import installation
from testbed.legacy import fingerprints, fingerprints_as_before

from tsmigrate import ledger
from tsmigrate.backup import take_backup
from tsmigrate.db import is_hypertable
from tsmigrate.findings import ADVISORY, BLOCKING
from tsmigrate.fingerprint import compare
from tsmigrate.migrations import discover
from tsmigrate.plan import load_plan
from tsmigrate.preflight import privileges
from tsmigrate.rehearsal import rehearse
from tsmigrate.restore import restore_backup
from tsmigrate.servers.installation import installation_dirs
from tsmigrate.servers.local import LocalCluster, pg_bindir

PROJECT = Path(__file__).resolve().parents[1]
PLAN = load_plan(PROJECT / "migrations")


def record_of(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "reports" / "latest.json").read_text())


def row_counts(target) -> dict[str, int]:
    with target.connect() as conn:
        return {
            h.table: conn.execute(f"SELECT count(*) FROM factory_telemetry.{h.table}").fetchone()[0]
            for h in PLAN.hypertables
        }


def test_the_least_privilege_role_passes_the_preflight_and_migrates(
    least_privilege_site, app_login, run_suite, tmp_path
):
    site = least_privilege_site
    before, counts = fingerprints(site.target), row_counts(site.target)
    # A session of the application, left connected: the fence, run by this role, ends it (pg_signal_backend).
    application = psycopg.connect(
        site.migrator_dsn.replace(f"user={site.migrator}", f"user={app_login}"),
        autocommit=True,
        application_name="line 2 HMI",
    )

    gate = run_suite("suites/preflight", "--dsn", site.migrator_dsn)
    assert (gate.returncode, record_of(tmp_path)["verdict"]) == (0, "GO"), gate.stdout[-4000:] + gate.stderr[-2000:]

    run = run_suite("suites/execute", "--dsn", site.migrator_dsn)
    with pytest.raises(psycopg.OperationalError):
        application.execute("SELECT 1")  # ended by the fence
    application.close()
    with site.target.connect() as conn:
        assert conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (app_login,)).fetchone()[0]
    record = record_of(tmp_path)
    assert (run.returncode, record["verdict"]) == (0, "SUCCESS"), run.stdout[-5000:] + run.stderr[-2000:]
    assert site.password not in run.stdout + run.stderr
    assert compare(before, fingerprints_as_before(site.target, before)) == []
    assert row_counts(site.target) == counts
    with site.target.connect() as conn:
        assert all(is_hypertable(conn, "factory_telemetry", h.table) for h in PLAN.hypertables)
        owners = dict(
            conn.execute(
                """SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c
                                      WHERE c.relnamespace = 'factory_telemetry'::regnamespace
                                        AND c.relname = ANY(%s)""",
                ([h.table for h in PLAN.hypertables],),
            )
        )
        database_owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        ).fetchone()[0]
    assert set(owners.values()) == {site.owner} and database_owner == site.owner
    assert record["steps"] and {s["status"] for s in record["steps"]} == {"applied"}


def test_the_least_privilege_role_restores_a_failed_run(least_privilege_site, run_suite, tmp_path):
    site = least_privilege_site
    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    fifth = sorted(migrations.glob("005_*.sql"))[0]
    fifth.write_text(fifth.read_text() + "\n\nSELECT 1 / 0;  -- injected by the test\n")
    before, counts = fingerprints(site.target), row_counts(site.target)

    run = run_suite("suites/execute", "--dsn", site.migrator_dsn, "--migrations", str(migrations), "--no-rehearse")
    record = record_of(tmp_path)
    assert (run.returncode, record["verdict"]) == (1, "RESTORED"), run.stdout[-5000:] + run.stderr[-2000:]
    assert site.password not in run.stdout + run.stderr
    assert compare(before, fingerprints(site.target)) == []
    assert row_counts(site.target) == counts
    with site.target.connect() as conn:
        database_owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        ).fetchone()[0]
        assert conn.execute("SELECT to_regclass('tsmigrate.ledger')").fetchone()[0] is None
    assert database_owner == site.owner, "the restored database is handed back to the role that owned it"


# -- each privilege missing, named with the statement that grants it ---------------------------------------------

FILES = discover(PROJECT / "migrations")[0]


def as_role(site, role: str | None = None) -> psycopg.Connection:
    """The pre-flight's session as the run's role (read-only, as the suite opens it)."""
    return psycopg.connect(
        site.migrator_dsn if role is None else site.migrator_dsn.replace(f"user={site.migrator}", f"user={role}"),
        autocommit=True,
        options="-c default_transaction_read_only=on",
    )


def statement_in(message: str) -> str:
    """The statement a finding ends with (GRANT ..., ALTER ...;)."""
    return re.search(r"((GRANT|ALTER) [^;]+;)$", message).group(1)


def granted_as_superuser(site, message: str) -> None:
    site.run_as_superuser(statement_in(message))


@pytest.mark.finding("PF055", BLOCKING)
def test_pf055_an_owner_without_login_cannot_run_the_policies(marked_finding, least_privilege_site, community_server):
    """Found on the community edition: with ms5_owner NOLOGIN the pre-flight said GO, then the conversion failed
    adding its policies ('permission denied to start background process as role ...')."""
    code, severity = marked_finding
    site = least_privilege_site
    site.run_as_superuser(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(site.owner)))
    with as_role(site) as conn:
        found = privileges.job_owners(conn, PLAN)
    assert {(f.code, f.severity, f.table) for f in found} == {
        (code, severity, f"factory_telemetry.{h.table}") for h in PLAN.hypertables
    }, found
    assert found[0].message.endswith(f'ALTER ROLE "{site.owner}" LOGIN;')
    granted_as_superuser(site, found[0].message)
    with as_role(site) as conn:
        assert privileges.job_owners(conn, PLAN) == []


@pytest.mark.finding("PF050", BLOCKING)
def test_pf050_no_create_on_the_database(marked_finding, least_privilege_site):
    code, severity = marked_finding
    site = least_privilege_site
    site.run_as_superuser(
        sql.SQL("ALTER DATABASE {} OWNER TO CURRENT_USER").format(sql.Identifier(site.target.dbname))
    )  # as on the site of issue 18: the database is a superuser's
    with as_role(site) as conn:
        found = privileges.database(conn, FILES, PLAN)
    assert [(f.code, f.severity, f.location()) for f in found] == [(code, severity, "")]
    assert found[0].message.endswith(f'GRANT CREATE ON DATABASE "{site.target.dbname}" TO "{site.migrator}";')
    assert "001_telemetry.sql" in found[0].message  # its CREATE SCHEMA IF NOT EXISTS needs it too
    granted_as_superuser(site, found[0].message)
    with as_role(site) as conn:
        assert privileges.database(conn, FILES, PLAN) == []


@pytest.mark.finding("PF051", BLOCKING)
def test_pf051_no_create_on_a_schema_the_files_create_in(marked_finding, least_privilege_site):
    code, severity = marked_finding
    site = least_privilege_site
    # public is the database owner's (PostgreSQL 15): a database that is a superuser's leaves the role without it.
    site.run_as_superuser(sql.SQL("ALTER DATABASE {} OWNER TO CURRENT_USER").format(sql.Identifier(site.target.dbname)))
    with as_role(site) as conn:
        found = privileges.schemas(conn, FILES, PLAN)
    assert [(f.code, f.severity, f.location()) for f in found] == [
        (code, severity, f"{PROJECT / 'migrations' / '001_telemetry.sql'}:138")
    ]
    assert found[0].message.endswith(f'GRANT USAGE, CREATE ON SCHEMA "public" TO "{site.migrator}";')
    granted_as_superuser(site, found[0].message)
    with as_role(site) as conn:
        assert privileges.schemas(conn, FILES, PLAN) == []


@pytest.mark.finding("PF007", BLOCKING)
def test_pf007_an_object_a_file_replaces_and_a_planned_table_owned_by_another_role(
    marked_finding, least_privilege_site, login_role
):
    code, severity = marked_finding
    site = least_privilege_site
    other = login_role()
    site.run_as_superuser(sql.SQL("ALTER VIEW public.v_equipment_latest OWNER TO {}").format(sql.Identifier(other)))
    site.run_as_superuser(
        sql.SQL("ALTER TABLE factory_telemetry.energy_consumption OWNER TO {}").format(sql.Identifier(other))
    )
    with as_role(site) as conn:
        found = privileges.ownership(conn, FILES, PLAN)
    assert sorted((f.code, f.severity, f.location(), f.table) for f in found) == sorted(
        [
            (code, severity, "", "factory_telemetry.energy_consumption"),
            (code, severity, f"{PROJECT / 'migrations' / '001_telemetry.sql'}:138", None),
        ]
    )
    for f in found:
        assert f.message.endswith(f'GRANT "{other}" TO "{site.migrator}";') and f"(owner {other})" in f.message
    granted_as_superuser(site, found[0].message)
    with as_role(site) as conn:
        assert privileges.ownership(conn, FILES, PLAN) == []


@pytest.mark.finding("PF052", BLOCKING)
def test_pf052_no_createdb_for_the_rehearsal_and_the_restore(marked_finding, least_privilege_site):
    code, severity = marked_finding
    site = least_privilege_site
    site.run_as_superuser(sql.SQL("ALTER ROLE {} NOCREATEDB").format(sql.Identifier(site.migrator)))
    with as_role(site) as conn:
        found = privileges.databases(conn)
    assert [(f.code, f.severity, f.location()) for f in found] == [(code, severity, "")]
    assert found[0].message.endswith(f'ALTER ROLE "{site.migrator}" CREATEDB;')
    granted_as_superuser(site, found[0].message)
    with as_role(site) as conn:
        assert privileges.databases(conn) == []


@pytest.mark.finding("PF052", BLOCKING)
def test_pf052_a_database_the_restore_may_not_rename(marked_finding, least_privilege_site, login_role):
    code, severity = marked_finding
    site = least_privilege_site
    other = login_role()
    site.run_as_superuser(
        sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(site.target.dbname), sql.Identifier(other))
    )
    try:
        with as_role(site) as conn:
            found = privileges.databases(conn)
    finally:  # the role is dropped first: it may own nothing then
        site.run_as_superuser(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(site.target.dbname), sql.Identifier(site.owner)
            )
        )
    assert [(f.code, f.severity, f.location()) for f in found] == [(code, severity, "")]
    assert "the automatic restore renames it" in found[0].message
    assert found[0].message.endswith(f'GRANT "{other}" TO "{site.migrator}";')


@pytest.mark.finding("PF053", BLOCKING)
def test_pf053_no_pg_signal_backend_for_the_fence(marked_finding, least_privilege_site, app_login):
    code, severity = marked_finding
    site = least_privilege_site
    site.run_as_superuser(sql.SQL("REVOKE pg_signal_backend FROM {}").format(sql.Identifier(site.migrator)))
    with as_role(site) as conn:
        found = privileges.fence_sessions(conn, PLAN)
    assert [(f.code, f.severity, f.location()) for f in found] == [(code, severity, str(PLAN.path))]
    assert app_login in found[0].message
    assert found[0].message.endswith(f'GRANT pg_signal_backend TO "{site.migrator}";')
    granted_as_superuser(site, found[0].message)
    with as_role(site) as conn:
        assert privileges.fence_sessions(conn, PLAN) == []


@pytest.mark.finding("PF054", ADVISORY)
def test_pf054_no_pg_read_all_settings_still_ends_with_a_verdict(
    marked_finding, least_privilege_site, run_suite, tmp_path
):
    """Issue 18: such a role got 16 errors and no verdict; the checks now do without what it may not read."""
    code, severity = marked_finding
    site = least_privilege_site
    site.run_as_superuser(sql.SQL("REVOKE pg_monitor FROM {}").format(sql.Identifier(site.migrator)))
    with as_role(site) as conn:
        found = privileges.settings(conn)
        assert conn.execute("SELECT pg_has_role(current_user, 'pg_read_all_settings', 'USAGE')").fetchone()[0] is False
    assert [(f.code, f.severity, f.location()) for f in found] == [(code, severity, "")]
    assert found[0].message.endswith(f'GRANT pg_read_all_settings TO "{site.migrator}";')
    # Without data_directory the room on the server cannot be measured (PF066): it is NO-GO until the operator
    # states it, then GO.
    gate = run_suite("suites/preflight", "--dsn", site.migrator_dsn)
    record = record_of(tmp_path)
    assert (gate.returncode, record["verdict"]) == (1, "NO-GO"), gate.stdout[-4000:] + gate.stderr[-2000:]
    assert {f["code"] for f in record["findings"] if f["severity"] == "blocking"} == {"PF066"}, record["findings"]
    gate = run_suite("suites/preflight", "--dsn", site.migrator_dsn, "--server-free-disk=100")
    record = record_of(tmp_path)
    assert (gate.returncode, record["verdict"]) == (0, "GO"), gate.stdout[-4000:] + gate.stderr[-2000:]
    assert code in {f["code"] for f in record["findings"]}


def test_the_rehearsal_copies_a_database_whose_owner_the_role_is_not_a_member_of(least_privilege_site, caplog):
    """Issue 18: 'must be member of role "postgres"' when the scratch copy was created OWNER the target's owner."""
    site = least_privilege_site
    site.run_as_superuser(sql.SQL("ALTER DATABASE {} OWNER TO CURRENT_USER").format(sql.Identifier(site.target.dbname)))
    site.run_as_superuser(
        sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
            sql.Identifier(site.target.dbname), sql.Identifier(site.migrator)
        )
    )
    site.run_as_superuser(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(site.migrator)))
    result = rehearse(site.as_migrator(), FILES, PLAN)
    assert result.ok, (result.failed_step, result.error)
    # The copy is made without TimescaleDB's catalog data, which only a superuser may load.
    assert [r.getMessage() for r in caplog.records if "pg_restore reported" in r.getMessage()] == []
    assert [label for label, _ in result.steps][-len(PLAN.hypertables) :] == [
        f"convert {PLAN.schema}.{h.table}" for h in PLAN.hypertables
    ]
    with site.target.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (result.scratch,)).fetchone()[0] == 0


@pytest.mark.finding("PF052", BLOCKING)
def test_pf052_hypertables_only_a_superuser_may_restore(marked_finding, least_privilege_site):
    code, severity = marked_finding
    site = least_privilege_site
    with site.target.connect() as conn:  # a database converted by an earlier migration
        conn.execute("CREATE TABLE factory_telemetry.converted_earlier (ts timestamptz NOT NULL, v int)")
        conn.execute("SELECT create_hypertable('factory_telemetry.converted_earlier', 'ts')")
    with as_role(site) as conn:
        found = privileges.databases(conn, changes=True)
        assert privileges.databases(conn, changes=False) == [], "nothing to apply: no restore can follow"
    assert [(f.code, f.severity, f.location()) for f in found] == [(code, severity, "")]
    assert "only a superuser may" in found[0].message and "--no-restore" in found[0].message


def test_a_restored_database_the_role_may_not_create_for_its_owner_says_how_to_hand_it_back(
    least_privilege_site, login_role, tmp_path
):
    """The backup recorded an owner the run's role is not a member of (the database changed hands since): the
    restored database is created as the role's own, and the last line says who owns it and how to give it back."""
    site = least_privilege_site
    earlier_owner = login_role()
    # public is the database owner's: objects of ms5_owner in it could not be given to ms5_owner in a copy the run's
    # role owns (ALTER ... OWNER needs the new owner's CREATE there). This test is about the database's own owner.
    site.run_as_superuser("""DO $$ DECLARE v regclass; BEGIN
                               FOR v IN SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace
                                           AND relkind = 'v' LOOP EXECUTE format('DROP VIEW IF EXISTS %s CASCADE', v);
                               END LOOP; END $$""")
    site.run_as_superuser(
        sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            sql.Identifier(site.target.dbname), sql.Identifier(earlier_owner)
        )
    )
    backup = take_backup(site.target, tmp_path / "backups")
    site.run_as_superuser(
        sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(site.target.dbname), sql.Identifier(site.owner))
    )
    try:
        outcome = restore_backup(site.as_migrator(), backup, keep_failed=False)
        with site.target.connect() as conn:
            owner = conn.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
            ).fetchone()[0]
    finally:  # the role is dropped first: it may own nothing then
        site.run_as_superuser(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(site.target.dbname), sql.Identifier(site.owner)
            )
        )
    assert (outcome.owner, owner) == (site.migrator, site.migrator)
    assert outcome.summary().startswith("RESTORED: ")
    assert outcome.summary().endswith(
        f'hand it back as a superuser with ALTER DATABASE "{site.target.dbname}" OWNER TO "{earlier_owner}";'
    )


@pytest.mark.finding("PF051", BLOCKING)
def test_pf051_and_pf007_the_tools_schema_made_by_an_earlier_run_as_a_superuser(marked_finding, least_privilege_site):
    code, severity = marked_finding
    site = least_privilege_site
    with site.target.connect() as conn:
        ledger.ensure_ledger(conn)  # as a first run under the postgres role leaves it
    with as_role(site) as conn:
        found = privileges.schemas(conn, FILES, PLAN) + privileges.ownership(conn, FILES, PLAN)
    assert [(f.code, f.severity) for f in found if f.code == code] == [(code, severity)]
    assert found[0].message.endswith(f'GRANT USAGE, CREATE ON SCHEMA "tsmigrate" TO "{site.migrator}";')
    assert "tsmigrate.ledger" in {
        f.message.split(" does not own ")[1].split(" ")[0] for f in found if f.code == "PF007"
    }


def test_the_site_of_issue_18_is_no_go_naming_each_privilege_never_a_traceback(
    least_privilege_site, run_suite, tmp_path
):
    """The database a superuser's, as on the site the issue tells of: GO, then 'permission denied for database' at the
    first step and 'RESTORE FAILED: permission denied to create database'. Now the pre-flight says NO-GO first."""
    site = least_privilege_site
    site.run_as_superuser(sql.SQL("ALTER DATABASE {} OWNER TO CURRENT_USER").format(sql.Identifier(site.target.dbname)))
    before = fingerprints(site.target)
    gate = run_suite("suites/preflight", "--dsn", site.migrator_dsn)
    record = record_of(tmp_path)
    out = gate.stdout + gate.stderr
    assert (gate.returncode, record["verdict"]) == (1, "NO-GO"), out[-4000:]
    blocking = {
        (f["code"], f["message"].rsplit(": ", 1)[-1]) for f in record["findings"] if f["severity"] == "blocking"
    }
    db, me = site.target.dbname, site.migrator
    assert {
        ("PF050", f'GRANT CREATE ON DATABASE "{db}" TO "{me}";'),
        ("PF051", f'GRANT USAGE, CREATE ON SCHEMA "public" TO "{me}";'),
    } <= blocking, blocking
    assert any(
        code == "PF052" and "restore renames it" in f["message"] for f in record["findings"] for code in [f["code"]]
    ), record["findings"]
    assert "Traceback" not in out and "InsufficientPrivilege" not in out and site.password not in out
    assert compare(before, fingerprints(site.target)) == []


@pytest.mark.finding("PF007", BLOCKING)
def test_pf007_an_extension_the_role_may_not_create(marked_finding):
    """A build whose timescaledb.control is not marked trusted (the installation copied, that one file changed):
    only a superuser may create the extension, and the pre-flight says so where it is not created yet."""
    code, severity = marked_finding
    readable = Path(tempfile.mkdtemp(prefix="tsmigrate-untrusted-"))
    readable.chmod(0o755)  # the cluster's own user reads the file through the installation's link
    control = readable / "timescaledb.control"
    control.write_text(
        re.sub(
            r"(?m)^trusted\s*=.*$",
            "trusted = false",
            (installation_dirs(pg_bindir())[0] / "extension" / "timescaledb.control").read_text(),
        )
    )
    with installation(add=[control]) as bindir, LocalCluster(timescaledb=True, bindir=bindir) as server:
        with psycopg.connect(server.conninfo(), autocommit=True) as admin:
            admin.execute("CREATE ROLE run_role LOGIN PASSWORD 'run' CREATEDB")
            admin.execute("CREATE DATABASE untrusted OWNER run_role")
        conninfo = make_conninfo(server.conninfo("untrusted"), user="run_role", password="run")
        with psycopg.connect(conninfo, autocommit=True) as conn:
            found = privileges.ownership(conn, [], None)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE EXTENSION timescaledb")  # the condition is real
    shutil.rmtree(readable)
    assert [(f.code, f.severity, f.location()) for f in found] == [(code, severity, "")]
    assert "cannot create the timescaledb extension" in found[0].message
    assert found[0].message.endswith("CREATE EXTENSION timescaledb; in the database before the window")


def test_the_objects_a_file_alters_include_the_sequence_of_an_alter_sequence():
    """ALTER SEQUENCE names its relation as `sequence`, not `relation`: the ownership check reads it (and does not
    stop on the file)."""
    touched = privileges.touched_by("ALTER SEQUENCE factory_telemetry.event_id_seq RESTART;\n", "f.sql")
    assert touched == [privileges.Touched("relation", ("factory_telemetry", "event_id_seq"), "f.sql", 1, None)]
