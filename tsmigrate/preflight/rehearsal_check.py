"""Pre-flight check by rehearsal: the pending steps applied to a scratch copy of the target (tsmigrate.rehearsal),
its first failure as a finding: a statement's (PF040), or a server resource it ran out of (PF068)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import psycopg

from ..causes import Cause, classify
from ..errors import first_line
from ..findings import ADVISORY, Finding
from ..migrations import MigrationFile
from ..plan import Plan
from ..rehearsal import RehearsalNotFaithful, RehearsalResult, RehearsalUnavailable, rehearse
from ..serverfiles import ServerFiles, locate
from ..target import Target
from .checks import finding
from .window import estimate_window

log = logging.getLogger(__name__)


def rehearsal(
    target: Target,
    migrations_dir: Path,
    pending: list[MigrationFile],
    plan: Plan | None,
    on_estimate: Callable[[dict], None] | None = None,
) -> list[Finding]:
    """The pending steps applied to a scratch copy of the target: its first failure, or why no copy could be made.
    After a rehearsal that succeeded, ``on_estimate`` gets the window's estimate (tsmigrate.preflight.window)."""
    files = _server_files(target)
    try:
        result = rehearse(target, pending, plan)
    except (RehearsalUnavailable, psycopg.Error) as exc:
        cause = _classify(exc, files)
        if cause is not None:  # e.g. no room for the scratch copy: the run's own copies need more
            return [_out_of(cause, "making the scratch copy", str(exc).splitlines()[0])]
        if isinstance(exc, psycopg.Error):
            raise
        if isinstance(exc, RehearsalNotFaithful):  # a copy that is not the target proves nothing: no GO on it
            return [
                finding(
                    "PF040",
                    f"no faithful rehearsal: {exc}",
                    hint="Run the pre-flight as a superuser, whom TimescaleDB lets load its catalog into "
                    "the scratch copy; the target is untouched.",
                )
            ]
        return [finding("PF040", f"no rehearsal: {exc}", severity=ADVISORY)]
    for label, seconds in result.steps:
        log.info("rehearsal: %-40s %8.2f s", label, seconds)
    if result.cause is not None:
        return [
            _out_of(_classify(result.cause_error, files) or result.cause, result.failed_step, result.cause_error or "")
        ]
    if result.error is None:
        if on_estimate is not None:
            _estimate(target, plan, result, pending, on_estimate)
        return []
    path = getattr(result.error, "file", None)
    return [
        finding(
            "PF040",
            f"{result.failed_step} failed on the scratch copy: {result.error}",
            path=str(migrations_dir / path) if path else None,
            line=getattr(result.error, "line", None),
        )
    ]


def _estimate(
    target: Target,
    plan: Plan | None,
    result: RehearsalResult,
    pending: list[MigrationFile],
    on_estimate: Callable[[dict], None],
) -> None:
    """Best effort: an estimate that cannot be made is said in the log, and costs the GO nothing."""
    try:
        with target.connect() as conn:
            estimate = estimate_window(conn, plan, result, pending)
    except Exception as exc:
        log.warning("rehearsal: the window could not be estimated (%s)", first_line(exc))
        return
    log.info(
        "rehearsal: the execute phase should take about %.0f s, the application kept out about %.0f s",
        estimate["execute_seconds"],
        estimate["application_out_seconds"],
    )
    on_estimate(estimate)


def _out_of(cause: Cause, step: str | None, error: str) -> Finding:
    return finding(
        "PF068",
        f"{step or 'the rehearsal'} ran out of a server resource on the scratch copy: "
        f"{cause.kind}: {cause.what} ({error}). The run needs at least as much",
        path=cause.path,
        hint=f"{cause.fix} The statements are not at fault; the target is untouched.",
    )


def _server_files(target: Target) -> ServerFiles:
    try:
        with target.connect() as conn:
            return locate(conn)
    except Exception:  # best effort: the cause is then named without its directory
        return ServerFiles(None)


def _classify(error, files: ServerFiles) -> Cause | None:
    """The cause, with the server's directories named (the server's messages give paths relative to them)."""
    return classify(error, data_directory=files.data_directory, wal_directory=files.wal_directory)
