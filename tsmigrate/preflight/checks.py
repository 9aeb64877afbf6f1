"""The PF codes of the pre-flight and the one way to make a finding of one (severity and hint from the registry)."""

from __future__ import annotations

from ..codes import CODES, Code
from ..findings import Finding

# The PF codes of the registry (tsmigrate/codes.py): severity, title and hint of each check.
CHECKS: dict[str, Code] = {code: c for code, c in CODES.items() if code.startswith("PF")}


def finding(
    code: str,
    message: str,
    *,
    path: str | None = None,
    line: int | None = None,
    table: str | None = None,
    severity: str | None = None,
    hint: str | None = None,
) -> Finding:
    check = CHECKS[code]
    return Finding(code, severity or check.severity, message, path, line, table, hint or check.hint)
