"""Pre-flight check by rehearsal: the pending steps applied to a scratch copy of the target (tsmigrate.rehearsal),
its first failure as a finding."""

from __future__ import annotations

import logging
from pathlib import Path

from ..findings import ADVISORY, Finding
from ..migrations import MigrationFile
from ..plan import Plan
from ..rehearsal import RehearsalUnavailable, rehearse
from ..target import Target
from .checks import finding

log = logging.getLogger(__name__)


def rehearsal(target: Target, migrations_dir: Path, pending: list[MigrationFile], plan: Plan | None) -> list[Finding]:
    """The pending steps applied to a scratch copy of the target: its first failure, or why no copy could be made."""
    try:
        result = rehearse(target, pending, plan)
    except RehearsalUnavailable as exc:
        return [finding("PF040", f"no rehearsal: {exc}", severity=ADVISORY)]
    for label, seconds in result.steps:
        log.info("rehearsal: %-40s %8.2f s", label, seconds)
    if result.error is None:
        return []
    path = getattr(result.error, "file", None)
    return [finding("PF040", f"{result.failed_step} failed on the scratch copy: {result.error}",
                    path=str(migrations_dir / path) if path else None, line=getattr(result.error, "line", None))]
