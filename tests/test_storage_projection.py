"""The pre-flight's storage projection (tsmigrate/preflight/storage.py), on real legacy MS5.0 databases: a plan
whose storage target the live tables will not meet gets PF075 with the figures, the table and what to change in
plan.toml (and that change does meet it); a generous target gets nothing; and the projection made before the window
is within a stated factor of what the post-flight's storage benchmark then measures on the same database."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from testbed.legacy import clone_for, frozen_template, migrations_with_benchmarks

from tsmigrate.bench.storage import GB, Growth, month_bytes, project
from tsmigrate.findings import ADVISORY
from tsmigrate.janitor import drop_database
from tsmigrate.legacy import SCALES, build_legacy_database
from tsmigrate.plan import load_plan, parse_interval
from tsmigrate.preflight import storage

PROJECT = Path(__file__).resolve().parents[1]
# The post-flight measures the hypertable as stored: its chunks, each with its own indexes, and the index the
# conversion adds (the key that gains the time column; the keep_unique id is found through it). The
# pre-flight sees the plain table and adds what the conversion adds to its keys (rebuilt_key_bytes), not the
# chunks' own overhead. Measured here at the scale below, with the same compression on both sides: the pre-flight
# projects 0.87x what the post-flight then finds, on both editions (community: 78% measured; the pre-flight's own
# figure, with the plan's 70% assumed, came to 0.99x). Stated bound: 1.25x either way.
FACTOR = 1.25


def edit_plan_entry(plan_file: Path, table: str, **values: str) -> None:
    """Set keys of one [hypertables.<table>] entry of a plan file (added when missing)."""
    text = plan_file.read_text()
    start = text.index(f"[hypertables.{table}]")
    following = text.find("\n[", start + 1)
    end = len(text) if following < 0 else following
    block = text[start:end].rstrip("\n")
    for key, value in values.items():
        block, n = re.subn(rf"(?m)^{key}\s*=.*$", f'{key} = "{value}"', block)
        if not n:
            block += f'\n{key} = "{value}"'
    plan_file.write_text(text[:start] + block + "\n" + text[end:])


def projection_of(target, migrations: Path):
    plan = load_plan(migrations)
    with target.connect() as conn:
        projection = storage.project_live(conn, plan)
    return plan, projection


@pytest.mark.finding("PF075", ADVISORY)
def test_pf075_a_storage_target_the_live_tables_will_not_meet(marked_finding, legacy_db, tmp_path):
    code, severity = marked_finding
    _, projected = projection_of(legacy_db, PROJECT / "migrations")
    target_gb = projected.bytes_per_month / GB / 3  # a third of what the live tables will take
    migrations = migrations_with_benchmarks(tmp_path, max_storage_gb_per_month=f"{target_gb:.9f}")
    plan, projection = projection_of(legacy_db, migrations)
    found = storage.storage_target(projection, plan)

    biggest = max(projection.tables, key=lambda t: t.bytes_per_month)
    table = biggest.hypertable.table
    assert [(f.code, f.severity, f.table) for f in found] == [(code, severity, f"factory_telemetry.{table}")]
    f = found[0]
    # It points at the table's setting in plan.toml ...
    line = (migrations / "plan.toml").read_text().splitlines()[f.line - 1]
    assert f.path == str(migrations / "plan.toml") and re.match(r"(compress_after|drop_after) = ", line), line
    section = max(
        i
        for i, text in enumerate((migrations / "plan.toml").read_text().splitlines()[: f.line])
        if text.startswith("[")
    )
    assert (migrations / "plan.toml").read_text().splitlines()[section] == f"[hypertables.{table}]"
    # ... with the figures: the total against the target, and each table's rows per day and bytes per row.
    assert f"projected at {projection.bytes_per_month / GB:.2f} GB/month" in f.message
    assert f"max_storage_gb_per_month = {target_gb:g}" in f.message
    for t in projection.tables:
        assert t.growth.table in f.message
    assert re.search(r"[\d,]+ rows/day over the last [\d.]+ days x [\d,]+ bytes/row", f.message), f.message
    # The edition says which compression the projection assumes: none on apache, the plan's 70 % otherwise.
    assert ("uncompressed" in f.message) != ("with 70% compression" in f.message), f.message

    # What it says to change meets the target when the plan is changed so.
    advice = f.message.split("To meet it:")[1]
    edits = re.findall(r"in \[hypertables\.(\w+)\] ((?:\w+ = \"[^\"]+\" \(now [^)]*\)(?:, )?)+)", advice)
    assert edits, f.message
    for table, settings in edits:
        edit_plan_entry(migrations / "plan.toml", table, **dict(re.findall(r'(\w+) = "([^"]+)"', settings)))
    plan, projection = projection_of(legacy_db, migrations)
    assert storage.storage_target(projection, plan) == [], (edits, projection.bytes_per_month / GB, target_gb)


def test_a_generous_storage_target_gives_no_finding(legacy_db, tmp_path):
    _, projected = projection_of(legacy_db, PROJECT / "migrations")
    migrations = migrations_with_benchmarks(
        tmp_path, max_storage_gb_per_month=f"{projected.bytes_per_month / GB * 3:.9f}"
    )
    plan, projection = projection_of(legacy_db, migrations)
    assert projection.bytes_per_month == pytest.approx(projected.bytes_per_month, rel=0.01)
    assert storage.storage_target(projection, plan) == []


def test_the_projection_counts_retention_and_compression_as_planned(legacy_db):
    """The one projection both phases use: a month is at most what drop_after keeps; the days past compress_after
    count compressed."""
    plan, projection = projection_of(legacy_db, PROJECT / "migrations")
    h = plan.hypertable("metric_hist")
    per_day = next(t.growth.bytes_per_day for t in projection.tables if t.hypertable.table == "metric_hist")
    assert month_bytes(per_day, h, None) == pytest.approx(per_day * 30)
    assert month_bytes(per_day, h, 70) == pytest.approx(per_day * (7 + 23 * 0.3))
    week = load_plan(PROJECT / "migrations").hypertable("metric_hist")
    week = replace(
        week,
        compress_after=parse_interval("2 days", "plan.toml", "x"),
        drop_after=parse_interval("10 days", "plan.toml", "x"),
    )
    assert month_bytes(per_day, week, None) == pytest.approx(per_day * 10)
    assert month_bytes(per_day, week, 70) == pytest.approx(per_day * (2 + 8 * 0.3))


def test_the_preflight_run_reports_the_projection_and_pf075_without_blocking(legacy_db, run_suite, tmp_path):
    _, projected = projection_of(legacy_db, PROJECT / "migrations")
    migrations = migrations_with_benchmarks(
        tmp_path, max_storage_gb_per_month=f"{projected.bytes_per_month / GB / 3:.9f}"
    )
    result = run_suite(
        "suites/preflight", "--dsn", legacy_db.conninfo, "--migrations", str(migrations), "--no-rehearse"
    )
    record = json.loads((tmp_path / "reports" / "latest.json").read_text())
    assert result.returncode == 0 and record["verdict"] == "GO", result.stdout[-3000:]
    pf075 = [f for f in record["findings"] if f["code"] == "PF075"]
    assert len(pf075) == 1 and pf075[0]["severity"] == "advisory" and "GB/month" in pf075[0]["message"]


# -- the projection beside the post-flight's measurement ---------------------------------------------------

COMPARED_TEMPLATE = "ms5_legacy_storage_template"
# A day at a sample every 10 s: 4,320 rows per one-hour chunk of metric_hist, enough that a chunk's fixed
# overhead (its pages and its indexes' root pages) does not swamp its rows as it would in the tiny database.
COMPARED_SCALE = replace(SCALES["tiny"], metric_interval_s=10)


@pytest.fixture(scope="module")
def compared_template(local_server):
    build_legacy_database(local_server.conninfo(), COMPARED_SCALE, dbname=COMPARED_TEMPLATE, replace_existing=True)
    yield frozen_template(local_server, COMPARED_TEMPLATE)
    with psycopg.connect(local_server.conninfo(), autocommit=True) as admin:
        drop_database(admin, COMPARED_TEMPLATE)


@pytest.fixture
def compared_db(request, local_server, compared_template):
    yield from clone_for(request, local_server, compared_template, prefix="ms5_storage")


def test_the_projection_before_the_window_is_within_a_factor_of_what_the_postflight_measures(
    compared_db, run_suite, tmp_path
):
    plan, before = projection_of(compared_db, PROJECT / "migrations")
    result = run_suite("suites/execute", "suites/postflight", "--dsn", compared_db.conninfo, "--no-rehearse")
    record = json.loads((tmp_path / "reports" / "latest.json").read_text())
    assert result.returncode in (0, 6), result.stdout[-3000:]
    measured = next(b for b in record["benchmarks"] if b["name"] == "storage per month, projected")
    after, percent = measured["extra"]["bytes_per_month"], measured["extra"]["compression_percent"]
    # The growth: the pre-flight's estimate from the plain tables, projected with the compression the post-flight
    # measured (none on apache), beside the post-flight's projection from the hypertables.
    grown = [(t.hypertable, t.growth) for t in before.tables]
    same_compression = project(grown, percent).bytes_per_month
    ratio = same_compression / after
    print(
        f"projected before the window {same_compression / GB:.4f} GB/month, measured after {after / GB:.4f} "
        f"GB/month ({percent and round(percent)}% compression): ratio {ratio:.2f}; the pre-flight's own figure, "
        f"with {before.compression_percent}% compression: {before.bytes_per_month / GB:.4f} GB/month"
    )
    assert 1 / FACTOR <= ratio <= FACTOR, (ratio, measured["extra"]["per_table"], measured["details"])
    if percent is not None and percent >= plan.benchmarks.min_compression_percent:
        # The pre-flight assumes the least compression the post-flight accepts: when that benchmark passes, the
        # prediction does not come in under what the post-flight then projects (by more than the growth factor).
        assert before.bytes_per_month * FACTOR >= after, (before.bytes_per_month, after)


# -- the advice, on figures of a site ten times MS5.0's demo (no database) ------------------------------------


@pytest.mark.parametrize("percent", [90, 70, None], ids=["90%", "70%", "uncompressed"])
def test_the_advice_meets_the_target_with_settings_the_plan_accepts(percent):
    plan = load_plan(PROJECT / "migrations")
    growth = {
        h.table: Growth(f"factory_telemetry.{h.table}", 110e6 if h.table == "metric_hist" else 1e6, 1e6, "")
        for h in plan.hypertables
    }
    projection = project([(h, growth[h.table]) for h in plan.hypertables], percent)
    assert projection.bytes_per_month > GB
    changes, after = projection.changes_to_meet(1.0)
    assert changes and after.bytes_per_month <= GB
    # metric_hist takes most and is changed first; whatever changes keeps drop_after longer than compress_after.
    assert next(iter(changes)) == "metric_hist"
    for table in changes:
        h = next(t.hypertable for t in after.tables if t.hypertable.table == table)
        assert not (h.compress_after and h.drop_after) or h.drop_after.seconds > h.compress_after.seconds, (table, h)
    advice = projection.advice(1.0)
    assert (
        advice.startswith("Set in [hypertables.metric_hist] ")
        and f"{after.bytes_per_month / GB:.3g} GB/month" in advice
    )
    assert ("drop_after" in changes["metric_hist"]) == (percent is None or percent == 70)
    # A target no setting reaches says so, and what is left to change.
    assert projection.advice(0.001).startswith("No compress_after or drop_after of the planned tables brings it under")
    assert projection.advice(1000) == ""
