"""The lint reads the live catalog: statements that TimescaleDB refuses on a hypertable the database already
holds (after Phase 3) are found in the file, at their line, before any rehearsal; and each case is then run
on the real server, which must refuse it, so a rule that no longer matches TimescaleDB fails here.

Compression cases need TimescaleDB's community edition (they skip under apache, with the reason).
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tsmigrate.codes import CODES
from tsmigrate.findings import ADVISORY, BLOCKING
from tsmigrate.janitor import ScratchDatabase
from tsmigrate.preflight.files import lint, live_hypertables
from tsmigrate.timescale import server_timescaledb

READINGS = """
CREATE EXTENSION IF NOT EXISTS timescaledb;
CREATE TABLE public.readings (ts timestamptz NOT NULL, dev int NOT NULL, v int, PRIMARY KEY (dev, ts));
SELECT create_hypertable('public.readings', 'ts', chunk_time_interval => interval '1 day');
INSERT INTO public.readings SELECT t, d, 1 FROM generate_series(now() - interval '3 days', now(), interval '1 hour') t,
       generate_series(1, 3) d;
"""
COMPRESSED = """
ALTER TABLE public.readings SET (timescaledb.compress, timescaledb.compress_segmentby = 'dev',
                                 timescaledb.compress_orderby = 'ts');
SELECT compress_chunk(c) FROM show_chunks('public.readings') c;
"""


@pytest.fixture
def hypertable_db(local_server):
    """A database holding public.readings as a hypertable (three days of rows, one-day chunks)."""
    with (
        ScratchDatabase(local_server.conninfo(), "live_lint") as name,
        psycopg.connect(local_server.conninfo(name), autocommit=True) as conn,
    ):
        conn.execute(READINGS)
        yield conn


@pytest.fixture
def compressed_db(hypertable_db, community_server):
    hypertable_db.execute(COMPRESSED)
    return hypertable_db


def lint_file(conn: psycopg.Connection, directory: Path, text: str) -> tuple[Path, list]:
    migration = directory / "012_case.sql"
    migration.write_text(text)
    return migration, lint(conn, directory, None)


def refused(conn: psycopg.Connection, text: str) -> str:
    """Run the file's statements as the runner would (one transaction unless marked otherwise); the server's
    error, or '' when it took them (then rolled back where it could be)."""
    statements = text.rsplit("-- tsmigrate: no-transaction", maxsplit=1)[-1]
    try:
        if "no-transaction" in text:
            conn.execute(statements)
        else:
            with conn.transaction(force_rollback=True):
                conn.execute(statements)
    except psycopg.Error as exc:
        return str(exc).splitlines()[0]
    return ""


# (file text, line of the finding, the server's refusal as TimescaleDB words it)
HYPERTABLE_CASES = [
    pytest.param(
        "-- tsmigrate: no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS readings_v\n  ON public.readings (v);\n",
        2,
        "hypertables do not support concurrent index creation",
        id="TS010",
        marks=pytest.mark.finding("TS010", BLOCKING),
    ),
    pytest.param(
        "SELECT 1;\nALTER TABLE ONLY public.readings ADD COLUMN note text;\n",
        2,
        "ONLY option not supported on hypertable operations",
        id="TS011",
        marks=pytest.mark.finding("TS011", BLOCKING),
    ),
    pytest.param(
        "CREATE OR REPLACE FUNCTION public.seen() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN RETURN NULL; END $$;\n"
        "CREATE TRIGGER readings_seen AFTER INSERT ON public.readings\n"
        "  REFERENCING NEW TABLE AS added FOR EACH ROW EXECUTE FUNCTION public.seen();\n",
        3,
        "ROW triggers with transition tables are not supported on hypertables",
        id="TS013",
        marks=pytest.mark.finding("TS013", BLOCKING),
    ),
    pytest.param(
        "-- keys of readings by reading id\nCREATE UNIQUE INDEX IF NOT EXISTS readings_dev\n"
        "  ON public.readings (dev);\n",
        2,
        "cannot create a unique index without the column",
        id="TS001-live",
        marks=pytest.mark.finding("TS001", BLOCKING),
    ),
]

COMPRESSED_CASES = [
    pytest.param(
        "ALTER TABLE public.readings\n  ALTER COLUMN v TYPE bigint;\n",
        1,
        "operation not supported on hypertables with compressed chunks",
        id="TS012-type",
    ),
    pytest.param(
        "ALTER TABLE public.readings ADD COLUMN n int NOT NULL;\n",
        1,
        "cannot add column with NOT NULL constraint without default",
        id="TS012-not-null",
    ),
    pytest.param(
        "-- a column with the time it was seen\nALTER TABLE public.readings ADD COLUMN seen timestamptz "
        "DEFAULT now();\n",
        2,
        "non-constant default expression",
        id="TS012-default",
    ),
    pytest.param(
        "ALTER TABLE public.readings DROP COLUMN dev;\n",
        1,
        "cannot drop orderby or segmentby column",
        id="TS012-segment-by",
    ),
    pytest.param(
        "ALTER TABLE public.readings ENABLE ROW LEVEL SECURITY;\n",
        1,
        "operation not supported on hypertables that have columnstore enabled",
        id="TS012-rls",
    ),
    pytest.param(
        "CREATE OR REPLACE FUNCTION public.gone() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN RETURN NULL; END $$;\n"
        "CREATE TRIGGER readings_gone AFTER DELETE ON public.readings\n"
        "  REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION public.gone();\n",
        3,
        "DELETE triggers with transition tables not supported",
        id="TS013-delete-compressed",
    ),
]


@pytest.mark.parametrize("text, line, refusal", HYPERTABLE_CASES)
def test_what_timescaledb_refuses_on_a_live_hypertable_is_found_before_it_runs(
    text, line, refusal, marked_finding, hypertable_db, tmp_path
):
    code, severity = marked_finding
    migration, found = lint_file(hypertable_db, tmp_path, text)
    mine = [f for f in found if f.code == code]
    assert [(f.severity, f.path, f.line, f.table) for f in mine] == [
        (severity, str(migration), line, "public.readings")
    ], found
    assert mine[0].hint == CODES[code].hint
    assert refusal in refused(hypertable_db, text), "TimescaleDB took a statement the lint says it refuses"


@pytest.mark.finding("TS012", BLOCKING)
@pytest.mark.parametrize("text, line, refusal", COMPRESSED_CASES)
def test_what_a_hypertable_with_compression_refuses_is_found_before_it_runs(
    text, line, refusal, compressed_db, tmp_path
):
    _migration, found = lint_file(compressed_db, tmp_path, text)
    mine = [f for f in found if f.code in ("TS012", "TS013")]
    assert [(f.severity, f.line, f.table) for f in mine] == [(BLOCKING, line, "public.readings")], found
    error = refused(compressed_db, text)
    assert error and refusal in error, f"TimescaleDB's answer: {error!r}"


def test_what_a_hypertable_takes_is_not_flagged(compressed_db, tmp_path):
    """The fixes the hints give pass the lint and run."""
    text = (
        "ALTER TABLE public.readings ADD COLUMN IF NOT EXISTS note text DEFAULT 'none';\n"
        "CREATE INDEX IF NOT EXISTS readings_v ON public.readings (v, ts);\n"
        "ALTER TABLE public.readings DROP COLUMN IF EXISTS note;\n"
    )
    _, found = lint_file(compressed_db, tmp_path, text)
    assert [f for f in found if f.code in ("TS001", "TS010", "TS011", "TS012", "TS013")] == [], found
    assert refused(compressed_db, text) == ""


def test_the_live_catalog_is_read_as_it_is(compressed_db):
    (readings,) = live_hypertables(compressed_db)
    chunks = compressed_db.execute("SELECT count(*) FROM show_chunks('public.readings')").fetchone()[0]
    assert (readings.name, readings.time_column, readings.compression_enabled) == ("public.readings", "ts", True)
    assert readings.compressed_chunks == chunks and readings.segment_by == ("dev",) and readings.order_by == ("ts",)
    assert server_timescaledb(compressed_db).has_compression


@pytest.mark.finding("TS105", ADVISORY)
def test_a_primary_key_added_to_a_hypertable_of_many_chunks_is_reported_with_its_time(hypertable_db, tmp_path):
    hypertable_db.execute(
        "CREATE TABLE public.sparse (id bigint NOT NULL, ts timestamptz NOT NULL, v int);"
        "SELECT create_hypertable('public.sparse', 'ts', chunk_time_interval => interval '1 hour');"
        "INSERT INTO public.sparse SELECT i, timestamptz '2026-01-01' + i * interval '1 hour', i "
        "FROM generate_series(1, 900) i"
    )
    (sparse,) = [h for h in live_hypertables(hypertable_db) if h.name == "public.sparse"]
    assert sparse.chunks == 900
    text = (
        "-- key the readings\nALTER TABLE public.sparse\n  ADD PRIMARY KEY (id, ts);\n"
        "ALTER TABLE public.readings ADD CONSTRAINT readings_u UNIQUE (dev, ts);\n"
    )
    migration, found = lint_file(hypertable_db, tmp_path, text)
    mine = [f for f in found if f.code == "TS105"]
    assert [(f.severity, f.path, f.line, f.table) for f in mine] == [(ADVISORY, str(migration), 3, "public.sparse")], (
        found
    )
    assert "900 chunks" in mine[0].message and "about 13 s" in mine[0].message
    # Few chunks (readings: three or four one-day chunks): nothing to report.
    _, found = lint_file(
        hypertable_db,
        tmp_path,
        "ALTER TABLE public.readings DROP CONSTRAINT readings_pkey, ADD PRIMARY KEY (dev, ts);\n",
    )
    assert [f for f in found if f.code == "TS105"] == []
