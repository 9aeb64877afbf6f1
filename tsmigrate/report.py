"""The run's reports, in plain Python: the JSON run record and its schema, the environment facts,
and the HTML pieces (banner, tables, SVG charts) that fixtures/reporting.py hands to pytest-html.

Everything here speaks to the DBA who runs the migration: tables, files, lines, steps and what to
do next, never internals. Nothing here may carry a password: strings that could hold one go
through :func:`tsmigrate.target.redact` (see :func:`redact_record`).

    record = run_record(summary, tests=..., started=..., finished=..., environment=..., reports=...)
    write_run_record(record, path, secrets)      # redacted, indented JSON
    problems = validate_run_record(record)       # [] when it has the documented shape

``python -m tsmigrate.report schema`` prints the record's JSON Schema.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

import psycopg

from . import __version__, bench
from .backup import MANIFEST, BackupError, tool
from .config import PLAN_FILE_NAME, Plan
from .findings import Finding
from .migrations import discover
from .summary import GOOD_VERDICTS, VERDICTS, RunSummary  # noqa: F401 (GOOD_VERDICTS re-exported)
from .target import redact
from .timescale import server_timescaledb

RECORD_FORMAT = 1

KIND_WORDS = {"preflight": "pre-flight", "execute": "migration", "postflight": "post-flight",
              "full": "full migration run"}

# -- the JSON run record ------------------------------------------------------------------------

_FINGERPRINTS = {
    "type": "object",
    "description": "schema.table -> row count and content digest",
    "additionalProperties": {
        "type": "object",
        "required": ["rows", "digest"],
        "properties": {"rows": {"type": "integer", "minimum": 0}, "digest": {"type": "string"}},
    },
}

RUN_RECORD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "urn:tsmigrate:run-record:1",
    "title": "tsmigrate run record",
    "description": "What one run of the tsmigrate suites concluded: reports/<kind>-<UTC time>.json "
                   "(and reports/latest.json). Passwords never appear in it.",
    "type": "object",
    "additionalProperties": False,
    "required": ["format", "tool", "kind", "target", "verdict", "exit_code", "stopped", "started_at",
                 "finished_at", "duration_seconds", "tests", "failed_tests", "findings", "steps", "backup",
                 "restore", "fingerprints", "verdict_inputs", "benchmarks", "environment", "next_steps", "reports"],
    "properties": {
        "format": {"const": RECORD_FORMAT, "description": "version of this record's shape"},
        "tool": {"type": "string", "description": "tsmigrate and its version"},
        "kind": {"type": "string", "pattern": "^(full|(preflight|execute|postflight)(\\+(execute|postflight))*)$",
                 "description": "which suites ran: preflight, execute, postflight, a '+' list of them, or full"},
        "target": {"type": "string", "description": "host:port/database as user (never the password)"},
        "verdict": {"enum": list(VERDICTS),
                    "description": "GO/NO-GO for a pre-flight; SUCCESS, RESTORED or FAILED once the migration "
                                   "ran; PASSED or FAILED for a post-flight on its own; STOPPED when the run was cut "
                                   "short. Only GO, SUCCESS and PASSED exit 0"},
        "exit_code": {"type": "integer", "description": "the exit status of the pytest command"},
        "stopped": {"type": ["string", "null"], "description": "why the run stopped early, else null"},
        "started_at": {"type": "string", "format": "date-time"},
        "finished_at": {"type": "string", "format": "date-time"},
        "duration_seconds": {"type": "number", "minimum": 0},
        "tests": {
            "type": "object", "description": "how many checks and steps ended how",
            "required": ["passed", "failed", "skipped", "errors"],
            "additionalProperties": {"type": "integer", "minimum": 0},
        },
        "failed_tests": {"type": "array", "items": {"type": "string"}, "description": "test ids of failed checks and steps"},
        "findings": {
            "type": "array", "description": "what the pre-flight found, blocking ones first",
            "items": {
                "type": "object", "required": ["code", "severity", "message", "location", "hint"],
                "properties": {
                    "code": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{3}$"},
                    "severity": {"enum": ["blocking", "advisory"]},
                    "message": {"type": "string"},
                    "path": {"type": ["string", "null"]},
                    "line": {"type": ["integer", "null"], "minimum": 1},
                    "table": {"type": ["string", "null"]},
                    "location": {"type": "string", "description": "file:line, or whichever is known"},
                    "hint": {"type": "string", "description": "how to fix it"},
                },
            },
        },
        "steps": {
            "type": "array", "description": "the migration steps in order, with their durations",
            "items": {
                "type": "object", "required": ["step", "label", "status", "seconds", "details"],
                "properties": {
                    "step": {"type": "string", "description": "ledger key: file version or convert:<table>"},
                    "label": {"type": "string", "description": "the file name, or 'convert schema.table'"},
                    "status": {"enum": ["applied", "already applied", "failed", "skipped"]},
                    "seconds": {"type": "number", "minimum": 0},
                    "details": {"type": "object", "description": "per-statement timings of a file (statements: "
                                "line, statement, seconds), or the conversion's result (rows, nulls_filled, "
                                "chunks...), or the error (file, line, statement, message, hint)"},
                },
            },
        },
        "backup": {
            "type": ["object", "null"], "description": "the backup taken before the first change",
            "required": ["path", "manifest_sha256"],
            "properties": {"path": {"type": "string"},
                           "manifest_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                           "pinned": {"type": ["string", "null"],
                                      "description": "why the backup is never pruned automatically"}},
        },
        "restore": {
            "type": ["object", "null"], "description": "what happened after a failed step",
            "required": ["outcome", "identical", "complete"],
            "properties": {"outcome": {"type": "string", "description": "the state of the database, in words"},
                           "identical": {"type": ["boolean", "null"],
                                         "description": "the restored copy was proven identical to the backup"},
                           "complete": {"type": ["boolean", "null"], "description": "restored, and every row "
                                        "committed by others after the backup carried over: nothing lost"}},
        },
        "policy_schedule": {"type": "array", "items": {"type": "string"},
                            "description": "policy jobs the post-flight scheduled once every check passed, with "
                                           "their first run"},
        "fingerprints": {
            "type": "object", "required": ["before", "after"],
            "description": "before: from the backup's manifest (the dump's snapshot); after: from the post-flight",
            "properties": {"before": _FINGERPRINTS, "after": _FINGERPRINTS},
        },
        "verdict_inputs": {
            "type": ["object", "null"],
            "description": "what the pre-flight GO depended on (server and TimescaleDB versions and edition, plan "
                           "sha256, sha256 of every migration file); a full run's execute refuses to start when any "
                           "of it changed since. null when no pre-flight ran",
        },
        "benchmarks": {
            "type": "array",
            "description": "post-flight figures, each beside its limit (value null: unbounded)",
            "items": {"type": "object", "required": ["name", "value", "unit", "limit", "passed"],
                      "properties": {"name": {"type": "string"}, "value": {"type": ["number", "null"]},
                                     "unit": {"type": "string"}, "limit": {"type": "number"},
                                     "better": {"enum": ["higher", "lower"]}, "passed": {"type": "boolean"}}},
        },
        "environment": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "server, TimescaleDB, client tools, plan and migration checksums"},
        "next_steps": {"type": "array", "items": {"type": "string"}, "description": "what to do now, in order"},
        "reports": {"type": "object", "additionalProperties": {"type": "string"},
                    "description": "paths of this run's html, junit and json reports"},
    },
}


def before_fingerprints(summary: RunSummary) -> dict[str, dict]:
    """The fingerprints in this run's backup manifest (taken in the dump's snapshot), or {}."""
    if not summary.backup:
        return {}
    try:
        manifest = json.loads((Path(summary.backup["path"]) / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return manifest.get("fingerprints", {})


def _rows_and_digest(fingerprints: dict[str, dict]) -> dict[str, dict]:
    return {name: {"rows": int(fp["rows"]), "digest": str(fp["digest"])} for name, fp in sorted(fingerprints.items())}


def run_record(summary: RunSummary, *, tests: dict[str, int], started: datetime, finished: datetime,
               environment: dict[str, str], reports: dict[str, str]) -> dict[str, Any]:
    """The machine-readable record of a run (see RUN_RECORD_SCHEMA). Not yet redacted."""
    findings = sorted(summary.findings, key=lambda f: (not f.blocking, f.code))
    restore = None
    if summary.restore is not None:
        restore = {"outcome": summary.restore, "identical": summary.restored_identical,
                   "complete": summary.restore_complete}
    return {
        "format": RECORD_FORMAT,
        "tool": f"tsmigrate {__version__}",
        "kind": summary.kind,
        "target": summary.target,
        "verdict": summary.verdict(),
        "exit_code": int(summary.exit_code or 0),
        "stopped": summary.stop_reason,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "duration_seconds": round(max(0.0, (finished - started).total_seconds()), 3),
        "tests": {"passed": 0, "failed": 0, "skipped": 0, "errors": 0, **tests},
        "failed_tests": list(summary.failed_tests),
        "findings": [f.to_dict() for f in findings],
        "steps": list(summary.steps),
        "backup": dict(summary.backup) if summary.backup else None,
        "restore": restore,
        "policy_schedule": list(summary.policy_schedule),
        "fingerprints": {"before": _rows_and_digest(before_fingerprints(summary)),
                         "after": _rows_and_digest(summary.fingerprints_after)},
        "verdict_inputs": summary.verdict_inputs,
        "benchmarks": list(summary.benchmarks),
        "environment": {k: str(v) for k, v in environment.items()},
        "next_steps": next_steps(summary),
        "reports": {k: str(v) for k, v in reports.items()},
    }


def redact_record(value: Any, secrets: tuple[str, ...] = ()) -> Any:
    """Every string in a JSON-ready value, with passwords hidden (before serialising: never cut JSON text)."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {redact_record(k, secrets): redact_record(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_record(v, secrets) for v in value]
    return value


def write_run_record(record: dict, path: Path, secrets: tuple[str, ...] = ()) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(redact_record(record, secrets), indent=2, default=str) + "\n", encoding="utf-8")
    return path


def validate_run_record(record: Any) -> list[str]:
    """What does not fit the documented shape, as 'where: problem' lines ([] when it fits)."""
    import jsonschema  # only needed by whoever validates

    validator = jsonschema.Draft202012Validator(RUN_RECORD_SCHEMA, format_checker=jsonschema.FormatChecker())
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(record)'}: {e.message}"
            for e in sorted(validator.iter_errors(record), key=lambda e: list(e.absolute_path))]


def scrub_secrets(text: str, secrets: tuple[str, ...]) -> str:
    """Replace known secrets in a finished HTML/XML file, also where escaping changed how they look.

    Only literal secrets: a pattern could eat the quotes of the JSON that pytest-html embeds.
    """
    for secret in secrets:
        if not secret:
            continue
        json_form = json.dumps(secret)[1:-1]
        for form in {secret, escape(secret), escape(secret, quote=False), json_form, escape(json_form)}:
            text = text.replace(form, "***")
    return text


# -- what to do next ----------------------------------------------------------------------------

def headline(summary: RunSummary) -> str:
    """One sentence under the verdict: what happened, in the operator's words."""
    verdict = summary.verdict()
    applied = sum(1 for s in summary.steps if s["status"] == "applied")
    already = sum(1 for s in summary.steps if s["status"] == "already applied")
    checks = [n for n in summary.preflight_failures if n not in summary.judged_checks]
    if verdict == "GO":
        n = len(summary.advisories)
        return "Nothing blocks the migration" + (f" ({n} {'advisory' if n == 1 else 'advisories'} to read below)."
                                                 if n else ".")
    if verdict == "NO-GO":
        if summary.stop_reason:
            return f"Do not migrate: the pre-flight could not finish ({summary.stop_reason}). Nothing was changed."
        parts = [f"{len(summary.blocking)} blocking finding{'s' if len(summary.blocking) != 1 else ''}"]
        if checks:
            parts.append(f"{len(checks)} failed check{'s' if len(checks) != 1 else ''}")
        return f"Do not migrate yet: {' and '.join(parts)}. Nothing was changed."
    if verdict == "SUCCESS":
        return (f"The migration is done: {applied} step{'s' if applied != 1 else ''} applied"
                f"{f', {already} already applied before' if already else ''}; every check passed.")
    if verdict == "PASSED":
        return "Every post-flight check passed: the migrated database is complete and meets its benchmarks."
    if verdict == "RESTORED":
        return (f"{summary.execute_failed} failed; the database was restored, proven identical to the backup "
                "taken before the run, and no row written since was lost.")
    if verdict == "STOPPED":
        changed = f" {summary.restore}" if summary.restore else "" if applied else " Nothing was changed."
        return f"The run stopped before its end: {summary.stop_reason}.{changed}"
    if summary.execute_failed:
        return f"{summary.execute_failed} failed and the database is NOT proven to be as it was before the run."
    return f"{len(summary.failed_tests)} check{'s' if len(summary.failed_tests) != 1 else ''} failed (listed below)."


def next_steps(summary: RunSummary) -> list[str]:
    verdict = summary.verdict()
    backup = summary.backup["path"] if summary.backup else None
    if verdict == "GO":
        steps = ["Run the migration in the maintenance window with the same target: "
                 "`pytest suites --dsn ...` (it takes and verifies a backup before its first change)."]
        if summary.advisories:
            steps.append("Read the advisories in the findings table: they do not block, but say what to expect.")
        return steps
    if verdict == "NO-GO":
        if summary.stop_reason:
            return ["Fix what stopped the pre-flight (above), then run it again: `pytest suites/preflight`."]
        return ["Fix each blocking finding where it points (file and line, or table); the fix is written under it.",
                "Run the pre-flight again (`pytest suites/preflight`) until it says GO. Nothing was changed."]
    if verdict == "SUCCESS":
        steps = ["Start the application and check its dashboards and data entry."]
        if backup:
            steps.append(f"Keep the backup {backup} until the site has signed off; later runs prune old backups "
                         "(keep_days and keep_count in plan.toml).")
        steps.append("Hand this report and its JSON record to whoever signs off the change.")
        return steps
    if verdict == "PASSED":
        return ["Hand this report and its JSON record to whoever signs off the change."]
    if verdict == "RESTORED":
        steps = [f"Fix {summary.execute_failed}: its error (file, line, statement) is in the results below; "
                 "put the fix in the file only if it was never applied anywhere, else in a new file.",
                 "The database is as it was before the run (with any rows written since carried over, as said "
                 "above): the application may be started again."]
        if "kept as" in (summary.restore or ""):
            steps.append("The failed database was kept for inspection under the name given above; drop it when done.")
        steps.append("Run the pre-flight, then the migration again.")
        return steps
    if verdict == "STOPPED":
        if summary.execute_failed and not summary.restore_complete:
            return ["Do not start the application before reading the state of the database above: it says what "
                    "was applied, whether it was restored, and what to run next."]
        return ["Fix what stopped the run (above), then run it again."]
    if summary.execute_failed:
        steps = ["Do not start the application: the database is not proven to be as it was."]
        if backup:
            steps.append(f"Restore by hand from {backup} (README: Backups and restore), or fix the failed step and "
                         "run again.")
        return steps
    return ["Read the failed checks in the results below; each says what is wrong and where."]


# -- environment facts --------------------------------------------------------------------------

def migrations_facts(migrations_dir: Path) -> str:
    """'10 files (plain) in migrations, 001 to 010; sha256 …': the same digest as the pre-flight's verdict inputs."""
    files, problems = discover(migrations_dir)
    if not files:
        return f"no migration files in {migrations_dir}"
    digest = hashlib.sha256(json.dumps({f.label: f.sha256 for f in files}, sort_keys=True).encode()).hexdigest()
    versioned = [f for f in files if not f.repeatable]
    repeatable, badly_named = len(files) - len(versioned), sum(p.blocking for p in problems)
    span = f"{versioned[0].version} to {versioned[-1].version}" if versioned else "no versioned file"
    span += f" and {repeatable} repeatable" if repeatable else ""
    span += f", {badly_named} badly named" if badly_named else ""
    return f"{len(files)} files ({files[0].convention}) in {migrations_dir}, {span}; sha256 {digest}"


def plan_facts(migrations_dir: Path, plan: Plan | None) -> str:
    path = Path(migrations_dir) / PLAN_FILE_NAME
    if plan is None or not path.exists():
        return f"no {PLAN_FILE_NAME} in {migrations_dir}: no table is converted"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    tables = ", ".join(h.table for h in plan.hypertables)
    return f"{path}: {len(plan.hypertables)} tables to convert ({tables}); sha256 {digest}"


def client_tools_facts() -> str:
    found = []
    for name in ("pg_dump", "pg_restore"):
        try:
            path = tool(name)
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
        except (BackupError, OSError, subprocess.SubprocessError):
            found.append(f"{name} not found")
            continue
        match = re.search(r"\(PostgreSQL\)\s+(\S+)", out)
        found.append(f"{name} {match.group(1) if match else '?'} ({path})")
    return "; ".join(found)


def local_facts(migrations_dir: Path, plan: Plan | None) -> dict[str, str]:
    """Facts this machine knows without a connection: plan, migrations, client tools."""
    return {"Plan": plan_facts(migrations_dir, plan), "Migrations": migrations_facts(migrations_dir),
            "Client tools": client_tools_facts()}


def server_facts(conn: psycopg.Connection, target_description: str) -> dict[str, str]:
    """What the target's server runs: PostgreSQL and TimescaleDB (version, edition, preload)."""
    version = conn.execute("SHOW server_version").fetchone()[0]
    return {"Server": f"PostgreSQL {version} at {target_description}", "TimescaleDB": timescaledb_facts(conn)}


def timescaledb_facts(conn: psycopg.Connection) -> str:
    ts = server_timescaledb(conn)
    if ts.available_version is None:
        return "not installed on the server"
    edition = (f"{ts.edition} edition (timescaledb.license = {ts.license})" if ts.edition
               else "edition known once the extension is created in a database")
    preload = "preloaded" if ts.preloaded else "NOT in shared_preload_libraries"
    database = conn.info.dbname
    created = (f"version {ts.installed_version} created in {database}" if ts.installed_version
               else f"not yet created in {database}")
    return f"{ts.available_version} on the server, {edition}, {preload}; {created}"


# -- HTML for the report -------------------------------------------------------------------------

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

STATUS_COLOURS = {"applied": "#2e8b57", "failed": "#c62828", "already applied": "#9e9e9e", "skipped": "#bdbdbd"}


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _seconds(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{int(value // 60)} min {value % 60:.0f} s"


def _with_code(text: str) -> str:
    """Escaped text with `commands` shown as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))


def _where(f: Finding) -> str:
    where = f.location()
    if f.table and f.table not in where:
        where = f"{where} ({f.table})" if where else f.table
    return where


def banner_html(summary: RunSummary) -> str:
    """The verdict on top: what happened, what blocks, the restore outcome and what to do next."""
    verdict = summary.verdict()
    tone = "tsm-good" if verdict in GOOD_VERDICTS else ("tsm-warn" if verdict == "RESTORED" else "tsm-bad")
    exit_code = summary.exit_code if summary.exit_code is not None else ""
    parts = [f'<section class="tsm-banner {tone}" id="tsm-banner" data-verdict="{_e(verdict)}" '
             f'data-exit-code="{_e(exit_code)}">',
             f'<div class="tsm-verdict">{_e(verdict)}</div>',
             f'<div class="tsm-headline">{_e(headline(summary))}</div>',
             f'<div class="tsm-meta">{_e(summary.target or "no target")} &middot; '
             f'{_e(KIND_WORDS.get(summary.kind, summary.kind))} &middot; exit code {_e(exit_code)}</div>']
    if summary.blocking:
        parts.append("<h3>Blocking findings</h3><ul>")
        for f in summary.blocking:
            parts.append(f'<li><b>{_e(f.code)}</b> {_e(_where(f))}: <span class="tsm-msg">{_e(f.message)}</span>'
                         + (f'<br><span class="tsm-fix">Fix: {_e(f.hint)}</span>' if f.hint else "") + "</li>")
        parts.append("</ul>")
    failed_checks = [n for n in summary.preflight_failures if n not in summary.judged_checks]
    other_failures = [n for n in summary.failed_tests if n not in summary.preflight_failures]
    if failed_checks or other_failures:
        parts.append("<h3>Failed checks</h3><ul>")
        parts += [f"<li><code>{_e(n)}</code></li>" for n in failed_checks + other_failures]
        parts.append("</ul>")
    if summary.restore:
        parts.append(f"<h3>Restore</h3><div>{_e(summary.restore)}</div>")
    if summary.backup:
        parts.append(f'<div class="tsm-meta">Backup: <code>{_e(summary.backup["path"])}</code> '
                     f'(manifest sha256 <code>{_e(summary.backup["manifest_sha256"])}</code>)</div>')
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
        rows.append(f'<tr><td><b>{_e(f.code)}</b></td><td class="tsm-{_e(f.severity)}">{_e(f.severity)}</td>'
                    f'<td>{_e(_where(f))}</td><td class="tsm-msg">{_e(f.message)}</td><td>{_e(f.hint)}</td></tr>')
    return ('<table class="tsm tsm-findings"><tr><th>Code</th><th>Severity</th><th>Where</th><th>What</th>'
            "<th>How to fix</th></tr>\n" + "\n".join(rows) + "</table>")


def _step_summary(step: dict) -> str:
    d = step.get("details") or {}
    if step["status"] == "failed":
        where = f"{d['file']}:{d['line']}: " if d.get("file") and d.get("line") else ""
        return f"{where}{d.get('message', '')}"
    if step["status"] == "already applied":
        return f"applied on {d.get('applied_at', '?')} by {d.get('by', '?')}"
    if "statements" in d:
        statements = d["statements"]
        if not statements:
            return "no statements"
        slowest = max(statements, key=lambda s: s["seconds"])
        return (f"{len(statements)} statements; slowest: line {slowest['line']} "
                f"({_seconds(slowest['seconds'])})")
    if "rows" in d:
        if d.get("already_hypertable"):
            return "already a hypertable; left as it was"
        filled = f", {d['nulls_filled']} NULL time values filled" if d.get("nulls_filled") else ""
        return f"{d['rows']} rows moved into {d.get('chunks', 0)} chunks{filled}"
    return ""


def bar_chart_svg(title: str, bars: list[tuple[str, float, str]], *, unit: str = "s",
                  marker: float | None = None, marker_label: str = "", width: int = 720) -> str:
    """A horizontal bar chart: one (label, value, colour) per bar; an optional dashed marker (a limit)."""
    label_w, value_w, bar_h, gap, top = 280, 90, 16, 6, 24
    plot_w = width - label_w - value_w
    largest = max([v for _, v, _ in bars] + ([marker] if marker is not None else []) + [1e-9])
    scale = plot_w / (largest * 1.05)
    height = top + len(bars) * (bar_h + gap) + 8
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="tsm-chart" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}" font-family="Helvetica, Arial, sans-serif" '
           f'font-size="11"><title>{_e(title)}</title>',
           f'<text x="0" y="14" font-size="12" font-weight="bold">{_e(title)}</text>']
    for i, (label, value, colour) in enumerate(bars):
        y = top + i * (bar_h + gap)
        shown = label if len(label) <= 44 else label[:42] + "…"
        out.append(f'<text x="{label_w - 6}" y="{y + bar_h - 4}" text-anchor="end">{_e(shown)}</text>')
        out.append(f'<rect x="{label_w}" y="{y}" width="{max(1.0, value * scale):.1f}" height="{bar_h}" '
                   f'fill="{_e(colour)}"><title>{_e(label)}: {value:g} {_e(unit)}</title></rect>')
        text = _seconds(value) if unit == "s" else f"{value:,.4g} {unit}"
        out.append(f'<text x="{label_w + max(1.0, value * scale) + 4:.1f}" y="{y + bar_h - 4}">{_e(text)}</text>')
    if marker is not None:
        x = label_w + marker * scale
        out.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 4}" stroke="#333" '
                   f'stroke-dasharray="4 3"/><text x="{x + 3:.1f}" y="{top - 6}" font-size="10">{_e(marker_label)}</text>')
    out.append("</svg>")
    return "".join(out)


def steps_html(steps: list[dict]) -> str:
    if not steps:
        return '<p class="tsm-note">No migration step ran.</p>'
    rows = []
    for s in steps:
        status = s["status"]
        css = "tsm-bad-text" if status == "failed" else ("tsm-ok" if status == "applied" else "")
        rows.append(f'<tr><td>{_e(s["label"])}</td><td class="{css}">{_e(status)}</td>'
                    f'<td class="num">{_e(_seconds(float(s["seconds"])))}</td><td>{_e(_step_summary(s))}</td></tr>')
    total = sum(float(s["seconds"]) for s in steps)
    chart = bar_chart_svg(f"Duration of each step (total {_seconds(total)})",
                          [(s["label"], float(s["seconds"]), STATUS_COLOURS.get(s["status"], "#777")) for s in steps])
    return ('<table class="tsm tsm-steps"><tr><th>Step</th><th>Status</th><th>Duration</th><th>What it did</th></tr>\n'
            + "\n".join(rows) + "</table>\n" + chart)


def step_detail_html(step: dict) -> str:
    """One step in detail: the statements of a file with their lines and timings, or a conversion's result."""
    d = step.get("details") or {}
    head = (f'<p><b>{_e(step["label"])}</b>: <span class="{"tsm-bad-text" if step["status"] == "failed" else "tsm-ok"}">'
            f'{_e(step["status"])}</span> in {_e(_seconds(float(step["seconds"])))}</p>')
    if step["status"] == "failed":
        rows = [("file", f"{d.get('file', '')}:{d.get('line', '')}" if d.get("file") else None),
                ("statement", d.get("statement")), ("server said", d.get("message")), ("SQLSTATE", d.get("sqlstate")),
                ("detail", d.get("detail")), ("hint", d.get("hint"))]
        return head + '<table class="tsm">' + "".join(
            f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows if v) + "</table>"
    if "statements" in d:
        statements = d["statements"]
        body = "".join(f'<tr><td class="num">{_e(s["line"])}</td><td><code>{_e(s["statement"])}</code></td>'
                       f'<td class="num">{_e(_seconds(float(s["seconds"])))}</td></tr>' for s in statements)
        slowest = sorted(statements, key=lambda s: -s["seconds"])[:10]
        chart = bar_chart_svg("Slowest statements", [(f"line {s['line']}: {s['statement']}", float(s["seconds"]),
                                                      STATUS_COLOURS["applied"]) for s in slowest]) if slowest else ""
        notices = "".join(f"<li>{_e(n)}</li>" for n in d.get("notices", []))
        return (head + chart + '<table class="tsm"><tr><th>Line</th><th>Statement</th><th>Duration</th></tr>'
                + body + "</table>" + (f"<p>Server notices:</p><ul>{notices}</ul>" if notices else ""))
    if "rows" in d:
        facts = [("rows moved into chunks", d.get("rows")), ("chunks", d.get("chunks")),
                 ("NULL time values filled (recorded in tsmigrate.time_fills)", d.get("nulls_filled")),
                 ("keys rebuilt with the time column", "; ".join(d.get("keys_rebuilt", [])) or "none"),
                 ("views recreated", ", ".join(d.get("views_recreated", [])) or "none"),
                 ("compression", d.get("compression")), ("retention", d.get("retention")),
                 ("already a hypertable before", "yes" if d.get("already_hypertable") else "no")]
        return head + '<table class="tsm">' + "".join(
            f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts) + "</table>"
    return head


def fingerprints_html(before: dict[str, dict], after: dict[str, dict], *, restored_identical: bool | None = None) -> str:
    if not before and not after:
        return '<p class="tsm-note">No fingerprints in this run (no backup was taken).</p>'
    notes = ['<p class="tsm-note">Before: from the backup, in the dump\'s own snapshot. '
             'A fingerprint is the row count and a hash of every row\'s content.</p>']
    if restored_identical is not None:
        notes.append(f'<p class="{"tsm-ok" if restored_identical else "tsm-bad-text"}">The restored database '
                     f'{"matches" if restored_identical else "does NOT match"} these fingerprints, table by table.</p>')
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
        rows.append(f"<tr><td>{_e(name)}</td><td class=\"num\">{_e(b['rows'] if b else '')}</td>"
                    f"<td class=\"num\">{_e(a['rows'] if a else '')}</td><td>{content}</td></tr>")
    table = ('<table class="tsm tsm-fingerprints"><tr><th>Table</th><th>Rows before</th>'
             "<th>Rows after</th><th>Content</th></tr>\n" + "\n".join(rows) + "</table>")
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


def benchmarks_html(benchmarks: list[dict]) -> str:
    """The post-flight's own table and chart (each figure beside its limit, log scale of the margin)."""
    if not benchmarks:
        return '<p class="tsm-note">No benchmarks in this run.</p>'
    return bench.figures_table_html(benchmarks) + "\n" + bench.bar_chart_svg(benchmarks)


def run_sections_html(summary: RunSummary, reports: dict[str, str] | None = None) -> str:
    """Everything a reader looks at after the banner: findings, steps, fingerprints, benchmarks, files."""
    before = before_fingerprints(summary)
    wanted = [
        (summary.findings or summary.kind in ("preflight", "full"),
         f"Findings ({len(summary.blocking)} blocking, {len(summary.advisories)} advisory)", "findings",
         lambda: findings_html(summary.findings)),
        (summary.steps or summary.kind in ("execute", "full"), "Migration steps", "steps",
         lambda: steps_html(summary.steps)),
        (before or summary.fingerprints_after, "Table fingerprints, before and after", "fingerprints",
         lambda: fingerprints_html(before, summary.fingerprints_after, restored_identical=summary.restored_identical)),
        (summary.benchmarks or summary.kind in ("postflight", "full"), "Benchmarks", "benchmarks",
         lambda: benchmarks_html(summary.benchmarks)),
        (reports, "Files of this run", "files",
         lambda: "<ul>" + "".join(f"<li>{_e(k)}: <code>{_e(v)}</code></li>" for k, v in (reports or {}).items()) + "</ul>"),
    ]
    sections = []
    for shown, title, anchor, body in wanted:
        if not shown:
            continue
        try:
            sections.append(_section(title, body(), anchor))
        except Exception as exc:  # one odd value must not cost the operator the whole report
            sections.append(_section(title, f'<p class="tsm-bad-text">This section could not be drawn: {_e(exc)}</p>',
                                     anchor))
    return "\n".join(sections)


def run_title(kind: str, target: str) -> str:
    return f"MS5.0 to TimescaleDB: {KIND_WORDS.get(kind, kind or 'run')} on {target or 'no target'}"


if __name__ == "__main__":
    if sys.argv[1:] == ["schema"]:
        print(json.dumps(RUN_RECORD_SCHEMA, indent=2))
    else:
        sys.exit("usage: python -m tsmigrate.report schema   (prints the JSON Schema of reports/*.json)")
