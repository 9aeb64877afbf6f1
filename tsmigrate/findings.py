"""One problem found in a migration: what is wrong, where, and how to fix it.

Shared by the static lint and the live pre-flight, so reports can list both the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

BLOCKING = "blocking"  # the migration must not run until this is fixed
ADVISORY = "advisory"  # worth a look; the migration can still run

SEVERITIES = (BLOCKING, ADVISORY)


@dataclass(frozen=True)
class Finding:
    code: str  # stable rule code, e.g. "TS001"; reports and suppressions key on it
    severity: str  # BLOCKING or ADVISORY
    message: str  # what is wrong, naming the table and column
    path: str | None = None  # the SQL file, when the finding comes from one
    line: int | None = None  # 1-based line in that file
    table: str | None = None  # "schema.table" or the bare name, as written
    hint: str = ""  # how to fix it

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, not {self.severity!r}")

    @property
    def blocking(self) -> bool:
        return self.severity == BLOCKING

    def location(self) -> str:
        """ "path:line", or whichever of the two is known ("" when neither is)."""
        if self.path is not None and self.line is not None:
            return f"{self.path}:{self.line}"
        if self.path is not None:
            return self.path
        return f"line {self.line}" if self.line is not None else ""

    @property
    def text(self) -> str:
        """The message, naming the table when the message itself does not."""
        if self.table and self.table.split(".")[-1].strip('"') not in self.message:
            return f"{self.message} (table {self.table})"
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready mapping, with the location spelled out for readers of the report."""
        return {**asdict(self), "location": self.location()}

    def __str__(self) -> str:
        where = self.location()
        return f"{where + ': ' if where else ''}{self.code} {self.severity}: {self.text}"
