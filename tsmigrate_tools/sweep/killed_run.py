"""What a killed run was doing: the last test its stdout reached, its last log line, the ledger steps it
left started."""

from __future__ import annotations

import re

import psycopg

from tsmigrate.db import one
from tsmigrate.errors import first_line

from .runs import LOG_LINE, RunFiles, tail

_NODE = re.compile(r"^suites/(?P<phase>[a-z]+)/[^:\s]+::(?P<test>[A-Za-z0-9_]+(?:\[[^\]]*\])?)(?P<rest>.*)$")
_OUTCOME = re.compile(r"\b(PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b")
# pytest's closing sections (warnings summary, short test summary, the verdict line): the tests are over.
_CLOSING = re.compile(r"^=+ .+ =+$")


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
            closing = True  # what follows names tests again (warnings) but none runs any more
        if closing:
            continue
        match = _NODE.match(line)
        if match:
            phase, label = match["phase"], _test_label(match["test"])
            finished = bool(_OUTCOME.search(match["rest"]))
        elif phase and _OUTCOME.match(line.strip()):
            finished = True  # the outcome printed after the test's live log
    if closing:
        where = "after the last test: writing the summary and reports"
    elif phase is None:
        where = "before the first test (start-up, collection, pre-flight set-up)"
    else:
        where = f"{'just after' if finished else 'during'} {phase}: {label}"
    parts = [where]
    last_log = tail(files.log, 1)
    if last_log:
        match = LOG_LINE.match(last_log[0].strip())
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
            if one(conn, "SELECT to_regclass('tsmigrate.ledger')") is None:
                return []
            return [
                r[0]
                for r in conn.execute(
                    "SELECT step FROM tsmigrate.ledger WHERE outcome = 'started' ORDER BY attempt"
                ).fetchall()
            ]
    except psycopg.Error as exc:
        return [f"(ledger unreadable: {first_line(exc)})"]
