"""What a conversion returns, and how it fails: the bottom layer of the convert package."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from ..plan import HypertablePlan


class ConversionError(RuntimeError):
    """The table cannot be converted as planned; the message says why and what to do."""


@dataclass
class ConversionResult:
    table: str
    already_hypertable: bool = False
    rows: int = 0
    nulls_filled: int = 0
    keys_rebuilt: list[str] = field(default_factory=list)
    views_recreated: list[str] = field(default_factory=list)
    compression: str = "not planned"
    retention: str = "not planned"
    chunks: int = 0
    seconds: float = 0.0
    rows_per_second: float = 0.0
    online: dict | None = None  # what the online path did (online.driver.OnlineReport), when taken

    def to_dict(self) -> dict:
        return asdict(self)


def plan_sha256(h: HypertablePlan) -> str:
    """A checksum of a table's plan entry, for the ledger."""
    text = json.dumps({k: str(v) for k, v in asdict(h).items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()
