"""Kill sweep: SIGKILL a full run at N moments, then prove a second run finishes the migration.

    python -m tsmigrate.sweep [--points N] [--scale tiny|demo|site] [--server local] [--keep-going]

On a throwaway local cluster the legacy MS5.0 database is built once and frozen as a template,
and its fingerprints are taken on a copy before any run. One uninterrupted full run
(``pytest suites --dsn ...``) on a fresh copy gives its duration T and must end SUCCESS. Then,
for i in 1..N, on a fresh copy each time: the same full run is started and killed with SIGKILL
at T*i/(N+1) seconds; no pg_dump/pg_restore of that run may outlive it; a second full run must
end SUCCESS (in reports/latest.json) within a bounded time, and every table must hold the legacy
rows (fingerprints over the legacy columns, NULL-time fills seen as they were).

One line per point on stdout, then ``kill sweep: N points, P passed, F failed``. Exit 0 when
every point passed, 1 otherwise, 2 for a usage error. Copies, temporary directories and the
cluster are removed whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from .fingerprint import TableFingerprint, compare, fingerprint_database
from .integrity.content import fingerprints_as_before
from .janitor import ScratchDatabase, freeze
from .legacy import SCALES, build_legacy_database
from .servers import ServerInfo, ServerStartError, throwaway_server
from .timescale import installed_timescaledb
from .errors import first_line

PROJECT = Path(__file__).resolve().parents[1]
TEMPLATE = "ms5_sweep_template"
CLONE_PREFIX = "ms5_sweep_"
# The client programs a run starts; one of these naming the run's database after the run died is a leftover.
CLIENT_PROGRAMS = {"pg_dump", "pg_restore", "pg_dumpall", "psql"}
KILLED_WAIT = 30.0        # seconds a SIGKILLed run may take to be reaped
LEFTOVER_GRACE = 2.0      # seconds a child may take to follow its killed parent
MEASURE_TIMEOUT = 1800.0  # bound on the uninterrupted run that measures T


class SweepError(Exception):
    """The sweep cannot go on (server, template, the uninterrupted run): exit 1 with the message."""


# -- output ------------------------------------------------------------------------------------------

def say(line: str = "") -> None:
    print(line, flush=True)


def tail(path: Path, lines: int = 8) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [l for l in text.splitlines() if l.strip()][-lines:]


# -- one full run as a subprocess --------------------------------------------------------------------

@dataclass
class RunFiles:
    """Where one full run writes: its reports (latest.json), its stdout and its log file."""

    root: Path
    name: str

    @property
    def reports(self) -> Path:
        return self.root / f"reports-{self.name}"

    @property
    def stdout(self) -> Path:
        return self.root / f"{self.name}.out"

    @property
    def log(self) -> Path:
        return self.root / f"{self.name}.log"

    def record(self) -> dict | None:
        try:
            return json.loads((self.reports / "latest.json").read_text())
        except (OSError, ValueError):
            return None

    def verdict(self) -> str:
        record = self.record()
        if record is None:
            return "no latest.json"
        return str(record.get("verdict"))


def start_run(dsn: str, files: RunFiles, backups: Path) -> subprocess.Popen:
    """``pytest suites`` against ``dsn`` in the project, in a session (process group) of its own."""
    command = [sys.executable, "-m", "pytest", "suites", "--dsn", dsn, "--reports", str(files.reports),
               "--backups", str(backups), "-p", "no:cacheprovider", "-q",
               "--log-file", str(files.log), "--log-file-level", "INFO", "--log-file-format", "%(created).3f %(message)s"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}   # a killed run's last words reach its stdout file
    out = open(files.stdout, "wb")
    try:
        return subprocess.Popen(command, cwd=PROJECT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    finally:
        out.close()


def kill_group(pgid: int) -> None:
    """SIGKILL what is left of a run we started (its process group)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_to_end(dsn: str, files: RunFiles, backups: Path, timeout: float) -> tuple[int | None, float]:
    """Run to completion; returns (exit code or None when it hung and was killed, seconds)."""
    started = time.monotonic()
    proc = start_run(dsn, files, backups)
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        if proc.poll() is None:
            kill_group(proc.pid)
            proc.wait(KILLED_WAIT)
        kill_group(proc.pid)   # a hung run's children, if any
    return code, time.monotonic() - started


# -- what a killed run was doing, and what it left -----------------------------------------------------

_NODE = re.compile(r"^suites/(?P<phase>[a-z]+)/[^:\s]+::(?P<test>[A-Za-z0-9_]+(?:\[[^\]]*\])?)(?P<rest>.*)$")
_OUTCOME = re.compile(r"\b(PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b")
# pytest's closing sections (warnings summary, short test summary, the verdict line): the tests are over.
_CLOSING = re.compile(r"^=+ .+ =+$")
_LOG_LINE = re.compile(r"^(?P<created>\d+\.\d+) (?P<message>.*)$")


def _test_label(test: str) -> str:
    name, _, param = test.partition("[")
    param = param.rstrip("]")
    if name == "test_step" and param:
        return param.replace("factory_telemetry.", "")
    label = name.removeprefix("test_").replace("_", " ")
    return f"{label} [{param}]" if param else label


def what_it_was_doing(files: RunFiles, started_steps: list[str], killed_at: float | None = None) -> str:
    """From the run's stdout (the last test it reached), its log file (last line) and the ledger.

    ``killed_at``: the time.time() of the kill, to say how old the last log line was.
    """
    phase = label = None
    finished = closing = False
    for line in tail(files.stdout, 100_000):
        if _CLOSING.match(line.strip()):
            closing = True    # what follows names tests again (warnings) but none runs any more
        if closing:
            continue
        match = _NODE.match(line)
        if match:
            phase, label = match["phase"], _test_label(match["test"])
            finished = bool(_OUTCOME.search(match["rest"]))
        elif phase and _OUTCOME.match(line.strip()):
            finished = True   # the outcome printed after the test's live log
    if closing:
        where = "after the last test: writing the summary and reports"
    elif phase is None:
        where = "before the first test (start-up, collection, pre-flight set-up)"
    else:
        where = f"{'just after' if finished else 'during'} {phase}: {label}"
    parts = [where]
    last_log = tail(files.log, 1)
    if last_log:
        match = _LOG_LINE.match(last_log[0].strip())
        message, age = (match["message"], float(match["created"])) if match else (last_log[0].strip(), None)
        when = f" {killed_at - age:.1f} s before" if age is not None and killed_at is not None else ""
        parts.append(f'log{when} "{message[:70]}{"..." if len(message) > 70 else ""}"')
    if started_steps:
        parts.append(f"ledger: {', '.join(started_steps)} started")
    return "; ".join(parts)


def started_steps(conninfo: str) -> list[str]:
    """Ledger rows the killed run left 'started' (none when it had not made the ledger yet)."""
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
            if conn.execute("SELECT to_regclass('tsmigrate.ledger')").fetchone()[0] is None:
                return []
            return [r[0] for r in conn.execute(
                "SELECT step FROM tsmigrate.ledger WHERE outcome = 'started' ORDER BY attempt").fetchall()]
    except psycopg.Error as exc:
        return [f"(ledger unreadable: {first_line(exc)})"]


@dataclass(frozen=True)
class Leftover:
    pid: int
    program: str
    command: str


def _processes():
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if not raw:
            continue   # a kernel thread or a zombie
        fields = stat[stat.rindex(")") + 2:].split()
        state, pgrp = fields[0], int(fields[2])
        if state == "Z":
            continue
        argv = [a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0")]
        yield pid, pgrp, argv


def leftovers(dbname: str, pgid: int, password: str) -> list[Leftover]:
    """Processes of the dead run still alive: anything in its process group, and any client program
    whose command line names its database (or a scratch copy of it, ``<dbname>_...``)."""
    names_db = re.compile(re.escape(dbname) + r"(?![0-9A-Za-z])")
    found = []
    for pid, pgrp, argv in _processes():
        if pid == os.getpid():
            continue
        program = Path(argv[0]).name
        command = " ".join(argv)
        if pgrp == pgid or (program in CLIENT_PROGRAMS and names_db.search(command)):
            if password:
                command = command.replace(password, "***")
            found.append(Leftover(pid, program, command[:200]))
    return found


def leftovers_after_grace(dbname: str, pgid: int, password: str) -> list[Leftover]:
    deadline = time.monotonic() + LEFTOVER_GRACE
    while True:
        found = leftovers(dbname, pgid, password)
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)


# -- fingerprints --------------------------------------------------------------------------------------

def fingerprint_problems(conninfo: str, legacy: dict[str, TableFingerprint]) -> list[str]:
    """[] when every legacy table holds exactly the legacy rows over its legacy columns."""
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        now, problems = fingerprints_as_before(conn, legacy)
    return [str(p) for p in problems] + [str(d) for d in compare(legacy, now)]


# -- the sweep -----------------------------------------------------------------------------------------

@dataclass
class Point:
    index: int
    kill_at: float
    passed: bool = False
    unreaped: bool = False
    details: list[str] = field(default_factory=list)


class Sweep:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.server = None
        self.info: ServerInfo | None = None
        self.work = Path(tempfile.mkdtemp(prefix="tsmigrate-sweep-"))
        self.legacy: dict[str, TableFingerprint] = {}
        self.duration = 0.0
        self.current: subprocess.Popen | None = None

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
        say(f"kill sweep: {args.points} points on a throwaway {args.server} PostgreSQL {self.info.version}, "
            f"{edition}, scale {args.scale} (~{scale.metric_hist_rows:,} metric_hist rows)")
        started = time.monotonic()
        build_legacy_database(self.info.conninfo(), scale, dbname=TEMPLATE)
        with psycopg.connect(self.info.conninfo(), autocommit=True) as admin:
            freeze(admin, TEMPLATE)
        say(f"legacy template {TEMPLATE} built in {time.monotonic() - started:.1f} s")

    def measure(self) -> None:
        """Legacy fingerprints on a copy, then one uninterrupted full run on it: T, and it must succeed."""
        with ScratchDatabase(self.info.conninfo(), CLONE_PREFIX + "measure", template=TEMPLATE) as name:
            dsn = self.info.conninfo(name)
            with psycopg.connect(dsn, autocommit=True) as conn:
                self.legacy = fingerprint_database(conn)
            rows = sum(fp.rows for fp in self.legacy.values())
            say(f"legacy fingerprints: {len(self.legacy)} tables, {rows:,} rows")
            root = self.work / "measure"
            root.mkdir()
            files = RunFiles(root, "run")
            code, seconds = run_to_end(dsn, files, root / "backups", self.args.timeout or MEASURE_TIMEOUT)
            verdict = files.verdict()
            if code is None or verdict != "SUCCESS" or code != 0:
                how = "did not end in time and was killed" if code is None else f"ended {verdict} (exit {code})"
                last = "\n".join("    " + l for l in tail(files.stdout, 12))
                raise SweepError(f"the uninterrupted full run {how} after {seconds:.1f} s: no kill point can be "
                                 f"judged against it. Its last lines:\n{last}")
            problems = fingerprint_problems(dsn, self.legacy)
            if problems:
                raise SweepError("the uninterrupted full run ended SUCCESS but the legacy rows differ: "
                                 + "; ".join(problems[:10]))
        self.duration = seconds
        step = seconds / (self.args.points + 1)
        say(f"uninterrupted run: SUCCESS in {seconds:.1f} s, fingerprints identical; a kill every {step:.1f} s, "
            f"each rerun {'at once' if not self.args.rerun_delay else f'{self.args.rerun_delay:g} s after the kill'}, "
            f"bounded to {self.rerun_timeout():.0f} s")

    def point(self, i: int) -> Point:
        n = self.args.points
        point = Point(i, self.duration * i / (n + 1))
        width = len(str(n))
        name = f"{CLONE_PREFIX}{i:0{width}d}"
        root = self.work / f"point-{i:0{width}d}"
        root.mkdir()
        backups = root / "backups"
        words = [f"point {i:>{width + 1}}/{n}"]
        with ScratchDatabase(self.info.conninfo(), name, template=TEMPLATE):
            dsn = self.info.conninfo(name)
            killed_files = RunFiles(root, "killed")

            # 1. the run, killed at its moment
            proc = self.current = start_run(dsn, killed_files, backups)
            started = time.monotonic()
            deadline = started + point.kill_at
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)   # the run's main process only: its children are its business
                killed_after, killed_wall = time.monotonic() - started, time.time()
                try:
                    proc.wait(KILLED_WAIT)
                except subprocess.TimeoutExpired:
                    point.unreaped = True
                    point.details.append(f"the killed run was not reaped within {KILLED_WAIT:.0f} s")
                left = leftovers_after_grace(name, proc.pid, self.info.password)
                doing = what_it_was_doing(killed_files, started_steps(dsn), killed_wall)
                words.append(f"kill at {killed_after:5.1f} s ({doing})")
            else:
                left = []
                words.append(f"kill at {point.kill_at:5.1f} s: the run had already ended "
                             f"({killed_files.verdict()}, exit {proc.returncode} after {time.monotonic() - started:.1f} s)")
            kill_group(proc.pid)   # whatever a leftover check found: reported below, ended now
            self.current = None

            # 2. the rerun, to completion
            time.sleep(self.args.rerun_delay)
            rerun_files = RunFiles(root, "rerun")
            code, seconds = run_to_end(dsn, rerun_files, backups, self.rerun_timeout())
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
                    point.details.append(f"rerun's latest.json: verdict {record.get('verdict')}, exit_code "
                                         f"{record.get('exit_code')}, stopped {record.get('stopped')!r}, "
                                         f"failed tests {record.get('failed_tests')}")
                point.details.append("rerun's last lines:")
                point.details.extend("  " + l for l in tail(rerun_files.stdout, 10))
                log_tail = tail(rerun_files.log, 3)
                if log_tail:
                    point.details.append("rerun's last log lines:")
                    point.details.extend("  " + (m["message"] if (m := _LOG_LINE.match(l.strip())) else l)
                                         for l in log_tail)

            # 3. the data, as the legacy database had it
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
                words.append(f"CHILD LEFT ({', '.join(f'{l.program} pid {l.pid}' for l in left)})")
                point.details.extend(f"left after the kill: pid {l.pid}: {l.command}" for l in left)
            else:
                words.append("no child left")
        point.passed = rerun_ok and not problems and not left and not point.unreaped
        say("  ".join(words))
        for line in point.details:
            say("    " + line)
        shutil.rmtree(root, ignore_errors=True)
        return point


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tsmigrate.sweep",
        description="Kill a full tsmigrate run (pytest suites) with SIGKILL at N evenly spread moments, on fresh "
                    "copies of a legacy MS5.0 database, and check each time that a rerun ends SUCCESS with every "
                    "legacy row intact and no pg_dump/pg_restore of the killed run left behind.")
    parser.add_argument("--points", type=int, default=10, metavar="N",
                        help="how many kill moments, spread evenly over an uninterrupted run (default 10)")
    parser.add_argument("--scale", choices=sorted(SCALES), default="demo",
                        help="history in the legacy database (default demo)")
    parser.add_argument("--server", choices=["local"], default="local",
                        help="where the throwaway server runs (local: initdb/pg_ctl on this machine)")
    parser.add_argument("--keep-going", action="store_true",
                        help="run every point even after one failed (default: stop at the first failure)")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="bound on each full run (default: 1800 s for the measured run, "
                             "max(300 s, 5 x its duration) for each rerun)")
    parser.add_argument("--rerun-delay", type=float, default=0.0, metavar="SECONDS",
                        help="pause between the kill and the rerun (default 0: rerun at once, as an automatic "
                             "retry would; the killed run's server sessions may still be ending)")
    parser.add_argument("--ready-timeout", type=float, default=60.0, metavar="SECONDS",
                        help="seconds the throwaway server may take to start (default 60)")
    args = parser.parse_args(argv)
    if args.points < 1:
        parser.error(f"--points must be at least 1, got {args.points}")
    if args.timeout is not None and args.timeout <= 0:
        parser.error(f"--timeout must be positive, got {args.timeout:g}")
    if args.rerun_delay < 0:
        parser.error(f"--rerun-delay must not be negative, got {args.rerun_delay:g}")
    if args.ready_timeout <= 0:
        parser.error(f"--ready-timeout must be positive, got {args.ready_timeout:g}")
    if not (PROJECT / "suites").is_dir():
        parser.error(f"no suites/ directory beside the package ({PROJECT}): run the sweep from a checkout "
                         "of the project (pip install -e .)")
    return args


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:   # argparse: --help (0) or a usage error (2), message already on stderr
        return exc.code if isinstance(exc.code, int) else 2
    signal.signal(signal.SIGTERM, _terminate)
    sweep_started = time.monotonic()
    sweep = Sweep(args)
    points: list[Point] = []
    try:
        sweep.set_up()
        sweep.measure()
        for i in range(1, args.points + 1):
            points.append(sweep.point(i))
            if not points[-1].passed and not args.keep_going and i < args.points:
                say(f"stopping at the first failed point ({args.points - i} not run; --keep-going runs them all)")
                break
    except SweepError as exc:
        say(f"kill sweep: cannot go on: {exc}")
        return 1
    except KeyboardInterrupt:
        say("kill sweep: interrupted; cleaning up")
        return 1
    except (psycopg.Error, OSError) as exc:
        say(f"kill sweep: stopped by an error: {type(exc).__name__}: {str(exc).strip()}")
        return 1
    finally:
        sweep.close()
    passed = sum(p.passed for p in points)
    failed = len(points) - passed
    not_run = args.points - len(points)
    say(f"kill sweep: {args.points} points, {passed} passed, {failed} failed"
        + (f", {not_run} not run" if not_run else "") + f" ({time.monotonic() - sweep_started:.0f} s)")
    return 0 if passed == args.points else 1


if __name__ == "__main__":
    sys.exit(main())
