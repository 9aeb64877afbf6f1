"""Every pre-flight ends with a verdict and a report, whatever a check or its fixtures raise, and no password
reaches the console on the way (tracebacks with their locals included)."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tsmigrate.findings import BLOCKING
from tsmigrate.options import RunOptions
from tsmigrate.servers import ServerInfo
from tsmigrate.servers.external import ExternalServer
from tsmigrate.servers.local import LocalCluster
from tsmigrate.target import Target

SECRET = "Pw-in-the-dsn-4417"
ROLE = "hardened_migrator"


# A catalog PUBLIC may not read (as some hardening guides leave them), what reads it, and what PF041 says.
HARDENED = {
    # what the verdict depends on, read by a session fixture before every check: all of them stop on one error
    "pg_extension": (
        "fixture",
        "its fixture verdict_inputs raised InsufficientPrivilege: permission denied for table pg_extension",
    ),
    # the write sample of one check, whose frame holds the run's options (shown by --showlocals)
    "pg_stat_user_tables": (
        "check",
        "test_maintenance_window_nobody_else_writing could not run: the check raised "
        "InsufficientPrivilege: permission denied for view pg_stat_user_tables",
    ),
}


@pytest.fixture(params=list(HARDENED), ids=[f"{HARDENED[c][0]} raises" for c in HARDENED])
def hardened_catalog(request, local_server, legacy_db):
    """(DSN with a password literal, catalog): a login role (not a superuser; it may read every setting) on a
    database where PUBLIC may not read that catalog: the pre-flight raises for it where it reads it. A real
    condition, not a fake."""
    catalog = request.param
    with psycopg.connect(local_server.conninfo(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(ROLE)))
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE pg_read_all_settings").format(
                sql.Identifier(ROLE), sql.Literal(SECRET)
            )
        )
    with legacy_db.connect() as conn:
        conn.execute(sql.SQL("REVOKE SELECT ON pg_catalog.{} FROM PUBLIC").format(sql.Identifier(catalog)))
    yield f"postgresql://{ROLE}:{SECRET}@{local_server.host}:{local_server.port}/{legacy_db.dbname}", catalog
    with legacy_db.connect() as conn:
        conn.execute(sql.SQL("GRANT SELECT ON pg_catalog.{} TO PUBLIC").format(sql.Identifier(catalog)))
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (ROLE,))
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(ROLE)))
    with psycopg.connect(local_server.conninfo(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(ROLE)))


def written_by(result, tmp_path: Path) -> list[str]:
    """stdout, stderr and every report file of the run."""
    texts = [result.stdout, result.stderr]
    texts += [p.read_text(errors="replace") for p in (tmp_path / "reports").rglob("*") if p.is_file()]
    return texts


@pytest.mark.finding("PF041", BLOCKING)
def test_a_check_that_raises_is_a_blocking_finding_with_a_verdict_and_no_password(
    hardened_catalog, run_suite, tmp_path
):
    dsn, catalog = hardened_catalog
    raised_by, says = HARDENED[catalog]
    with psycopg.connect(dsn) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(sql.SQL("SELECT FROM pg_catalog.{}").format(sql.Identifier(catalog)))  # the condition is real

    result = run_suite("suites/preflight", "--dsn", dsn, "--tb=long", "--showlocals")
    out = result.stdout
    assert result.returncode == 1, out[-5000:] + result.stderr[-2000:]
    lines = out.rstrip().splitlines()
    verdict = [i for i, line in enumerate(lines) if line.startswith("=") and " NO-GO: " in line]
    assert verdict, out[-5000:]
    after_verdict = "\n".join(lines[verdict[-1] :])
    assert "BLOCKING PF041" in after_verdict and says in after_verdict, after_verdict

    record = json.loads((tmp_path / "reports" / "latest.json").read_text())
    assert (record["verdict"], record["exit_code"]) == ("NO-GO", 1)
    could_not_run = [f for f in record["findings"] if f["code"] == "PF041" and says in f["message"]]
    assert len(could_not_run) == 1, record["findings"]  # one error, however many checks it stopped: one finding
    found = could_not_run[0]
    assert found["severity"] == BLOCKING and found["hint"]
    assert found["location"].startswith("suites/preflight/test_") and found["line"] > 0
    if raised_by == "fixture":
        assert "more checks could not run for the same error" in found["message"]
    else:
        assert found["location"].startswith("suites/preflight/test_environment.py:")
        assert "run_options" in out, "--showlocals printed the check's locals (the run's options among them)"
    # The traceback is still there to read, with the password hidden.
    assert "The error as raised (passwords hidden)" in out and "psycopg/" in out

    texts = written_by(result, tmp_path)
    assert len(texts) >= 7  # stdout, stderr, html, latest.html, junit xml, json, latest.json
    for text in texts:
        assert SECRET not in text


def test_a_preflight_that_cannot_reach_its_target_still_ends_with_a_verdict(run_suite, tmp_path):
    result = run_suite(
        "suites/preflight",
        "--dsn",
        f"host=127.0.0.1 port=1 dbname=nowhere user=nobody password={SECRET}",
        "--tb=long",
        "--showlocals",
    )
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-2000:]
    lines = result.stdout.splitlines()
    verdict = [i for i, line in enumerate(lines) if line.startswith("=") and " NO-GO: " in line]
    assert verdict and "NO-GO: 127.0.0.1:1/nowhere as nobody" in lines[verdict[-1]], result.stdout[-3000:]
    assert "stopped: cannot connect to 127.0.0.1:1/nowhere" in lines[verdict[-1] + 1]
    record = json.loads((tmp_path / "reports" / "latest.json").read_text())
    assert (record["verdict"], record["exit_code"]) == ("NO-GO", 3)
    for text in written_by(result, tmp_path):
        assert SECRET not in text


# A fake: no real condition makes pytest's own machinery fail; a plugin raising in a hook, with the DSN in the
# error's text and in its frame's locals, stands for a bug of ours there.
BROKEN_HOOK = """
def pytest_collection_finish(session):
    dsn = session.config.getoption("dsn")
    raise RuntimeError(f"a hook failed while it held {dsn}")
"""


def test_an_internal_error_shows_no_password_and_ends_with_a_verdict(run_suite, tmp_path):
    (tmp_path / "broken_hook.py").write_text(BROKEN_HOOK)
    dsn = f"postgresql://{ROLE}:{SECRET}@127.0.0.1:1/nowhere"
    result = run_suite(
        "suites/preflight",
        "--dsn",
        dsn,
        "-p",
        "broken_hook",
        "--fulltrace",
        "--showlocals",
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-3000:]
    assert "INTERNALERROR" in result.stdout and "a hook failed while it held postgresql://" in result.stdout
    assert "dsn        = 'postgresql://hardened_migrator:***@" in result.stdout  # the locals, shown and hidden
    assert "NO-GO: 127.0.0.1:1/nowhere as hardened_migrator" in result.stdout
    for text in written_by(result, tmp_path):
        assert SECRET not in text


def test_no_object_that_holds_a_dsn_shows_its_password_in_its_repr(tmp_path):
    dsn = f"postgresql://{ROLE}:{SECRET}@db.example:5432/factory_telemetry"
    options = RunOptions(
        dsn=dsn,
        demo=False,
        server="auto",
        demo_scale="demo",
        migrations=tmp_path,
        reports=tmp_path,
        backups=tmp_path,
        ready_timeout=60,
        restore=True,
        keep_failed=True,
        rehearse=True,
        resolve_interrupted=False,
    )
    server = ServerInfo("local", "127.0.0.1", 5432, "postgres", SECRET, "15")
    target = Target(f"host=db.example user={ROLE} password={SECRET} dbname=factory_telemetry", "--dsn")
    cluster = LocalCluster()  # not started: what it holds once started is its ServerInfo
    cluster.info = server
    external = ExternalServer(dsn, source="TSMIGRATE_TEST_DSN")
    for thing in (options, server, target, cluster, external):
        assert SECRET not in repr(thing), repr(thing)
    assert "db.example" in repr(options) and "migrations=" in repr(options)
