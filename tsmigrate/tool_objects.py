"""What in a target database is this tool's own, never the application's: its schema (the ledger, the online
conversions' state, change logs and capture functions), an online conversion's hypertable while it is built
beside its table, and the capture triggers on the application's tables.

Fingerprints, the backup's inventory and the post-flight leave these out: what a killed run left half built is
not the user's data, and the next run drops it before it starts again.
"""

from __future__ import annotations

import psycopg

OWN_SCHEMA = "tsmigrate"
BUILD_SUFFIX = "_tsm_new"  # <table>_tsm_new: the hypertable while it is built beside
CAPTURE_TRIGGER = "tsmigrate_capture"  # on the legacy table while the copy runs (and ..._truncate)
CAPTURE_BACK_TRIGGER = "tsmigrate_capture_back"  # on the hypertable after the swap, for a swap back
CAPTURE_BACK_INSERT_TRIGGER = "tsmigrate_capture_back_insert"  # ... for inserts at or below the watermark


def unfinished_builds(conn: psycopg.Connection) -> set[tuple[str, str]]:
    """(schema, table) of the hypertables online conversions are building (or were, when their run died)."""
    # Through the catalog, and only where readable: a read-only role may not use the schema.
    readable = conn.execute(
        """SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relname = 'online_conversions'
              AND has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT')""",
        (OWN_SCHEMA,),
    ).fetchone()
    if not readable:
        return set()
    return {
        (r[0], r[1])
        for r in conn.execute(
            f"SELECT table_schema, new_name FROM {OWN_SCHEMA}.online_conversions WHERE state = 'building'"
        ).fetchall()
    }


def is_own_trigger(table: str, trigger: str) -> bool:
    """A capture trigger, or any trigger of a hypertable still being built (TimescaleDB's own, copied ones)."""
    return trigger.startswith(CAPTURE_TRIGGER) or table.endswith(BUILD_SUFFIX)
