"""The reports a run leaves: HTML banner and tables, JSON record, JUnit; read from the files themselves.

Two kinds of runs: small example suites (a project folder in tmp wired like ours, checks that record
findings), which are fast and cover every verdict; and the real suites on a legacy MS5.0 database.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from testbed.browser import CHROMIUM, chromium

from tsmigrate.findings import Finding
from tsmigrate.report.charts import Bar, bar_chart_svg
from tsmigrate.report.html import banner_html
from tsmigrate.report.record import RUN_RECORD_SCHEMA, validate_run_record
from tsmigrate.report.redaction import redact_record, scrub_secrets
from tsmigrate.report.words import headline, terminal_lines
from tsmigrate.summary import GOOD_VERDICTS, RunSummary
from tsmigrate.target import password_of

PROJECT = Path(__file__).resolve().parents[1]
BANNER = re.compile(
    r'<section class="tsm-banner [^"]*" id="tsm-banner" data-verdict="([^"]*)" '
    r'data-exit-code="([^"]*)">(.*?)</section>',
    re.DOTALL,
)


# -- reading the files a run left ----------------------------------------------------------------


class RunReports:
    """The reports directory of one run, and its command's result."""

    def __init__(self, result: subprocess.CompletedProcess, reports: Path):
        self.result = result
        self.reports = reports
        self.json_path = next(p for p in reports.glob("*.json") if p.name != "latest.json")
        self.html_path = self.json_path.with_suffix(".html")
        self.junit_path = self.json_path.with_suffix(".xml")
        self.record = json.loads(self.json_path.read_text())
        self.html = self.html_path.read_text()

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr

    def banner(self) -> tuple[str, int, str]:
        """(verdict, exit code, banner HTML) as the report shows them."""
        match = BANNER.search(self.html)
        assert match, "the HTML report has no banner"
        return match.group(1), int(match.group(2)), match.group(3)

    def title(self) -> str:
        return html.unescape(re.search(r'<h1 id="title">(.*?)</h1>', self.html).group(1))

    def test_data(self) -> dict:
        """pytest-html's embedded data: environment table and every test's extras."""
        blob = re.search(r'data-jsonblob="(.*?)"></div>', self.html, re.DOTALL).group(1)
        return json.loads(html.unescape(blob))

    def extras(self, nodeid_part: str) -> str:
        """The HTML extras of the tests whose id contains nodeid_part, joined."""
        tests = self.test_data()["tests"]
        found = [
            e["content"]
            for nodeid, runs in tests.items()
            if nodeid_part in nodeid
            for run in runs
            for e in run["extras"]
            if e["format_type"] == "html"
        ]
        return "\n".join(found)

    def every_file_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.reports.iterdir()) if p.is_file())


def check_common(run: RunReports, *, secrets: tuple[str, ...] = ()) -> None:
    """What every report must satisfy, whatever the verdict."""
    verdict, exit_code, _ = run.banner()
    assert exit_code == run.result.returncode, run.output[-3000:]
    assert (verdict in GOOD_VERDICTS) == (run.result.returncode == 0), f"banner {verdict} with exit code {exit_code}"
    assert validate_run_record(run.record) == []
    assert run.record["verdict"] == verdict and run.record["exit_code"] == run.result.returncode
    assert run.record["target"] and run.record["target"] in run.title()
    assert (run.reports / "latest.html").read_text() == run.html
    assert json.loads((run.reports / "latest.json").read_text()) == run.record
    junit = ET.parse(run.junit_path).getroot()
    assert junit.find("testsuite") is not None
    assert {"html", "junit", "json"} <= set(run.record["reports"])
    for secret in secrets:
        assert secret not in run.every_file_text(), "a password reached a report file"
        assert secret not in run.output, "a password reached the terminal"


# -- example suites: fast, every verdict ---------------------------------------------------------

EXAMPLE_CONFTEST = """\
pytest_plugins = ("tsmigrate.plugin", "fixtures.target", "fixtures.plan", "fixtures.gate", "fixtures.reporting")
"""

NO_GO_CHECKS = """
import pytest
from tsmigrate.findings import Finding

pytestmark = pytest.mark.preflight

def test_lint(gate):
    gate([Finding("TS001", "blocking", "PRIMARY KEY (id) on factory_telemetry.sensor_log lacks ts",
                  "migrations/011_sensor_log.sql", 2, "factory_telemetry.sensor_log", "Add ts to the key."),
          Finding("TS003", "blocking", "index idx_recent uses now()", "migrations/011_sensor_log.sql", 7,
                  "factory_telemetry.sensor_log", "Use only IMMUTABLE functions."),
          Finding("TS101", "advisory", "CREATE TABLE without IF NOT EXISTS", "migrations/011_sensor_log.sql", 1)])

def test_tables(gate):
    gate([Finding("PF030", "blocking", "factory_telemetry.production_kpis.created_at holds 3 NULL values",
                  table="factory_telemetry.production_kpis", hint="Choose a null_time rule in plan.toml.")])

def test_room_for_the_backup(target):
    assert False, "only 1 GiB free in /backups, 3 GiB needed"

def test_server(gate):
    gate([])
"""

GO_CHECKS = """
import pytest
from tsmigrate.findings import Finding

pytestmark = pytest.mark.preflight

def test_lint(gate):
    gate([Finding("TS102", "advisory", "ALTER TABLE ... TYPE rewrites factory_telemetry.users",
                  "migrations/012_users.sql", 4, "factory_telemetry.users", "Expect an ACCESS EXCLUSIVE lock.")])
"""

REFUSED_STEP = """
import pytest

def test_first_step(target):
    pytest.exit("the run is refused, nothing was changed: another migration run holds the lock", returncode=2)
"""


@pytest.fixture
def run_example(tmp_path: Path, local_server):
    """Run an example suite in a project folder wired like ours, against the throwaway cluster."""

    def run(suite: str, source: str, *args: str, env: dict | None = None) -> RunReports:
        project = tmp_path / "project"
        (project / "suites" / suite).mkdir(parents=True)
        shutil.copy(PROJECT / "pytest.ini", project / "pytest.ini")
        (project / "conftest.py").write_text(EXAMPLE_CONFTEST)
        (project / "suites" / suite / "test_checks.py").write_text(textwrap.dedent(source))
        reports = tmp_path / "reports"
        command = [
            sys.executable,
            "-m",
            "pytest",
            f"suites/{suite}",
            "--dsn",
            local_server.conninfo(),
            "--migrations",
            str(PROJECT / "migrations"),
            "--reports",
            str(reports),
            "--backups",
            str(tmp_path / "backups"),
            "-p",
            "no:cacheprovider",
            *args,
        ]
        result = subprocess.run(
            command,
            cwd=project,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(PROJECT), **(env or {})},
        )
        return RunReports(result, reports)

    return run


def test_no_go_report_lists_every_blocking_finding_and_failed_check(run_example, local_server):
    secret = password_of(local_server.conninfo())
    run = run_example("preflight", NO_GO_CHECKS, "--metadata", "SITE_DB_PASSWORD", "hunter2-in-metadata")
    assert run.result.returncode == 1, run.output[-3000:]
    check_common(run, secrets=(secret, "hunter2-in-metadata"))

    verdict, _, banner = run.banner()
    assert verdict == "NO-GO"
    assert "3 blocking findings and 1 failed check" in banner and "Nothing was changed" in banner
    for code, where in (
        ("TS001", "migrations/011_sensor_log.sql:2"),
        ("TS003", "migrations/011_sensor_log.sql:7"),
        ("PF030", "factory_telemetry.production_kpis"),
    ):
        assert re.search(rf"<b>{code}</b> {re.escape(where)}", banner), f"{code} at {where} missing from the banner"
    assert "Fix: Add ts to the key." in banner and "TS101" not in banner, "advisories stay out of the banner"
    assert "test_room_for_the_backup" in banner, "a failed check without findings is named"

    blocking = [f for f in run.record["findings"] if f["severity"] == "blocking"]
    assert [(f["code"], f["location"]) for f in blocking] == [
        ("PF030", ""),
        ("TS001", "migrations/011_sensor_log.sql:2"),
        ("TS003", "migrations/011_sensor_log.sql:7"),
    ]
    assert run.record["tests"]["failed"] == 3 and run.record["steps"] == [] and run.record["backup"] is None
    assert any("pre-flight again" in s for s in run.record["next_steps"])

    # The check's own findings sit beside it in the results table.
    lint_extras = run.extras("test_lint")
    assert "TS001" in lint_extras and "TS101" in lint_extras and "PF030" not in lint_extras
    # Facts in the environment table, secrets blacked out there too.
    environment = run.test_data()["environment"]
    assert environment["Run"] == "pre-flight" and environment["Server"].startswith("PostgreSQL 15")
    assert "sha256" in environment["Migrations"] and "pg_dump 15" in environment["Client tools"]
    assert set(environment["SITE_DB_PASSWORD"]) == {"\u2593"}


def test_go_report_exits_zero_with_advisories_in_the_findings_table(run_example):
    run = run_example("preflight", GO_CHECKS)
    assert run.result.returncode == 0, run.output[-3000:]
    check_common(run)
    verdict, _, banner = run.banner()
    assert verdict == "GO" and "1 advisory to read" in banner
    assert "TS102" in run.html and "migrations/012_users.sql:4" in run.html
    assert run.record["findings"][0]["severity"] == "advisory"


def test_a_refused_run_is_not_reported_as_success(run_example):
    run = run_example("execute", REFUSED_STEP)
    assert run.result.returncode == 2
    check_common(run)
    verdict, _, banner = run.banner()
    assert verdict == "STOPPED" and "another migration run holds the lock" in banner
    assert run.record["stopped"].startswith("the run is refused")
    last = [line for line in run.result.stdout.splitlines() if line.strip()][-2:]
    assert any("STOPPED" in line for line in last), run.result.stdout[-2000:]


# -- the real suites on a legacy MS5.0 database ---------------------------------------------------


def real_run(run_suite, tmp_path: Path, *args: str) -> RunReports:
    result = run_suite(*args, "-o", "log_cli=false")
    return RunReports(result, tmp_path / "reports")


def test_successful_migration_report(legacy_db, run_suite, tmp_path):
    secret = password_of(legacy_db.conninfo)
    assert secret, "the throwaway cluster should need a password, so that redaction is tested"
    run = real_run(run_suite, tmp_path, "suites/execute", "suites/postflight", "--dsn", legacy_db.conninfo)
    assert run.result.returncode == 0, run.output[-3000:]
    check_common(run, secrets=(secret,))
    assert run.record["kind"] == "full", "suites/execute runs the pre-flight first"

    verdict, _, banner = run.banner()
    assert verdict == "SUCCESS" and "15 steps applied" in banner
    record = run.record
    assert [s["status"] for s in record["steps"]] == ["applied"] * 15
    assert all(s["seconds"] > 0 for s in record["steps"])
    first = record["steps"][0]
    assert first["label"] == "001_telemetry.sql" and first["details"]["statements"][0]["line"] >= 1

    backup = Path(record["backup"]["path"])
    assert hashlib.sha256((backup / "manifest.json").read_bytes()).hexdigest() == record["backup"]["manifest_sha256"]
    assert str(backup) in banner
    manifest = json.loads((backup / "manifest.json").read_text())
    assert {k: v["rows"] for k, v in record["fingerprints"]["before"].items()} == {
        k: v["rows"] for k, v in manifest["fingerprints"].items()
    }

    before, after = record["fingerprints"]["before"], record["fingerprints"]["after"]
    assert after and all(after[name] == before[name] for name in after), "the post-flight's fingerprints match"
    assert "every table the same" in run.html
    assert record["benchmarks"] and all(b["passed"] for b in record["benchmarks"])
    assert 'id="tsm-benchmarks"' in run.html and "times better than the limit" in run.html

    environment = record["environment"]
    assert (
        "apache edition" in environment["TimescaleDB after the run"]
        or "community edition" in environment["TimescaleDB after the run"]
    )
    assert "10 files" in environment["Migrations"] and "5 tables to convert" in environment["Plan"]

    # Steps table, duration chart, and per-step extras: statements of a file, result of a conversion.
    assert 'id="tsm-steps"' in run.html and "Duration of each step" in run.html
    assert "line " in run.extras("001_telemetry.sql") and "Slowest statements" in run.extras("001_telemetry.sql")
    assert "rows moved into chunks" in run.extras("convert factory_telemetry.metric_hist")


def test_restored_run_report(legacy_db, run_suite, tmp_path):
    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    fifth = migrations / "005_andon_escalation.sql"
    fifth.write_text(fifth.read_text() + "\n\nSELECT 1 / 0;  -- injected by the test\n")
    run = real_run(
        run_suite,
        tmp_path,
        "suites/execute",
        "--dsn",
        legacy_db.conninfo,
        "--migrations",
        str(migrations),
        "--no-rehearse",
    )
    assert run.result.returncode == 1, run.output[-3000:]
    check_common(run, secrets=(password_of(legacy_db.conninfo),))

    verdict, _, banner = run.banner()
    assert verdict == "RESTORED" and "identical to the backup" in banner and "kept as" in banner
    assert run.record["restore"]["identical"] is True
    last_step = run.record["steps"][-1]
    assert (last_step["label"], last_step["status"]) == (fifth.name, "failed")
    failed = run.extras("005_andon_escalation.sql")
    line = len(fifth.read_text().splitlines())
    assert f"005_andon_escalation.sql:{line}" in failed and "division by zero" in failed


def test_real_preflight_no_go_report(legacy_db, run_suite, tmp_path):
    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    (migrations / "011_sensor_log.sql").write_text(
        "CREATE TABLE IF NOT EXISTS factory_telemetry.sensor_log (\n"
        "    id bigserial PRIMARY KEY,\n    ts timestamptz NOT NULL,\n    value double precision\n);\n"
        "SELECT create_hypertable('factory_telemetry.sensor_log', 'ts');\n"
    )
    run = real_run(
        run_suite,
        tmp_path,
        "suites/preflight",
        "--dsn",
        legacy_db.conninfo,
        "--migrations",
        str(migrations),
        "--no-rehearse",
    )
    assert run.result.returncode == 1, run.output[-3000:]
    check_common(run, secrets=(password_of(legacy_db.conninfo),))
    verdict, _, banner = run.banner()
    assert verdict == "NO-GO"
    blocking = [f for f in run.record["findings"] if f["severity"] == "blocking"]
    assert any(f["code"] == "TS001" for f in blocking)
    for f in blocking:
        assert f"<b>{f['code']}</b> {html.escape(f['location'])}" in banner, f
    assert str(migrations / "011_sensor_log.sql") in banner


# -- in a browser ---------------------------------------------------------------------------------


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (`make browser`)")
def test_report_renders_in_a_browser(run_example, tmp_path):
    run = run_example("preflight", NO_GO_CHECKS)
    png = tmp_path / "report.png"
    browser = chromium(
        "--window-size=1280,1600",
        "--hide-scrollbars",
        f"--screenshot={png}",
        "--dump-dom",
        (run.reports / "latest.html").as_uri(),
        tmp_path=tmp_path,
    )
    assert browser.returncode == 0, browser.stderr[-2000:]
    dom = browser.stdout
    assert 'id="tsm-banner" data-verdict="NO-GO"' in dom
    # Rendered by pytest-html's script: the environment table and the rows of the results table.
    assert re.search(r"<td>Client tools</td>\s*<td>(<div>)?pg_dump", dom), "the environment table was not rendered"
    assert "test_room_for_the_backup" in re.search(r'<table id="results-table".*</table>', dom, re.DOTALL).group(0)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


# -- pieces of the reports --------------------------------------------------------------------------


def test_redaction_keeps_json_valid_and_drops_the_password():
    record = {
        "message": 'cannot connect to "postgresql://ms5:s3cr&t\\"x@db/ms5" password=s3cr&t"x',
        "nested": ['host=db password=s3cr&t"x dbname=ms5'],
    }
    text = json.dumps(redact_record(record, ('s3cr&t"x',)))
    assert "s3cr" not in text and json.loads(text)["nested"][0].startswith("host=db password=***")
    page = html.escape(json.dumps({"log": 'PGPASSWORD s3cr&t"x'}))
    assert "s3cr" not in scrub_secrets(page, ('s3cr&t"x',))


def test_duration_chart_is_svg_with_one_bar_per_step():
    svg = bar_chart_svg(
        "Duration of each step",
        [Bar("001_telemetry.sql", 0.02, "#2e8b57", "20 ms"), Bar("convert <metric_hist>", 3.5, "#c62828", "3.5 s")],
    )
    root = ET.fromstring(svg)
    rects = list(root.iter("{http://www.w3.org/2000/svg}rect"))
    assert len(rects) == 2 and float(rects[1].get("width")) > float(rects[0].get("width"))
    assert rects[0].get("x") == rects[1].get("x"), "a linear chart's bars start at zero"
    assert "convert &lt;metric_hist&gt;" in svg


def test_the_terminal_and_the_banner_word_the_verdict_alike():
    summary = RunSummary(
        target="ms5@db:5432/factory_telemetry",
        kind="preflight",
        findings=[
            Finding(
                "TS001",
                "blocking",
                "PRIMARY KEY (id) lacks ts",
                "migrations/011_sensor_log.sql",
                2,
                "factory_telemetry.sensor_log",
                "Add ts to the key.",
            ),
            Finding("PF030", "blocking", "created_at holds 3 NULL values", table="factory_telemetry.production_kpis"),
            Finding("TS101", "advisory", "CREATE TABLE without IF NOT EXISTS", "migrations/011_sensor_log.sql", 1),
        ],
        preflight_failures=["suites/preflight/test_x.py::test_lint", "suites/preflight/test_x.py::test_room"],
        failed_tests=["suites/preflight/test_x.py::test_lint", "suites/preflight/test_x.py::test_room"],
        judged_checks={"suites/preflight/test_x.py::test_lint"},
    )
    lines = terminal_lines(summary)
    banner = banner_html(summary)
    assert lines[0] == "NO-GO: ms5@db:5432/factory_telemetry" and 'data-verdict="NO-GO"' in banner
    assert headline(summary) == "Do not migrate yet: 2 blocking findings and 1 failed check. Nothing was changed."
    # Each blocking finding: the same place and the same words (the table named when the message does not).
    assert (
        "  BLOCKING TS001 migrations/011_sensor_log.sql:2: PRIMARY KEY (id) lacks ts (table "
        "factory_telemetry.sensor_log)" in lines
    )
    assert (
        '<b>TS001</b> migrations/011_sensor_log.sql:2: <span class="tsm-msg">PRIMARY KEY (id) lacks ts '
        "(table factory_telemetry.sensor_log)</span>"
    ) in banner
    assert (
        "  BLOCKING PF030 factory_telemetry.production_kpis: created_at holds 3 NULL values (table "
        "factory_telemetry.production_kpis)" in lines
    )
    assert "<b>PF030</b> factory_telemetry.production_kpis: " in banner
    # The failed check no finding explains, in both; the judged one and the advisory in neither.
    assert [line for line in lines if "FAILED" in line] == ["  FAILED suites/preflight/test_x.py::test_room"]
    assert "test_room" in banner and "test_lint" not in banner and "TS101" not in banner
    assert lines[-1] == "  1 advisory (see the report)"


def test_readme_explains_every_field_of_the_record():
    # The finding codes' table is checked against the registry in tests/test_finding_codes.py.
    readme = (PROJECT / "README.md").read_text()
    for field in RUN_RECORD_SCHEMA["required"]:
        assert f"`{field}`" in readme, f"the JSON record's field {field} is not described in README.md"


def test_after_a_restore_the_verdict_line_says_what_the_database_now_is():
    """Not 'N steps applied' about steps the restore took away: the backup it is back to, and what went with it."""
    summary = RunSummary(
        target="ms5@db:5432/factory_telemetry",
        kind="execute",
        steps=[
            {"step": "001", "label": "001_telemetry.sql", "status": "applied", "seconds": 1.0, "details": {}},
            {"step": "002", "label": "002_plc.sql", "status": "already applied", "seconds": 0.0, "details": {}},
            {"step": "005", "label": "005_andon.sql", "status": "failed", "seconds": 0.2, "details": {}},
        ],
        backup={
            "path": "backups/factory_telemetry-20261203T171500Z",
            "manifest_sha256": "0" * 64,
            "taken_at": "2026-12-03T17:15:00+00:00",
        },
        execute_failed="005_andon.sql",
        restore="RESTORED: factory_telemetry is identical to the backup",
        restored_identical=True,
        restore_complete=True,
        failed_tests=["suites/execute/test_steps.py::test_step[005]"],
    )
    lines = terminal_lines(summary)
    assert lines[0] == (
        "RESTORED: ms5@db:5432/factory_telemetry: back to the backup taken 2026-12-03T17:15:00+00:00; "
        "rolled back with it: 001_telemetry.sql"
    ), lines
    assert not any("steps applied" in line for line in lines)
    summary.restore_complete = None  # not restored (--no-restore): the steps do stand
    assert terminal_lines(summary)[0].endswith("1 steps applied, 1 already applied")
