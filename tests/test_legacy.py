"""The legacy MS5.0 builder: production's shape today, with realistic data and its hazards."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

from tsmigrate.janitor import drop_database
from tsmigrate.legacy import SCALES, LegacyScale, build_legacy_database

# Production's tables and columns, kept in the repository; taken from the shared schema document beside it.
PRODUCTION_TABLES = Path(__file__).with_name("ms5_production_tables.md")
SHARED_SCHEMA_DOCUMENT = Path(__file__).resolve().parents[2] / "shared" / "ms5" / "legacy-schema.md"
TABLE_LINE = re.compile(r"^- \*\*(\w+)\*\*: (.*)$", re.MULTILINE)
TIME_SERIES = {
    "metric_hist": "ts",
    "oee_calculations": "calculation_time",
    "energy_consumption": "consumption_time",
    "production_kpis": "created_at",
    "production_context_history": "changed_at",
}


@pytest.fixture(scope="module")
def legacy(local_server):
    build_legacy_database(local_server.conninfo(), SCALES["tiny"], dbname="legacy_facts", replace_existing=True)
    with psycopg.connect(local_server.conninfo("legacy_facts"), autocommit=True) as conn:
        yield conn
    with psycopg.connect(local_server.conninfo(), autocommit=True) as admin:  # the server may outlive the run
        drop_database(admin, "legacy_facts")


def production_tables(text: str) -> dict[str, list[str]]:
    """table -> its columns as `name type [NOT NULL] [DEFAULT ...]`, from lines "- **table**: col; col"."""
    return {table: columns.split("; ") for table, columns in TABLE_LINE.findall(text)}


def test_all_tables_of_production_exist_as_plain_tables(legacy):
    tables = {r[0] for r in legacy.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'factory_telemetry'")}
    assert len(tables) == 49
    assert set(production_tables(PRODUCTION_TABLES.read_text())) == tables
    assert legacy.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()[0] == 0


def test_every_table_has_the_columns_production_has(legacy):
    built: dict[str, list[str]] = {}
    for table, column in legacy.execute("""
            SELECT c.relname, a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                   || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
                   || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
              FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
              LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE n.nspname = 'factory_telemetry' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY c.relname, a.attnum"""):
        built.setdefault(table, []).append(column)
    production = production_tables(PRODUCTION_TABLES.read_text())
    differ = {
        t: (built.get(t), production.get(t)) for t in set(built) | set(production) if built.get(t) != production.get(t)
    }
    assert differ == {}, "tables whose columns differ from production's (built, production): " + repr(differ)


def test_the_production_tables_are_the_shared_schema_documents():
    if not SHARED_SCHEMA_DOCUMENT.exists():
        pytest.skip(
            f"the shared MS5.0 schema document is not beside the repository ({SHARED_SCHEMA_DOCUMENT}): "
            f"the builder is still checked against {PRODUCTION_TABLES.name}, but that file's drift from the "
            "document is not"
        )
    assert production_tables(PRODUCTION_TABLES.read_text()) == production_tables(SHARED_SCHEMA_DOCUMENT.read_text())


def test_time_series_tables_keep_their_hazards(legacy):
    for table, time_column in TIME_SERIES.items():
        key = legacy.execute(
            """SELECT array_agg(a.attname::text) FROM pg_constraint c
                                  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
                                 WHERE c.conrelid = %s::regclass AND c.contype = 'p'""",
            (f"factory_telemetry.{table}",),
        ).fetchone()[0]
        assert key == ["id"], f"{table}: production's primary key leaves out {time_column}"
        rows = legacy.execute(f"SELECT count(*) FROM factory_telemetry.{table}").fetchone()[0]
        assert rows > 0, f"{table} has data"
    for table in ("production_kpis", "production_context_history"):
        nulls = legacy.execute(
            f"SELECT count(*) FROM factory_telemetry.{table} WHERE {TIME_SERIES[table]} IS NULL"
        ).fetchone()[0]
        assert nulls > 0, f"{table}: nullable time column holds some NULLs, as production may"


def test_metric_history_has_one_row_per_metric_per_interval(legacy):
    scale = SCALES["tiny"]
    metrics = legacy.execute("SELECT count(*) FROM factory_telemetry.metric_def").fetchone()[0]
    assert metrics == scale.lines * scale.equipment_per_line * scale.metrics_per_equipment
    rows, distinct_ts = legacy.execute(
        "SELECT count(*), count(DISTINCT ts) FROM factory_telemetry.metric_hist"
    ).fetchone()
    assert rows == scale.metric_hist_rows
    assert distinct_ts == scale.metric_hist_rows // metrics


def test_views_and_roles_work(legacy):
    views = [
        r[0]
        for r in legacy.execute(
            "SELECT schemaname || '.' || viewname FROM pg_views WHERE schemaname IN ('public', 'factory_telemetry')"
        )
    ]
    assert len(views) >= 13
    for view in views:
        legacy.execute(f"SELECT * FROM {view} LIMIT 1")
    assert legacy.execute("SELECT count(*) FROM public.v_equipment_latest").fetchone()[0] > 0
    roles = {r[0] for r in legacy.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'ms5_user_%'")}
    assert {"ms5_user_production", "ms5_user_staging"} <= roles


def test_existing_database_is_not_overwritten(local_server, legacy):
    with pytest.raises(ValueError, match="already exists"):
        build_legacy_database(local_server.conninfo(), SCALES["tiny"], dbname="legacy_facts")


def test_scale_is_validated():
    with pytest.raises(ValueError, match="metric_interval_s must be at least 1"):
        LegacyScale(metric_interval_s=0).validate()
    with pytest.raises(ValueError, match="null_time_fraction"):
        LegacyScale(null_time_fraction=1.5).validate()
