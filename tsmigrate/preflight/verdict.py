"""What a GO depends on (server and TimescaleDB versions, plan and migration hashes), and what changed since."""

from __future__ import annotations

import hashlib
from pathlib import Path

import psycopg

from ..db import one
from ..migrations import discover, files_digest
from ..plan import PLAN_FILE_NAME
from ..timescale import server_timescaledb


def verdict_inputs(conn: psycopg.Connection, migrations_dir: Path) -> dict:
    """What the GO depends on: versions, plan and migration hashes. Execute checks them again."""
    files, _ = discover(migrations_dir)
    plan_path = Path(migrations_dir) / PLAN_FILE_NAME
    ts = server_timescaledb(conn)
    return {
        "server_version": one(conn, "SHOW server_version"),
        "timescaledb_available": ts.available_version,
        "timescaledb_installed": ts.installed_version,
        "timescaledb_edition": ts.edition,
        "plan_sha256": hashlib.sha256(plan_path.read_bytes()).hexdigest() if plan_path.exists() else None,
        "migrations": {f.label: f.sha256 for f in files},
        "migrations_sha256": files_digest(files),
    }


def changed_since(before: dict, now: dict) -> list[str]:
    return [
        f"{key}: {before.get(key)!r} at the GO, {now.get(key)!r} now"
        for key in sorted(set(before) | set(now))
        if key != "migrations" and before.get(key) != now.get(key)
    ]
