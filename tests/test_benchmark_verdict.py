"""What gates the policy jobs is what protects the data: a benchmark below its target fails the run's exit status
(6, verdict BELOW TARGET: `SUCCESS, 1 benchmark below target`) but does not keep compression and retention paused;
a failed check of the data (integrity) still does. Full runs on real legacy MS5.0 databases, on each edition: the
apache edition has no policies (the conversion records them skipped in the ledger), the community edition's jobs
are read from timescaledb_information.jobs. Then the verdict's words, from a summary."""

from __future__ import annotations

import json
import re
from pathlib import Path

from testbed.legacy import migrations_with_benchmarks

from tsmigrate.convert.policies import paused_jobs
from tsmigrate.report.words import headline, next_steps, terminal_lines
from tsmigrate.summary import BELOW_TARGET_EXIT, EXIT_MEANINGS, GOOD_VERDICTS, VERDICTS, RunSummary
from tsmigrate.target import Target

PROJECT = Path(__file__).resolve().parents[1]
SCHEMA = "factory_telemetry"
INGEST_TESTS = {
    "suites/postflight/test_benchmarks.py::test_ingest_through_copy",
    "suites/postflight/test_benchmarks.py::test_ingest_through_batched_inserts",
}
STORAGE_TEST = "suites/postflight/test_benchmarks.py::test_storage_per_month_projected"


def record(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "reports" / "latest.json").read_text())


def last_line(stdout: str) -> str:
    """The verdict line: the last '=' banner of the run (`= SUCCESS, 2 benchmarks below target: ... =`)."""
    banners = re.findall(r"^=+ (.+?) =+$", stdout, re.MULTILINE)
    assert banners, stdout[-3000:]
    return banners[-1]


def jobs(target: Target) -> list[tuple[int, str, bool]]:
    """(job_id, proc_name, scheduled) of the schema's policy jobs."""
    with target.connect() as conn:
        return conn.execute(
            """SELECT job_id, proc_name, scheduled FROM timescaledb_information.jobs
                                WHERE hypertable_schema = %s ORDER BY job_id""",
            (SCHEMA,),
        ).fetchall()


def ledger_details(target: Target) -> dict[str, dict]:
    with target.connect() as conn:
        return dict(
            conn.execute(
                "SELECT step, details FROM tsmigrate.ledger WHERE step LIKE 'convert:%%' AND outcome = 'applied'"
            ).fetchall()
        )


def assert_below_target(result, rec: dict, missed: set[str]) -> None:
    shown = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == BELOW_TARGET_EXIT, shown
    assert rec["verdict"] == "BELOW TARGET" and rec["exit_code"] == BELOW_TARGET_EXIT, shown
    assert set(rec["failed_tests"]) == missed, (rec["failed_tests"], shown)
    n = len(missed)
    assert last_line(result.stdout).startswith(f"SUCCESS, {n} benchmark{'s' if n > 1 else ''} below target: "), shown
    assert re.search(r"^  BELOW TARGET .+ limit ", result.stdout, re.MULTILINE), shown
    # What to do next follows from it: the application may start, and each miss says what to change.
    assert rec["next_steps"][0].startswith("Start the application"), rec["next_steps"]
    assert any("missed the plan's target" in step and "plan.toml" in step for step in rec["next_steps"])


# -- apache edition: no policies (skipped, in the ledger); the verdict and exit status --------------------------


def test_an_ingest_target_missed_ends_below_target_with_exit_6_on_the_apache_edition(
    apache_legacy_db, run_suite, tmp_path
):
    migrations = migrations_with_benchmarks(tmp_path, min_insert_rows_per_second="1e12")
    result = run_suite(
        "suites/execute",
        "suites/postflight",
        "--dsn",
        apache_legacy_db.conninfo,
        "--migrations",
        str(migrations),
        "--no-rehearse",
    )
    rec = record(tmp_path)
    assert_below_target(result, rec, INGEST_TESTS)
    for step, details in ledger_details(apache_legacy_db).items():
        assert details["compression"].startswith("skipped: ") and details["retention"].startswith("skipped: "), step
    assert "no policy job waits for the post-flight" in result.stdout

    # The post-flight alone says the same of itself: PASSED, with the misses, exit 6.
    alone = run_suite("suites/postflight", "--dsn", apache_legacy_db.conninfo, "--migrations", str(migrations))
    assert alone.returncode == BELOW_TARGET_EXIT, alone.stdout[-3000:]
    assert last_line(alone.stdout).startswith("PASSED, 2 benchmarks below target: "), alone.stdout[-3000:]


# -- community edition: the policy jobs ---------------------------------------------------------------------


def test_a_storage_target_missed_still_schedules_the_policies_and_was_predicted(
    legacy_db, community_server, run_suite, tmp_path
):
    migrations = migrations_with_benchmarks(tmp_path, max_storage_gb_per_month="0.000001")
    result = run_suite(
        "suites/execute",
        "suites/postflight",
        "--dsn",
        legacy_db.conninfo,
        "--migrations",
        str(migrations),
        "--no-rehearse",
    )
    rec = record(tmp_path)
    assert_below_target(result, rec, {STORAGE_TEST})
    policy_jobs = jobs(legacy_db)
    assert {proc for _, proc, _ in policy_jobs} == {"policy_compression", "policy_retention"}
    assert all(scheduled for _, _, scheduled in policy_jobs), policy_jobs
    with legacy_db.connect() as conn:
        assert paused_jobs(conn) == []
    assert re.search(r"^  scheduled \d+ policy jobs the conversion had paused", result.stdout, re.MULTILINE), (
        result.stdout[-3000:]
    )
    assert any("policy_retention" in line for line in rec["policy_schedule"]), rec["policy_schedule"]
    # The pre-flight said so before the window.
    assert [f["severity"] for f in rec["findings"] if f["code"] == "PF075"] == ["advisory"], rec["findings"]


def test_a_failed_integrity_check_keeps_retention_paused_whatever_the_benchmarks(
    legacy_db, community_server, run_suite, tmp_path
):
    migrations = migrations_with_benchmarks(tmp_path, max_storage_gb_per_month="0.000001")
    execute = run_suite("suites/execute", "--dsn", legacy_db.conninfo, "--migrations", str(migrations), "--no-rehearse")
    assert execute.returncode == 0, execute.stdout[-3000:]
    paused = jobs(legacy_db)
    assert paused and not any(scheduled for _, _, scheduled in paused), paused
    with legacy_db.connect(autocommit=True) as conn:  # a row lost after the backup: the integrity check's to find
        conn.execute(
            "DELETE FROM factory_telemetry.energy_consumption WHERE id = (SELECT min(id) FROM "
            "factory_telemetry.energy_consumption)"
        )
    postflight = run_suite("suites/postflight", "--dsn", legacy_db.conninfo, "--migrations", str(migrations))
    rec = record(tmp_path)
    shown = postflight.stdout[-4000:]
    assert postflight.returncode == 1 and rec["verdict"] == "FAILED" and rec["exit_code"] == 1, shown
    assert any("test_integrity.py" in t for t in rec["failed_tests"]) and STORAGE_TEST in rec["failed_tests"], shown
    assert last_line(postflight.stdout).startswith("FAILED: "), shown
    after = jobs(legacy_db)
    retention = [job for job in after if job[1] == "policy_retention"]
    assert retention and not any(scheduled for _, _, scheduled in retention), after
    assert not any(scheduled for _, _, scheduled in after), "a failed check of the data keeps every policy paused"
    with legacy_db.connect() as conn:
        assert sorted(paused_jobs(conn)) == sorted(job_id for job_id, _, _ in paused)


# -- the verdict's words ----------------------------------------------------------------------------------


def _summary(**fields) -> RunSummary:
    summary = RunSummary(
        target="ms5@db:5432/factory_telemetry",
        kind="full",
        steps=[{"label": "convert metric_hist", "status": "applied"}],
        **fields,
    )
    summary.failed_tests.append(STORAGE_TEST)
    summary.miss_target(
        STORAGE_TEST,
        "storage per month, projected",
        "storage per month, projected: 3.3 GB/month, limit under 1.0 GB/month (ratio 3.3, 3.3x worse "
        "than the limit): FAIL; with 90% compression",
        "in [hypertables.metric_hist] compress_after = "
        '"2 days" (now 7 days) of plan.toml: the projection comes to 0.9 GB/month',
    )
    summary.exit_code = BELOW_TARGET_EXIT
    return summary


def test_a_benchmark_below_target_is_its_own_verdict_with_its_own_exit_status():
    assert "BELOW TARGET" in VERDICTS and "BELOW TARGET" not in GOOD_VERDICTS
    assert BELOW_TARGET_EXIT not in range(6) and "benchmark missed its target" in EXIT_MEANINGS[BELOW_TARGET_EXIT]
    summary = _summary()
    assert summary.verdict() == "BELOW TARGET" and summary.stop_reason is None and summary.data_failures == []
    lines = terminal_lines(summary)
    assert (
        lines[0]
        == "SUCCESS, 1 benchmark below target: ms5@db:5432/factory_telemetry: 1 steps applied, 0 already applied"
    )
    assert (
        "  BELOW TARGET storage per month, projected: 3.3 GB/month, limit under 1.0 GB/month (ratio 3.3, 3.3x worse "
        "than the limit): FAIL; with 90% compression" in lines
    )
    assert not any(line.startswith("  FAILED") for line in lines)
    assert "1 benchmark below the plan's target: storage per month, projected." in headline(summary)
    steps = next_steps(summary)
    assert steps[0].startswith("Start the application")
    assert any('compress_after = "2 days"' in step for step in steps)

    # A failed check of the data as well: FAILED, whatever the benchmarks.
    summary.failed_tests.append("suites/postflight/test_integrity.py::test_row_counts_and_content_match[metric_hist]")
    summary.exit_code = 1
    assert summary.verdict() == "FAILED" and terminal_lines(summary)[0].startswith("FAILED: ")
    assert (
        "  FAILED suites/postflight/test_integrity.py::test_row_counts_and_content_match[metric_hist]"
        in terminal_lines(summary)
    )

    # A post-flight on its own: PASSED, with the miss.
    alone = _summary()
    alone.kind, alone.steps = "postflight", []
    assert alone.verdict() == "BELOW TARGET"
    assert (
        terminal_lines(alone)[0]
        == "PASSED, 1 benchmark below target: ms5@db:5432/factory_telemetry: post-flight checks"
    )
