"""Pre-flight checks of the migration files: names and order, checksums against the ledger, steps a killed run
left started, and the lint of the pending files."""

from __future__ import annotations

from pathlib import Path

import psycopg

from .. import ledger
from ..db import timescaledb_version
from ..findings import ADVISORY, BLOCKING, Finding
from ..lint import hypertables_created_in, lint_sql
from ..lint.context import LiveHypertable
from ..migrations import MigrationFile, discover, version_gaps
from ..plan import Plan
from .checks import CHECKS, finding


def migration_files(
    conn: psycopg.Connection, migrations_dir: Path, *, resolve_interrupted: bool = False
) -> list[Finding]:
    """``resolve_interrupted``: the run will mark steps a killed run left started as interrupted (and rerun them)."""
    files, problems = discover(migrations_dir)
    found = [finding("PF020" if p.blocking else "PF025", p.problem, path=str(p.path), line=p.line) for p in problems]
    for a, b in version_gaps(files):
        found.append(finding("PF021", f"versions jump from {a:03d} to {b:03d}", path=str(migrations_dir)))
    applied = ledger.applied(conn)
    by_step = {f.step_id: f for f in files}
    for step, entry in applied.items():
        if entry.kind != "migration":
            continue
        f = by_step.get(step)
        if f is None:
            found.append(
                finding(
                    "PF023",
                    f"step {step} ({entry.name}) was applied on {entry.finished_at:%Y-%m-%d} "
                    f"but is not in {migrations_dir}",
                    path=str(migrations_dir),
                )
            )
        elif f.sha256 != entry.sha256 and not f.repeatable:  # a repeatable file changed is pending
            found.append(
                finding(
                    "PF022",
                    f"{f.label} was applied on {entry.finished_at:%Y-%m-%d} and has changed since "
                    "(sha256 differs from the ledger)",
                    path=str(f.path),
                    line=f.first_line,
                )
            )
    for entry in ledger.interrupted_steps(conn):
        severity = ADVISORY if entry.transactional or resolve_interrupted else BLOCKING
        then = (
            "; PostgreSQL rolled it back and the run applies it again"
            if entry.transactional
            else "; --resolve-interrupted: the run marks it interrupted and applies it again"
            if resolve_interrupted
            else "; it is not transactional, so part of it may have run"
        )
        f = by_step.get(entry.step) if entry.kind == "migration" else None
        # A conversion's ledger name is its label, "convert <schema>.<table>" (run.plan_steps).
        where = (
            {"path": str(f.path)}
            if f
            else {"table": entry.name.removeprefix("convert ") if entry.kind == "conversion" else None}
        )
        found.append(
            finding(
                "PF024",
                f"step {entry.step} ({entry.name}) was started on {entry.started_at:%Y-%m-%d %H:%M} "
                f"by {entry.applied_by} and never finished{then}",
                severity=severity,
                **where,
            )
        )
    return found


def pending_files(conn: psycopg.Connection, migrations_dir: Path) -> list[MigrationFile]:
    files, _ = discover(migrations_dir)
    applied = ledger.applied(conn)
    return [f for f in files if not ledger.is_done(applied.get(f.step_id), f.sha256, reruns_when_changed=f.repeatable)]


def hypertables_of(plan: Plan | None, files: list[MigrationFile]) -> dict[str, str]:
    """Tables that will become hypertables: the plan's, and those the files convert themselves."""
    tables: dict[str, str] = {}
    for f in files:
        tables.update(hypertables_created_in(f.sql))
    if plan is not None:
        for h in plan.hypertables:
            tables[f"{plan.schema}.{h.table}"] = h.time_column
    return tables


def live_hypertables(conn: psycopg.Connection) -> list[LiveHypertable]:
    """The hypertables the database holds now, with their time column and compression state (none before
    TimescaleDB is created in it)."""
    if timescaledb_version(conn) is None:
        return []
    rows = conn.execute("""
        SELECT h.hypertable_schema, h.hypertable_name,
               (SELECT d.column_name FROM timescaledb_information.dimensions d
                 WHERE d.hypertable_schema = h.hypertable_schema AND d.hypertable_name = h.hypertable_name
                 ORDER BY d.dimension_number LIMIT 1),
               h.compression_enabled,
               (SELECT count(*) FROM timescaledb_information.chunks c
                 WHERE c.hypertable_schema = h.hypertable_schema AND c.hypertable_name = h.hypertable_name
                   AND c.is_compressed),
               coalesce((SELECT array_agg(s.attname::text) FROM timescaledb_information.compression_settings s
                          WHERE s.hypertable_schema = h.hypertable_schema AND s.hypertable_name = h.hypertable_name
                            AND s.segmentby_column_index IS NOT NULL), '{}'),
               coalesce((SELECT array_agg(s.attname::text) FROM timescaledb_information.compression_settings s
                          WHERE s.hypertable_schema = h.hypertable_schema AND s.hypertable_name = h.hypertable_name
                            AND s.orderby_column_index IS NOT NULL), '{}'),
               h.num_chunks
          FROM timescaledb_information.hypertables h""").fetchall()
    return [
        LiveHypertable(
            f"{schema}.{table}", column or "", bool(enabled), compressed, tuple(segment_by), tuple(order_by), chunks
        )
        for schema, table, column, enabled, compressed, segment_by, order_by, chunks in rows
    ]


def lint(conn: psycopg.Connection, migrations_dir: Path, plan: Plan | None) -> list[Finding]:
    """Static lint of the pending files, with function volatility and the hypertables (and their compression)
    read from the live server."""
    files = pending_files(conn, migrations_dir)
    all_files, _ = discover(migrations_dir)
    hypertables = hypertables_of(plan, all_files)
    live = live_hypertables(conn)
    converted = {h.name.split(".")[-1].lower() for h in live}
    planned = {h.table.lower(): h for h in plan.hypertables} if plan else {}

    def volatility(name: str) -> str | None:
        row = conn.execute(
            "SELECT max(provolatile) FROM pg_proc WHERE proname = %s", (name.rsplit(".", maxsplit=1)[-1],)
        ).fetchone()
        return row[0] if row and row[0] else None

    found = []
    for f in files:
        for item in lint_sql(
            f.sql, str(f.path), hypertables=hypertables, transactional=f.transactional, volatility=volatility, live=live
        ):
            table = (item.table or "").split(".")[-1].strip('"').lower()
            # A table that is a hypertable already is not converted again: the plan's rebuild of its keys and
            # its null_time rule do not apply to it.
            h = planned.get(table) if table not in converted else None
            if item.code == "TS008":
                # A foreign key must point at a unique key, and on a hypertable every unique key holds the
                # time column: a reference to the legacy id cannot survive the conversion.
                item = Finding(
                    item.code,
                    BLOCKING,
                    item.message + " (the table's unique keys will all include its "
                    "time column, so this reference cannot be kept)",
                    item.path,
                    item.line,
                    item.table,
                    item.hint,
                )
            # The plan's conversion rebuilds keys and applies the null_time rule itself.
            if h is not None and item.code == "TS001":
                item = Finding(
                    item.code,
                    ADVISORY,
                    item.message + " (the plan's conversion adds the time column to it)",
                    item.path,
                    item.line,
                    item.table,
                    CHECKS["PF035"].hint,
                )
            elif h is not None and item.code == "TS002" and h.null_time.kind != "refuse":
                item = Finding(
                    item.code,
                    ADVISORY,
                    item.message + f" (the plan fills NULLs by rule {h.null_time})",
                    item.path,
                    item.line,
                    item.table,
                    item.hint,
                )
            found.append(item)
    return found
