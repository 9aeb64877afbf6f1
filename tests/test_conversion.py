"""Conversion of one table, on a real server: rows, keys, views, triggers and generated columns survive."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import psycopg
import pytest

from tsmigrate.convert import ConversionError, convert, convert_table
from tsmigrate.db import is_hypertable
from tsmigrate.fingerprint import fingerprint_table
from tsmigrate.janitor import ScratchDatabase
from tsmigrate.plan import parse_plan


@pytest.fixture
def conn(local_server):
    with (
        ScratchDatabase(local_server.conninfo(), "conversion_subject") as name,
        psycopg.connect(local_server.conninfo(name), autocommit=True) as conn,
    ):
        conn.execute("CREATE EXTENSION timescaledb")
        conn.execute("""
            CREATE TABLE readings (
                id bigserial PRIMARY KEY,
                ts timestamptz NOT NULL,
                v int,
                doubled int GENERATED ALWAYS AS (v * 2) STORED,
                note text);
            CREATE TABLE insert_log (n int);
            CREATE FUNCTION log_insert() RETURNS trigger LANGUAGE plpgsql AS
                $$ BEGIN INSERT INTO insert_log VALUES (1); RETURN NEW; END $$;
            CREATE TRIGGER readings_insert AFTER INSERT ON readings FOR EACH ROW EXECUTE FUNCTION log_insert();
            CREATE VIEW recent_readings AS SELECT id, ts, v FROM readings;""")
        conn.execute(
            "INSERT INTO readings (ts, v, note) SELECT timestamptz '2026-01-01' + i * interval '1 minute', i, "
            "CASE WHEN i % 3 = 0 THEN 'x' END FROM generate_series(1, 10000) i"
        )
        conn.execute("TRUNCATE insert_log")
        yield conn


def plan_for(**spec):
    return parse_plan(
        {"hypertables": {"readings": {"time_column": "ts", "chunk_interval": "1 day", **spec}}}
    ).hypertables[0]


def test_rows_come_back_in_batches_and_everything_around_them_survives(conn, caplog):
    columns = ("id", "ts", "v", "doubled", "note")
    before = fingerprint_table(conn, "public", "readings", columns)
    with caplog.at_level(logging.INFO), conn.transaction():
        result = convert_table(conn, "public", plan_for(keep_unique=["id"]), has_compression=False, batch_rows=1000)
    assert is_hypertable(conn, "public", "readings")
    assert result.rows == 10000 and result.chunks == 7
    assert fingerprint_table(conn, "public", "readings", columns) == before
    progress = [r.getMessage() for r in caplog.records if "rows copied into chunks" in r.getMessage()]
    assert progress and progress[-1].startswith("public.readings: all 10000 rows copied into chunks")
    assert conn.execute("SELECT count(*) FROM insert_log").fetchone()[0] == 0, "moving rows must not fire triggers"
    assert conn.execute("SELECT tgenabled FROM pg_trigger WHERE tgname = 'readings_insert'").fetchone()[0] == "O"
    conn.execute("INSERT INTO readings (ts, v) VALUES ('2026-01-03', 5)")
    assert conn.execute("SELECT count(*) FROM insert_log").fetchone()[0] == 1, "the trigger works again afterwards"
    assert conn.execute("SELECT count(*) FROM recent_readings").fetchone()[0] == 10001
    key = conn.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'readings_pkey'"
    ).fetchone()[0]
    assert key == "PRIMARY KEY (id, ts)"
    # keep_unique id leads the rebuilt key: lookups by id go through it, no third index on every chunk.
    assert conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname = 'readings_id_idx'").fetchone()[0] == 0
    plan = "\n".join(r[0] for r in conn.execute("EXPLAIN (COSTS OFF) SELECT * FROM readings WHERE id = 42"))
    assert "_pkey" in plan, plan
    assert conn.execute("SELECT to_regclass('tsmigrate_move_readings')").fetchone()[0] is None


def test_a_keep_unique_column_that_leads_no_index_gets_one_of_its_own(conn):
    conn.execute("ALTER TABLE readings ADD COLUMN serial_no bigint")
    conn.execute("UPDATE readings SET serial_no = id * 7")
    with conn.transaction():
        convert_table(conn, "public", plan_for(keep_unique=["id", "serial_no"]), has_compression=False)
    indexes = dict(
        conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'readings' AND schemaname = 'public'"
        ).fetchall()
    )
    assert set(indexes) == {"readings_pkey", "readings_serial_no_idx"}, indexes
    assert indexes["readings_serial_no_idx"].endswith("USING btree (serial_no)")
    chunk_indexes = conn.execute(
        "SELECT count(*) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid IN (SELECT format('%I.%I', chunk_schema, chunk_name)::regclass "
        "FROM timescaledb_information.chunks WHERE hypertable_name = 'readings')"
    ).fetchone()[0]
    chunks = conn.execute(
        "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'readings'"
    ).fetchone()[0]
    assert chunk_indexes == 2 * chunks  # the key and serial_no's index on every chunk, nothing more


def chunks_analyzed(conn: psycopg.Connection) -> tuple[int, int]:
    """(chunks of readings, those whose statistics were gathered)."""
    return conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE s.last_analyze IS NOT NULL) "
        "FROM timescaledb_information.chunks c JOIN pg_stat_all_tables s "
        "ON s.schemaname = c.chunk_schema AND s.relname = c.chunk_name WHERE c.hypertable_name = 'readings'"
    ).fetchone()


def test_statistics_are_gathered_after_the_commit_not_while_the_table_is_locked(conn, local_server):
    # The locked transaction gathers none (the application waits for every second of it) ...
    with conn.transaction():
        convert_table(conn, "public", plan_for(), has_compression=False)
    chunks, analyzed = chunks_analyzed(conn)
    assert chunks == 7 and analyzed == 0


def test_the_entry_point_gathers_statistics_once_the_conversion_committed(conn, local_server):
    committed = []

    def on_converted(c, result):
        committed.append(c.info.transaction_status)

    result = convert(
        lambda: psycopg.connect(conn.info.dsn, password=local_server.password, autocommit=True),
        conn,
        "public",
        plan_for(),
        has_compression=False,
        own_xids=set(),
        online_above_rows=10**9,
        on_converted=on_converted,
    )
    assert committed == [psycopg.pq.TransactionStatus.INTRANS]
    # ... the entry point gathers them after the commit, chunk by chunk, with nothing held that keeps writers out.
    assert chunks_analyzed(conn) == (7, 7)
    assert result.phases["analyze, after the commit"] >= 0


def test_a_converted_table_is_left_as_it_is(conn):
    with conn.transaction():
        convert_table(conn, "public", plan_for(), has_compression=False)
    with conn.transaction():
        again = convert_table(conn, "public", plan_for(), has_compression=False)
    assert again.already_hypertable and again.rows == 0


def test_null_times_are_refused_by_default_and_nothing_changes(conn):
    conn.execute("ALTER TABLE readings ALTER COLUMN ts DROP NOT NULL")
    conn.execute("UPDATE readings SET ts = NULL WHERE id IN (5, 6)")
    with pytest.raises(ConversionError, match=r"2 rows with a NULL time value .* 'refuse'"), conn.transaction():
        convert_table(conn, "public", plan_for(), has_compression=False)
    assert not is_hypertable(conn, "public", "readings")
    assert conn.execute("SELECT count(*) FROM readings WHERE ts IS NULL").fetchone()[0] == 2


def test_previous_by_rule_fills_from_the_row_before_and_records_it(conn):
    conn.execute("ALTER TABLE readings ALTER COLUMN ts DROP NOT NULL")
    expected = conn.execute("SELECT ts FROM readings WHERE id = 4").fetchone()[0]
    conn.execute("UPDATE readings SET ts = NULL WHERE id IN (5, 6)")
    with conn.transaction():
        result = convert_table(conn, "public", plan_for(null_time="previous_by:id"), has_compression=False)
    assert result.nulls_filled == 2
    assert [r[0] for r in conn.execute("SELECT ts FROM readings WHERE id IN (5, 6)")] == [expected, expected]
    fills = conn.execute("SELECT row_key, filled_with FROM tsmigrate.time_fills ORDER BY row_key").fetchall()
    assert fills == [([5], expected), ([6], expected)]


def test_constant_rule_fills_with_its_timestamp_and_records_it(conn):
    conn.execute("ALTER TABLE readings ALTER COLUMN ts DROP NOT NULL")
    conn.execute("UPDATE readings SET ts = NULL WHERE id IN (5, 6)")
    before = fingerprint_table(conn, "public", "readings", ("id", "v", "note"))
    with conn.transaction():
        result = convert_table(
            conn, "public", plan_for(null_time="constant:2020-01-01 06:00+02"), has_compression=False
        )
    assert result.nulls_filled == 2 and is_hypertable(conn, "public", "readings")
    expected = datetime(2020, 1, 1, 4, tzinfo=UTC)
    assert [r[0] for r in conn.execute("SELECT ts FROM readings WHERE id IN (5, 6) ORDER BY id")] == [expected] * 2
    fills = conn.execute("SELECT row_key, filled_with, rule FROM tsmigrate.time_fills ORDER BY row_key").fetchall()
    assert fills == [([5], expected, "constant:2020-01-01 06:00+02"), ([6], expected, "constant:2020-01-01 06:00+02")]
    assert conn.execute("SELECT count(*) FROM readings WHERE ts IS NULL").fetchone()[0] == 0
    assert fingerprint_table(conn, "public", "readings", ("id", "v", "note")) == before


def test_a_foreign_key_into_the_table_is_refused(conn):
    conn.execute("CREATE TABLE annotations (reading_id bigint REFERENCES readings (id))")
    with pytest.raises(ConversionError, match="referenced by foreign keys from annotations"), conn.transaction():
        convert_table(conn, "public", plan_for(), has_compression=False)
    assert not is_hypertable(conn, "public", "readings")


def test_the_table_owner_without_superuser_converts_too(conn):
    conn.execute("DROP ROLE IF EXISTS readings_owner")
    conn.execute("CREATE ROLE readings_owner")
    conn.execute("ALTER TABLE readings OWNER TO readings_owner")
    conn.execute("ALTER TABLE insert_log OWNER TO readings_owner")
    conn.execute("GRANT CREATE ON SCHEMA public TO readings_owner")
    before = fingerprint_table(conn, "public", "readings")
    # The views that read the table are recreated on the hypertable: only their owner may.
    with pytest.raises(ConversionError, match=r"may not recreate public\.recent_readings \(owner postgres\)"):
        with conn.transaction():
            conn.execute("SET LOCAL ROLE readings_owner")
            convert_table(conn, "public", plan_for(), has_compression=False)
    assert not is_hypertable(conn, "public", "readings")
    conn.execute("ALTER VIEW recent_readings OWNER TO readings_owner")
    with conn.transaction():
        conn.execute("SET LOCAL ROLE readings_owner")
        result = convert_table(conn, "public", plan_for(), has_compression=False)
    assert is_hypertable(conn, "public", "readings") and result.chunks == 7
    assert conn.execute("SELECT count(*) FROM insert_log").fetchone()[0] == 0
    assert fingerprint_table(conn, "public", "readings", before.columns) == before


def test_a_disabled_trigger_is_refused_rather_than_silently_enabled(conn):
    conn.execute("ALTER TABLE readings DISABLE TRIGGER readings_insert")
    with pytest.raises(ConversionError, match="disabled or fire only on replicas \\(readings_insert\\)"):
        with conn.transaction():
            convert_table(conn, "public", plan_for(), has_compression=False)
    assert not is_hypertable(conn, "public", "readings")


def test_the_key_goes_first_where_building_it_over_the_chunks_would_cost_more_than_keeping_it_row_by_row():
    from tsmigrate.convert.offline import key_before_copy

    # MS5.0's metric_hist at one sample a second: 55 metrics, 200,000 rows an hour-chunk: built after.
    assert not key_before_copy(chunks=300, rows=25_000_000)
    # The same metrics at one sample a minute, two million rows in 557 chunks: first.
    assert key_before_copy(chunks=557, rows=2_000_000)
    # A week of daily chunks: after.
    assert not key_before_copy(chunks=7, rows=10_000)


def test_a_history_of_many_sparse_chunks_gets_its_key_before_the_copy_and_the_same_table(conn):
    conn.execute("TRUNCATE readings")
    conn.execute(  # 1,200 rows over 600 hours: two rows a one-hour chunk
        "INSERT INTO readings (ts, v) SELECT timestamptz '2026-01-01' + i * interval '30 minutes', i "
        "FROM generate_series(1, 1200) i"
    )
    conn.execute("ANALYZE readings")
    columns = ("id", "ts", "v", "doubled", "note")
    before = fingerprint_table(conn, "public", "readings", columns)
    plan = parse_plan(
        {"hypertables": {"readings": {"time_column": "ts", "chunk_interval": "1 hour", "keep_unique": ["id"]}}}
    ).hypertables[0]
    with conn.transaction():
        result = convert_table(conn, "public", plan, has_compression=False)
    assert "primary key before the copy" in result.phases
    assert result.rows == 1200 and result.chunks == 601
    assert fingerprint_table(conn, "public", "readings", columns) == before
    key = conn.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'readings_pkey'").fetchone()
    assert key == ("PRIMARY KEY (id, ts)",)
    chunk_keys = conn.execute(
        "SELECT count(*) FROM pg_constraint WHERE contype = 'p' AND conrelid IN (SELECT show_chunks('readings'))"
    ).fetchone()[0]
    assert chunk_keys == 601
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("INSERT INTO readings (id, ts, v) SELECT id, ts, 0 FROM readings ORDER BY id LIMIT 1")
