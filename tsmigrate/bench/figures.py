"""Benchmark figures: a value measured in this run beside its limit from the plan, their ratio and whether it
passes; and how the terminal and the reports write those numbers.

Every benchmark returns a :class:`Figure`, or raises :class:`BenchSkipped` when it cannot be measured here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


class BenchSkipped(Exception):
    """A benchmark that cannot be measured here; the message says why."""


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    limit: float
    better: str  # "higher" (value must reach the limit) or "lower" (must stay under it)
    details: str = ""
    extra: dict = field(default_factory=dict, compare=False)  # more figures (p50, plan, sizes...)

    @property
    def ratio(self) -> float:
        """value / limit: at least 1 passes a "higher" figure, at most 1 a "lower" one."""
        return self.value / self.limit if self.limit else math.inf

    @property
    def passed(self) -> bool:
        return self.value >= self.limit if self.better == "higher" else self.value <= self.limit

    @property
    def margin(self) -> float:
        """How many times better than the limit (above 1 passes), whichever way is better."""
        if self.better == "higher":
            return self.ratio
        return self.limit / self.value if self.value else math.inf

    def sentence(self) -> str:
        bound = "at least" if self.better == "higher" else "under"
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"{self.name}: {fmt(self.value)} {self.unit}, limit {bound} {fmt(self.limit)} {self.unit} "
            f"(ratio {self.ratio:.3g}, {fmt_margin(self.margin)} {'better' if self.passed else 'worse'} than the "
            f"limit): {verdict}" + (f"; {self.details}" if self.details else "")
        )

    def to_dict(self) -> dict:
        """JSON-ready: an infinite ratio or margin (a limit of 0, a value of 0) becomes None."""
        d = asdict(self)
        d.update(ratio=self.ratio, passed=self.passed, margin=self.margin)
        for key in ("value", "ratio", "margin"):
            if not math.isfinite(d[key]):
                d[key] = None
        return d


def fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "none"
    if math.isinf(value):
        return "unbounded"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:,.1f}"
    return f"{value:.3g}"


def fmt_margin(margin: float | None) -> str:
    if margin is None or math.isinf(margin):
        return "infinitely"
    m = margin if margin >= 1 else (1 / margin if margin else math.inf)
    return f"{m:.1f}x" if not math.isinf(m) else "infinitely"


def as_dict(figure) -> dict:
    """A figure, or its to_dict() form (as the reports keep it), with value, ratio and margin as numbers."""
    d = figure.to_dict() if isinstance(figure, Figure) else dict(figure)
    value = math.inf if d.get("value") is None else float(d["value"])
    higher = d.get("better", "higher") == "higher"
    d["value"] = value
    d.setdefault("unit", "")
    if d.get("limit") is None:  # a figure without a limit: shown at the limit line, as it came
        d.update(limit=math.nan, ratio=math.nan, margin=1.0)
        d.setdefault("passed", True)
        return d
    limit = float(d["limit"])
    d["ratio"] = value / limit if limit else math.inf
    d["margin"] = d["ratio"] if higher else (limit / value if value else math.inf)
    d.setdefault("passed", value >= limit if higher else value <= limit)
    return d
