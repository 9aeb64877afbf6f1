"""The report's HTML: the verdict banner on top, then the findings, the migration steps, the tables'
fingerprints and the benchmark figures, as pieces fixtures/reporting.py hands to pytest-html.

The words come from words.py, the charts from charts.py; this module only lays them out. Every value is
escaped; nothing here may carry a password (fixtures/reporting.py redacts what it inserts).
"""

from __future__ import annotations

import math
import re
from html import escape
from typing import Any

from ..bench.figures import as_dict, fmt, fmt_margin
from ..findings import Finding
from ..summary import GOOD_VERDICTS, RunSummary, StepStatus, Verdict
from .charts import Bar, LogScale, bar_chart_svg
from .record import before_fingerprints
from .timeline_chart import timeline_svg
from .words import (
    below_target_lines,
    estimate_line,
    finding_place,
    finding_where,
    headline,
    kind_words,
    next_steps,
    unexplained_failures,
    verdict_words,
)

# Puts the summary (with the banner) right under the title; pytest-html would show it after the environment.
REPORT_CSS = """
body { display: flex; flex-direction: column; }
body > h1, body > h1 + p { order: -2; }
body > .summary { order: -1; }
.tsm-banner { border-radius: 6px; padding: 14px 18px; margin: 8px 0 14px; color: #fff; font-size: 14px; }
.tsm-banner.tsm-good { background: #1e7b34; }
.tsm-banner.tsm-bad { background: #b3261e; }
.tsm-banner.tsm-warn { background: #9a5b00; }
.tsm-verdict { font-size: 34px; font-weight: bold; letter-spacing: 1px; }
.tsm-headline { font-size: 17px; margin: 4px 0 6px; }
.tsm-meta { opacity: .9; }
.tsm-banner ul, .tsm-banner ol { margin: 6px 0; padding-left: 22px; }
.tsm-banner li { margin: 3px 0; }
.tsm-banner code { background: rgba(255,255,255,.18); padding: 0 3px; border-radius: 3px; }
.tsm-banner h3 { margin: 10px 0 2px; font-size: 14px; }
.tsm-fix { opacity: .92; font-style: italic; }
.tsm-msg { white-space: pre-line; }
.tsm-section { margin: 12px 0 18px; }
.tsm-section h2 { font-size: 16px; margin: 6px 0; }
table.tsm { border-collapse: collapse; margin: 4px 0 8px; }
table.tsm th, table.tsm td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
table.tsm th { background: #f2f2f2; color: #222; }
table.tsm td, table.tsmigrate-benchmarks td { color: #222; }
details.tsm-more > summary { cursor: pointer; margin: 4px 0; }
table.tsm td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.tsm-blocking { color: #b3261e; font-weight: bold; }
.tsm-advisory { color: #9a5b00; }
.tsm-ok { color: #1e7b34; font-weight: bold; }
.tsm-bad-text { color: #b3261e; font-weight: bold; }
.tsm-note { color: #555; margin: 2px 0 6px; }
"""


STATUS_COLOURS = {
    StepStatus.APPLIED: "#2e8b57",
    StepStatus.FAILED: "#c62828",
    StepStatus.ALREADY_APPLIED: "#9e9e9e",
    StepStatus.SKIPPED: "#bdbdbd",
}
PASS_COLOUR, FAIL_COLOUR = "#2da44e", "#cf222e"


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def seconds_text(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{int(value // 60)} min {value % 60:.0f} s"


def _with_code(text: str) -> str:
    """Escaped text with `commands` shown as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))


def banner_html(summary: RunSummary) -> str:
    """The verdict on top: what happened, what blocks, the restore outcome and what to do next."""
    verdict = summary.verdict()
    tone = (
        "tsm-good"
        if verdict in GOOD_VERDICTS
        else ("tsm-warn" if verdict in (Verdict.RESTORED, Verdict.BELOW_TARGET) else "tsm-bad")
    )
    exit_code = summary.exit_code if summary.exit_code is not None else ""
    parts = [
        f'<section class="tsm-banner {tone}" id="tsm-banner" data-verdict="{_e(verdict)}" '
        f'data-exit-code="{_e(exit_code)}">',
        f'<div class="tsm-verdict">{_e(verdict_words(summary))}</div>',
        f'<div class="tsm-headline">{_e(headline(summary))}</div>',
        f'<div class="tsm-meta">{_e(summary.target or "no target")} &middot; '
        f"{_e(kind_words(summary.kind))} &middot; exit code {_e(exit_code)}</div>",
    ]
    if summary.blocking:
        parts.append("<h3>Blocking findings</h3><ul>")
        for f in summary.blocking:
            parts.append(
                f'<li><b>{_e(f.code)}</b> {_e(finding_place(f))}: <span class="tsm-msg">{_e(f.text)}</span>'
                + (f'<br><span class="tsm-fix">Fix: {_e(f.hint)}</span>' if f.hint else "")
                + "</li>"
            )
        parts.append("</ul>")
    failures = unexplained_failures(summary)
    if failures:
        parts.append("<h3>Failed checks</h3><ul>")
        parts += [f"<li><code>{_e(n)}</code></li>" for n in failures]
        parts.append("</ul>")
    below = below_target_lines(summary)
    if below:
        parts.append("<h3>Benchmarks below target</h3><ul>")
        parts += [f'<li><span class="tsm-msg">{_e(line)}</span></li>' for line in below]
        parts.append("</ul>")
    if summary.restore:
        parts.append(f"<h3>Restore</h3><div>{_e(summary.restore)}</div>")
    if summary.backup:
        parts.append(
            f'<div class="tsm-meta">Backup: <code>{_e(summary.backup["path"])}</code> '
            f"(manifest sha256 <code>{_e(summary.backup['manifest_sha256'])}</code>)</div>"
        )
    estimate = estimate_line(summary)
    if estimate and verdict == Verdict.GO:
        parts.append(f'<div class="tsm-meta tsm-estimate" id="tsm-estimate">{_e(estimate)}</div>')
    parts.append("<h3>What to do next</h3><ol>")
    parts += [f"<li>{_with_code(step)}</li>" for step in next_steps(summary)]
    parts.append("</ol></section>")
    return "\n".join(parts)


def _section(title: str, body: str, anchor: str) -> str:
    return f'<section class="tsm-section" id="tsm-{anchor}"><h2>{_e(title)}</h2>\n{body}\n</section>'


def findings_html(findings: list[Finding]) -> str:
    if not findings:
        return '<p class="tsm-note">No findings.</p>'
    rows = []
    for f in sorted(findings, key=lambda f: (not f.blocking, f.code)):
        rows.append(
            f'<tr><td><b>{_e(f.code)}</b></td><td class="tsm-{_e(f.severity)}">{_e(f.severity)}</td>'
            f'<td>{_e(finding_where(f))}</td><td class="tsm-msg">{_e(f.message)}</td><td>{_e(f.hint)}</td></tr>'
        )
    return (
        '<table class="tsm tsm-findings"><tr><th>Code</th><th>Severity</th><th>Where</th><th>What</th>'
        "<th>How to fix</th></tr>\n" + "\n".join(rows) + "</table>"
    )


def _step_summary(step: dict) -> str:
    d = step.get("details") or {}
    if step["status"] == StepStatus.FAILED:
        where = f"{d['file']}:{d['line']}: " if d.get("file") and d.get("line") else ""
        return f"{where}{d.get('message', '')}"
    if step["status"] == StepStatus.ALREADY_APPLIED:
        return f"applied on {d.get('applied_at', '?')} by {d.get('by', '?')}"
    if "statements" in d:
        statements = d["statements"]
        if not statements:
            return "no statements"
        slowest = max(statements, key=lambda s: s["seconds"])
        return f"{len(statements)} statements; slowest: line {slowest['line']} ({seconds_text(slowest['seconds'])})"
    if "rows" in d:
        if d.get("already_hypertable"):
            return "already a hypertable; left as it was"
        filled = f", {d['nulls_filled']} NULL time values filled" if d.get("nulls_filled") else ""
        return f"{d['rows']} rows moved into {d.get('chunks', 0)} chunks{filled}"
    return ""


def _duration_bar(label: str, seconds: float, colour: str) -> Bar:
    return Bar(label, float(seconds), colour, seconds_text(float(seconds)))


def steps_html(steps: list[dict]) -> str:
    if not steps:
        return '<p class="tsm-note">No migration step ran.</p>'
    rows = []
    for s in steps:
        status = s["status"]
        css = "tsm-bad-text" if status == StepStatus.FAILED else ("tsm-ok" if status == StepStatus.APPLIED else "")
        rows.append(
            f'<tr><td>{_e(s["label"])}</td><td class="{css}">{_e(status)}</td>'
            f'<td class="num">{_e(seconds_text(float(s["seconds"])))}</td><td>{_e(_step_summary(s))}</td></tr>'
        )
    total = sum(float(s["seconds"]) for s in steps)
    chart = bar_chart_svg(
        f"Duration of each step (total {seconds_text(total)})",
        [_duration_bar(s["label"], s["seconds"], STATUS_COLOURS.get(s["status"], "#777")) for s in steps],
    )
    return (
        '<table class="tsm tsm-steps"><tr><th>Step</th><th>Status</th><th>Duration</th><th>What it did</th></tr>\n'
        + "\n".join(rows)
        + "</table>\n"
        + chart
    )


def step_detail_html(step: dict) -> str:
    """One step in detail: the statements of a file with their lines and timings, or a conversion's result."""
    d = step.get("details") or {}
    css = "tsm-bad-text" if step["status"] == StepStatus.FAILED else "tsm-ok"
    head = (
        f'<p><b>{_e(step["label"])}</b>: <span class="{css}">'
        f"{_e(step['status'])}</span> in {_e(seconds_text(float(step['seconds'])))}</p>"
    )
    if step["status"] == StepStatus.FAILED:
        rows = [
            ("file", f"{d.get('file', '')}:{d.get('line', '')}" if d.get("file") else None),
            ("statement", d.get("statement")),
            ("server said", d.get("message")),
            ("SQLSTATE", d.get("sqlstate")),
            ("detail", d.get("detail")),
            ("hint", d.get("hint")),
        ]
        return (
            head
            + '<table class="tsm">'
            + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows if v)
            + "</table>"
        )
    if "statements" in d:
        statements = d["statements"]
        body = "".join(
            f'<tr><td class="num">{_e(s["line"])}</td><td><code>{_e(s["statement"])}</code></td>'
            f'<td class="num">{_e(seconds_text(float(s["seconds"])))}</td></tr>'
            for s in statements
        )
        slowest = sorted(statements, key=lambda s: -s["seconds"])[:10]
        chart = (
            bar_chart_svg(
                "Slowest statements",
                [
                    _duration_bar(
                        f"line {s['line']}: {s['statement']}", s["seconds"], STATUS_COLOURS[StepStatus.APPLIED]
                    )
                    for s in slowest
                ],
            )
            if slowest
            else ""
        )
        notices = "".join(f"<li>{_e(n)}</li>" for n in d.get("notices", []))
        return (
            head
            + chart
            + '<table class="tsm"><tr><th>Line</th><th>Statement</th><th>Duration</th></tr>'
            + body
            + "</table>"
            + (f"<p>Server notices:</p><ul>{notices}</ul>" if notices else "")
        )
    if "rows" in d:
        facts = [
            ("rows moved into chunks", d.get("rows")),
            ("chunks", d.get("chunks")),
            ("NULL time values filled (recorded in tsmigrate.time_fills)", d.get("nulls_filled")),
            ("keys rebuilt with the time column", "; ".join(d.get("keys_rebuilt", [])) or "none"),
            ("views recreated", ", ".join(d.get("views_recreated", [])) or "none"),
            ("compression", d.get("compression")),
            ("retention", d.get("retention")),
            ("already a hypertable before", "yes" if d.get("already_hypertable") else "no"),
        ]
        return (
            head
            + '<table class="tsm">'
            + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
            + "</table>"
        )
    return head


def fingerprints_html(
    before: dict[str, dict], after: dict[str, dict], *, restored_identical: bool | None = None
) -> str:
    if not before and not after:
        return '<p class="tsm-note">No fingerprints in this run (no backup was taken).</p>'
    notes = [
        '<p class="tsm-note">Before: from the backup, in the dump\'s own snapshot. '
        "A fingerprint is the row count and a hash of every row's content.</p>"
    ]
    if restored_identical is not None:
        notes.append(
            f'<p class="{"tsm-ok" if restored_identical else "tsm-bad-text"}">The restored database '
            f"{'matches' if restored_identical else 'does NOT match'} these fingerprints, table by table.</p>"
        )
    elif not after:
        notes.append('<p class="tsm-note">After: not measured in this run (the post-flight measures them).</p>')
    rows = []
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name), after.get(name)
        if b and a:
            same = b["rows"] == a["rows"] and str(b["digest"]) == str(a["digest"])
            content = '<span class="tsm-ok">same</span>' if same else '<span class="tsm-bad-text">DIFFERENT</span>'
        else:
            content = "&mdash;" if not a else '<span class="tsm-note">new table</span>'
        rows.append(
            f'<tr><td>{_e(name)}</td><td class="num">{_e(b["rows"] if b else "")}</td>'
            f'<td class="num">{_e(a["rows"] if a else "")}</td><td>{content}</td></tr>'
        )
    table = (
        '<table class="tsm tsm-fingerprints"><tr><th>Table</th><th>Rows before</th>'
        "<th>Rows after</th><th>Content</th></tr>\n" + "\n".join(rows) + "</table>"
    )
    if len(rows) > 12:
        # A site has dozens of tables: say what matters in one line, the table on demand.
        differ = sum(1 for r in rows if "DIFFERENT" in r)
        total = sum(int(fp["rows"]) for fp in before.values())
        if differ:
            state = f"{differ} differ"
        elif after:
            state = "every table the same"
        elif restored_identical:
            state = "the restored database matches every table"
        else:
            state = "after: not measured"
        line = f"{len(rows)} tables, {total:,} rows before; {state}"
        table = f'<details class="tsm-more"><summary>{_e(line)}</summary>{table}</details>'
    return "".join(notes) + table


def figures_table_html(figures) -> str:
    """An HTML table of benchmark figures (objects or their to_dict() form): name, value, limit, ratio, verdict."""
    rows = []
    for f in map(as_dict, figures):
        bound = "&ge;" if f.get("better", "higher") == "higher" else "&lt;"
        verdict = "PASS" if f["passed"] else "FAIL"
        limit = "&mdash;" if math.isnan(f["limit"]) else f"{bound} {_e(fmt(f['limit']))} {_e(f['unit'])}"
        ratio = "&mdash;" if math.isnan(f["ratio"]) else f"{f['ratio']:.3g}"
        rows.append(
            f"<tr><td>{_e(f['name'])}</td><td style='text-align:right'>{_e(fmt(f['value']))} {_e(f['unit'])}</td>"
            f"<td style='text-align:right'>{limit}</td><td style='text-align:right'>{ratio}</td>"
            f"<td style='color:{PASS_COLOUR if f['passed'] else FAIL_COLOUR};font-weight:bold'>{verdict}</td>"
            f"<td>{_e(f.get('details', ''))}</td></tr>"
        )
    return (
        "<table class='tsmigrate-benchmarks' style='border-collapse:collapse' border='1' cellpadding='4'>"
        "<thead><tr><th>benchmark</th><th>value</th><th>limit</th><th>ratio (value/limit)</th><th>verdict</th>"
        "<th>details</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def figures_chart_svg(figures) -> str:
    """One bar per figure: how many times better (or worse) than its limit, on a log scale from the limit's
    line; green passes, red fails."""
    bars = []
    for f in map(as_dict, figures):
        value = f"{fmt(f['value'])} {f['unit']}"
        bars.append(
            Bar(
                f["name"],
                f["margin"],
                PASS_COLOUR if f["passed"] else FAIL_COLOUR,
                f"{value} ({fmt_margin(f['margin'])})",
                f"{f['name']}: {value} (limit {fmt(f['limit'])} {f['unit']})",
            )
        )
    return bar_chart_svg("times better than the limit (log scale; the line is the limit)", bars, scale=LogScale())


def benchmarks_html(benchmarks: list[dict]) -> str:
    """The post-flight's figures: the table, and the chart of each figure against its limit."""
    if not benchmarks:
        return '<p class="tsm-note">No benchmarks in this run.</p>'
    return figures_table_html(benchmarks) + "\n" + figures_chart_svg(benchmarks)


def session_overrides_html(overrides: list[dict]) -> str:
    """The role's and database's settings the run's sessions set otherwise."""
    rows = [
        f"<tr><td><code>{_e(o['setting'])}</code></td><td>{_e(o['value'])}</td><td>{_e(o['set_by'])}</td>"
        f"<td><code>{_e(o['statement'])}</code></td><td>{_e(o['run_value'])}</td></tr>"
        for o in overrides
    ]
    return (
        '<p class="tsm-note">Every session of the run sets these at connect time, as pg_dump does, so that the '
        "site's limits cannot stop a backup, a conversion or a restore halfway; the site's other sessions keep "
        "them.</p>"
        '<table class="tsm tsm-session"><tr><th>Setting</th><th>Site value</th><th>Set on</th><th>As</th>'
        "<th>The run's value</th></tr>\n" + "\n".join(rows) + "</table>"
    )


def _amount(key: str, value: float | None) -> str:
    if value is None:
        return "&mdash;"
    if key.endswith("_bytes"):
        return _e(f"{value / 2**20:,.1f} MiB")
    return _e(seconds_text(float(value)))


def window_html(estimate: dict) -> str:
    """The rehearsal's estimate, each step's share, and once the run measured it, the two side by side."""
    parts = [f'<p class="tsm-note">{_e(estimate.get("basis", ""))}.</p>']
    comparison = estimate.get("comparison")
    if comparison:
        factor = float(estimate.get("stated_factor", 3.0))
        rows = []
        for row in comparison:
            ratio = row["ratio"]
            off = ratio is not None and row["key"].endswith("_seconds") and not (1 / factor <= ratio <= factor)
            rows.append(
                f"<tr><td>{_e(row['what'])}</td><td class='num'>{_amount(row['key'], row['estimated'])}</td>"
                f"<td class='num'>{_amount(row['key'], row['measured'])}</td>"
                f"<td class='num {'tsm-bad-text' if off else ''}'>{'&mdash;' if ratio is None else f'{ratio:.2f}'}"
                "</td></tr>"
            )
        parts.append(
            '<table class="tsm tsm-window"><tr><th>What</th><th>Estimated</th><th>Measured</th>'
            "<th>Measured / estimated</th></tr>\n" + "\n".join(rows) + "</table>"
            f'<p class="tsm-note">A time more than {factor:g}x off its estimate is in red: the rehearsal did not '
            "see what the run met (a busy server, a sample unlike the table).</p>"
        )
    else:
        parts.append(
            '<table class="tsm tsm-window"><tr><th>What</th><th>Estimated</th></tr>'
            + "".join(
                f"<tr><td>{_e(what)}</td><td class='num'>{_amount(key, estimate.get(key))}</td></tr>"
                for key, what in (
                    ("execute_seconds", "execute phase"),
                    ("backup_seconds", "of which the backup"),
                    ("application_out_seconds", "application kept out"),
                    ("disk_bytes", "room needed in the data directory"),
                    ("wal_bytes", "WAL written"),
                )
            )
            + "</table>"
        )
    steps = estimate.get("steps", [])
    if steps:
        parts.append(
            '<details class="tsm-more"><summary>Each step: rehearsed, scaled to the full tables</summary>'
            '<table class="tsm"><tr><th>Step</th><th>Rehearsed</th><th>Rows ratio</th><th>Online</th>'
            "<th>Estimated</th></tr>"
            + "".join(
                f"<tr><td>{_e(s['label'])}</td><td class='num'>{_e(seconds_text(s['rehearsed_seconds']))}</td>"
                f"<td class='num'>{s['rows_ratio']:g}</td><td>{'yes' if s['online'] else 'no'}</td>"
                f"<td class='num'>{_e(seconds_text(s['seconds']))}</td></tr>"
                for s in steps
            )
            + "</table></details>"
        )
    return "".join(parts)


def timeline_html(timeline: dict) -> str:
    warnings = "".join(f"<li>{_e(w)}</li>" for w in timeline.get("warnings", []))
    failed = sum(1 for s in timeline.get("samples", []) if s.get("error"))
    return (
        timeline_svg(timeline)
        + f'<p class="tsm-note">One sample every {float(timeline.get("interval_seconds", 0)):g} s on a connection '
        "of its own; the bands are the fence and backup, each step and the post-flight"
        + (f"; {failed} samples failed (red ticks)" if failed else "")
        + ". The series are in the JSON record's <code>timeline</code>.</p>"
        + (f'<p class="tsm-bad-text">Warnings during the run:</p><ul>{warnings}</ul>' if warnings else "")
    )


def run_sections_html(summary: RunSummary, reports: dict[str, str] | None = None) -> str:
    """Everything a reader looks at after the banner: findings, steps, fingerprints, benchmarks, files."""
    before = before_fingerprints(summary)
    wanted = [
        (
            summary.findings or summary.kind in ("preflight", "full"),
            f"Findings ({len(summary.blocking)} blocking, {len(summary.advisories)} advisory)",
            "findings",
            lambda: findings_html(summary.findings),
        ),
        (
            summary.steps or summary.kind in ("execute", "full"),
            "Migration steps",
            "steps",
            lambda: steps_html(summary.steps),
        ),
        (
            before or summary.fingerprints_after,
            "Table fingerprints, before and after",
            "fingerprints",
            lambda: fingerprints_html(
                before, summary.fingerprints_after, restored_identical=summary.restored_identical
            ),
        ),
        (
            summary.estimate,
            "The window: estimated" + (" and measured" if (summary.estimate or {}).get("comparison") else ""),
            "window",
            lambda: window_html(summary.estimate or {}),
        ),
        (
            summary.timeline,
            "Resource timeline",
            "timeline",
            lambda: timeline_html(summary.timeline or {}),
        ),
        (
            summary.session_overrides,
            "Session settings the run overrode",
            "session",
            lambda: session_overrides_html(summary.session_overrides),
        ),
        (
            summary.benchmarks or summary.kind in ("postflight", "full"),
            "Benchmarks",
            "benchmarks",
            lambda: benchmarks_html(summary.benchmarks),
        ),
        (
            reports,
            "Files of this run",
            "files",
            lambda: (
                "<ul>"
                + "".join(f"<li>{_e(k)}: <code>{_e(v)}</code></li>" for k, v in (reports or {}).items())
                + "</ul>"
            ),
        ),
    ]
    sections = []
    for shown, title, anchor, body in wanted:
        if not shown:
            continue
        try:
            sections.append(_section(title, body(), anchor))
        except Exception as exc:  # one odd value must not cost the operator the whole report
            sections.append(
                _section(title, f'<p class="tsm-bad-text">This section could not be drawn: {_e(exc)}</p>', anchor)
            )
    return "\n".join(sections)
