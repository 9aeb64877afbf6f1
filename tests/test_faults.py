"""The fault matrix: the run under production conditions, against real throwaway servers.

Each scenario starts a real run (``pytest suites...`` in a subprocess, as a user would) against a fresh
copy of the tiny legacy MS5.0 database, injects one fault (an application writing, a failed step, a lost
connection, a failed assertion, a signal, a killed run, a stopped server, a backup that cannot be
written, a NO-GO file) and then checks both what the database holds (fingerprints, roles, ledger,
databases) and what the user is told (the last line of stdout and ``reports/latest.json``).

No mock of the database: the application is a thread writing through a login role of its own (created
per test, dropped afterwards), and every process, thread and cluster a test starts is stopped by a
fixture. The community-only scenarios skip under the apache edition, with the reason; to run them::

    TSMIGRATE_PG_BINDIR=/opt/pg15c/usr/lib/postgresql/15/bin .venv/bin/pytest tests/test_faults.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from testbed.legacy import fingerprints, fingerprints_as_before

from tsmigrate.fingerprint import compare, fingerprint_table
from tsmigrate.legacy import LEGACY_DBNAME, SCALES, build_legacy_database
from tsmigrate.plan import load_plan
from tsmigrate.servers import wait_until_ready
from tsmigrate.servers.local import LocalCluster
from tsmigrate.target import Target, TargetError
from tsmigrate_tools.appsim import TelemetryWriter

PROJECT = Path(__file__).resolve().parents[1]
SCHEMA = "factory_telemetry"
APPLICATION_ROLE = "ms5_user_production"
PASSWORD = "x"  # throwaway login roles on a throwaway cluster
FENCE_MARK = "tsmigrate-fence "
STEPS = len(list((PROJECT / "migrations").glob("*.sql"))) + len(load_plan(PROJECT / "migrations").hypertables)
RUN_TIMEOUT = 240  # seconds any one run may take here (they take a few)


# -- what the user is told -------------------------------------------------------------------------------


def last_line(stdout: str) -> str:
    return [line for line in stdout.splitlines() if line.strip()][-1].strip(" =")


def banner_line(stdout: str) -> str:
    """The closing banner's text (``= RESTORED: target: ... =``), without its rule."""
    found = re.findall(r"^=+ ((?:GO|NO-GO|SUCCESS|RESTORED|FAILED|STOPPED|PASSED): .*?) =+$", stdout, re.MULTILINE)
    assert found, f"no verdict banner in the output:\n{stdout[-3000:]}"
    return found[-1]


def banner_verdict(stdout: str) -> str:
    """The verdict word of the closing banner (``= SUCCESS: target ... =``)."""
    found = re.findall(r"^=+ (GO|NO-GO|SUCCESS|RESTORED|FAILED|STOPPED|PASSED): ", stdout, re.MULTILINE)
    assert found, f"no verdict banner in the output:\n{stdout[-3000:]}"
    return found[-1]


def record(reports: Path) -> dict:
    """The run's JSON record (reports/latest.json)."""
    path = reports / "latest.json"
    assert path.exists(), f"the run left no {path}"
    return json.loads(path.read_text())


def findings(rec: dict, code: str) -> list[dict]:
    return [f for f in rec["findings"] if f["code"] == code]


def skipped_lines(stdout: str, reason: str) -> list[tuple[int, str]]:
    """pytest's -ra summary lines 'SKIPPED [n] file:line: reason' whose reason holds ``reason``."""
    return [
        (int(n), text) for n, text in re.findall(r"^SKIPPED \[(\d+)\] (.*)$", stdout, re.MULTILINE) if reason in text
    ]


def shown(result_stdout: str, rec: dict | None = None) -> str:
    """What to print when an assertion fails: the end of the output and the record's verdict fields."""
    fields = {k: rec.get(k) for k in ("verdict", "exit_code", "stopped", "restore")} if rec else {}
    return f"{result_stdout[-4000:]}\n{fields}"


# -- the database ----------------------------------------------------------------------------------------


def admin_conninfo(target: Target) -> str:
    return target.with_dbname("postgres").conninfo


def as_role(target: Target, role: str) -> str:
    return make_conninfo(target.conninfo, user=role, password=PASSWORD)


def has_ledger(target: Target) -> bool:
    with target.connect() as conn:
        return conn.execute("SELECT to_regclass('tsmigrate.ledger') IS NOT NULL").fetchone()[0]


def ledger_rows(target: Target) -> list[tuple[str, str]]:
    with target.connect() as conn:
        if not conn.execute("SELECT to_regclass('tsmigrate.ledger') IS NOT NULL").fetchone()[0]:
            return []
        return [tuple(r) for r in conn.execute("SELECT step, outcome FROM tsmigrate.ledger ORDER BY attempt")]


def has_timescaledb(target: Target) -> bool:
    with target.connect() as conn:
        return conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()[0] == 1


def copies(target: Target, kind: str) -> list[str]:
    """Databases a restore left beside the target: kind 'failed' or 'restore'."""
    with psycopg.connect(admin_conninfo(target), autocommit=True) as admin:
        return [
            r[0]
            for r in admin.execute(
                "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (f"{target.dbname}_{kind}_",)
            )
        ]


def role_state(target: Target, role: str) -> tuple[bool, str | None]:
    """(rolcanlogin, comment) of a role."""
    with psycopg.connect(admin_conninfo(target), autocommit=True) as admin:
        row = admin.execute(
            "SELECT rolcanlogin, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (role,)
        ).fetchone()
    assert row is not None, f"role {role} is gone"
    return row[0], row[1]


def can_log_in(target: Target, role: str) -> bool:
    try:
        with psycopg.connect(as_role(target, role), connect_timeout=5) as conn:
            return conn.execute("SELECT current_user").fetchone()[0] == role
    except psycopg.OperationalError:
        return False


def assert_fence_lifted(target: Target, role: str, comment: str | None) -> None:
    login, now = role_state(target, role)
    assert login, f"{role} is still NOLOGIN after the run (comment {now!r})"
    assert now == comment, f"{role}'s comment is {now!r}, it was {comment!r} before the run"
    assert can_log_in(target, role), f"{role} cannot log in after the run"


def assert_fenced(target: Target, role: str) -> None:
    login, comment = role_state(target, role)
    assert not login and comment and comment.startswith(FENCE_MARK), (login, comment)


def backends(target: Target, where: str = "true") -> list[tuple[int, str, str]]:
    """(pid, application_name, query) of client backends on the target database (seen from 'postgres')."""
    with psycopg.connect(admin_conninfo(target), autocommit=True) as admin:
        return admin.execute(
            f"""SELECT pid, application_name, query FROM pg_stat_activity
                                  WHERE datname = %s AND pid <> pg_backend_pid() AND backend_type = 'client backend'
                                    AND ({where})""",
            (target.dbname,),
        ).fetchall()


def sleeping_step(target: Target) -> list[int]:
    """Backends of the target running the pg_sleep a test appended to a migration file."""
    return [pid for pid, _, _ in backends(target, "state = 'active' AND query LIKE '%%pg_sleep(%%'")]


def client_processes(dbname: str) -> list[str]:
    """pg_dump / pg_restore processes of this machine working on ``dbname`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            argv
            and Path(argv[0].decode(errors="replace")).name in ("pg_dump", "pg_restore")
            and any(dbname.encode() in a for a in argv)
        ):
            found.append(f"pid {entry.name}: {b' '.join(argv).decode(errors='replace')[:200]}")
    return found


def metric_def_id(target: Target):
    with target.connect() as conn:
        return conn.execute(f"SELECT id FROM {SCHEMA}.metric_def ORDER BY id LIMIT 1").fetchone()[0]


def max_metric_id(target: Target) -> int:
    with target.connect() as conn:
        return conn.execute(f"SELECT max(id) FROM {SCHEMA}.metric_hist").fetchone()[0]


def marked_ids(target: Target, marker: str) -> set[int]:
    with target.connect() as conn:
        return {r[0] for r in conn.execute(f"SELECT id FROM {SCHEMA}.metric_hist WHERE value_text = %s", (marker,))}


def legacy_rows_as_before(target: Target, before: dict, legacy_top: int, *, converted: bool) -> list:
    """Differences from ``before`` over the legacy rows only: metric_hist up to its highest id before the run
    (rows above it are the test's application writing)."""
    after = fingerprints_as_before(target, before) if converted else fingerprints(target)
    key = f"{SCHEMA}.metric_hist"
    with target.connect() as conn:
        after[key] = fingerprint_table(conn, SCHEMA, "metric_hist", before[key].columns, up_to=("id", legacy_top))
    return compare(before, after)


def wait_until(
    what: str, predicate, *, timeout: float = 60, interval: float = 0.1, proc: subprocess.Popen | None = None
):
    """Poll ``predicate`` until it returns something true, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {what}")
        time.sleep(interval)
    pytest.fail(f"gave up after {timeout:g} s waiting for {what}")


def copy_migrations(tmp_path: Path) -> Path:
    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    return migrations


def append_to(migrations: Path, version: str, text: str) -> Path:
    path = sorted(migrations.glob(f"{version}_*.sql"))[0]
    path.write_text(path.read_text() + f"\n\n-- injected by tests/test_faults.py\n{text}\n")
    return path


def wait_for_rows(marker: str, more: int, timeout_s: int = 30) -> str:
    """SQL that waits (inside the step's transaction) until ``more`` new rows with ``marker`` were committed by
    someone else, at most ``timeout_s``: the rows are then certainly newer than the backup."""
    return f"""DO $$
DECLARE
    start bigint := (SELECT count(*) FROM {SCHEMA}.metric_hist WHERE value_text = '{marker}');
BEGIN
    FOR i IN 1..{timeout_s * 10} LOOP
        EXIT WHEN (SELECT count(*) FROM {SCHEMA}.metric_hist WHERE value_text = '{marker}') >= start + {more};
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;"""


def edit_plan(plan_file: Path, pattern: str, replacement: str, section: str | None = None) -> None:
    """Replace one line of plan.toml (within [section] if given)."""
    text = plan_file.read_text()
    start, end = 0, len(text)
    if section:
        start = text.index(f"[{section}]")
        following = text.find("\n[", start + 1)
        end = len(text) if following < 0 else following
    block, n = re.subn(pattern, replacement, text[start:end], count=1, flags=re.MULTILINE)
    assert n == 1, f"{pattern!r} not found in {plan_file} [{section or 'anywhere'}]"
    plan_file.write_text(text[:start] + block + text[end:])


# -- the application: a thread writing a row every 100 ms ----------------------------------------------------


@pytest.fixture
def writers():
    """Start writers with ``writers(conninfo, metric, marker, ...)``; every one is stopped afterwards."""
    started: list[TelemetryWriter] = []

    def start(conninfo: str, metric: object, marker: str, **options) -> TelemetryWriter:
        writer = TelemetryWriter(conninfo, metric_def_id=metric, marker=marker, limit=300.0, **options)
        started.append(writer)
        writer.start()
        return writer

    yield start
    for writer in started:
        writer.stop(15)
        assert not writer.is_alive(), f"{writer.name} did not stop"


def drop_roles(admin: str, names: list[str]) -> None:
    """Drop test roles: first what they own or were granted in every database that still exists."""
    if not names:
        return
    with psycopg.connect(admin, autocommit=True) as conn:
        databases = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datallowconn")]
    for dbname in databases:
        try:
            with psycopg.connect(make_conninfo(admin, dbname=dbname), autocommit=True) as conn:
                for name in names:
                    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
                        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        except psycopg.Error:
            pass  # dropped meanwhile
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def app_roles(local_server):
    """``app_roles(member=True, comment=...)``: a login role of the application (a member of
    ms5_user_production) or, with member=False, one the fence cannot reach. Unique names; dropped afterwards."""
    made: list[str] = []
    admin = local_server.conninfo()

    def make(*, member: bool = True, comment: str | None = None, server_admin: str | None = None) -> str:
        name = f"ms5_app_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(server_admin or admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}{}").format(
                    sql.Identifier(name),
                    sql.Literal(PASSWORD),
                    sql.SQL(" IN ROLE {}").format(sql.Identifier(APPLICATION_ROLE)) if member else sql.SQL(""),
                )
            )
            if server_admin is None:
                made.append(name)
            if comment is not None:
                conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(name), sql.Literal(comment)))
        return name

    yield make
    drop_roles(admin, made)


def grant_metric_inserts(target: Target, role: str) -> None:
    """What a non-member writer needs to insert metric rows (and read its ids back)."""
    with target.connect() as conn:
        ident = sql.Identifier(role)
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(SCHEMA), ident))
        conn.execute(sql.SQL("GRANT SELECT, INSERT ON {} TO {}").format(sql.Identifier(SCHEMA, "metric_hist"), ident))
        conn.execute(
            sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(sql.Identifier(SCHEMA, "metric_hist_id_seq"), ident)
        )


# -- runs in the background (to hit them mid-way) -------------------------------------------------------------


@dataclass
class Background:
    proc: subprocess.Popen
    output: Path
    reports: Path
    backups: Path

    def finish(self, timeout: float = RUN_TIMEOUT) -> tuple[int, str]:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
            pytest.fail(f"the run did not end within {timeout:g} s:\n{self.output.read_text()[-3000:]}")
        return code, self.output.read_text()


def _default_sigint() -> None:
    # A run started from a shell without job control inherits SIGINT ignored; Ctrl-C must reach this one.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def background(tmp_path: Path):
    """``background(name, *pytest_args)``: a run as a user starts it, in a process of its own; killed afterwards
    if it is still running."""
    started: list[Background] = []

    def start(name: str, *args: str, backups: Path | None = None, env: dict | None = None) -> Background:
        reports, backups = tmp_path / name / "reports", backups or tmp_path / name / "backups"
        output = tmp_path / name / "output.txt"
        output.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "pytest",
            *args,
            f"--reports={reports}",
            f"--backups={backups}",
            "--write-sample=0.3",
            "-p",
            "no:cacheprovider",
        ]
        with open(output, "w") as out:
            proc = subprocess.Popen(
                command,
                cwd=PROJECT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                preexec_fn=_default_sigint,
            )
        run = Background(proc, output, reports, backups)
        started.append(run)
        return run

    yield start
    for run in started:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait(30)


# -- 1-4: the application writing while the run works ------------------------------------------------------


def test_fenced_writer_during_a_successful_full_run_loses_no_row_and_logs_in_again(
    legacy_db, run_suite, tmp_path, app_roles, writers
):
    comment = "MS5.0 line PLC gateway (set by the test)"
    role = app_roles(member=True, comment=comment)
    before, top = fingerprints(legacy_db), max_metric_id(legacy_db)
    writer = writers(as_role(legacy_db, role), metric_def_id(legacy_db), "fenced-ok")
    wait_until("the writer's first row", lambda: writer.committed, timeout=20)

    result = run_suite("suites", "--dsn", legacy_db.conninfo, "--no-rehearse", "--write-sample=1")
    rec = record(tmp_path / "reports")
    # The application comes back once the fence is lifted.
    resumed = len(writer.committed)
    wait_until("the writer to write again after the run", lambda: len(writer.committed) > resumed + 2, timeout=20)
    writer.stop()

    assert result.returncode == 0, shown(result.stdout, rec)
    assert rec["verdict"] == "SUCCESS" and rec["exit_code"] == 0 and rec["stopped"] is None and rec["restore"] is None
    assert banner_verdict(result.stdout) == "SUCCESS"
    pf014 = findings(rec, "PF014")
    assert pf014 and all(f["severity"] == "advisory" for f in pf014) and role in pf014[0]["message"], rec["findings"]
    # It was fenced: its session ended, and it could not log in while the run worked.
    assert writer.lost.is_set() and writer.login_refused.is_set(), writer.errors[:5]
    # Every row it committed is there, and the legacy rows are as they were.
    missing = set(writer.committed) - marked_ids(legacy_db, "fenced-ok")
    assert not missing, f"{len(missing)} committed rows of the application are missing: {sorted(missing)[:10]}"
    assert legacy_rows_as_before(legacy_db, before, top, converted=True) == []
    assert_fence_lifted(legacy_db, role, comment)


def test_fenced_writer_during_a_failed_run_loses_no_row_and_logs_in_again(
    legacy_db, run_suite, tmp_path, app_roles, writers
):
    migrations = copy_migrations(tmp_path)
    late = append_to(migrations, "009", "SELECT 1 / 0;")
    role = app_roles(member=True)
    before, top = fingerprints(legacy_db), max_metric_id(legacy_db)
    writer = writers(as_role(legacy_db, role), metric_def_id(legacy_db), "fenced-failed")
    wait_until("the writer's first row", lambda: writer.committed, timeout=20)

    result = run_suite("suites/execute", "--dsn", legacy_db.conninfo, "--migrations", str(migrations), "--no-rehearse")
    rec = record(tmp_path / "reports")
    resumed = len(writer.committed)
    wait_until("the writer to write again after the restore", lambda: len(writer.committed) > resumed + 2, timeout=20)
    writer.stop()

    assert result.returncode == 1, shown(result.stdout, rec)
    assert rec["verdict"] == "RESTORED" and rec["exit_code"] == 1, shown(result.stdout, rec)
    outcome = rec["restore"]["outcome"]
    assert outcome.startswith("RESTORED:") and rec["restore"]["identical"] and rec["restore"]["complete"], outcome
    # Fenced before the backup: nothing of its was written after it, so nothing needed carrying.
    assert "identical to the backup" in outcome and last_line(result.stdout) == outcome
    assert any(s["status"] == "failed" and late.name in s["label"] for s in rec["steps"]), rec["steps"]
    assert writer.lost.is_set() and writer.login_refused.is_set(), writer.errors[:5]
    missing = set(writer.committed) - marked_ids(legacy_db, "fenced-failed")
    assert not missing, f"{len(missing)} committed rows of the application are missing: {sorted(missing)[:10]}"
    assert legacy_rows_as_before(legacy_db, before, top, converted=False) == []
    assert not has_ledger(legacy_db) and len(copies(legacy_db, "failed")) == 1
    assert_fence_lifted(legacy_db, role, None)


def carried_count(outcome: str) -> tuple[int, int]:
    match = re.search(r"plus (\d+) of (\d+) rows committed by others after the backup were carried over", outcome)
    assert match, f"the outcome does not say what was carried over: {outcome}"
    return int(match.group(1)), int(match.group(2))


def sequence_and_max(target: Target) -> tuple[int, int]:
    with target.connect() as conn:
        return conn.execute(
            f"""SELECT (SELECT last_value FROM pg_sequences WHERE schemaname = %s
                                          AND sequencename = 'metric_hist_id_seq'),
                                       (SELECT max(id) FROM {SCHEMA}.metric_hist)""",
            (SCHEMA,),
        ).fetchone()


def test_rows_of_a_writer_the_fence_cannot_stop_are_carried_into_the_restored_database(
    legacy_db, run_suite, tmp_path, app_roles, writers
):
    marker = "unfenced"
    migrations = copy_migrations(tmp_path)
    # Step 005 waits until the writer committed rows after the backup, then fails.
    append_to(migrations, "005", wait_for_rows(marker, 5) + "\nSELECT 1 / 0;")
    role = app_roles(member=False)
    grant_metric_inserts(legacy_db, role)
    before, top = fingerprints(legacy_db), max_metric_id(legacy_db)

    # The application starts once the run took its backup (the ledger is created right after it), and
    # stops when its session is ended (the restore renames the failed database away).
    holder: dict[str, TelemetryWriter] = {}
    cancel = threading.Event()

    def start_writer_after_backup():
        deadline = time.monotonic() + 120
        while not cancel.is_set() and time.monotonic() < deadline:
            try:
                if has_ledger(legacy_db):
                    holder["w"] = writers(as_role(legacy_db, role), metric_def_id(legacy_db), marker, reconnect=False)
                    return
            except (TargetError, psycopg.Error):
                pass  # the main thread reports a writer that never started
            time.sleep(0.1)

    starter = threading.Thread(target=start_writer_after_backup, name="starts the writer", daemon=True)
    starter.start()
    try:
        result = run_suite(
            "suites/execute", "--dsn", legacy_db.conninfo, "--migrations", str(migrations), "--no-rehearse"
        )
    finally:
        cancel.set()
        starter.join(30)
    rec = record(tmp_path / "reports")
    assert "w" in holder, "the writer never started: the run created no ledger"
    writer = holder["w"]
    wait_until("the restore to end the writer's session", writer.lost.is_set, timeout=20)
    writer.stop()

    assert result.returncode == 1, shown(result.stdout, rec)
    assert rec["verdict"] == "RESTORED" and rec["restore"]["identical"] and rec["restore"]["complete"], shown(
        result.stdout, rec
    )
    outcome = rec["restore"]["outcome"]
    assert outcome.startswith("RESTORED:") and last_line(result.stdout) == outcome
    carried, found = carried_count(outcome)
    # The verdict line says what the database now is: the backup, the steps that went with it, the rows carried.
    said = rec["restore"]["carried_over"]
    assert said.startswith(f"{carried} of {found} rows committed by others after the backup were carried over"), said
    assert banner_line(result.stdout).endswith(
        f"; rolled back with it: {', '.join(rec['restore']['rolled_back'])}; {said}"
    )
    assert rec["restore"]["rolled_back"] == [s["label"] for s in rec["steps"] if s["status"] == "applied"]
    present = marked_ids(legacy_db, marker)
    assert len(writer.committed) >= 5
    assert set(writer.committed) <= present, (
        f"rows committed after the backup are missing: {sorted(set(writer.committed) - present)[:10]}"
    )
    assert carried == found == len(present), (carried, found, len(present), len(writer.committed))
    # New ids never reuse one the failed copy gave out.
    failed_copies = copies(legacy_db, "failed")
    assert len(failed_copies) == 1 and not has_ledger(legacy_db)
    sequence, highest = sequence_and_max(legacy_db)
    failed_sequence, _ = sequence_and_max(legacy_db.with_dbname(failed_copies[0]))
    assert highest > top and sequence >= highest, f"metric_hist_id_seq is at {sequence}, behind max(id) {highest}"
    assert sequence >= failed_sequence, f"metric_hist_id_seq is at {sequence}, the failed copy's at {failed_sequence}"
    assert legacy_rows_as_before(legacy_db, before, top, converted=False) == []


def test_with_the_fence_off_the_applications_rows_are_carried_over_after_a_failure(
    legacy_db, run_suite, tmp_path, app_roles, writers
):
    marker = "fence-off"
    migrations = copy_migrations(tmp_path)
    edit_plan(
        migrations / "plan.toml",
        r"^application_roles\s*=.*$",
        f'application_roles = ["{APPLICATION_ROLE}"]\nfence_application = false',
        section="plan",
    )
    append_to(migrations, "005", wait_for_rows(marker, 5) + "\nSELECT 1 / 0;")
    role = app_roles(member=True)
    before, top = fingerprints(legacy_db), max_metric_id(legacy_db)
    writer = writers(as_role(legacy_db, role), metric_def_id(legacy_db), marker)
    wait_until("the writer's first row", lambda: writer.committed, timeout=20)

    result = run_suite(
        "suites/execute",
        "--dsn",
        legacy_db.conninfo,
        "--migrations",
        str(migrations),
        "--no-rehearse",
        "--write-sample=1",
    )
    rec = record(tmp_path / "reports")
    resumed = len(writer.committed)
    wait_until("the writer to write after the restore", lambda: len(writer.committed) > resumed + 2, timeout=20)
    writer.stop()

    assert result.returncode == 1, shown(result.stdout, rec)
    # The pre-flight only advised: the plan keeps the application online.
    pf014 = findings(rec, "PF014")
    assert (
        pf014 and all(f["severity"] == "advisory" for f in pf014) and "fence_application = false" in pf014[0]["message"]
    )
    assert rec["verdict"] == "RESTORED" and rec["restore"]["identical"] and rec["restore"]["complete"], shown(
        result.stdout, rec
    )
    outcome = rec["restore"]["outcome"]
    assert outcome.startswith("RESTORED:") and last_line(result.stdout) == outcome
    carried, found = carried_count(outcome)
    assert carried == found >= 5
    # Never fenced: it kept writing all along (its session was only ended by the restore's rename).
    assert not writer.login_refused.is_set(), writer.errors[:5]
    missing = set(writer.committed) - marked_ids(legacy_db, marker)
    assert not missing, f"{len(missing)} committed rows of the application are missing: {sorted(missing)[:10]}"
    assert len(set(writer.committed)) == len(writer.committed), "an id was given out twice"
    assert legacy_rows_as_before(legacy_db, before, top, converted=False) == []
    assert role_state(legacy_db, role) == (True, None)


def test_with_the_fence_off_rows_the_application_deleted_after_the_backup_stay_deleted(
    legacy_db, run_suite, tmp_path, app_roles
):
    """A restore puts the backup back; the application's deletions after it are found by key and carried as
    deletions (they used to come back silently, with the record saying identical)."""
    migrations = copy_migrations(tmp_path)
    edit_plan(
        migrations / "plan.toml",
        r"^application_roles\s*=.*$",
        f'application_roles = ["{APPLICATION_ROLE}"]\nfence_application = false',
        section="plan",
    )
    append_to(migrations, "005", "SELECT pg_sleep(8);\nSELECT 1 / 0;")
    role = app_roles(member=True)
    deleted: dict[str, list[int]] = {}

    def delete_after_backup():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not has_ledger(legacy_db):  # the ledger comes right after the backup
            time.sleep(0.1)
        with psycopg.connect(as_role(legacy_db, role), autocommit=True) as app:
            for table in ("oee_calculations", "andon_escalation_rules"):
                ids = [
                    r[0]
                    for r in app.execute(
                        sql.SQL("SELECT id FROM {} ORDER BY id DESC LIMIT 3").format(sql.Identifier(SCHEMA, table))
                    )
                ]
                app.execute(sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(sql.Identifier(SCHEMA, table)), (ids,))
                deleted[table] = ids

    deleter = threading.Thread(target=delete_after_backup, name="the application deletes", daemon=True)
    deleter.start()
    result = run_suite(
        "suites/execute",
        "--dsn",
        legacy_db.conninfo,
        "--migrations",
        str(migrations),
        "--no-rehearse",
        "--write-sample=0.3",
    )
    deleter.join(30)
    rec = record(tmp_path / "reports")

    assert set(deleted) == {"oee_calculations", "andon_escalation_rules"}, "the application deleted nothing"
    assert result.returncode == 1, shown(result.stdout, rec)
    assert rec["verdict"] == "RESTORED" and rec["restore"]["identical"] and rec["restore"]["complete"], shown(
        result.stdout, rec
    )
    with legacy_db.connect() as conn:
        for table, ids in deleted.items():
            back = conn.execute(
                sql.SQL("SELECT id FROM {} WHERE id = ANY(%s)").format(sql.Identifier(SCHEMA, table)), (ids,)
            ).fetchall()
            assert back == [], f"rows of {table} the application deleted after the backup came back: {back}"
    outcome = rec["restore"]["outcome"]
    assert "6 rows deleted by others after the backup were deleted again" in outcome, outcome
    assert last_line(result.stdout) == outcome


# -- 5-6: failures the step itself does not raise --------------------------------------------------------------


def test_a_lost_connection_mid_step_restores_once_and_runs_no_later_step(legacy_db, background, tmp_path, app_roles):
    migrations = copy_migrations(tmp_path)
    slow = append_to(migrations, "004", "SELECT pg_sleep(60);")
    role = app_roles(member=True)
    before = fingerprints(legacy_db)
    run = background(
        "lost", "suites/execute", "--dsn", legacy_db.conninfo, "--migrations", str(migrations), "--no-rehearse"
    )
    sleeping = wait_until("step 004 to run", lambda: sleeping_step(legacy_db), timeout=120, proc=run.proc)
    # Every session of the run: its control session, its work session (in pg_sleep) and the pre-flight's.
    with psycopg.connect(admin_conninfo(legacy_db), autocommit=True) as admin:
        ended = admin.execute(
            """SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity
                                  WHERE datname = %s AND pid <> pg_backend_pid()
                                    AND (application_name LIKE 'tsmigrate%%' OR pid = ANY(%s))""",
            (legacy_db.dbname, sleeping),
        ).fetchall()
    assert ended and all(ok for _, ok in ended)
    code, out = run.finish()
    rec = record(run.reports)

    assert code == 1, shown(out, rec)
    assert rec["verdict"] == "RESTORED" and rec["exit_code"] == 1, shown(out, rec)
    outcome = rec["restore"]["outcome"]
    assert outcome.startswith("RESTORED:") and "identical to the backup" in outcome and last_line(out) == outcome
    assert rec["restore"]["identical"] is True and rec["restore"]["complete"] is True
    assert out.count("(one attempt)") == 1, "exactly one restore attempt"
    failed = [s for s in rec["steps"] if s["status"] == "failed"]
    assert len(failed) == 1 and slow.name in failed[0]["label"], rec["steps"]
    details = json.dumps(failed[0]["details"])
    assert "connection to the server was lost" in details or "terminating connection" in details, details
    applied = [s["label"] for s in rec["steps"] if s["status"] == "applied"]
    assert all(label < slow.name for label in applied) and len(applied) == 3, applied
    later = skipped_lines(out, f"not run: {slow.name} failed before it")
    assert sum(n for n, _ in later) == STEPS - 4, later
    assert compare(before, fingerprints(legacy_db)) == []
    assert not has_ledger(legacy_db)
    assert len(copies(legacy_db, "failed")) == 1 and copies(legacy_db, "restore") == []
    assert_fence_lifted(legacy_db, role, None)


LEDGER_TAMPER = """
CREATE FUNCTION tsmigrate.test_tamper_sha256() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.outcome = 'applied' THEN
        NEW.sha256 := 'tampered by tests/test_faults.py';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_tamper BEFORE UPDATE ON tsmigrate.ledger
    FOR EACH ROW EXECUTE FUNCTION tsmigrate.test_tamper_sha256();
"""


def test_a_failed_assertion_after_a_step_restores_and_skips_the_rest(legacy_db, run_suite, tmp_path):
    """The step's SQL succeeds; the check after it (the ledger records the file with its sha256) fails."""
    migrations = copy_migrations(tmp_path)
    second = append_to(migrations, "002", LEDGER_TAMPER)
    before = fingerprints(legacy_db)

    result = run_suite("suites/execute", "--dsn", legacy_db.conninfo, "--migrations", str(migrations), "--no-rehearse")
    rec = record(tmp_path / "reports")
    out = result.stdout

    assert result.returncode == 1, shown(out, rec)
    assert rec["verdict"] == "RESTORED" and rec["exit_code"] == 1, shown(out, rec)
    assert any(second.name in t for t in rec["failed_tests"]), rec["failed_tests"]
    assert "the ledger does not record it as applied" in out
    outcome = rec["restore"]["outcome"]
    assert outcome.startswith("RESTORED:") and "identical to the backup" in outcome and last_line(out) == outcome
    assert rec["restore"]["identical"] is True and rec["restore"]["complete"] is True
    assert out.count("(one attempt)") == 1
    later = [(n, text) for n, text in re.findall(r"^SKIPPED \[(\d+)\] (.*)$", out, re.MULTILINE) if "not run: " in text]
    assert sum(int(n) for n, _ in later) == STEPS - 2, later
    assert [s["label"] for s in rec["steps"] if s["status"] == "applied"] == sorted(
        p.name for p in migrations.glob("00[12]_*.sql")
    ), rec["steps"]
    assert compare(before, fingerprints(legacy_db)) == []
    assert not has_ledger(legacy_db) and len(copies(legacy_db, "failed")) == 1


# -- 7: the backup cannot be taken -----------------------------------------------------------------------------


def test_a_backup_that_cannot_be_written_stops_before_any_change(legacy_db, run_suite, tmp_path, app_roles):
    role = app_roles(member=True, comment="line 3 HMI")
    blocker = tmp_path / "afile"
    blocker.write_text("a regular file where the backups directory's parent should be\n")
    before = fingerprints(legacy_db)

    result = run_suite(
        "suites/execute", "--dsn", legacy_db.conninfo, "--backups", str(blocker / "backups"), "--no-rehearse"
    )
    rec = record(tmp_path / "reports")

    assert result.returncode == 2, shown(result.stdout, rec)
    assert rec["verdict"] == "STOPPED" and rec["exit_code"] == 2, shown(result.stdout, rec)
    assert not findings(rec, "PF013"), "the pre-flight passes: there is room, only the directory cannot be made"
    assert rec["stopped"].startswith("the backup could not be taken, nothing was changed"), rec["stopped"]
    assert "the backup could not be taken, nothing was changed" in last_line(result.stdout)
    assert rec["backup"] is None and not any(s["status"] == "applied" for s in rec["steps"])
    assert compare(before, fingerprints(legacy_db)) == []
    assert not has_ledger(legacy_db) and not has_timescaledb(legacy_db)
    assert copies(legacy_db, "failed") == [] and copies(legacy_db, "restore") == []
    assert_fence_lifted(legacy_db, role, "line 3 HMI")


# -- 8-12: the run cut short -----------------------------------------------------------------------------------


def assert_record(condition: bool, message) -> None:
    assert condition, message


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT-Ctrl-C"])
def test_a_signal_mid_step_restores_and_stops_with_exit_2(legacy_db, background, tmp_path, app_roles, signum):
    migrations = copy_migrations(tmp_path)
    slow = append_to(migrations, "004", "SELECT pg_sleep(60);")
    role = app_roles(member=True, comment="packaging line")
    before = fingerprints(legacy_db)
    run = background(
        "signal", "suites/execute", "--dsn", legacy_db.conninfo, "--migrations", str(migrations), "--no-rehearse"
    )
    wait_until("step 004 to run", lambda: sleeping_step(legacy_db), timeout=120, proc=run.proc)
    assert_fenced(legacy_db, role)
    run.proc.send_signal(signum)
    code, out = run.finish()
    rec = record(run.reports)

    # What the operator sees on the terminal, and the database (plain assertions: never the expected failure).
    assert code == 2, shown(out, rec)
    assert banner_verdict(out) == "STOPPED"
    last = last_line(out)
    assert last.startswith("RESTORED:") and "identical to the backup" in last, last
    assert out.count("(one attempt)") == 1
    assert compare(before, fingerprints(legacy_db)) == []
    assert not has_ledger(legacy_db) and len(copies(legacy_db, "failed")) == 1
    assert client_processes(legacy_db.dbname) == []
    assert not sleeping_step(legacy_db), "the step's query was not cancelled"
    assert_fence_lifted(legacy_db, role, "packaging line")
    assert rec["verdict"] == "STOPPED" and rec["exit_code"] == 2 and rec["stopped"], shown(out, rec)

    # The run's record must say the same.
    assert_record(rec["restore"] is not None, f"the record has no restore outcome; the last line says: {last}")
    assert_record(rec["restore"]["outcome"] == last, (rec["restore"], last))
    assert_record(rec["restore"]["identical"] is True and rec["restore"]["complete"] is True, rec["restore"])
    failed = [s for s in rec["steps"] if s["status"] == "failed"]
    assert_record(len(failed) == 1 and slow.name in failed[0]["label"], rec["steps"])
    assert_record(rec["backup"] is not None, "the record names no backup")


def wait_for_the_dead_runs_sessions(target: Target) -> None:
    """A killed run's sessions end on their own (at once when idle, within client_connection_check_interval
    when busy)."""
    wait_until(
        "the killed run's sessions to end",
        lambda: not backends(target, "application_name LIKE 'tsmigrate%%'"),
        timeout=30,
    )


def test_a_killed_run_is_resumed_by_the_next_one_which_lifts_its_fence(
    legacy_db, background, run_suite, tmp_path, app_roles
):
    migrations = copy_migrations(tmp_path)
    append_to(migrations, "004", "SELECT pg_sleep(60);")
    comment = "andon boards"
    role = app_roles(member=True, comment=comment)
    before = fingerprints(legacy_db)
    run = background(
        "killed", "suites/execute", "--dsn", legacy_db.conninfo, "--migrations", str(migrations), "--no-rehearse"
    )
    wait_until("step 004 to run", lambda: sleeping_step(legacy_db), timeout=120, proc=run.proc)
    run.proc.kill()
    run.finish()
    wait_for_the_dead_runs_sessions(legacy_db)
    # What a SIGKILL leaves: the fence records and the step's 'started' row.
    assert_fenced(legacy_db, role)
    assert ("004", "started") in ledger_rows(legacy_db)
    assert client_processes(legacy_db.dbname) == []

    # The operator runs again, with the files as they are meant to be.
    result = run_suite("suites/execute", "--dsn", legacy_db.conninfo, "--no-rehearse")
    rec = record(tmp_path / "reports")
    assert result.returncode == 0, shown(result.stdout, rec)
    assert rec["verdict"] == "SUCCESS" and banner_verdict(result.stdout) == "SUCCESS"
    stale = findings(rec, "PF016")
    assert stale and role in stale[0]["message"] and stale[0]["severity"] == "advisory", rec["findings"]
    rows = ledger_rows(legacy_db)
    assert ("004", "interrupted") in rows and ("004", "applied") in rows
    assert compare(before, fingerprints_as_before(legacy_db, before)) == []
    assert_fence_lifted(legacy_db, role, comment)


def test_a_run_killed_during_its_backup_leaves_no_pg_dump_behind(legacy_db, background, run_suite, tmp_path, app_roles):
    role = app_roles(member=True)
    before = fingerprints(legacy_db)
    # pg_dump locks every table it dumps; a table outside the fingerprinted schemas, held locked by another
    # session, keeps it waiting mid-backup.
    locker = legacy_db.connect(autocommit=False, application_name="test: holds the dump back")
    try:
        locker.execute("CREATE SCHEMA IF NOT EXISTS tsmigrate")
        locker.execute("CREATE TABLE tsmigrate.test_dump_blocker (x int)")
        locker.commit()
        locker.execute("LOCK TABLE tsmigrate.test_dump_blocker IN ACCESS EXCLUSIVE MODE")
        backups = tmp_path / "backups"
        run = background(
            "killed-in-backup", "suites/execute", "--dsn", legacy_db.conninfo, "--no-rehearse", backups=backups
        )
        wait_until(
            "pg_dump to wait for its lock",
            lambda: (
                client_processes(legacy_db.dbname)
                and backends(legacy_db, "wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE%%'")
            ),
            timeout=120,
            proc=run.proc,
        )
        run.proc.kill()
        run.finish()
        # The kernel ends pg_dump with the run (PR_SET_PDEATHSIG).
        deadline = time.monotonic() + 10
        while client_processes(legacy_db.dbname) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client_processes(legacy_db.dbname) == [], "pg_dump outlived the run"
    finally:
        locker.rollback()
        locker.execute("DROP TABLE IF EXISTS tsmigrate.test_dump_blocker")
        locker.commit()
        locker.close()
    wait_for_the_dead_runs_sessions(legacy_db)
    assert_fenced(legacy_db, role)
    assert not has_ledger(legacy_db), "no step started: the backup never completed"

    result = run_suite("suites/execute", "--dsn", legacy_db.conninfo, "--no-rehearse", "--backups", str(backups))
    rec = record(tmp_path / "reports")
    assert result.returncode == 0, shown(result.stdout, rec)
    assert rec["verdict"] == "SUCCESS" and banner_verdict(result.stdout) == "SUCCESS"
    assert findings(rec, "PF016"), rec["findings"]
    assert compare(before, fingerprints_as_before(legacy_db, before)) == []
    assert client_processes(legacy_db.dbname) == []
    assert_fence_lifted(legacy_db, role, None)


@pytest.fixture
def own_cluster():
    """A cluster of this test's own (it gets stopped mid-run), with a tiny legacy database; removed afterwards."""
    cluster = LocalCluster()
    info = cluster.start()
    try:
        build_legacy_database(info.conninfo(), SCALES["tiny"])
        yield cluster, info, Target(info.conninfo(LEGACY_DBNAME), "the test's own cluster")
    finally:
        cluster.stop()


def pg_ctl(cluster: LocalCluster, *args: str) -> None:
    cluster._run(str(cluster._bindir / "pg_ctl"), "-D", str(cluster.data_dir), *args)


def wal_flushed_through_now(target: Target):
    """A predicate: whether the server's WAL is flushed up to where it is written now (what committed before
    then survives a crash)."""
    with psycopg.connect(admin_conninfo(target), autocommit=True) as admin:
        now = admin.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]

    def flushed() -> bool:
        with psycopg.connect(admin_conninfo(target), autocommit=True) as admin:
            return admin.execute("SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", (now,)).fetchone()[0]

    return flushed


@pytest.mark.needs_local_cluster
def test_a_server_stopped_mid_step_says_what_state_and_what_next_then_a_rerun_succeeds(
    own_cluster, background, run_suite, tmp_path, app_roles
):
    cluster, info, target = own_cluster
    role = app_roles(member=True, server_admin=info.conninfo())  # gone with the cluster
    migrations = copy_migrations(tmp_path)
    append_to(migrations, "004", "SELECT pg_sleep(60);")
    before = fingerprints(target)
    run = background(
        "stopped", "suites/execute", "--dsn", target.conninfo, "--migrations", str(migrations), "--no-rehearse"
    )
    wait_until("step 004 to run", lambda: sleeping_step(target), timeout=120, proc=run.proc)
    wait_until(
        "the WAL writer to flush the ledger's 'started' row (synchronous_commit is off here)",
        wal_flushed_through_now(target),
    )
    pg_ctl(cluster, "-m", "immediate", "-w", "-t", "30", "stop")
    try:
        code, out = run.finish()
    finally:
        pg_ctl(cluster, "-l", str(cluster.log_file), "-W", "-o", f"-p {info.port}", "start")
        wait_until_ready(info.conninfo(), 60)
    rec = record(run.reports)

    assert code == 1, shown(out, rec)
    assert rec["verdict"] == "FAILED" and rec["exit_code"] == 1, shown(out, rec)
    outcome = rec["restore"]["outcome"]
    assert last_line(out) == outcome
    assert outcome.startswith("RESTORE FAILED:"), outcome
    assert "as the failure left it" in outcome and "run `pytest suites` again" in outcome, outcome
    assert f"Roles {role} are still fenced" in outcome, outcome
    assert rec["restore"]["identical"] is None and rec["restore"]["complete"] is None
    assert_fenced(target, role)
    assert ("004", "started") in ledger_rows(target)

    result = run_suite("suites/execute", "--dsn", target.conninfo, "--no-rehearse")
    rec = record(tmp_path / "reports")
    assert result.returncode == 0, shown(result.stdout, rec)
    assert rec["verdict"] == "SUCCESS" and banner_verdict(result.stdout) == "SUCCESS"
    assert any(role in f["message"] for f in findings(rec, "PF016")), rec["findings"]
    rows = ledger_rows(target)
    assert ("004", "interrupted") in rows and ("004", "applied") in rows
    assert compare(before, fingerprints_as_before(target, before)) == []
    assert_fence_lifted(target, role, None)


# -- 13-15: the gate -------------------------------------------------------------------------------------------


def test_a_bare_pytest_with_libpq_variables_runs_only_the_preflight(legacy_db, run_suite, tmp_path):
    params = legacy_db.params()
    env = {
        "PGHOST": params["host"],
        "PGPORT": str(params["port"]),
        "PGUSER": params["user"],
        "PGPASSWORD": params["password"],
        "PGDATABASE": params["dbname"],
    }
    before = fingerprints(legacy_db)
    result = run_suite(env=env)
    rec = record(tmp_path / "reports")

    assert result.returncode == 0, shown(result.stdout, rec)
    assert rec["kind"] == "preflight" and rec["verdict"] == "GO" and rec["exit_code"] == 0
    assert banner_verdict(result.stdout) == "GO"
    assert legacy_db.dbname in rec["target"] and params["password"] not in result.stdout
    assert "suites/preflight/" in result.stdout
    assert "suites/execute" not in result.stdout and "suites/postflight" not in result.stdout
    assert rec["steps"] == [] and rec["backup"] is None and rec["restore"] is None
    assert not has_ledger(legacy_db) and not has_timescaledb(legacy_db)
    assert compare(before, fingerprints(legacy_db)) == []
    assert not (tmp_path / "backups").exists() or not any((tmp_path / "backups").iterdir()), (
        "a pre-flight takes no backup"
    )


def test_execute_alone_after_a_no_go_skips_every_step_in_one_line(legacy_db, run_suite, tmp_path):
    migrations = copy_migrations(tmp_path)
    (migrations / "011_hazard.sql").write_text(
        f"CREATE INDEX IF NOT EXISTS idx_recent ON {SCHEMA}.metric_hist (ts) WHERE ts > now() - interval '1 day';\n"
    )
    before = fingerprints(legacy_db)
    result = run_suite("suites/execute", "--dsn", legacy_db.conninfo, "--migrations", str(migrations), "--no-rehearse")
    rec = record(tmp_path / "reports")

    assert result.returncode == 1, shown(result.stdout, rec)
    assert rec["verdict"] == "NO-GO" and rec["exit_code"] == 1 and banner_verdict(result.stdout) == "NO-GO"
    blocking = [f for f in rec["findings"] if f["severity"] == "blocking"]
    assert blocking and all("011_hazard.sql" in (f["path"] or "") for f in blocking), blocking
    lines = skipped_lines(result.stdout, "execute skipped: the pre-flight said NO-GO")
    assert len(lines) == 1 and lines[0][0] == STEPS + 1, lines
    assert rec["steps"] == [] and rec["backup"] is None
    assert compare(before, fingerprints(legacy_db)) == []
    assert not has_ledger(legacy_db) and not has_timescaledb(legacy_db)


@pytest.mark.parametrize("fenceable", [False, True], ids=["unfenceable-writer-blocks", "fenceable-writer-advises"])
def test_preflight_with_a_writer_blocks_only_when_the_fence_cannot_stop_it(
    legacy_db, run_suite, tmp_path, app_roles, writers, fenceable
):
    role = app_roles(member=fenceable)
    if not fenceable:
        grant_metric_inserts(legacy_db, role)
    before, top = fingerprints(legacy_db), max_metric_id(legacy_db)
    writer = writers(as_role(legacy_db, role), metric_def_id(legacy_db), "preflight-writer")
    wait_until("the writer's first row", lambda: writer.committed, timeout=20)
    result = run_suite("suites/preflight", "--dsn", legacy_db.conninfo, "--no-rehearse", "--write-sample=1")
    rec = record(tmp_path / "reports")
    written = len(writer.committed)
    wait_until("the writer to go on writing", lambda: len(writer.committed) > written, timeout=20)
    writer.stop()

    pf014 = findings(rec, "PF014")
    assert len(pf014) == 1, shown(result.stdout, rec)
    if fenceable:
        assert result.returncode == 0, shown(result.stdout, rec)
        assert rec["verdict"] == "GO" and banner_verdict(result.stdout) == "GO"
        assert pf014[0]["severity"] == "advisory" and "fence ends them" in pf014[0]["message"]
    else:
        assert result.returncode == 1, shown(result.stdout, rec)
        assert rec["verdict"] == "NO-GO" and banner_verdict(result.stdout) == "NO-GO"
        assert pf014[0]["severity"] == "blocking" and role in pf014[0]["message"]
        assert any(line.strip().startswith("BLOCKING PF014") for line in result.stdout.splitlines())
    # The pre-flight changes nothing: no fence, no ledger, the writer never lost its session.
    assert not writer.errors, writer.errors[:5]
    assert role_state(legacy_db, role) == (True, None)
    assert not has_ledger(legacy_db)
    assert legacy_rows_as_before(legacy_db, before, top, converted=False) == []


# -- 16-17: the community edition: policies and background jobs --------------------------------------------------


def policy_jobs(target: Target) -> list[tuple[int, str, str, bool, timedelta | None]]:
    """(job_id, proc_name, hypertable, scheduled, drop_after) of the schema's policy jobs."""
    with target.connect() as conn:
        return conn.execute(
            """SELECT job_id, proc_name, hypertable_name, scheduled, (config ->> 'drop_after')::interval
                                 FROM timescaledb_information.jobs WHERE hypertable_schema = %s
                                ORDER BY job_id""",
            (SCHEMA,),
        ).fetchall()


def paused(target: Target) -> list[int]:
    with target.connect() as conn:
        if conn.execute("SELECT to_regclass('tsmigrate.paused_jobs')").fetchone()[0] is None:
            return []
        return [r[0] for r in conn.execute("SELECT job_id FROM tsmigrate.paused_jobs")]


@pytest.mark.parametrize("round_", [1, 2, 3], ids=lambda n: f"round{n}")
def test_full_runs_with_background_jobs_on_aged_history_succeed_every_time(aged_legacy_db, run_suite, tmp_path, round_):
    plan = load_plan(PROJECT / "migrations")
    before = fingerprints(aged_legacy_db)
    result = run_suite("suites", "--dsn", aged_legacy_db.conninfo, "--no-rehearse")
    rec = record(tmp_path / "reports")

    assert result.returncode == 0, shown(result.stdout, rec)
    assert rec["kind"] == "full" and rec["verdict"] == "SUCCESS" and rec["exit_code"] == 0
    assert banner_verdict(result.stdout) == "SUCCESS"
    assert rec["failed_tests"] == [] and rec["restore"] is None
    # The post-flight scheduled the policies it found paused, once every check passed.
    jobs = policy_jobs(aged_legacy_db)
    assert len(jobs) == 2 * len(plan.hypertables), jobs
    assert all(scheduled for _, _, _, scheduled, _ in jobs), jobs
    assert len(rec["policy_schedule"]) == len(jobs) and paused(aged_legacy_db) == []
    assert any(
        line.startswith(f"  scheduled {len(jobs)} policy jobs the conversion had paused")
        for line in result.stdout.splitlines()[-3:]
    ), result.stdout[-2000:]
    # Compression may already be at work in the background: every row still reads the same.
    assert compare(before, fingerprints_as_before(aged_legacy_db, before)) == []


def test_the_postflight_passes_while_background_jobs_run(aged_legacy_db, run_suite, tmp_path):
    """Once the policies are scheduled they run whenever they like: every post-flight after that must still
    pass (no deadlock with a compression job, no count racing a retention job), with jobs running."""
    first = run_suite("suites", "--dsn", aged_legacy_db.conninfo, "--no-rehearse")
    assert first.returncode == 0, first.stdout[-3000:]
    before = fingerprints(aged_legacy_db)
    with aged_legacy_db.connect() as conn:
        # Every policy job due at once and again every second while the post-flight runs.
        conn.execute(
            """SELECT alter_job(job_id, schedule_interval => interval '1 second', next_start => now())
                          FROM timescaledb_information.jobs WHERE hypertable_schema = %s""",
            (SCHEMA,),
        )
    for round_ in range(3):
        reports = tmp_path / f"reports-{round_}"
        result = run_suite("suites/postflight", "--dsn", aged_legacy_db.conninfo, f"--reports={reports}")
        rec = record(reports)
        assert result.returncode == 0 and rec["verdict"] == "PASSED", shown(result.stdout, rec)
    with aged_legacy_db.connect() as conn:
        runs = conn.execute(
            """SELECT coalesce(sum(total_runs), 0), coalesce(sum(total_failures), 0)
                                 FROM timescaledb_information.job_stats WHERE hypertable_schema = %s""",
            (SCHEMA,),
        ).fetchone()
        compressed = conn.execute("SELECT count(*) FROM timescaledb_information.chunks WHERE is_compressed").fetchone()[
            0
        ]
    assert runs[0] > 0 and runs[1] == 0, f"the jobs ran {runs[0]} times with {runs[1]} failures during the post-flights"
    assert compressed > 0, "the compression job compressed nothing: it did not run during the post-flights"
    assert compare(before, fingerprints(aged_legacy_db)) == []


def test_retention_that_drops_rows_is_announced_and_pins_the_backup_until_the_postflight_schedules_it(
    aged_legacy_db, run_suite, tmp_path
):
    migrations = copy_migrations(tmp_path)
    edit_plan(
        migrations / "plan.toml", r"^drop_after\s*=.*$", 'drop_after = "30 days"', section="hypertables.metric_hist"
    )
    before = fingerprints(aged_legacy_db)
    with aged_legacy_db.connect() as conn:
        old, oldest, newest = conn.execute(
            f"SELECT count(*), min(ts), max(ts) FROM {SCHEMA}.metric_hist WHERE ts < now() - interval '30 days'"
        ).fetchone()
    assert old > 0

    result = run_suite("suites", "--dsn", aged_legacy_db.conninfo, "--migrations", str(migrations), "--no-rehearse")
    rec = record(tmp_path / "reports")

    assert result.returncode == 0, shown(result.stdout, rec)
    assert rec["verdict"] == "SUCCESS" and banner_verdict(result.stdout) == "SUCCESS"
    pf034 = findings(rec, "PF034")
    assert [f["table"] for f in pf034] == [f"{SCHEMA}.metric_hist"], pf034
    message = pf034[0]["message"]
    assert pf034[0]["severity"] == "advisory"
    match = re.search(r"holds (\d+) rows older than 30 days \(ts from (.+?) to (.+?)\)", message)
    assert match, message
    assert int(match.group(1)) == old
    assert datetime.fromisoformat(match.group(2)) == oldest and datetime.fromisoformat(match.group(3)) == newest
    # The rows retention drops live on in the backup, which is pinned.
    backup = Path(rec["backup"]["path"])
    assert rec["backup"]["pinned"] and "metric_hist" in rec["backup"]["pinned"], rec["backup"]
    assert (backup.parent / f"{backup.name}.keep").is_file()
    manifest = json.loads((backup / "manifest.json").read_text())
    kept = manifest["fingerprints"][f"{SCHEMA}.metric_hist"]
    assert (kept["rows"], kept["digest"]) == (
        before[f"{SCHEMA}.metric_hist"].rows,
        before[f"{SCHEMA}.metric_hist"].digest,
    )
    # Scheduled only by the post-flight's last test.
    retention = [j for j in policy_jobs(aged_legacy_db) if j[1] == "policy_retention" and j[2] == "metric_hist"]
    assert len(retention) == 1 and retention[0][3] is True, retention
    assert retention[0][4] == timedelta(days=30), retention[0][4]
    assert paused(aged_legacy_db) == []
    assert any(f"policy_retention on {SCHEMA}.metric_hist" in line for line in rec["policy_schedule"]), rec[
        "policy_schedule"
    ]


# -- the online path: the application keeps writing, the fence is not raised ----------------------------------


def online_plan(tmp_path: Path) -> Path:
    migrations = copy_migrations(tmp_path)
    edit_plan(
        migrations / "plan.toml",
        r'^keep_unique = \["id"\]$',
        'keep_unique = ["id"]\nonline = true',
        section="hypertables.metric_hist",
    )
    return migrations


def waiting_for_lock(target: Target, table: str) -> bool:
    with target.connect() as conn:
        return bool(
            conn.execute(
                "SELECT 1 FROM pg_locks WHERE relation = to_regclass(%s) AND NOT granted", (f"{SCHEMA}.{table}",)
            ).fetchone()
        )


def test_an_online_conversion_keeps_the_application_writing_through_a_full_run(
    legacy_db, run_suite, tmp_path, app_roles, writers
):
    migrations = online_plan(tmp_path)
    role = app_roles(member=True)
    before, top = fingerprints(legacy_db), max_metric_id(legacy_db)
    writer = writers(as_role(legacy_db, role), metric_def_id(legacy_db), "online-ok")
    wait_until("the writer's first row", lambda: writer.committed, timeout=20)

    result = run_suite(
        "suites", "--dsn", legacy_db.conninfo, "--migrations", str(migrations), "--no-rehearse", "--write-sample=1"
    )
    rec = record(tmp_path / "reports")
    done = len(writer.committed)
    wait_until("the writer to write into the hypertable", lambda: len(writer.committed) > done + 2, timeout=20)
    writer.stop()

    assert result.returncode == 0, shown(result.stdout, rec)
    assert rec["verdict"] == "SUCCESS", shown(result.stdout, rec)
    pf014 = findings(rec, "PF014")
    assert pf014 and pf014[0]["severity"] == "advisory" and "metric_hist convert online" in pf014[0]["message"]
    # Not fenced, never refused, nothing lost.
    assert not writer.login_refused.is_set() and not writer.lost.is_set(), writer.errors[:5]
    missing = set(writer.committed) - marked_ids(legacy_db, "online-ok")
    assert not missing, f"{len(missing)} committed rows of the application are missing: {sorted(missing)[:10]}"
    assert legacy_rows_as_before(legacy_db, before, top, converted=True) == []
    assert role_state(legacy_db, role) == (True, None)
    step = next(s for s in rec["steps"] if s["label"] == f"convert {SCHEMA}.metric_hist")
    assert step["status"] == "applied" and step["details"]["online"]["legacy_table"] == f"{SCHEMA}.metric_hist_legacy"
    assert any("metric_hist_legacy" in step and "drop-legacy metric_hist" in step for step in rec["next_steps"]), rec[
        "next_steps"
    ]
    with legacy_db.connect() as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = 'metric_hist'"
            ).fetchone()[0]
            == 1
        )
        kept = conn.execute(f"SELECT count(*) FROM {SCHEMA}.metric_hist_legacy").fetchone()[0]
        # The legacy table is kept as it was at the swap: every legacy row, and what the writer wrote until then.
        assert (
            before[f"{SCHEMA}.metric_hist"].rows
            <= kept
            < conn.execute(f"SELECT count(*) FROM {SCHEMA}.metric_hist").fetchone()[0]
        )


def test_a_run_stopped_after_an_online_swap_restores_with_every_row_the_application_wrote(
    legacy_db, background, tmp_path, app_roles, writers
):
    """The rows written during the copy are only in the kept legacy table (the hypertable's copies are the run's
    own), those written after the swap only in chunks: the restore carries both over."""
    migrations = online_plan(tmp_path)
    role = app_roles(member=True)
    before, top = fingerprints(legacy_db), max_metric_id(legacy_db)
    writer = writers(as_role(legacy_db, role), metric_def_id(legacy_db), "online-stopped")
    wait_until("the writer's first row", lambda: writer.committed, timeout=20)
    reader = legacy_db.connect(autocommit=False)  # holds up the next conversion (oee_calculations)
    try:
        reader.execute(f"SELECT count(*) FROM {SCHEMA}.oee_calculations").fetchone()
        run = background(
            "online-stopped",
            "suites/execute",
            "--dsn",
            legacy_db.conninfo,
            "--migrations",
            str(migrations),
            "--no-rehearse",
        )
        wait_until(
            "the run to wait for oee_calculations",
            lambda: waiting_for_lock(legacy_db, "oee_calculations"),
            timeout=180,
            proc=run.proc,
        )
        swapped = len(writer.committed)
        wait_until("rows written into the hypertable", lambda: len(writer.committed) > swapped + 3, timeout=20)
        run.proc.send_signal(signal.SIGTERM)
        code, out = run.finish()
    finally:
        reader.close()  # the restore ended its session already
    rec = record(run.reports)
    resumed = len(writer.committed)
    wait_until("the writer to write after the restore", lambda: len(writer.committed) > resumed + 2, timeout=20)
    writer.stop()

    assert code == 2, shown(out, rec)
    assert rec["verdict"] == "STOPPED" and rec["restore"]["complete"], shown(out, rec)
    assert [s["label"] for s in rec["steps"] if s["status"] == "applied"][-1] == f"convert {SCHEMA}.metric_hist"
    carried, found = carried_count(rec["restore"]["outcome"])
    assert carried == found > 3, rec["restore"]["outcome"]
    missing = set(writer.committed) - marked_ids(legacy_db, "online-stopped")
    assert not missing, f"{len(missing)} committed rows of the application are missing: {sorted(missing)[:10]}"
    assert legacy_rows_as_before(legacy_db, before, top, converted=False) == []
    with legacy_db.connect() as conn:
        assert conn.execute(f"SELECT to_regclass('{SCHEMA}.metric_hist_legacy')").fetchone()[0] is None
