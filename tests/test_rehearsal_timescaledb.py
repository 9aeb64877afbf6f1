"""After Phase 3 the rehearsal copies a database that is TimescaleDB already as TimescaleDB: its hypertables and
chunks, their compression, its policies (paused in the copy), the rows of the newest chunks; a copy that cannot be
made so is a NO-GO naming why (it used to rehearse on plain tables and pass).

Community edition (compressed chunks, policies): under the apache edition these tests skip, with the reason.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tsmigrate.findings import BLOCKING
from tsmigrate.plan import load_plan
from tsmigrate.preflight.files import pending_files
from tsmigrate.preflight.rehearsal_check import rehearsal
from tsmigrate.rehearsal import rehearse
from tsmigrate.target import Target

PROJECT = Path(__file__).resolve().parents[1]
SCHEMA = "factory_telemetry"


@pytest.fixture
def migrated(community_server, aged_legacy_db, run_suite) -> Target:
    """The aged legacy database after a full run, every chunk of metric_hist compressed (as its policy would)."""
    result = run_suite("suites", "--dsn", aged_legacy_db.conninfo, "--no-rehearse")
    assert result.returncode == 0, result.stdout[-3000:]
    with aged_legacy_db.connect() as conn:
        chunks = conn.execute(f"SELECT c::text FROM show_chunks('{SCHEMA}.metric_hist') c").fetchall()
        for (chunk,) in chunks:  # the policy job may be compressing the same chunks right now
            try:
                conn.execute("SELECT compress_chunk(%s::regclass, if_not_compressed => true)", (chunk,))
            except psycopg.errors.DuplicateObject:
                pass
    return aged_legacy_db


def with_file(tmp_path: Path, text: str) -> Path:
    migrations = tmp_path / "migrations"
    shutil.copytree(PROJECT / "migrations", migrations)
    (migrations / "011_after_phase_3.sql").write_text(text)
    return migrations


def test_the_copy_of_a_timescaledb_database_is_timescaledb(migrated, tmp_path):
    with migrated.connect() as conn:
        hypertables, chunks, compressed = conn.execute("""
            SELECT (SELECT count(*) FROM timescaledb_information.hypertables),
                   (SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'metric_hist'),
                   (SELECT count(*) FROM timescaledb_information.chunks
                     WHERE hypertable_name = 'metric_hist' AND is_compressed)""").fetchone()
        jobs = conn.execute("SELECT count(*) FROM timescaledb_information.jobs WHERE job_id >= 1000").fetchone()[0]
    assert hypertables == 5 and compressed == chunks > 3 and jobs > 0
    # The rehearsal's step checks the copy from inside: what it holds is what the run will meet.
    migrations = with_file(
        tmp_path,
        f"""DO $$
BEGIN
  IF (SELECT count(*) FROM timescaledb_information.hypertables) <> {hypertables} THEN
    RAISE EXCEPTION 'the copy has % hypertables', (SELECT count(*) FROM timescaledb_information.hypertables);
  END IF;
  IF (SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'metric_hist' AND is_compressed)
     <> {compressed} THEN
    RAISE EXCEPTION 'the copy has other compressed chunks';
  END IF;
  IF (SELECT count(*) FROM timescaledb_information.jobs WHERE job_id >= 1000) <> {jobs}
     OR EXISTS (SELECT 1 FROM timescaledb_information.jobs WHERE job_id >= 1000 AND scheduled) THEN
    RAISE EXCEPTION 'the copy''s policies are not all there and paused';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM {SCHEMA}.metric_hist) THEN
    RAISE EXCEPTION 'the copy holds no row of the newest chunks';
  END IF;
END $$;
""",
    )
    with migrated.connect() as conn:
        pending = pending_files(conn, migrations)
    assert [f.label for f in pending] == ["011_after_phase_3.sql"]
    result = rehearse(migrated, pending, load_plan(migrations))
    assert result.ok, f"{result.failed_step}: {result.error}"


def test_a_statement_timescaledb_refuses_on_a_hypertable_fails_the_rehearsal(migrated, tmp_path):
    """ALTER TABLE ONLY works on a plain table and is refused on a hypertable: the rehearsal meets the refusal the
    run would meet."""
    migrations = with_file(tmp_path, f"ALTER TABLE ONLY {SCHEMA}.metric_hist ADD COLUMN IF NOT EXISTS note text;\n")
    with migrated.connect() as conn:
        pending = pending_files(conn, migrations)
    result = rehearse(migrated, pending, load_plan(migrations))
    assert not result.ok and result.failed_step == "011_after_phase_3.sql", result
    assert "ONLY option not supported on hypertable operations" in str(result.error)


def test_a_copy_that_cannot_be_made_faithful_is_a_no_go_naming_why(migrated, community_server, tmp_path):
    role = f"tsm_rehearse_{uuid.uuid4().hex[:8]}"
    with migrated.connect() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(community_server.password)
            )
        )
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(
                sql.Identifier(
                    conn.execute(
                        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
                    ).fetchone()[0]
                ),
                sql.Identifier(role),
            )
        )
    try:
        as_role = Target(make_conninfo(migrated.conninfo, user=role, password=community_server.password), "test")
        migrations = with_file(tmp_path, "SELECT 1;\n")
        with as_role.connect() as conn:
            pending = pending_files(conn, migrations)
        found = rehearsal(as_role, migrations, pending, load_plan(migrations))
        assert [(f.code, f.severity) for f in found] == [("PF040", BLOCKING)], found
        assert "no faithful rehearsal" in found[0].message and "5 hypertables" in found[0].message
    finally:
        with migrated.connect() as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
