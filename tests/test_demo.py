"""The README's main command, as a user runs it, and the secrecy of passwords in everything it writes."""

from __future__ import annotations

import psycopg
from psycopg import sql


def test_demo_run_exits_zero_and_leaves_an_html_report(run_suite, tmp_path):
    result = run_suite("suites", "--demo", "--demo-scale", "tiny", "--server", "local", timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    reports = tmp_path / "reports"
    latest = reports / "latest.html"
    assert latest.exists() and latest.stat().st_size > 10_000
    stamped = [p for p in reports.glob("full-*.html")]
    assert len(stamped) == 1 and stamped[0].read_bytes() == latest.read_bytes()
    assert list(reports.glob("full-*.xml")), "JUnit XML beside the HTML report"
    assert "SUCCESS" in result.stdout.splitlines()[-1]


def test_password_never_appears_in_output_reports_or_logs(local_server, legacy_template, run_suite, tmp_path):
    secret = "Pw-never-shown-7731"
    with psycopg.connect(local_server.conninfo(), autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS secret_migrator")
        admin.execute(sql.SQL("CREATE ROLE secret_migrator LOGIN SUPERUSER PASSWORD {}").format(sql.Literal(secret)))
        admin.execute("DROP DATABASE IF EXISTS secrecy WITH (FORCE)")
        admin.execute(sql.SQL("CREATE DATABASE secrecy TEMPLATE {}").format(sql.Identifier(legacy_template)))
    dsn = f"postgresql://secret_migrator:{secret}@127.0.0.1:{local_server.port}/secrecy"
    log_file = tmp_path / "run.log"
    try:
        # A full run that fails a step, so error paths, restore and reports all get written.
        result = run_suite("suites", "--dsn", dsn, "--log-file", str(log_file), "--log-file-level", "DEBUG",
                           "--migrations", str(_broken_migrations(tmp_path)), timeout=900)
        assert result.returncode == 1, result.stdout[-3000:]
        written = [result.stdout, result.stderr, log_file.read_text()]
        for path in (tmp_path / "reports").rglob("*"):
            if path.is_file():
                written.append(path.read_text(errors="replace"))
        for path in (tmp_path / "backups").rglob("*.json"):
            written.append(path.read_text())
        assert len(written) >= 5
        for text in written:
            assert secret not in text
        assert "127.0.0.1" in result.stdout
    finally:
        with psycopg.connect(local_server.conninfo(), autocommit=True) as admin:
            for (db,) in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE 'secrecy%'").fetchall():
                admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(db)))


def _broken_migrations(tmp_path):
    import shutil
    from pathlib import Path

    migrations = tmp_path / "migrations"
    shutil.copytree(Path(__file__).resolve().parents[1] / "migrations", migrations)
    (migrations / "011_broken.sql").write_text("SELECT 1 / 0;\n")
    return migrations
