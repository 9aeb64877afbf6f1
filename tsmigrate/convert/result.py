"""What a conversion returns, and how it fails: the bottom layer of the convert package."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from ..plan import HypertablePlan


@contextmanager
def phase(phases: dict[str, float], name: str) -> Iterator[None]:
    """Adds the seconds the block takes to ``phases[name]``."""
    started = time.monotonic()
    try:
        yield
    finally:
        phases[name] = round(phases.get(name, 0.0) + time.monotonic() - started, 3)


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
    # Seconds per phase of the conversion (chunks and copy, index builds, foreign keys, swap, ...), for the benchmark.
    phases: dict[str, float] = field(default_factory=dict)
    online: dict | None = None  # what the online path did (online.driver.OnlineReport), when taken

    def to_dict(self) -> dict:
        return asdict(self)


def plan_sha256(h: HypertablePlan) -> str:
    """A checksum of a table's plan entry, for the ledger."""
    text = json.dumps({k: str(v) for k, v in asdict(h).items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()
