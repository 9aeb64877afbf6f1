"""The resource timeline as inline SVG (no script, no plotting library): one panel per figure, time across, the
run's steps drawn as bands behind every panel and named above them.

    timeline_svg(summary.timeline)   # the record's ``timeline``: samples, bands
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape

WIDTH, LEFT, RIGHT = 960, 60, 20
BAND_ROW, PANEL_H, PANEL_GAP = 14, 60, 26
BAND_COLOURS = ("#e3ecf7", "#f4ece0")
PHASE_COLOUR, FAILED_COLOUR, ERROR_COLOUR = "#e9e4f5", "#f7d4d1", "#c62828"
MIB, GIB = 2**20, 2**30


def _series(samples: list[dict], value: Callable[[dict], float | None]) -> list[tuple[float, float]]:
    points = []
    for s in samples:
        if s.get("error"):
            continue
        try:
            v = value(s)
        except (KeyError, TypeError):
            v = None
        if v is not None:
            points.append((float(s["at"]), float(v)))
    return points


def _lag(s: dict) -> float | None:
    lags = [r["lag_bytes"] for r in s.get("replicas", []) if r.get("lag_bytes") is not None]
    return max(lags) / MIB if lags else None


def _retained(s: dict) -> float | None:
    kept = [r["retained_bytes"] for r in s.get("slots", []) if r.get("retained_bytes") is not None]
    return max(kept) / MIB if kept else None


# (title, unit, [(name, colour, value of a sample)])
PANELS: list[tuple[str, str, list[tuple[str, str, Callable[[dict], float | None]]]]] = [
    ("Database size", "MiB", [("size", "#1f6feb", lambda s: s["database_bytes"] / MIB)]),
    ("WAL written since the start", "MiB", [("WAL", "#8250df", lambda s: s["wal_bytes"] / MIB)]),
    ("Free room in the data directory", "GiB", [("free", "#1a7f37", lambda s: s["free_bytes"] / GIB)]),
    (
        "Sessions on the database",
        "",
        [
            ("active", "#1f6feb", lambda s: s["sessions"].get("active", 0)),
            ("idle in transaction", "#bf8700", lambda s: s["sessions"].get("idle in transaction", 0)),
            ("waiting on a lock", "#cf222e", lambda s: s["lock_waits"]),
        ],
    ),
    ("Temporary files written", "MiB", [("temp", "#9a6700", lambda s: s["temp_bytes"] / MIB)]),
    ("Checkpoints", "", [("checkpoints", "#57606a", lambda s: s["checkpoints"])]),
    (
        "Replication",
        "MiB",
        [("largest replica lag", "#cf222e", _lag), ("largest slot's retained WAL", "#8250df", _retained)],
    ),
    (
        "Host",
        "%",
        [("CPU", "#1f6feb", lambda s: s["cpu_percent"]), ("memory", "#1a7f37", lambda s: s["memory_percent"])],
    ),
]


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 10 or v == int(v) else f"{v:.2g}"


def timeline_svg(timeline: dict) -> str:
    """The chart of a record's ``timeline``; a panel without any value (no replica, room not measurable from here)
    is left out and named in the chart's note."""
    samples = timeline.get("samples", [])
    bands = timeline.get("bands", [])
    times = [float(s["at"]) for s in samples] + [float(b[k]) for b in bands for k in ("started_at", "finished_at")]
    if not times:
        return '<p class="tsm-note">No sample was taken.</p>'
    t0, t1 = min(times), max(times)
    span = max(t1 - t0, 1e-3)
    plot_w = WIDTH - LEFT - RIGHT

    def x(t: float) -> float:
        return LEFT + (t - t0) / span * plot_w

    panels = [(title, unit, [(n, c, _series(samples, f)) for n, c, f in lines]) for title, unit, lines in PANELS]
    shown = [p for p in panels if any(points for _, _, points in p[2])]
    left_out = [p[0] for p in panels if p not in shown]
    rows = max(1, min(4, len(bands)))
    top = 22 + rows * BAND_ROW
    height = top + len(shown) * (PANEL_H + PANEL_GAP) + 24
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="tsm-chart tsm-timeline" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="Resource timeline" '
        'font-family="Helvetica, Arial, sans-serif" font-size="11"><title>Resource timeline of the run</title>',
        f'<text x="0" y="14" font-size="12" font-weight="bold">What the server went through ({len(samples)} samples '
        f"over {_fmt(span)} s)</text>",
    ]
    bottom = height - 24
    names = []  # drawn after every band, so that no later band covers a name
    for i, band in enumerate(bands):
        bx, bw = x(float(band["started_at"])), max(x(float(band["finished_at"])) - x(float(band["started_at"])), 1.0)
        colour = (
            FAILED_COLOUR
            if band.get("status") == "failed"
            else PHASE_COLOUR
            if band.get("kind") == "phase"
            else BAND_COLOURS[i % 2]
        )
        seconds = float(band["finished_at"]) - float(band["started_at"])
        tip = f"{band['label']}: {seconds:.1f} s" + (f" ({band['status']})" if band.get("status") else "")
        ty = 22 + (i % rows) * BAND_ROW + 10
        # A name only where it fits (about 6 px a character) before the next band on its row; each names itself on
        # hover.
        until = x(float(bands[i + rows]["started_at"])) if i + rows < len(bands) else WIDTH - RIGHT
        room = int((until - bx - 4) // 6)
        label = band["label"] if len(band["label"]) <= room else band["label"][: max(room - 1, 0)] + "\u2026"
        name = f'<text x="{bx + 2:.1f}" y="{ty}" fill="#333">{escape(label)}</text>' if room >= 4 else ""
        out.append(
            f'<g class="tsm-band"><title>{escape(tip)}</title>'
            f'<rect x="{bx:.1f}" y="{ty - 10}" width="{bw:.1f}" height="{bottom - ty + 10}" fill="{colour}" '
            f'opacity="0.8"/></g>'
        )
        names.append(name)
    out += names
    for p, (title, unit, lines) in enumerate(shown):
        y0 = top + p * (PANEL_H + PANEL_GAP) + 14
        values = [v for _, _, points in lines for _, v in points]
        low, high = min(0.0, *values), max(values)
        high = high if high > low else low + 1.0

        def y(v: float, y0: float = y0, low: float = low, high: float = high) -> float:
            return y0 + PANEL_H - (v - low) / (high - low) * PANEL_H

        legend = ", ".join(
            f'<tspan fill="{colour}">\u25a0</tspan> {escape(n)}' for n, colour, points in lines if points
        )
        out.append(
            f'<text x="{LEFT}" y="{y0 - 4}"><tspan font-weight="bold">{escape(title)}</tspan>'
            f"{' (' + escape(unit) + ')' if unit else ''}: {legend}</text>"
            f'<text x="{LEFT - 4}" y="{y0 + 8}" text-anchor="end" fill="#555">{_fmt(high)}</text>'
            f'<text x="{LEFT - 4}" y="{y0 + PANEL_H}" text-anchor="end" fill="#555">{_fmt(low)}</text>'
            f'<rect x="{LEFT}" y="{y0}" width="{plot_w}" height="{PANEL_H}" fill="none" stroke="#ccc"/>'
        )
        for name, colour, points in lines:
            if not points:
                continue
            path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
            last = points[-1][1]
            out.append(
                f'<polyline class="tsm-series" data-series="{escape(name)}" points="{path}" fill="none" '
                f'stroke="{colour}" stroke-width="1.5"><title>{escape(f"{name}: last {_fmt(last)} {unit}")}</title>'
                "</polyline>"
            )
    for s in samples:  # a failed sample shows where it failed
        if s.get("error"):
            at, why = x(float(s["at"])), escape("sample failed: " + s["error"])
            out.append(
                f'<line x1="{at:.1f}" y1="{bottom - 6}" x2="{at:.1f}" y2="{bottom}" stroke="{ERROR_COLOUR}" '
                f'stroke-width="2"><title>{why}</title></line>'
            )
    out.append(f'<text x="{LEFT}" y="{height - 6}" fill="#555">0 s</text>')
    out.append(f'<text x="{WIDTH - RIGHT}" y="{height - 6}" text-anchor="end" fill="#555">{_fmt(span)} s</text>')
    if left_out:
        out.append(
            f'<text x="{LEFT + 60}" y="{height - 6}" fill="#555">not measured from here: '
            f"{escape(', '.join(left_out))}</text>"
        )
    out.append("</svg>")
    return "".join(out)
