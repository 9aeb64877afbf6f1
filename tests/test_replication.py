"""Logical replication of the tables to convert (PF070, PF071), made for real on a server started with
wal_level = logical: publications on a planned table of a legacy database (by name, FOR TABLES IN SCHEMA, FOR ALL
TABLES) and logical replication slots (test_decoding, as a CDC tool reads one; pgoutput, as a subscription does)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tsmigrate.findings import ADVISORY, BLOCKING, Finding
from tsmigrate.plan import load_plan
from tsmigrate.preflight import replication
from tsmigrate.target import Target

pytestmark = pytest.mark.needs_local_cluster

PROJECT = Path(__file__).resolve().parents[1]
MIGRATIONS = PROJECT / "migrations"
PLAN = load_plan(MIGRATIONS)
SCHEMA = PLAN.schema
PLANNED = PLAN.hypertables[0].table  # metric_hist
NOT_PLANNED = "equipment_config"  # a plain table of MS5.0 that stays plain


def preflight(target: Target) -> list[Finding]:
    with psycopg.connect(target.conninfo, autocommit=True, options="-c default_transaction_read_only=on") as conn:
        return replication.logical_replication(conn, MIGRATIONS, PLAN)


def of(findings: list[Finding], code: str) -> list[tuple[str, str | None]]:
    return [(f.severity, f.table) for f in findings if f.code == code]


@contextmanager
def slot(target: Target, name: str, plugin: str):
    """A logical replication slot of the target's database, dropped afterwards (a slot keeps its database from
    being dropped)."""
    with target.connect() as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, %s)", (name, plugin))
    try:
        yield name
    finally:
        with target.connect() as conn:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))


def test_nothing_published_and_no_slot_no_finding(logical_legacy_db):
    with logical_legacy_db.connect() as conn:
        assert conn.execute("SHOW wal_level").fetchone()[0] == "logical"
        conn.execute(
            sql.SQL("CREATE PUBLICATION other_tables FOR TABLE {}").format(sql.Identifier(SCHEMA, NOT_PLANNED))
        )
    assert preflight(logical_legacy_db) == [], "a publication of a table that stays plain changes nothing"


@pytest.mark.parametrize(
    "how, statement",
    [
        pytest.param(
            "by name",
            "CREATE PUBLICATION plant_feed FOR TABLE {planned}, {other}",
            marks=pytest.mark.finding("PF070", BLOCKING),
        ),
        pytest.param("FOR TABLES IN SCHEMA", "CREATE PUBLICATION plant_feed FOR TABLES IN SCHEMA {schema}"),
        pytest.param("FOR ALL TABLES", "CREATE PUBLICATION plant_feed FOR ALL TABLES"),
    ],
)
def test_pf070_a_table_to_convert_in_a_publication(how, statement, logical_legacy_db):
    with logical_legacy_db.connect() as conn:
        conn.execute(
            sql.SQL(statement).format(
                planned=sql.Identifier(SCHEMA, PLANNED),
                other=sql.Identifier(SCHEMA, NOT_PLANNED),
                schema=sql.Identifier(SCHEMA),
            )
        )
    found = preflight(logical_legacy_db)
    planned = sorted(f"{SCHEMA}.{h.table}" for h in PLAN.hypertables)
    published = [f"{SCHEMA}.{PLANNED}"] if how == "by name" else planned
    assert sorted(of(found, "PF070")) == [(BLOCKING, t) for t in published]
    first = next(f for f in found if f.table == f"{SCHEMA}.{PLANNED}")
    assert f"publication plant_feed ({how})" in first.message
    fix = {
        "by name": f"ALTER PUBLICATION plant_feed DROP TABLE {SCHEMA}.{PLANNED}",
        "FOR TABLES IN SCHEMA": f"ALTER PUBLICATION plant_feed DROP TABLES IN SCHEMA {SCHEMA}",
        "FOR ALL TABLES": "DROP PUBLICATION plant_feed; CREATE PUBLICATION plant_feed FOR TABLE",
    }[how]
    assert fix in first.message
    if how != "by name":  # the other tables it publishes stay published: they are named
        assert f"{SCHEMA}.{NOT_PLANNED}" in first.message.split("Fix:")[1]
    assert of(found, "PF071") == [], "no slot"


@pytest.mark.finding("PF071", BLOCKING)
def test_pf071_a_logical_slot_a_cdc_tool_reads(logical_legacy_db):
    with slot(logical_legacy_db, "debezium_ms5", "test_decoding"):
        found = preflight(logical_legacy_db)
    assert of(found, "PF071") == [(BLOCKING, None)]
    assert "logical replication slot debezium_ms5 (plugin test_decoding, no consumer connected now" in found[0].message
    assert "SELECT pg_drop_replication_slot('debezium_ms5')" in found[0].message
    assert f"{SCHEMA}.{PLANNED}" in found[0].message


def test_pf071_a_pgoutput_slot_beside_a_publication_of_a_table_to_convert(logical_legacy_db):
    with logical_legacy_db.connect() as conn:
        conn.execute(sql.SQL("CREATE PUBLICATION plant_feed FOR TABLE {}").format(sql.Identifier(SCHEMA, PLANNED)))
    with slot(logical_legacy_db, "plant_sub", "pgoutput"):
        found = preflight(logical_legacy_db)
    assert of(found, "PF070") == [(BLOCKING, f"{SCHEMA}.{PLANNED}")]
    assert of(found, "PF071") == [(BLOCKING, None)] and "plant_sub" in found[-1].message


@pytest.mark.finding("PF071", ADVISORY)
def test_pf071_a_pgoutput_slot_whose_publications_hold_no_table_to_convert(logical_legacy_db):
    with logical_legacy_db.connect() as conn:
        conn.execute(
            sql.SQL("CREATE PUBLICATION other_tables FOR TABLE {}").format(sql.Identifier(SCHEMA, NOT_PLANNED))
        )
    with slot(logical_legacy_db, "plant_sub", "pgoutput"):
        found = preflight(logical_legacy_db)
    assert of(found, "PF071") == [(ADVISORY, None)]
    assert "no publication holds" in found[0].message and "keep its consumer running" in found[0].message


def test_the_preflight_says_no_go_naming_the_publication_and_the_slot(logical_legacy_db, run_suite):
    with logical_legacy_db.connect() as conn:
        conn.execute(sql.SQL("CREATE PUBLICATION plant_feed FOR TABLE {}").format(sql.Identifier(SCHEMA, PLANNED)))
    with slot(logical_legacy_db, "debezium_ms5", "test_decoding"):
        result = run_suite("suites/preflight", "--dsn", logical_legacy_db.conninfo, "--no-rehearse")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out[-3000:]
    assert "NO-GO" in out
    assert f"PF070 blocking: {SCHEMA}.{PLANNED} is in publication plant_feed" in out
    assert "PF071 blocking: logical replication slot debezium_ms5" in out
