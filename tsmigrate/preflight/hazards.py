"""Pre-flight check of the live tables the plan or the migration files convert to hypertables: present, time
column without NULLs, no foreign key pointing at them, keys that hold the time column, rows retention drops."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
from psycopg import sql

from ..codes import CODES
from ..convert.policies import retention_drops
from ..db import is_hypertable, one
from ..db import regclass as regclass_of
from ..findings import ADVISORY, BLOCKING, Finding
from ..lint import hypertables_created_in
from ..migrations import MigrationFile, discover
from ..plan import HypertablePlan, Plan
from .checks import finding
from .files import pending_files


def _line_of_call(text: str, function: str, table: str) -> int | None:
    """The line of the first call of ``function`` naming ``table`` (for findings about a file's own call)."""
    pattern = re.compile(rf"{function}\s*\(\s*'[^']*{re.escape(table)}'", re.IGNORECASE)
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def target_hazards(conn: psycopg.Connection, migrations_dir: Path, plan: Plan | None) -> list[Finding]:
    files = pending_files(conn, migrations_dir)
    _all_files, _ = discover(migrations_dir)
    created_by_files: dict[str, tuple[str, MigrationFile]] = {}
    for f in files:
        created_by_files.update({k.lower(): (v, f) for k, v in hypertables_created_in(f.sql).items()})
    found: list[Finding] = []
    planned: list[tuple[str, str, str, MigrationFile | HypertablePlan]] = (
        [(plan.schema, h.table, h.time_column, h) for h in plan.hypertables] if plan else []
    )
    file_planned: list[tuple[str, str, str, MigrationFile | HypertablePlan]] = []
    for name, (column, f) in created_by_files.items():
        schema, _, table = name.rpartition(".")
        file_planned.append((schema.strip('"') or "public", table.strip('"'), column, f))
    pending_sql = "\n".join(f.sql for f in files).lower()

    for schema, table, column, source in planned + file_planned:
        qualified = f"{schema}.{table}"
        regclass = one(conn, "SELECT to_regclass(%s)::text", (regclass_of(schema, table),))
        # converted by a migration file's create_hypertable, or by the plan
        by_file = source if isinstance(source, MigrationFile) else None
        by_plan = source if isinstance(source, HypertablePlan) else None
        path: str | None
        if by_file is not None:
            path, line = str(by_file.path), _line_of_call(by_file.sql, "create_hypertable", table)
        else:
            path, line = (str(plan.path) if plan and plan.path else None), None
        if regclass is None:
            if table.lower() not in pending_sql:
                found.append(
                    finding(
                        "PF033",
                        f"table {qualified} does not exist and no pending migration creates it",
                        table=qualified,
                        path=path,
                        line=line,
                    )
                )
            continue
        if is_hypertable(conn, schema, table):
            continue  # already converted
        col = conn.execute(
            """SELECT format_type(atttypid, atttypmod), attnotnull FROM pg_attribute
                               WHERE attrelid = %s::regclass AND attname = %s AND NOT attisdropped""",
            (regclass, column),
        ).fetchone()
        if col is None:
            if f"{column.lower()}" not in pending_sql:
                found.append(
                    finding("PF033", f"{qualified} has no column {column}", table=qualified, path=path, line=line)
                )
            continue
        nulls = one(
            conn,
            sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL").format(
                sql.Identifier(schema, table), sql.Identifier(column)
            ),
        )
        if nulls:
            rule = by_plan.null_time if by_plan else None
            if rule is None or rule.kind == "refuse":
                found.append(
                    finding(
                        "PF030",
                        f"{qualified}.{column} holds {nulls} NULL values; "
                        + ("create_hypertable will fail on them" if by_file else "the plan's rule is 'refuse'"),
                        table=qualified,
                        path=path,
                        line=line,
                    )
                )
            else:
                found.append(
                    finding(
                        "PF030",
                        f"{qualified}.{column} holds {nulls} NULL values; the conversion fills "
                        f"them by rule {rule} and records each in tsmigrate.time_fills",
                        table=qualified,
                        severity=ADVISORY,
                        path=path,
                        line=line,
                    )
                )
        for ref in conn.execute(
            """SELECT conrelid::regclass::text, conname FROM pg_constraint
                                    WHERE contype = 'f' AND confrelid = %s::regclass AND conrelid <> confrelid""",
            (regclass,),
        ).fetchall():
            found.append(
                finding(
                    "PF031",
                    f"{ref[0]} references {qualified} through foreign key {ref[1]}",
                    table=qualified,
                    path=path,
                    line=line,
                )
            )
        rows = one(
            conn, sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT 1) s").format(sql.Identifier(schema, table))
        )
        if by_file and rows and "migrate_data" not in by_file.sql.lower():
            found.append(
                finding(
                    "PF032",
                    f"{by_file.label} converts {qualified}, which holds rows, without migrate_data",
                    table=qualified,
                    path=path,
                    line=line,
                )
            )
        keys = conn.execute(
            """SELECT conname FROM pg_constraint c WHERE conrelid = %s::regclass AND contype IN ('p','u')
                                 AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.conrelid
                                                 AND a.attnum = ANY(c.conkey) AND a.attname = %s)""",
            (regclass, column),
        ).fetchall()
        for (name,) in keys:
            if by_file:
                found.append(
                    finding(
                        "PF035",
                        f"{qualified} has key {name} without {column}: {by_file.label}'s "
                        "create_hypertable will fail on it",
                        table=qualified,
                        severity=BLOCKING,
                        hint=CODES["TS001"].hint,
                        path=path,
                        line=line,
                    )
                )
            else:
                found.append(
                    finding(
                        "PF035",
                        f"{qualified} has key {name} without {column}; the conversion rebuilds it with {column} added",
                        table=qualified,
                        path=path,
                        line=line,
                    )
                )
        if by_plan is None:
            continue
        if by_plan.drop_after is not None and rows:
            old, oldest, newest = retention_drops(conn, schema, by_plan)
            if old:
                found.append(
                    finding(
                        "PF034",
                        f"{qualified} holds {old} rows older than {by_plan.drop_after} ({column} from "
                        f"{oldest} to {newest}); the retention policy's first run drops them. The "
                        "run's backup holds them and is kept until you remove it yourself",
                        table=qualified,
                        path=path,
                        line=line,
                    )
                )
    return found
