"""The kill sweep's own logic: its arguments, what it reads from a killed run, the leftovers it finds,
and one short sweep end to end (tiny scale, two kill points)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tsmigrate_tools.sweep.killed_run import what_it_was_doing
from tsmigrate_tools.sweep.leftovers import leftovers
from tsmigrate_tools.sweep.runs import RunFiles, kill_group

PROJECT = Path(__file__).resolve().parents[1]


def run_sweep(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tsmigrate_tools.sweep", *args],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--points", "0"], "--points must be at least 1, got 0"),
        (["--points", "-2"], "--points must be at least 1, got -2"),
        (["--points", "many"], "invalid int value"),
        (["--scale", "huge"], "invalid choice"),
        (["--server", "docker"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2_with_a_message_and_no_traceback(args, message):
    result = run_sweep(*args, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == "", "nothing started: no progress line"


def test_what_a_killed_run_was_doing_is_read_from_its_output_log_and_ledger(tmp_path):
    files = RunFiles(tmp_path, "killed")
    assert what(files, []) == "before the first test (start-up, collection, pre-flight set-up)"

    files.stdout.write_text(
        "suites/preflight/test_rehearsal.py::test_rehearsal_on_a_scratch_copy \n"
        "-------------------------------- live log call ---------------------------------\n"
        "10:03:00 INFO    rehearsal: 001_telemetry.sql applied in 0.01 s\n"
        "PASSED                                                                   [ 18%]\n"
        "suites/execute/test_steps.py::test_step[001_telemetry.sql] PASSED [ 22%]\n"
        "suites/execute/test_steps.py::test_step[convert factory_telemetry.metric_hist] \n"
        "-------------------------------- live log call ---------------------------------\n"
    )
    files.log.write_text(
        "1000.000 backup: verified\n1010.250 factory_telemetry.metric_hist: creating hypertable on ts\n"
    )
    assert what(files, ["convert:metric_hist"], killed_at=1012.0) == (
        'during execute: convert metric_hist; log 1.8 s before "factory_telemetry.metric_hist: creating hypertable '
        'on ts"; ledger: convert:metric_hist started'
    )

    files.stdout.write_text("suites/postflight/test_integrity.py::test_foreign_keys_hold PASSED [ 60%]\n")
    files.log.write_text("")
    assert what(files, []) == "just after postflight: foreign keys hold"

    # The closing sections name tests again (warnings): the run is past its last test, not back in the pre-flight.
    files.stdout.write_text(
        "suites/postflight/test_policies_scheduled.py::test_policies_scheduled_once_every_check_passed SKIPPED [100%]\n"
        "\n=============================== warnings summary ===============================\n"
        "suites/preflight/test_migration_files.py::test_tables_to_convert_are_ready\n"
        "  /work/main/suites/preflight/test_migration_files.py:21: AdvisoryWarning: ...\n"
    )
    assert what(files, []) == "after the last test: writing the summary and reports"


def what(files, steps, killed_at=None):
    return what_it_was_doing(files, steps, killed_at)


def _wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_leftovers_are_found_by_process_group_and_by_a_client_naming_the_database():
    # A "run" whose child outlives it: the leader is killed, its child stays in the group.
    run = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)
    # A client program (argv[0] pg_dump) that names a scratch copy of the run's database, outside the group.
    client = subprocess.Popen(
        [
            "bash",
            "-c",
            'exec -a pg_dump "$0" -c "import time; time.sleep(60)" '
            '"dbname=ms5_sweep_07_rehearsal_20261201 password=s3cret"',
            sys.executable,
        ]
    )
    try:
        assert _wait_for(lambda: any(p.pid == client.pid for p in leftovers("ms5_sweep_07", -1, "")))
        os.kill(run.pid, signal.SIGKILL)
        run.wait(10)
        found = leftovers("ms5_sweep_07", run.pid, "s3cret")
        in_group = [p for p in found if p.program == "sleep"]
        assert len(in_group) == 1 and in_group[0].pid != run.pid
        named = [p for p in found if p.pid == client.pid]
        assert named and named[0].program == "pg_dump"
        assert "s3cret" not in named[0].command and "password=***" in named[0].command
        # Another database's name is not this one's: ms5_sweep_0 is not a prefix match of ms5_sweep_07.
        assert not any(p.pid == client.pid for p in leftovers("ms5_sweep_0", run.pid, ""))
        kill_group(run.pid)
        assert _wait_for(lambda: not list(leftovers("nothing_here", run.pid, "")))
    finally:
        kill_group(run.pid)
        client.kill()
        client.wait(10)


@pytest.mark.needs_local_cluster
def test_a_short_sweep_passes_prints_one_line_per_point_and_cleans_up():
    temp = Path(tempfile.gettempdir())
    before = set(temp.glob("tsmigrate-sweep-*"))
    result = run_sweep("--points", "2", "--scale", "tiny", timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    lines = result.stdout.splitlines()
    points = [line for line in lines if line.startswith("point")]
    assert len(points) == 2, output
    for i, line in enumerate(points, 1):
        assert re.match(rf"point +{i}/2  kill at +\d+\.\d s ", line), line
        assert "rerun SUCCESS in" in line and "fingerprints identical" in line and "no child left" in line, line
    assert re.fullmatch(r"kill sweep: 2 points, 2 passed, 0 failed \(\d+ s\)", lines[-1]), lines[-1]
    assert "Traceback" not in output
    assert set(temp.glob("tsmigrate-sweep-*")) <= before, "the sweep's temporary directory is removed"


@pytest.mark.needs_local_cluster
def test_a_sweep_with_the_application_writing_and_online_conversions_loses_no_committed_row():
    result = run_sweep("--points", "2", "--scale", "tiny", "--writer", "--online", timeout=400)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "every planned table converts online (online_above_rows = 0)" in result.stdout
    points = [line for line in result.stdout.splitlines() if line.startswith("point")]
    assert len(points) == 2, output
    for line in points:
        written = re.search(r"writer (\d+) rows committed, 0 lost", line)
        assert written and int(written.group(1)) > 0, line
        assert "rerun SUCCESS in" in line and "fingerprints identical" in line, line


def test_a_committed_row_that_is_gone_is_named_and_the_writers_rows_are_cleared(legacy_db):
    """What a sweep point judges the application by: the ids it saw committed that are missing; and after that
    no row of the writer's stays to upset the fingerprints."""
    from tsmigrate_tools.appsim import TelemetryWriter
    from tsmigrate_tools.sweep.points import WRITER_MARKER, writer_rows_lost

    writer = TelemetryWriter(legacy_db.conninfo, marker=WRITER_MARKER, interval=0.02)
    writer.start()
    deadline = time.monotonic() + 30
    while len(writer.committed) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    writer.stop()
    assert len(writer.committed) >= 5, writer.describe()
    gone = writer.committed[2]
    with legacy_db.connect() as conn:
        conn.execute("DELETE FROM factory_telemetry.metric_hist WHERE id = %s", (gone,))
    assert writer_rows_lost(legacy_db.conninfo, writer) == [gone]
    with legacy_db.connect() as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM factory_telemetry.metric_hist WHERE value_text = %s", (WRITER_MARKER,)
            ).fetchone()[0]
            == 0
        )
