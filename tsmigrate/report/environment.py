"""Facts about the run's environment, for the report's environment table and the JSON record: the plan and
migration files (with checksums), the client tools (asked for their versions), and the target server's
PostgreSQL and TimescaleDB (asked over a connection).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import psycopg

from ..db import one
from ..dumps import tool
from ..errors import BackupError
from ..migrations import discover, files_digest
from ..plan import PLAN_FILE_NAME, Plan
from ..timescale import server_timescaledb


def migrations_facts(migrations_dir: Path) -> str:
    """'10 files (plain) in migrations, 001 to 010; sha256 …': the same digest as the pre-flight's verdict inputs."""
    files, problems = discover(migrations_dir)
    if not files:
        return f"no migration files in {migrations_dir}"
    digest = files_digest(files)
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
    return {
        "Plan": plan_facts(migrations_dir, plan),
        "Migrations": migrations_facts(migrations_dir),
        "Client tools": client_tools_facts(),
    }


def server_facts(conn: psycopg.Connection, target_description: str) -> dict[str, str]:
    """What the target's server runs: PostgreSQL and TimescaleDB (version, edition, preload)."""
    version = one(conn, "SHOW server_version")
    return {"Server": f"PostgreSQL {version} at {target_description}", "TimescaleDB": timescaledb_facts(conn)}


def timescaledb_facts(conn: psycopg.Connection) -> str:
    ts = server_timescaledb(conn)
    if ts.available_version is None:
        return "not installed on the server"
    edition = (
        f"{ts.edition} edition (timescaledb.license = {ts.license})"
        if ts.edition
        else "edition known once the extension is created in a database"
    )
    preload = "preloaded" if ts.preloaded else "NOT in shared_preload_libraries"
    database = conn.info.dbname
    created = (
        f"version {ts.installed_version} created in {database}"
        if ts.installed_version
        else f"not yet created in {database}"
    )
    return f"{ts.available_version} on the server, {edition}, {preload}; {created}"
