"""The run record: what one run of the suites concluded, as JSON (reports/<kind>-<UTC time>.json), and its
JSON Schema. The record holds no password: write_run_record redacts every string before it serialises.

    record = run_record(summary, tests=..., started=..., finished=..., environment=..., reports=...)
    write_run_record(record, path, secrets)      # redacted, indented JSON
    problems = validate_run_record(record)       # [] when it has the documented shape

``python -m tsmigrate.report schema`` prints the record's JSON Schema.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import __version__
from ..backup import MANIFEST
from ..summary import VERDICTS, RunSummary, StepStatus
from .redaction import redact_record
from .words import next_steps

RECORD_FORMAT = 1

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
    "required": [
        "format",
        "tool",
        "kind",
        "target",
        "verdict",
        "exit_code",
        "stopped",
        "started_at",
        "finished_at",
        "duration_seconds",
        "tests",
        "failed_tests",
        "findings",
        "steps",
        "backup",
        "restore",
        "fingerprints",
        "verdict_inputs",
        "benchmarks",
        "environment",
        "next_steps",
        "reports",
    ],
    "properties": {
        "format": {"const": RECORD_FORMAT, "description": "version of this record's shape"},
        "tool": {"type": "string", "description": "tsmigrate and its version"},
        "kind": {
            "type": "string",
            "pattern": "^(full|(preflight|execute|postflight)(\\+(execute|postflight))*)$",
            "description": "which suites ran: preflight, execute, postflight, a '+' list of them, or full",
        },
        "target": {"type": "string", "description": "host:port/database as user (never the password)"},
        "verdict": {
            "enum": list(VERDICTS),
            "description": "GO/NO-GO for a pre-flight; SUCCESS, RESTORED or FAILED once the migration "
            "ran; PASSED or FAILED for a post-flight on its own; STOPPED when the run was cut "
            "short. Only GO, SUCCESS and PASSED exit 0",
        },
        "exit_code": {"type": "integer", "description": "the exit status of the pytest command"},
        "stopped": {"type": ["string", "null"], "description": "why the run stopped early, else null"},
        "started_at": {"type": "string", "format": "date-time"},
        "finished_at": {"type": "string", "format": "date-time"},
        "duration_seconds": {"type": "number", "minimum": 0},
        "tests": {
            "type": "object",
            "description": "how many checks and steps ended how",
            "required": ["passed", "failed", "skipped", "errors"],
            "additionalProperties": {"type": "integer", "minimum": 0},
        },
        "failed_tests": {
            "type": "array",
            "items": {"type": "string"},
            "description": "test ids of failed checks and steps",
        },
        "findings": {
            "type": "array",
            "description": "what the pre-flight found, blocking ones first",
            "items": {
                "type": "object",
                "required": ["code", "severity", "message", "location", "hint"],
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
            "type": "array",
            "description": "the migration steps in order, with their durations",
            "items": {
                "type": "object",
                "required": ["step", "label", "status", "seconds", "details"],
                "properties": {
                    "step": {"type": "string", "description": "ledger key: file version or convert:<table>"},
                    "label": {"type": "string", "description": "the file name, or 'convert schema.table'"},
                    "status": {"enum": [s.value for s in StepStatus]},
                    "seconds": {"type": "number", "minimum": 0},
                    "details": {
                        "type": "object",
                        "description": "per-statement timings of a file (statements: "
                        "line, statement, seconds), or the conversion's result (rows, nulls_filled, "
                        "chunks...), or the error (file, line, statement, message, hint)",
                    },
                },
            },
        },
        "backup": {
            "type": ["object", "null"],
            "description": "the backup taken before the first change",
            "required": ["path", "manifest_sha256"],
            "properties": {
                "path": {"type": "string"},
                "manifest_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "pinned": {"type": ["string", "null"], "description": "why the backup is never pruned automatically"},
                "taken_at": {
                    "type": ["string", "null"],
                    "description": "when the backup's snapshot was taken (ISO 8601)",
                },
            },
        },
        "restore": {
            "type": ["object", "null"],
            "description": "what happened after a failed step",
            "required": ["outcome", "identical", "complete"],
            "properties": {
                "outcome": {"type": "string", "description": "the state of the database, in words"},
                "identical": {
                    "type": ["boolean", "null"],
                    "description": "the restored copy was proven identical to the backup, "
                    "and nothing others wrote or deleted since is undone",
                },
                "complete": {
                    "type": ["boolean", "null"],
                    "description": "restored, and every row "
                    "committed by others after the backup carried over: nothing lost",
                },
                "backup_taken_at": {
                    "type": ["string", "null"],
                    "description": "restored: the time of the backup the database is back to (ISO 8601)",
                },
                "rolled_back": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "restored: the steps this run applied that went with the restore (labels)",
                },
                "carried_over": {
                    "type": ["string", "null"],
                    "description": "restored: what others wrote or deleted after the backup, and what of it "
                    "was carried over into the restored database, in words",
                },
                "cause": {
                    "type": ["object", "null"],
                    "description": "the server resource the failure ran out of (disk, WAL disk, "
                    "lock table, worker or connection slots), where, and the fix",
                    "properties": {
                        "kind": {"type": "string"},
                        "what": {"type": "string"},
                        "fix": {"type": "string"},
                        "path": {"type": ["string", "null"]},
                        "resource": {"type": "boolean"},
                    },
                },
            },
        },
        "session_overrides": {
            "type": "array",
            "description": "settings of the connected role or the database (ALTER ROLE/DATABASE ... SET) that every "
            "session of the run sets otherwise at connect time (statement, lock and idle-in-transaction "
            "timeouts off, as pg_dump does)",
            "items": {
                "type": "object",
                "required": ["setting", "value", "set_by", "statement", "run_value"],
                "properties": {
                    "setting": {"type": "string"},
                    "value": {"type": "string"},
                    "set_by": {"type": "string"},
                    "statement": {"type": "string"},
                    "run_value": {"type": "string"},
                },
            },
        },
        "estimate": {
            "type": ["object", "null"],
            "description": "the window the pre-flight's rehearsal estimated (preflight/window.py): execute_seconds, "
            "application_out_seconds, fenced, backup_seconds, disk_bytes, wal_bytes, each step (label, "
            "rehearsed_seconds, rows_ratio, online, seconds), stated_factor; after a run that changed the database, "
            "measured (the same keys) and comparison (what, key, estimated, measured, ratio = measured/estimated)",
            "required": ["execute_seconds", "application_out_seconds", "steps"],
        },
        "timeline": {
            "type": ["object", "null"],
            "description": "what the server went through during execute and post-flight (tsmigrate/timeline.py): "
            "interval_seconds, samples (at: seconds since the epoch; database_bytes, wal_bytes, temp_files, "
            "temp_bytes, checkpoints, sessions by state, lock_waits, waiting with blocked_by, replicas with "
            "lag_bytes, slots with retained_bytes, free_bytes, cpu_percent, memory_percent; or error), warnings, "
            "and bands (label, kind phase or step, started_at, finished_at)",
            "required": ["interval_seconds", "samples", "bands"],
            "properties": {
                "samples": {
                    "type": "array",
                    "items": {"type": "object", "required": ["at"], "properties": {"at": {"type": "number"}}},
                },
                "bands": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["label", "kind", "started_at", "finished_at"],
                        "properties": {
                            "kind": {"enum": ["phase", "step"]},
                            "started_at": {"type": "number"},
                            "finished_at": {"type": "number"},
                        },
                    },
                },
            },
        },
        "policy_schedule": {
            "type": "array",
            "items": {"type": "string"},
            "description": "policy jobs the post-flight scheduled once every check passed, with their first run",
        },
        "fingerprints": {
            "type": "object",
            "required": ["before", "after"],
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
            "items": {
                "type": "object",
                "required": ["name", "value", "unit", "limit", "passed"],
                "properties": {
                    "name": {"type": "string"},
                    "value": {"type": ["number", "null"]},
                    "unit": {"type": "string"},
                    "limit": {"type": "number"},
                    "better": {"enum": ["higher", "lower"]},
                    "passed": {"type": "boolean"},
                },
            },
        },
        "environment": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "server, TimescaleDB, client tools, plan and migration checksums",
        },
        "next_steps": {"type": "array", "items": {"type": "string"}, "description": "what to do now, in order"},
        "reports": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "paths of this run's html, junit and json reports",
        },
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


def run_record(
    summary: RunSummary,
    *,
    tests: dict[str, int],
    started: datetime,
    finished: datetime,
    environment: dict[str, str],
    reports: dict[str, str],
) -> dict[str, Any]:
    """The machine-readable record of a run (see RUN_RECORD_SCHEMA). Not yet redacted."""
    findings = sorted(summary.findings, key=lambda f: (not f.blocking, f.code))
    restore = None
    if summary.restore is not None:
        restore = {
            "outcome": summary.restore,
            "identical": summary.restored_identical,
            "complete": summary.restore_complete,
            "cause": summary.cause,
            "backup_taken_at": (summary.backup or {}).get("taken_at") if summary.restored else None,
            "rolled_back": summary.rolled_back,
            "carried_over": summary.carried_over,
        }
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
        "estimate": summary.estimate,
        "timeline": summary.timeline,
        "session_overrides": list(summary.session_overrides),
        "fingerprints": {
            "before": _rows_and_digest(before_fingerprints(summary)),
            "after": _rows_and_digest(summary.fingerprints_after),
        },
        "verdict_inputs": summary.verdict_inputs,
        "benchmarks": list(summary.benchmarks),
        "environment": {k: str(v) for k, v in environment.items()},
        "next_steps": next_steps(summary),
        "reports": {k: str(v) for k, v in reports.items()},
    }


def write_run_record(record: dict, path: Path, secrets: tuple[str, ...] = ()) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(redact_record(record, secrets), indent=2, default=str) + "\n", encoding="utf-8")
    return path


def validate_run_record(record: Any) -> list[str]:
    """What does not fit the documented shape, as 'where: problem' lines ([] when it fits)."""
    import jsonschema  # only needed by whoever validates

    validator = jsonschema.Draft202012Validator(RUN_RECORD_SCHEMA, format_checker=jsonschema.FormatChecker())
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '(record)'}: {e.message}"
        for e in sorted(validator.iter_errors(record), key=lambda e: list(e.absolute_path))
    ]
