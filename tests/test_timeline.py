"""The run's resource timeline (tsmigrate/timeline.py) and the window's estimate (tsmigrate/preflight/window.py),
against real servers."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from testbed.browser import CHROMIUM, chromium
from testbed.legacy import PROJECT

from tsmigrate.janitor import ScratchDatabase, drop_database
from tsmigrate.legacy import LegacyScale, build_legacy_database
from tsmigrate.plan import load_plan
from tsmigrate.preflight.files import pending_files
from tsmigrate.preflight.window import (
    BACKUP_FIXED_SECONDS,
    ONLINE_COST_FACTOR,
    STATED_FACTOR,
    SWAP_SECONDS,
    estimate_window,
)
from tsmigrate.rehearsal import RehearsalResult, rehearse
from tsmigrate.report.record import validate_run_record
from tsmigrate.run import MigrationRun
from tsmigrate.target import Target
from tsmigrate.timeline import APPLICATION_NAME, Sampler


def test_sampler_records_what_the_server_goes_through(legacy_db: Target):
    """WAL and size from real writes, a session waiting on a lock and who holds it, the room on this machine."""
    with legacy_db.connect() as holder, legacy_db.connect() as waiter:
        holder.execute("CREATE TABLE timeline_probe (id int, pad text)")
        with Sampler(legacy_db, interval=0.1) as sampler:
            holder.execute("INSERT INTO timeline_probe SELECT g, repeat('x', 200) FROM generate_series(1, 50000) g")
            with holder.transaction():
                holder.execute("LOCK TABLE timeline_probe IN ACCESS EXCLUSIVE MODE")
                blocked = threading.Thread(target=lambda: waiter.execute("SELECT count(*) FROM timeline_probe"))
                blocked.start()
                deadline = time.monotonic() + 10
                while not any(s.values.get("lock_waits") for s in sampler.samples) and time.monotonic() < deadline:
                    time.sleep(0.05)
            blocked.join(timeout=10)
        holder_pid = holder.info.backend_pid
        waiter_pid = waiter.info.backend_pid
    samples = [s for s in sampler.samples if s.error is None]
    assert len(samples) >= 3, [s.error for s in sampler.samples]
    assert all(s.values["database_bytes"] > 0 for s in samples)
    assert samples[0].values["wal_bytes"] == 0
    assert samples[-1].values["wal_bytes"] > 10 * 2**20, "50000 rows of 200 bytes write more than 10 MiB of WAL"
    waits = [w for s in samples for w in s.values["waiting"]]
    assert {"pid": waiter_pid, "blocked_by": [holder_pid]}.items() <= next(
        w for w in waits if w["pid"] == waiter_pid
    ).items()
    assert samples[-1].values["free_bytes"] > 0, "the test cluster's data directory is on this machine"
    assert 0 <= samples[-1].values["memory_percent"] <= 100
    assert samples[0].values["sessions"].get("idle", 0) + samples[0].values["sessions"].get("active", 0) >= 1
    record = sampler.to_dict()
    assert record["database"] == legacy_db.dbname and len(record["samples"]) == len(sampler.samples)


def test_sampler_never_holds_the_target_open(legacy_db: Target):
    """It samples from the maintenance database: a restore may rename and drop the target meanwhile."""
    with Sampler(legacy_db, interval=0.1) as sampler:
        time.sleep(0.3)
        with legacy_db.with_dbname("postgres").connect() as admin:
            on_target = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND datname = %s",
                (APPLICATION_NAME, legacy_db.dbname),
            ).fetchone()[0]
            anywhere = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (APPLICATION_NAME,)
            ).fetchone()[0]
    assert (on_target, anywhere) == (0, 1)
    assert sampler.samples and all(s.error is None for s in sampler.samples)


def test_a_failed_sample_is_recorded_not_raised(legacy_db: Target):
    gone = legacy_db.with_dbname("no_such_database_here")
    with Sampler(gone, interval=0.05) as sampler:
        time.sleep(0.2)
    assert sampler.samples and all(s.error for s in sampler.samples)
    assert "no_such_database_here" in sampler.samples[0].error


def test_sampler_keeps_a_bounded_series(legacy_db: Target):
    with Sampler(legacy_db, interval=0.01, max_samples=10) as sampler:
        time.sleep(0.6)
    assert len(sampler.samples) <= 11 and sampler.interval > 0.01
    times = [s.at for s in sampler.samples]
    assert times == sorted(times)


def test_the_live_log_warns_when_free_disk_falls_under_the_need(legacy_db: Target, caplog):
    """Under the room the remaining steps need: one warning (not one per sample)."""
    with Sampler(legacy_db, interval=0.05, needed_bytes=lambda: 2**62) as sampler:
        time.sleep(0.3)
    disk = [w for w in sampler.warnings if "free room" in w]
    assert len(disk) == 1 and "remaining steps need" in disk[0]
    assert any("free room" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


def test_sample_seconds_and_lag_threshold_come_from_the_plan(tmp_path):
    from tsmigrate.plan import parse_plan

    plan = parse_plan({"plan": {"sample_seconds": 0.5, "replica_lag_warn_mb": 64}}, tmp_path / "plan.toml")
    assert (plan.sample_seconds, plan.replica_lag_warn_mb) == (0.5, 64.0)
    assert parse_plan({}, tmp_path / "plan.toml").sample_seconds == 2.0


# -- a real run: the series, the bands, the estimate beside what happened ------------------------------------


def _reports(reports: Path) -> tuple[dict, str]:
    record_path = next(p for p in reports.glob("*.json") if p.name != "latest.json")
    return json.loads(record_path.read_text()), record_path.with_suffix(".html").read_text()


@pytest.fixture(scope="module")
def full_run(legacy_template, local_server, tmp_path_factory):
    """One pre-flight (GO) and then one full run of a tiny legacy database, as a user runs them."""
    name = "ms5_timeline_full_run"
    with ScratchDatabase(local_server.conninfo(), name, template=legacy_template):
        target = Target(local_server.conninfo(name), f"test database {name}")
        results = {}
        for kind, suites in (("preflight", "suites/preflight"), ("full", "suites")):
            base = tmp_path_factory.mktemp(kind)
            command = [
                sys.executable,
                "-m",
                "pytest",
                suites,
                "--dsn",
                target.conninfo,
                f"--reports={base / 'reports'}",
                f"--backups={base / 'backups'}",
                "--write-sample=0.3",
                "-p",
                "no:cacheprovider",
            ]
            result = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=600)
            record, page = _reports(base / "reports")
            results[kind] = (result, record, page, base / "reports")
        yield results


def test_the_go_banner_and_record_say_the_estimated_window(full_run):
    result, record, page, _ = full_run["preflight"]
    assert record["verdict"] == "GO", result.stdout[-3000:]
    estimate = record["estimate"]
    assert estimate["execute_seconds"] > 0 and estimate["application_out_seconds"] > 0
    assert estimate["fenced"] is True  # the project's plan fences the application; no table converts online
    assert estimate["application_out_seconds"] == estimate["execute_seconds"]
    assert {s["label"] for s in estimate["steps"]} >= {"convert factory_telemetry.metric_hist"}
    assert estimate["disk_bytes"] > 0 and estimate["wal_bytes"] > 0
    banner = re.search(r'<section class="tsm-banner.*?</section>', page, re.DOTALL).group(0)
    assert 'id="tsm-estimate"' in banner and "Estimated window: the execute phase about" in banner
    assert "Estimated window" in result.stdout[result.stdout.rindex("GO:") :]
    assert validate_run_record(record) == []


def test_a_full_run_records_real_samples_with_the_steps_as_bands(full_run):
    result, record, page, _ = full_run["full"]
    assert record["verdict"] == "SUCCESS", result.stdout[-3000:]
    timeline = record["timeline"]
    samples = [s for s in timeline["samples"] if "error" not in s]
    assert len(samples) >= 3, timeline["samples"][:3]
    assert all(s["database_bytes"] > 0 for s in samples)
    assert samples[-1]["wal_bytes"] > samples[0]["wal_bytes"] == 0, "the conversions write WAL"
    assert max(s["database_bytes"] for s in samples) > samples[0]["database_bytes"]
    assert all("free_bytes" in s and "cpu_percent" in s for s in samples), "the test cluster is on this machine"
    steps = {s["label"]: (s["started_at"], s["finished_at"]) for s in record["steps"]}
    bands = {b["label"]: (b["started_at"], b["finished_at"]) for b in timeline["bands"] if b["kind"] == "step"}
    assert bands == steps and len(steps) >= 4
    phases = [b["label"] for b in timeline["bands"] if b["kind"] == "phase"]
    assert phases[0] == "fence and backup" and phases[-1] == "post-flight"
    first, last = samples[0]["at"], samples[-1]["at"]
    assert all(first <= b[0] <= b[1] <= last for b in bands.values()), "the samples span the steps"
    assert validate_run_record(record) == []
    chart = re.search(r'<svg[^>]*class="tsm-chart tsm-timeline".*?</svg>', page, re.DOTALL).group(0)
    assert chart.count('class="tsm-band"') == len(timeline["bands"])
    assert 'data-series="WAL"' in chart and 'data-series="size"' in chart


def test_a_full_run_puts_the_estimate_beside_what_happened(full_run):
    _, record, page, _ = full_run["full"]
    estimate = record["estimate"]
    rows = {row["key"]: row for row in estimate["comparison"]}
    execute = rows["execute_seconds"]
    assert execute["measured"] > 0 and execute["ratio"] == pytest.approx(
        execute["measured"] / execute["estimated"], 0.01
    )
    factor = estimate["stated_factor"]
    print(
        f"execute phase: estimated {execute['estimated']:.1f} s, measured {execute['measured']:.1f} s, "
        f"measured/estimated {execute['ratio']:.2f} (stated factor {factor:g})"
    )
    assert 1 / factor <= execute["ratio"] <= factor, execute
    assert 'id="tsm-window"' in page and "Measured / estimated" in page


# -- the estimate scaled from a sample, at a modest scale ------------------------------------------------------

# 60 metrics every 15 s for a day: 345,600 metric_hist rows, which the rehearsal below samples (20,000 rows).
MODEST = LegacyScale(days=1, metric_interval_s=15)


@pytest.fixture(scope="module")
def modest_legacy(local_server):
    name = "ms5_timeline_modest"
    build_legacy_database(local_server.conninfo(), MODEST, dbname=name, replace_existing=True)
    yield Target(local_server.conninfo(name), f"test database {name}")
    with psycopg.connect(local_server.conninfo(), autocommit=True) as admin:
        drop_database(admin, name)


def test_the_estimate_scales_a_sampled_rehearsal_to_the_full_tables(modest_legacy: Target, tmp_path):
    """A rehearsal on a copy holding 20,000 of metric_hist's rows, scaled by rows, then the migration itself: the
    execute phase it measures is within the stated factor of the estimate."""
    migrations = PROJECT / "migrations"
    plan = load_plan(migrations)
    with modest_legacy.connect() as conn:
        conn.execute("ANALYZE")
        pending = pending_files(conn, migrations)
    result = rehearse(modest_legacy, pending, plan, full_copy_bytes=4 << 20, sample_rows=20_000)
    assert result.ok, result.error
    assert "factory_telemetry.metric_hist" in result.sampled
    with modest_legacy.connect() as conn:
        estimate = estimate_window(conn, plan, result, pending)
    step = next(s for s in estimate["steps"] if s["label"] == "convert factory_telemetry.metric_hist")
    assert step["rows_ratio"] > 10 and step["seconds"] > step["rehearsed_seconds"]
    started = time.monotonic()
    with MigrationRun(modest_legacy, migrations, plan, tmp_path / "backups") as run:
        for s in run.steps:
            run.apply(s)
    measured = time.monotonic() - started
    ratio = measured / estimate["execute_seconds"]
    print(
        f"execute phase: estimated {estimate['execute_seconds']:.1f} s, measured {measured:.1f} s, "
        f"measured/estimated {ratio:.2f} (stated factor {STATED_FACTOR:g})"
    )
    assert 1 / STATED_FACTOR <= ratio <= STATED_FACTOR


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (`make browser`)")
def test_a_full_runs_report_shows_the_timeline_and_the_window_in_a_browser(full_run, tmp_path):
    _, record, _, reports = full_run["full"]
    png = tmp_path / "report.png"
    browser = chromium(
        "--window-size=1280,4000",
        "--hide-scrollbars",
        f"--screenshot={png}",
        "--dump-dom",
        (reports / "latest.html").as_uri(),
        tmp_path=tmp_path,
    )
    assert browser.returncode == 0, browser.stderr[-2000:]
    dom = browser.stdout
    assert 'data-verdict="SUCCESS"' in dom
    timeline = re.search(r'<section class="tsm-section" id="tsm-timeline">.*?</section>', dom, re.DOTALL).group(0)
    assert timeline.count('class="tsm-band"') == len(record["timeline"]["bands"])
    points = re.search(r'data-series="WAL" points="([^"]+)"', timeline).group(1).split()
    assert len(points) >= 3 and len({p.split(",")[1] for p in points}) > 1, "the WAL line rises: not a flat chart"
    window = re.search(r'<section class="tsm-section" id="tsm-window">.*?</section>', dom, re.DOTALL).group(0)
    assert "Measured / estimated" in window and "execute phase" in window
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000


def test_the_live_log_warns_when_a_replica_lags_past_the_plans_threshold(cluster_without_preload, standby):
    """A real standby whose replay is paused: its lag grows with what the primary writes; one warning."""
    with psycopg.connect(standby.conninfo(), autocommit=True) as replica:
        replica.execute("SELECT pg_wal_replay_pause()")
        primary = Target(cluster_without_preload.info.conninfo("postgres"), "the primary")
        with Sampler(primary, interval=0.1, replica_lag_warn_bytes=2**20) as sampler, primary.connect() as conn:
            conn.execute("CREATE TABLE lag_probe AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 30000) g")
            deadline = time.monotonic() + 15
            while not sampler.warnings and time.monotonic() < deadline:
                time.sleep(0.1)
        replica.execute("SELECT pg_wal_replay_resume()")
    lags = [r["lag_bytes"] for s in sampler.samples for r in s.values.get("replicas", [])]
    assert lags and max(lags) > 2**20, lags
    assert len(sampler.warnings) == 1 and "replica_lag_warn_mb is 1 MiB" in sampler.warnings[0]


def test_the_timeline_goes_on_through_a_restore(legacy_db: Target, run_suite, tmp_path):
    """A step fails and the run restores: the restore is a band, and the sampler (never on the target) does not
    stand in its way."""
    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    (migrations / "002_plc_equipment_users.sql").write_text("SELECT 1 / 0;\n")
    result = run_suite("suites/execute", "--dsn", legacy_db.conninfo, "--migrations", str(migrations), "--no-rehearse")
    record, _ = _reports(tmp_path / "reports")
    assert record["verdict"] == "RESTORED", result.stdout[-3000:]
    bands = {b["label"]: b for b in record["timeline"]["bands"]}
    assert bands["002_plc_equipment_users.sql"]["status"] == "failed"
    restore = bands["restore"]
    assert restore["finished_at"] > restore["started_at"] >= bands["002_plc_equipment_users.sql"]["finished_at"]
    after = [s for s in record["timeline"]["samples"] if s["at"] >= restore["finished_at"] and "error" not in s]
    assert after and after[-1]["database_bytes"] > 0, "sampled again once the restored database took the name"


def test_an_online_table_keeps_the_application_out_only_for_its_swap(legacy_db: Target):
    """No fence when a table converts online: the time out is the files, the offline conversions and each swap."""
    plan = load_plan(PROJECT / "migrations")
    online = dataclasses.replace(plan.hypertable("metric_hist"), online=True)
    plan = dataclasses.replace(
        plan, hypertables=tuple(online if h.table == "metric_hist" else h for h in plan.hypertables)
    )
    rehearsed = RehearsalResult(
        "scratch",
        steps=[("convert factory_telemetry.metric_hist", 1.0), ("convert factory_telemetry.oee_calculations", 0.5)],
        copy_seconds=2.0,
    )
    with legacy_db.connect() as conn:
        estimate = estimate_window(conn, plan, rehearsed)
    steps = {s["label"]: s for s in estimate["steps"]}
    assert steps["convert factory_telemetry.metric_hist"]["online"] is True
    assert steps["convert factory_telemetry.metric_hist"]["seconds"] == pytest.approx(ONLINE_COST_FACTOR)
    assert estimate["fenced"] is False
    assert estimate["application_out_seconds"] == pytest.approx(SWAP_SECONDS + 0.5)
    assert estimate["execute_seconds"] == pytest.approx(BACKUP_FIXED_SECONDS + 2.0 + ONLINE_COST_FACTOR + 0.5)
