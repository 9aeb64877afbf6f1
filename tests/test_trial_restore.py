"""The backup's trial restore (tsmigrate/trial.py): a backup is verified only once its schema, TimescaleDB's catalog
and a chunk of each hypertable (its newest compressed one too) restored into a scratch database and read back as
backed up. Made for real: a hypertable whose chunks restore, and one whose chunks cannot be restored (a CHECK
constraint that reads a table whose rows load after the chunks': pg_dump's own documented limit), which a full
restore of the same dump fails on too. The compressed chunks' part needs the community edition."""

from __future__ import annotations

import subprocess

import pytest

from tsmigrate.backup import BackupError, take_backup
from tsmigrate.cli import main as tsmigrate_command
from tsmigrate.dumps import tool
from tsmigrate.janitor import ScratchDatabase
from tsmigrate.target import Target
from tsmigrate.trial import MANIFEST_KEY, TrialChunk, trial_restore


def scratch_databases(target: Target) -> list[str]:
    with target.connect() as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE '%%\\_trial\\_%%'")]


@pytest.fixture
def series_db(apache_server):
    """A hypertable of one-hour chunks over two days, and a plain lookup table its rows reference."""
    with ScratchDatabase(apache_server.conninfo(), "trial_subject") as name:
        target = Target(apache_server.conninfo(name), "test")
        with target.connect() as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            conn.execute("CREATE TABLE lines (line_id int PRIMARY KEY, name text NOT NULL)")
            conn.execute("INSERT INTO lines VALUES (1, 'press'), (2, 'paint')")
            conn.execute(
                "CREATE TABLE series (ts timestamptz NOT NULL, line_id int NOT NULL REFERENCES lines, "
                "v double precision, note text)"
            )
            conn.execute("SELECT create_hypertable('series', by_range('ts', INTERVAL '1 hour'))")
            conn.execute(
                "INSERT INTO series SELECT now() - i * interval '5 minutes', 1 + i % 2, i, NULL "
                "FROM generate_series(1, 576) i"
            )
        yield target


def test_a_backup_is_verified_by_restoring_a_chunk_of_each_hypertable(series_db, tmp_path):
    backup = take_backup(series_db, tmp_path / "backups")
    trial = backup.manifest[MANIFEST_KEY]
    chunks = [TrialChunk.from_dict(c) for c in trial["chunks"]]
    with series_db.connect() as conn:
        made_last = conn.execute(
            "SELECT schema_name, table_name FROM _timescaledb_catalog.chunk ORDER BY id DESC LIMIT 1"
        ).fetchone()
        rows = conn.execute(f"SELECT count(*) FROM {made_last[0]}.{made_last[1]}").fetchone()[0]
    assert [(c.hypertable, c.chunk, c.compressed) for c in chunks] == [("public.series", made_last, None)]
    assert chunks[0].fingerprint.rows == rows > 0
    assert trial["tables"] == [["public", "lines"]], "the rows its foreign key reaches load with it"
    assert scratch_databases(series_db) == [], "the scratch database is dropped"


def test_a_backup_whose_chunks_cannot_be_restored_is_not_verified(series_db, tmp_path):
    with series_db.connect() as conn:
        conn.execute("CREATE TABLE shifts (shift text PRIMARY KEY)")
        conn.execute("INSERT INTO shifts VALUES ('early'), ('late')")
        conn.execute(
            "CREATE FUNCTION known_shift(text) RETURNS boolean LANGUAGE sql STABLE "
            "AS 'SELECT $1 IS NULL OR EXISTS (SELECT 1 FROM public.shifts WHERE shift = $1)'"
        )
        conn.execute("ALTER TABLE series ADD COLUMN shift text CHECK (public.known_shift(shift))")
        conn.execute("UPDATE series SET shift = 'early'")
    # The same dump restored whole fails too: the chunks' rows load before the rows of shifts.
    dump = tmp_path / "dump"
    conninfo, env = series_db.for_client_programs()
    subprocess.run([tool("pg_dump"), "-Fd", "-f", str(dump), "-d", conninfo], env=env, check=True)
    with ScratchDatabase(series_db.with_dbname("postgres").conninfo, "trial_whole") as whole:
        with series_db.with_dbname(whole).connect() as conn:
            conn.execute("CREATE EXTENSION timescaledb")
            conn.execute("SELECT timescaledb_pre_restore()")
        restored = subprocess.run(
            [
                tool("pg_restore"),
                "--exit-on-error",
                "-d",
                series_db.with_dbname(whole).for_client_programs()[0],
                str(dump),
            ],
            env=env,
            capture_output=True,
            text=True,
        )
    assert restored.returncode != 0 and "violates check constraint" in restored.stderr, restored.stderr

    with pytest.raises(BackupError) as failed:
        take_backup(series_db, tmp_path / "backups")
    message = str(failed.value)
    assert "failed verification: the trial restore into scratch database trial_subject_trial_" in message
    assert "the rows of chunk _timescaledb_internal._hyper_" in message and "of public.series" in message
    assert 'violates check constraint "series_shift_check"' in message
    assert not any((tmp_path / "backups").iterdir()), "an unverified backup is not kept"
    assert scratch_databases(series_db) == [], "the scratch database is dropped"


def test_an_older_backup_without_a_trial_plan_is_not_tried(series_db, tmp_path):
    backup = take_backup(series_db, tmp_path / "backups")
    del backup.manifest[MANIFEST_KEY]
    assert trial_restore(series_db, backup) == []


def test_backupctl_verify_repeats_the_trial_restore_by_hand(series_db, tmp_path, capsys):
    backup = take_backup(series_db, tmp_path / "backups")
    assert (
        tsmigrate_command(["backup", "verify", str(backup.path), "--trial-restore", "--dsn", series_db.conninfo]) == 0
    )
    out = capsys.readouterr().out
    assert "its trial restore on" in out and "chunk _timescaledb_internal._hyper_" in out and "of public.series" in out
    assert series_db.conninfo.split("password=")[-1].split()[0] not in out
    assert scratch_databases(series_db) == []


# -- compressed chunks (community edition) -------------------------------------------------------------------


def test_the_trial_restores_and_reads_back_the_newest_compressed_chunk_of_each_hypertable(compressed_db, tmp_path):
    backup = take_backup(compressed_db, tmp_path / "backups")
    chunks = [TrialChunk.from_dict(c) for c in backup.manifest[MANIFEST_KEY]["chunks"]]
    with compressed_db.connect() as conn:
        compressed = {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT format('%I.%I', hypertable_schema, hypertable_name) "
                "FROM timescaledb_information.chunks WHERE is_compressed"
            )
        }
        newest = {
            r[0]: r[1]
            for r in conn.execute(
                """SELECT DISTINCT ON (h.schema_name, h.table_name) format('%I.%I', h.schema_name, h.table_name),
                      cc.table_name
                 FROM _timescaledb_catalog.chunk c JOIN _timescaledb_catalog.chunk cc ON cc.id = c.compressed_chunk_id
                 JOIN _timescaledb_catalog.hypertable h ON h.id = c.hypertable_id
                ORDER BY h.schema_name, h.table_name, cc.id DESC"""
            )
        }
    assert compressed, "the fixture compresses chunks"
    tried = {c.hypertable: c.compressed[1] for c in chunks if c.compressed}
    assert tried == newest and set(tried) == compressed
    assert all(c.fingerprint.rows > 0 for c in chunks if c.compressed)
    assert scratch_databases(compressed_db) == []
