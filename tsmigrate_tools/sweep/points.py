"""The sweep itself: a frozen legacy template on a throwaway cluster, one uninterrupted run that measures T,
then each kill point on a fresh copy: the run killed, the rerun, the legacy rows and the leftovers judged."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from tsmigrate.db import one
from tsmigrate.fingerprint import TableFingerprint, compare, fingerprint_database
from tsmigrate.integrity.content import fingerprints_as_before
from tsmigrate.janitor import ScratchDatabase, freeze
from tsmigrate.legacy import SCALES, build_legacy_database
from tsmigrate.rehearsal import SCRATCH_INFIX
from tsmigrate.servers import ServerInfo, ServerStartError, throwaway_server
from tsmigrate.timescale import installed_timescaledb
from tsmigrate_tools.appsim import TelemetryWriter

from .killed_run import started_steps, what_it_was_doing

if TYPE_CHECKING:
    from tsmigrate.servers.docker import DockerServer
    from tsmigrate.servers.local import LocalCluster
from .leftovers import leftovers_after_grace
from .runs import KILLED_WAIT, LOG_LINE, PROJECT, RunFiles, kill_group, run_to_end, start_run, tail

TEMPLATE = "ms5_sweep_template"
CLONE_PREFIX = "ms5_sweep_"
APP_ROLE = "ms5_sweep_app"  # --writer: a login role of the application (member of its group role)
WRITER_MARKER = "kill-sweep writer"  # in value_text of the writer's rows, so they can be told from legacy rows
MEASURE_TIMEOUT = 1800.0  # bound on the uninterrupted run that measures T


class SweepError(Exception):
    """The sweep cannot go on (server, template, the uninterrupted run): exit 1 with the message."""


def say(line: str = "") -> None:
    """One line of the sweep's progress on stdout, at once (a kill point can take minutes)."""
    print(line, flush=True)


def writer_rows_lost(conninfo: str, writer: TelemetryWriter) -> list[int]:
    """The ids the application saw committed that are not there; then its rows (committed or not: a killed
    session may have committed one it never heard back about) go, so the fingerprints can judge the rest."""
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        lost = writer.missing(conn)
        conn.execute("DELETE FROM factory_telemetry.metric_hist WHERE value_text = %s", (WRITER_MARKER,))
        if one(conn, "SELECT to_regclass('factory_telemetry.metric_hist_legacy')"):  # kept by an online conversion
            conn.execute("DELETE FROM factory_telemetry.metric_hist_legacy WHERE value_text = %s", (WRITER_MARKER,))
    return lost


def fingerprint_problems(conninfo: str, legacy: dict[str, TableFingerprint]) -> list[str]:
    """[] when every legacy table holds exactly the legacy rows over its legacy columns."""
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        now, problems = fingerprints_as_before(conn, legacy)
    return [str(p) for p in problems] + [str(d) for d in compare(legacy, now)]


@dataclass
class Point:
    """One kill moment (seconds into the run) and what was found after it."""

    index: int
    kill_at: float
    passed: bool = False
    unreaped: bool = False
    details: list[str] = field(default_factory=list)


class Sweep:
    """The throwaway server, the frozen template, the legacy fingerprints and T; close() ends all of it."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.server: LocalCluster | DockerServer | None = None
        self.info: ServerInfo | None = None
        self.work = Path(tempfile.mkdtemp(prefix="tsmigrate-sweep-"))
        self.legacy: dict[str, TableFingerprint] = {}
        self.duration = 0.0
        self.current: subprocess.Popen | None = None
        self.migrations: Path | None = None  # --online: a copy of the project's with every table online

    @property
    def started(self) -> ServerInfo:
        """The throwaway server, once set_up has started it."""
        if self.info is None:
            raise SweepError("the sweep's server is not started yet (set_up first)")
        return self.info

    # Every run we start is in its own process group: on the way out, nothing of ours stays.
    def close(self) -> None:
        try:
            if self.current is not None:
                kill_group(self.current.pid)
                try:
                    self.current.wait(KILLED_WAIT)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            try:
                if self.server is not None:
                    self.server.stop()
            finally:
                shutil.rmtree(self.work, ignore_errors=True)

    def rerun_timeout(self) -> float:
        if self.args.timeout:
            return self.args.timeout
        return max(300.0, 5 * self.duration)

    def set_up(self) -> None:
        args = self.args
        try:
            self.server = throwaway_server(args.server, ready_timeout=args.ready_timeout)
            self.info = self.server.start()
        except ServerStartError as exc:
            self.server = None
            raise SweepError(f"cannot start a throwaway {args.server} server: {exc}") from None
        ts = installed_timescaledb()
        edition = f"TimescaleDB {ts.version} ({ts.edition})" if ts else "no TimescaleDB"
        scale = SCALES[args.scale]
        say(
            f"kill sweep: {args.points} points on a throwaway {args.server} PostgreSQL {self.info.version}, "
            f"{edition}, scale {args.scale} (~{scale.metric_hist_rows:,} metric_hist rows)"
        )
        started = time.monotonic()
        build_legacy_database(self.info.conninfo(), scale, dbname=TEMPLATE)
        with psycopg.connect(self.info.conninfo(), autocommit=True) as admin:
            if args.writer:
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(APP_ROLE)))
                admin.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE ms5_user_production").format(
                        sql.Identifier(APP_ROLE), sql.Literal(self.info.password)
                    )
                )
            freeze(admin, TEMPLATE)
        say(f"legacy template {TEMPLATE} built in {time.monotonic() - started:.1f} s")
        if args.online:
            self.migrations = self.work / "migrations"
            shutil.copytree(PROJECT / "migrations", self.migrations)
            plan = self.migrations / "plan.toml"
            plan.write_text(plan.read_text().replace("[plan]\n", "[plan]\nonline_above_rows = 0\n", 1))
            say("every planned table converts online (online_above_rows = 0)")
        if args.writer:
            say(
                f"a login role of the application ({APP_ROLE}) inserts a metric row every 100 ms through each "
                "killed run and its rerun; every row it saw committed must be there at the end"
            )

    def measure(self) -> None:
        """Legacy fingerprints on a copy, then one uninterrupted full run on it: T, and it must succeed."""
        with ScratchDatabase(self.started.conninfo(), CLONE_PREFIX + "measure", template=TEMPLATE) as name:
            dsn = self.started.conninfo(name)
            with psycopg.connect(dsn, autocommit=True) as conn:
                self.legacy = fingerprint_database(conn)
            rows = sum(fp.rows for fp in self.legacy.values())
            say(f"legacy fingerprints: {len(self.legacy)} tables, {rows:,} rows")
            root = self.work / "measure"
            root.mkdir()
            files = RunFiles(root, "run")
            code, seconds = run_to_end(
                dsn, files, root / "backups", self.args.timeout or MEASURE_TIMEOUT, self.migrations
            )
            verdict = files.verdict()
            if code is None or verdict != "SUCCESS" or code != 0:
                how = "did not end in time and was killed" if code is None else f"ended {verdict} (exit {code})"
                last = "\n".join("    " + line for line in tail(files.stdout, 12))
                raise SweepError(
                    f"the uninterrupted full run {how} after {seconds:.1f} s: no kill point can be "
                    f"judged against it. Its last lines:\n{last}"
                )
            problems = fingerprint_problems(dsn, self.legacy)
            if problems:
                raise SweepError(
                    "the uninterrupted full run ended SUCCESS but the legacy rows differ: " + "; ".join(problems[:10])
                )
        self.duration = seconds
        step = seconds / (self.args.points + 1)
        say(
            f"uninterrupted run: SUCCESS in {seconds:.1f} s, fingerprints identical; a kill every {step:.1f} s, "
            f"each rerun {'at once' if not self.args.rerun_delay else f'{self.args.rerun_delay:g} s after the kill'}, "
            f"bounded to {self.rerun_timeout():.0f} s"
        )

    def point(self, i: int) -> Point:
        n = self.args.points
        point = Point(i, self.duration * i / (n + 1))
        width = len(str(n))
        name = f"{CLONE_PREFIX}{i:0{width}d}"
        root = self.work / f"point-{i:0{width}d}"
        root.mkdir()
        backups = root / "backups"
        words = [f"point {i:>{width + 1}}/{n}"]
        with ScratchDatabase(self.started.conninfo(), name, template=TEMPLATE):
            dsn = self.started.conninfo(name)
            killed_files = RunFiles(root, "killed")

            writer = None
            if self.args.writer:
                writer = TelemetryWriter(
                    psycopg.conninfo.make_conninfo(dsn, user=APP_ROLE, password=self.started.password),
                    marker=WRITER_MARKER,
                )
                writer.start()

            # 1. the run, killed at its moment
            proc = self.current = start_run(dsn, killed_files, backups, self.migrations)
            started = time.monotonic()
            deadline = started + point.kill_at
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)  # the run's main process only: its children are its business
                killed_after, killed_wall = time.monotonic() - started, time.time()
                try:
                    proc.wait(KILLED_WAIT)
                except subprocess.TimeoutExpired:
                    point.unreaped = True
                    point.details.append(f"the killed run was not reaped within {KILLED_WAIT:.0f} s")
                left = leftovers_after_grace(name, proc.pid, self.started.password)
                doing = what_it_was_doing(killed_files, started_steps(dsn), killed_wall)
                words.append(f"kill at {killed_after:5.1f} s ({doing})")
            else:
                left = []
                words.append(
                    f"kill at {point.kill_at:5.1f} s: the run had already ended "
                    f"({killed_files.verdict()}, exit {proc.returncode} after {time.monotonic() - started:.1f} s)"
                )
            kill_group(proc.pid)  # whatever a leftover check found: reported below, ended now
            self.current = None

            # 2. the rerun, to completion
            time.sleep(self.args.rerun_delay)
            rerun_files = RunFiles(root, "rerun")
            code, seconds = run_to_end(dsn, rerun_files, backups, self.rerun_timeout(), self.migrations)
            verdict = rerun_files.verdict()
            rerun_ok = code is not None and verdict == "SUCCESS" and code == 0
            if code is None:
                words.append(f"rerun HUNG: killed after {seconds:.1f} s")
            elif rerun_ok:
                words.append(f"rerun SUCCESS in {seconds:.1f} s")
            else:
                words.append(f"rerun {verdict} (exit {code}) in {seconds:.1f} s")
            if not rerun_ok:
                record = rerun_files.record() or {}
                if record:
                    point.details.append(
                        f"rerun's latest.json: verdict {record.get('verdict')}, exit_code "
                        f"{record.get('exit_code')}, stopped {record.get('stopped')!r}, "
                        f"failed tests {record.get('failed_tests')}"
                    )
                point.details.append("rerun's last lines:")
                point.details.extend("  " + line for line in tail(rerun_files.stdout, 10))
                log_tail = tail(rerun_files.log, 3)
                if log_tail:
                    point.details.append("rerun's last log lines:")
                    point.details.extend(
                        "  " + (m["message"] if (m := LOG_LINE.match(line.strip())) else line) for line in log_tail
                    )

            # 3. the application's rows, all there; then the data, as the legacy database had it
            lost = []
            if writer is not None:
                time.sleep(1)  # the rerun lifted the fence: the application comes back
                writer.stop()
                lost = writer_rows_lost(dsn, writer)
                words.append(
                    f"writer {len(writer.committed)} rows committed, {len(lost)} lost"
                    if not lost
                    else f"WRITER ROWS LOST ({len(lost)} of {len(writer.committed)})"
                )
                if lost:
                    point.details.append(f"committed by the application, missing at the end: ids {lost[:20]}")
            try:
                problems = fingerprint_problems(dsn, self.legacy)
            except psycopg.Error as exc:
                problems = [f"fingerprints could not be taken: {str(exc).strip()}"]
            if problems:
                words.append(f"FINGERPRINTS DIFFER ({len(problems)} table{'s' if len(problems) != 1 else ''})")
                point.details.extend(problems[:20])
            else:
                words.append("fingerprints identical")

            # 4. nothing of the killed run outlived it
            if left:
                words.append(f"CHILD LEFT ({', '.join(f'{child.program} pid {child.pid}' for child in left)})")
                point.details.extend(f"left after the kill: pid {child.pid}: {child.command}" for child in left)
            else:
                words.append("no child left")

            # 5. no scratch copy a killed rehearsal made outlived the rerun
            with psycopg.connect(self.started.conninfo(), autocommit=True) as admin:
                scratch = [
                    r[0]
                    for r in admin.execute(
                        "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (name + SCRATCH_INFIX,)
                    ).fetchall()
                ]
            if scratch:
                words.append(f"SCRATCH COPY LEFT ({', '.join(scratch)})")
        point.passed = rerun_ok and not problems and not left and not point.unreaped and not scratch and not lost
        say("  ".join(words))
        for line in point.details:
            say("    " + line)
        shutil.rmtree(root, ignore_errors=True)
        return point
