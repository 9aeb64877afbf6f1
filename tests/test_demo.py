"""The README's main command, as a user runs it, and the secrecy of passwords in everything it writes."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from tsmigrate.janitor import ScratchDatabase


@pytest.mark.needs_local_cluster
def test_demo_run_exits_zero_and_leaves_an_html_report(run_suite, tmp_path):
    result = run_suite("suites", "--demo", "--demo-scale", "tiny", "--server", "local", timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    reports = tmp_path / "reports"
    latest = reports / "latest.html"
    assert latest.exists() and latest.stat().st_size > 10_000
    stamped = list(reports.glob("full-*.html"))
    assert len(stamped) == 1 and stamped[0].read_bytes() == latest.read_bytes()
    assert list(reports.glob("full-*.xml")), "JUnit XML beside the HTML report"
    lines = result.stdout.splitlines()
    verdict = [i for i, line in enumerate(lines) if line.startswith("=") and " SUCCESS: " in line]
    assert verdict, result.stdout[-2000:]
    # The verdict's lines are the last: at most one line on the policy jobs the post-flight scheduled (community
    # edition; each job is in the report), not a line per job.
    after = lines[verdict[-1] + 1 :]
    assert len(after) <= 1 and all(line.startswith("  scheduled ") and "policy job" in line for line in after), after


def test_password_never_appears_in_output_reports_or_logs(
    secret_migrator, local_server, legacy_template, run_suite, tmp_path
):
    role, secret = secret_migrator
    log_file = tmp_path / "run.log"
    with ScratchDatabase(local_server.conninfo(), "secrecy", template=legacy_template) as name:
        dsn = f"postgresql://{role}:{secret}@{local_server.host}:{local_server.port}/{name}"
        # A full run whose last step fails (no rehearsal to stop it first): backup, error paths,
        # restore and every report get written.
        result = run_suite(
            "suites",
            "--dsn",
            dsn,
            "--no-rehearse",
            "--log-file",
            str(log_file),
            "--log-file-level",
            "DEBUG",
            "--migrations",
            str(_broken_migrations(tmp_path)),
            timeout=900,
        )
    assert result.returncode == 1, result.stdout[-3000:]
    assert "RESTORED" in result.stdout, "the run went through backup, failure and restore"
    written = [result.stdout, result.stderr, log_file.read_text()]
    for folder in ("reports", "backups"):
        for path in (tmp_path / folder).rglob("*"):
            if path.is_file() and path.suffix in (".html", ".json", ".xml", ".sql"):
                written.append(path.read_text(errors="replace"))
    assert len(written) >= 8
    for text in written:
        assert secret not in text
    assert f"{local_server.host}:{local_server.port}" in result.stdout


@pytest.fixture
def secret_migrator(local_server):
    """A superuser login with a known password, dropped afterwards (the server may outlive the run)."""
    role, secret = "secret_migrator", "Pw-never-shown-7731"
    with psycopg.connect(local_server.conninfo(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(sql.Identifier(role), sql.Literal(secret))
        )
    yield role, secret
    with psycopg.connect(local_server.conninfo(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _broken_migrations(tmp_path):
    import shutil
    from pathlib import Path

    migrations = tmp_path / "migrations"
    shutil.copytree(Path(__file__).resolve().parents[1] / "migrations", migrations)
    (migrations / "011_broken.sql").write_text("SELECT 1 / 0;\n")
    return migrations
