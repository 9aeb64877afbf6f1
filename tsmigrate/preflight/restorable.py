"""Pre-flight check that a backup of the target restores with its TimescaleDB version (PF036).

TimescaleDB 2.19.0 brought the NULL compression algorithm: a compressed batch whose column holds only NULLs is
stored as a one-byte block. pg_dump writes such a block out (as 'Bg==', its base64 text), but the same versions'
input function rejects it ("null compression doesn't implement recv"; pg_restore reports "function ... returned
NULL" in the COPY of a compress_hyper_* chunk), so a dump of such a database does not restore. The fix, upstream pull
request 8153, shipped in 2.20.1 and 2.21.0. A restore uses the backup's own TimescaleDB version (restore.py), so the
version that matters is the one created in the database.
"""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

from ..db import display_name, row
from ..findings import ADVISORY, BLOCKING, Finding
from ..plan import Plan
from ..timescale import ServerTimescale, server_timescaledb
from .checks import finding

NULL_COMPRESSION_SINCE = (2, 19, 0)  # the first version that writes NULL-compressed blocks
NULL_RESTORE_FIXED = (2, 20, 1)  # the first that reads them back (also 2.21.0)
NULL_BLOCK_TEXT = "Bg=="  # algorithm byte 6 (NULL) and nothing else, as compressed_data's output writes it
LISTED = 10  # chunks named in a finding; the count says how many more


def version_tuple(text: str | None) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text or "")[:3])


def cannot_restore_null_blocks(version: str | None) -> bool:
    """Whether TimescaleDB ``version`` writes all-NULL batches that its own restore rejects."""
    return NULL_COMPRESSION_SINCE <= version_tuple(version) < NULL_RESTORE_FIXED


def null_compressed_chunks(conn: psycopg.Connection) -> tuple[int, dict[str, list[tuple[str, list[str]]]]]:
    """(compressed chunks, {hypertable: [(chunk, columns with an all-NULL batch)]}) of the database.

    A block's stored size is read first (pg_column_size does not detoast): only a block of a few bytes can be a
    NULL block, so the scan never decodes the large ones.
    """
    pairs = conn.execute(
        """SELECT h.schema_name, h.table_name, c.schema_name, c.table_name, cc.schema_name, cc.table_name,
                  array(SELECT a.attname FROM pg_attribute a
                         WHERE a.attrelid = format('%I.%I', cc.schema_name, cc.table_name)::regclass AND a.attnum > 0
                           AND NOT a.attisdropped AND a.atttypid = '_timescaledb_internal.compressed_data'::regtype
                         ORDER BY a.attnum)
             FROM _timescaledb_catalog.chunk c
             JOIN _timescaledb_catalog.chunk cc ON cc.id = c.compressed_chunk_id
             JOIN _timescaledb_catalog.hypertable h ON h.id = c.hypertable_id
            WHERE to_regclass(format('%I.%I', cc.schema_name, cc.table_name)) IS NOT NULL
            ORDER BY h.schema_name, h.table_name, c.id"""
    ).fetchall()
    found: dict[str, list[tuple[str, list[str]]]] = {}
    for h_schema, h_table, c_schema, c_table, cc_schema, cc_table, columns in pairs:
        if not columns:
            continue
        tests = sql.SQL(", ").join(
            sql.SQL("bool_or(CASE WHEN pg_column_size({c}) <= 8 THEN {c}::text = {null} ELSE false END)").format(
                c=sql.Identifier(column), null=sql.Literal(NULL_BLOCK_TEXT)
            )
            for column in columns
        )
        answers = row(conn, sql.SQL("SELECT {} FROM {}").format(tests, sql.Identifier(cc_schema, cc_table)))
        hit = [column for column, yes in zip(columns, answers, strict=True) if yes]
        if hit:
            found.setdefault(display_name(h_schema, h_table), []).append((display_name(c_schema, c_table), hit))
    return len(pairs), found


def restorable_backups(conn: psycopg.Connection, plan: Plan | None, ts: ServerTimescale | None = None) -> list[Finding]:
    """PF036: blocking where the database holds the batches its TimescaleDB cannot restore; advisory where it will
    once compression runs (the run's own backup is taken before: the window is safe, the site's later backups not).
    ``ts``: what the server offers, when not read from it (a test's other version)."""
    ts = ts or server_timescaledb(conn)
    version = ts.installed_version or ts.available_version
    if not cannot_restore_null_blocks(version):
        return []
    defect = (
        f"TimescaleDB {version} stores a compressed batch whose column is all NULL as a NULL block, which its "
        "own pg_restore rejects (upstream pull request 8153, fixed in 2.20.1)"
    )
    compressed = 0
    if ts.installed_version and ts.has_compression:
        try:
            compressed, hit = null_compressed_chunks(conn)
        except psycopg.errors.InsufficientPrivilege as exc:
            return [
                finding(
                    "PF036",
                    f"{defect}; whether this database holds such batches cannot be read by role "
                    f"{conn.info.user}: {str(exc).strip()}. Run the pre-flight as the tables' owner",
                    severity=BLOCKING,
                )
            ]
        found = []
        for hypertable, chunks in hit.items():
            columns = sorted({c for _, cols in chunks for c in cols})
            names = [chunk for chunk, _ in chunks]
            shown = ", ".join(names[:LISTED]) + (f" and {len(names) - LISTED} more" if len(names) > LISTED else "")
            listed = ", ".join(sql.Literal(n).as_string(conn) for n in names)
            decompress = (
                f"SELECT decompress_chunk(c) FROM unnest(ARRAY[{listed}]::regclass[]) c"
                if len(names) <= LISTED
                else f"SELECT decompress_chunk(c, true) FROM show_chunks({sql.Literal(hypertable).as_string(conn)}) c"
            )
            found.append(
                finding(
                    "PF036",
                    f"{defect}: {hypertable} has {len(names)} compressed chunk(s) with all-NULL "
                    f"batches in {', '.join(columns)} ({shown}), so no backup of this database, "
                    "the run's own included, can be restored. Upgrade TimescaleDB to 2.20.1 or "
                    "later before the window, or decompress those chunks (and pause the "
                    f"compression policy until the upgrade): {decompress}",
                    table=hypertable,
                    severity=BLOCKING,
                )
            )
        if found:
            return found
    planned = plan is not None and plan.needs_compression
    if not ts.has_compression or not (planned or compressed):
        return []
    now = f"{compressed} chunks are compressed, none with such a batch yet" if compressed else "compression is planned"
    return [
        finding(
            "PF036",
            f"{defect}. Here {now}: the run's own backup restores (the run compresses nothing itself: "
            "the policies start after the post-flight), but once the compression policy writes such "
            "a batch, backups of this database cannot be restored: upgrade TimescaleDB to 2.20.1 or "
            "later before the policy runs",
            severity=ADVISORY,
            path=str(plan.path) if plan is not None and planned and plan.path else None,
        )
    ]
