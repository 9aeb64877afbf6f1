"""The reports' one chart: horizontal bars in inline SVG, no plotting library.

Two scales: linear from zero (how long each step took), and logarithmic around a reference line (how
many times better or worse than its limit each benchmark figure is; bars start at the line).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

LABEL_WIDTH, VALUE_WIDTH, BAR_HEIGHT, GAP, TOP = 280, 150, 16, 6, 24
LABEL_CHARS = 44


@dataclass(frozen=True)
class Bar:
    label: str
    value: float  # where the bar ends, in the scale's units
    colour: str
    text: str  # written after the bar: the value in words ("2.5 s", "250 ms (2.5x)")
    tooltip: str = ""  # shown on hover; "label: text" when empty


@dataclass(frozen=True)
class LogScale:
    """A logarithmic scale between two values, with a reference line (a limit) where the bars start."""

    low: float = 0.1
    high: float = 1000.0
    reference: float = 1.0
    ticks: tuple[float, ...] = (0.1, 1, 10, 100, 1000)
    tick_suffix: str = "x"

    def fraction(self, value: float) -> float:
        clamped = min(max(value if value > 0 else self.low, self.low), self.high)
        return (math.log10(clamped) - math.log10(self.low)) / (math.log10(self.high) - math.log10(self.low))


def bar_chart_svg(title: str, bars: Sequence[Bar], *, scale: LogScale | None = None, width: int = 720) -> str:
    """One bar per item, labelled on the left, its text on the right; linear from zero unless a LogScale is given."""
    plot_w = width - LABEL_WIDTH - VALUE_WIDTH
    if scale is None:
        largest = max([b.value for b in bars if math.isfinite(b.value)] + [1e-9]) * 1.05

        def x(value: float) -> float:
            return LABEL_WIDTH + min(max(value, 0.0), largest) / largest * plot_w

        origin = x(0.0)
    else:

        def x(value: float) -> float:
            return LABEL_WIDTH + scale.fraction(value) * plot_w

        origin = x(scale.reference)
    bottom = 20 if scale is not None else 8
    height = TOP + max(1, len(bars)) * (BAR_HEIGHT + GAP) + bottom
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="tsm-chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f'font-family="Helvetica, Arial, sans-serif" font-size="11"><title>{escape(title)}</title>',
        f'<text x="0" y="14" font-size="12" font-weight="bold">{escape(title)}</text>',
    ]
    if scale is not None:
        for tick in scale.ticks:
            tx = x(tick)
            out.append(f'<line x1="{tx:.1f}" y1="{TOP}" x2="{tx:.1f}" y2="{height - bottom}" stroke="#ddd"/>')
            out.append(
                f'<text x="{tx:.1f}" y="{height - 6}" text-anchor="middle" fill="#555">'
                f"{tick:g}{escape(scale.tick_suffix)}</text>"
            )
    for i, bar in enumerate(bars):
        y = TOP + i * (BAR_HEIGHT + GAP)
        end = x(bar.value)
        left, right = min(origin, end), max(origin, end)
        shown = bar.label if len(bar.label) <= LABEL_CHARS else bar.label[: LABEL_CHARS - 1] + "\u2026"
        out.append(
            f"<g><title>{escape(bar.tooltip or f'{bar.label}: {bar.text}')}</title>"
            f'<text x="{LABEL_WIDTH - 6}" y="{y + BAR_HEIGHT - 4}" text-anchor="end">{escape(shown)}</text>'
            f'<rect x="{left:.1f}" y="{y}" width="{max(right - left, 1.0):.1f}" height="{BAR_HEIGHT}" '
            f'fill="{escape(bar.colour)}"/>'
            f'<text x="{max(right, left + 1.0) + 4:.1f}" y="{y + BAR_HEIGHT - 4}">{escape(bar.text)}</text></g>'
        )
    if scale is not None:
        out.append(
            f'<line x1="{origin:.1f}" y1="{TOP - 4}" x2="{origin:.1f}" y2="{height - bottom + 4}" '
            'stroke="#000" stroke-width="2"/>'
        )
    out.append("</svg>")
    return "".join(out)
