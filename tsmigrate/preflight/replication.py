"""Pre-flight check of logical replication: publications that hold a table to convert (PF070) and logical
replication slots of the database (PF071).

Converting a table replaces it: a new hypertable takes its name and the old table is dropped, and the hypertable's
rows live in chunk tables of their own. A publication that named the table loses it with the drop (its subscribers
stop receiving the table's changes, silently), one FOR ALL TABLES or FOR TABLES IN SCHEMA carries the copied rows as
inserts into chunk tables its subscribers do not have (their apply stops with an error), and a logical slot's
consumer (a subscription, or a CDC tool such as Debezium) sees a copy of every row arrive in chunk tables while the
table it knew stops changing. None of it can be undone by the run's restore: the subscribers are elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql

from ..db import display_name, is_hypertable, one, regclass
from ..findings import ADVISORY, Finding
from ..lint import hypertables_created_in
from ..plan import Plan
from .checks import finding
from .files import pending_files


def tables_to_convert(
    conn: psycopg.Connection, migrations_dir: Path | None, plan: Plan | None
) -> list[tuple[str, str]]:
    """(schema, table) of every existing table the plan or a pending migration file makes a hypertable."""
    names = [(plan.schema, h.table) for h in plan.hypertables] if plan else []
    if migrations_dir is not None:
        for f in pending_files(conn, migrations_dir):
            for name in hypertables_created_in(f.sql):
                schema, _, table = name.rpartition(".")
                names.append((schema.strip('"') or "public", table.strip('"')))
    found = []
    for schema, table in dict.fromkeys(names):
        if one(conn, "SELECT to_regclass(%s)", (regclass(schema, table),)) and not is_hypertable(conn, schema, table):
            found.append((schema, table))
    return found


def _publication_fix(conn: psycopg.Connection, pubname: str, how: str, schema: str, table: str) -> str:
    """The statements that take ``schema.table`` out of publication ``pubname`` and keep the rest published."""
    pub, rel = display_name(pubname), display_name(schema, table)
    if how == "table":
        return (
            f"before the window: ALTER PUBLICATION {pub} DROP TABLE {rel}; afterwards, once the subscribers can "
            f"take a hypertable (its chunks are tables of their own), ALTER PUBLICATION {pub} ADD TABLE {rel} "
            "(it adds the chunks that exist then, not later ones) and ALTER SUBSCRIPTION ... REFRESH PUBLICATION "
            "on each subscriber, or replicate it another way"
        )
    others = [
        display_name(s, t)
        for s, t in conn.execute(
            """SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s
             AND NOT (schemaname = %s AND tablename = %s) ORDER BY 1, 2""",
            (pubname, schema, table),
        ).fetchall()
    ]
    keep = f"ALTER PUBLICATION {pub} ADD TABLE {', '.join(others)}" if others else ""
    if how == "schema":
        return (
            f"before the window: ALTER PUBLICATION {pub} DROP TABLES IN SCHEMA "
            f"{display_name(schema)}"
            + (f"; {keep} (the other tables it publishes)" if keep else "")
            + "; then ALTER SUBSCRIPTION ... REFRESH PUBLICATION on each subscriber"
        )
    return (
        f"before the window: DROP PUBLICATION {pub}; CREATE PUBLICATION {pub}"
        + (f" FOR TABLE {', '.join(others)} (the other tables it publishes)" if others else "")
        + " with its options as they were (SELECT * FROM pg_publication); then ALTER SUBSCRIPTION ... REFRESH "
        "PUBLICATION on each subscriber"
    )


def publications(conn: psycopg.Connection, tables: list[tuple[str, str]]) -> list[Finding]:
    """PF070: each (publication, table to convert), named with the statements that take the table out."""
    if not tables:
        return []
    rows = conn.execute(
        """SELECT pt.pubname, pt.schemaname, pt.tablename,
                  CASE WHEN p.puballtables THEN 'all'
                       WHEN EXISTS (SELECT 1 FROM pg_publication_rel r JOIN pg_class c ON c.oid = r.prrelid
                                      JOIN pg_namespace n ON n.oid = c.relnamespace
                                     WHERE r.prpubid = p.oid AND n.nspname = pt.schemaname AND c.relname = pt.tablename)
                       THEN 'table' ELSE 'schema' END
             FROM pg_publication_tables pt JOIN pg_publication p ON p.pubname = pt.pubname
            WHERE (pt.schemaname, pt.tablename) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
            ORDER BY pt.schemaname, pt.tablename, pt.pubname""",
        ([s for s, _ in tables], [t for _, t in tables]),
    ).fetchall()
    found = []
    what = {"all": "FOR ALL TABLES", "schema": "FOR TABLES IN SCHEMA", "table": "by name"}
    effect = {
        "table": "the old table's drop takes it out of the publication: its subscribers stop receiving its "
        "changes, and nothing tells them",
        "schema": "the publication carries the copied rows as inserts into chunk tables its subscribers do not "
        "have: their apply stops with an error, and the table they know stops changing",
    }
    effect["all"] = effect["schema"]
    for pubname, schema, table, how in rows:
        name = display_name(schema, table)
        found.append(
            finding(
                "PF070",
                f"{name} is in publication {pubname} ({what[how]}); converting it replaces the "
                f"table with a hypertable whose rows live in chunks: {effect[how]}. Fix: "
                + _publication_fix(conn, pubname, how, schema, table),
                table=name,
            )
        )
    return found


def slots(conn: psycopg.Connection, tables: list[tuple[str, str]], published: list[Finding]) -> list[Finding]:
    """PF071: each logical replication slot of this database, with its consumer where one is connected."""
    rows = conn.execute(
        """SELECT s.slot_name, s.plugin, s.active, s.active_pid, r.application_name, r.client_addr::text,
                  CASE WHEN NOT pg_is_in_recovery()   -- a standby has no current WAL position (PF008's)
                       THEN pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)) END
             FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
            WHERE s.slot_type = 'logical' AND s.database = current_database() ORDER BY s.slot_name"""
    ).fetchall()
    names = ", ".join(display_name(s, t) for s, t in tables) or "the tables it converts"
    found = []
    for slot, plugin, active, pid, app, addr, retained in rows:
        consumer = (
            f"in use by pid {pid}" + (f" ('{app}' from {addr or 'a local socket'})" if app is not None else "")
            if active
            else "no consumer connected now"
        )
        drop = f"SELECT pg_drop_replication_slot({sql.Literal(slot).as_string(conn)})"
        said = f"logical replication slot {slot} (plugin {plugin}, {consumer}, {retained or '0 bytes'} of WAL retained)"
        if plugin == "pgoutput" and not published:
            found.append(
                finding(
                    "PF071",
                    f"{said}: its subscriptions receive only the tables of their publications, "
                    f"and no publication holds {names}; keep its consumer running through the "
                    "window, or the slot holds back all the WAL the conversion writes (about "
                    "the size of the tables it converts)",
                    severity=ADVISORY,
                )
            )
            continue
        found.append(
            finding(
                "PF071",
                f"{said} decodes every change of this database: converting {names} writes a copy "
                "of every row into new chunk tables, which its consumer receives as inserts, "
                "while the tables it knew are dropped and stop changing; a consumer that is "
                "stopped meanwhile leaves the slot holding all that WAL. Fix: before the window "
                "stop its consumer (a subscription: ALTER SUBSCRIPTION ... DISABLE; a CDC "
                f"connector: pause it) and {drop}; after it, recreate the slot and take a new "
                "initial snapshot (Debezium: snapshot.mode = initial, chunk tables routed to the "
                "hypertable's topic)",
            )
        )
    return found


def logical_replication(conn: psycopg.Connection, migrations_dir: Path | None, plan: Plan | None) -> list[Finding]:
    """PF070 and PF071 for the tables the plan and the pending migration files convert."""
    tables = tables_to_convert(conn, migrations_dir, plan)
    published = publications(conn, tables)
    return published + (slots(conn, tables, published) if tables else [])
