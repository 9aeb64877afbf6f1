"""One full run (``pytest suites``) as a subprocess in a process group of its own: where it writes, how it
is started, killed and run to its end, and how its output files are read back."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
KILLED_WAIT = 30.0  # seconds a SIGKILLed run may take to be reaped
# The run's log file: each line the record's time.time() and its message, so a reader can say how old it is.
LOG_FORMAT = "%(created).3f %(message)s"
LOG_LINE = re.compile(r"^(?P<created>\d+\.\d+) (?P<message>.*)$")


def tail(path: Path, lines: int = 8) -> list[str]:
    """The last non-blank lines of a run's output or log file ([] when it was never written)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


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


def start_run(dsn: str, files: RunFiles, backups: Path, migrations: Path | None = None) -> subprocess.Popen:
    """``pytest suites`` against ``dsn`` in the project, in a session (process group) of its own; ``migrations``
    another migrations directory than the project's."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "suites",
        "--dsn",
        dsn,
        "--reports",
        str(files.reports),
        "--backups",
        str(backups),
        "-p",
        "no:cacheprovider",
        "-q",
        *(["--migrations", str(migrations)] if migrations else []),
        "--log-file",
        str(files.log),
        "--log-file-level",
        "INFO",
        "--log-file-format",
        LOG_FORMAT,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # a killed run's last words reach its stdout file
    with open(files.stdout, "wb") as out:  # the child holds its own copy of the file once started
        return subprocess.Popen(
            command,
            cwd=PROJECT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )


def kill_group(pgid: int) -> None:
    """SIGKILL what is left of a run we started (its process group)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_to_end(
    dsn: str, files: RunFiles, backups: Path, timeout: float, migrations: Path | None = None
) -> tuple[int | None, float]:
    """Run to completion; returns (exit code or None when it hung and was killed, seconds)."""
    started = time.monotonic()
    proc = start_run(dsn, files, backups, migrations)
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        if proc.poll() is None:
            kill_group(proc.pid)
            proc.wait(KILLED_WAIT)
        kill_group(proc.pid)  # a hung run's children, if any
    return code, time.monotonic() - started
