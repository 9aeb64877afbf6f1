"""The run as the least-privilege role of docs/security.md, not as a superuser: the pre-flight, the whole
migration, and a failed one with its automatic restore; and each missing privilege named by the pre-flight with
the statement that grants it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from testbed.legacy import fingerprints, fingerprints_as_before
from testbed.privileges import least_privilege_site  # noqa: F401  (a fixture)
from tsmigrate.db import is_hypertable
from tsmigrate.fingerprint import compare
from tsmigrate.plan import load_plan

PROJECT = Path(__file__).resolve().parents[1]
PLAN = load_plan(PROJECT / "migrations")


def record_of(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "reports" / "latest.json").read_text())


def row_counts(target) -> dict[str, int]:
    with target.connect() as conn:
        return {h.table: conn.execute(f"SELECT count(*) FROM factory_telemetry.{h.table}").fetchone()[0]
                for h in PLAN.hypertables}


def test_the_least_privilege_role_passes_the_preflight_and_migrates(least_privilege_site, run_suite, tmp_path):
    site = least_privilege_site
    before, counts = fingerprints(site.target), row_counts(site.target)

    gate = run_suite("suites/preflight", "--dsn", site.migrator_dsn)
    Path("/tmp/lp_gate.txt").write_text(gate.stdout + gate.stderr)  # DEBUG
    assert (gate.returncode, record_of(tmp_path)["verdict"]) == (0, "GO"), gate.stdout[-4000:] + gate.stderr[-2000:]

    run = run_suite("suites/execute", "--dsn", site.migrator_dsn)
    record = record_of(tmp_path)
    assert (run.returncode, record["verdict"]) == (0, "SUCCESS"), run.stdout[-5000:] + run.stderr[-2000:]
    assert site.password not in run.stdout + run.stderr
    assert compare(before, fingerprints_as_before(site.target, before)) == []
    assert row_counts(site.target) == counts
    with site.target.connect() as conn:
        assert all(is_hypertable(conn, "factory_telemetry", h.table) for h in PLAN.hypertables)
        owners = dict(conn.execute("""SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c
                                      WHERE c.relnamespace = 'factory_telemetry'::regnamespace
                                        AND c.relname = ANY(%s)""", ([h.table for h in PLAN.hypertables],)))
        database_owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database "
                                      "WHERE datname = current_database()").fetchone()[0]
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
    Path("/tmp/lp_run.txt").write_text(run.stdout + run.stderr)  # DEBUG
    record = record_of(tmp_path)
    assert (run.returncode, record["verdict"]) == (1, "RESTORED"), run.stdout[-5000:] + run.stderr[-2000:]
    assert site.password not in run.stdout + run.stderr
    assert compare(before, fingerprints(site.target)) == []
    assert row_counts(site.target) == counts
    with site.target.connect() as conn:
        database_owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database "
                                      "WHERE datname = current_database()").fetchone()[0]
        assert conn.execute("SELECT to_regclass('tsmigrate.ledger')").fetchone()[0] is None
    assert database_owner == site.owner, "the restored database is handed back to the role that owned it"
