"""PF036: a backup of the target restores with its TimescaleDB version. TimescaleDB 2.19.0 to 2.20.0 write an
all-NULL compressed batch as a NULL block that their own pg_restore rejects (upstream pull request 8153).

The data is made for real: the legacy MS5.0 database converted by the execute suite and its old chunks compressed
(community edition), where batches of columns MS5.0 leaves NULL are NULL blocks. No build of an affected version is
installed here (the community build is 2.28.3, which reads them back): the server's real answer is judged with its
version changed, as the tests say; the scan of the chunks is real.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from tsmigrate.findings import ADVISORY, BLOCKING, Finding
from tsmigrate.plan import load_plan
from tsmigrate.preflight import restorable
from tsmigrate.target import Target
from tsmigrate.timescale import server_timescaledb

PROJECT = Path(__file__).resolve().parents[1]
PLAN = load_plan(PROJECT / "migrations")


def read_only(conninfo: str) -> psycopg.Connection:
    return psycopg.connect(conninfo, autocommit=True, options="-c default_transaction_read_only=on")


def of(findings: list[Finding]) -> list[tuple[str, str, str | None]]:
    return [(f.severity, f.location(), f.table) for f in findings if f.code == "PF036"]


def null_blocks(target: Target) -> dict[str, set[str]]:
    """{hypertable: chunks} holding a NULL-compressed block, read another way than the check reads them: TimescaleDB's
    own compressed_data_info() on every block."""
    found: dict[str, set[str]] = {}
    with target.connect() as conn:
        pairs = conn.execute(
            """SELECT format('%I.%I', h.schema_name, h.table_name), format('%I.%I', c.schema_name, c.table_name),
                      format('%I.%I', cc.schema_name, cc.table_name),
                      array(SELECT quote_ident(attname) FROM pg_attribute
                             WHERE attrelid = format('%I.%I', cc.schema_name, cc.table_name)::regclass
                               AND atttypid = '_timescaledb_internal.compressed_data'::regtype AND NOT attisdropped)
                 FROM _timescaledb_catalog.chunk c JOIN _timescaledb_catalog.chunk cc ON cc.id = c.compressed_chunk_id
                 JOIN _timescaledb_catalog.hypertable h ON h.id = c.hypertable_id"""
        ).fetchall()
        for hypertable, chunk, compressed, columns in pairs:
            for column in columns:
                if conn.execute(
                    f"SELECT EXISTS (SELECT 1 FROM {compressed}, "
                    f"_timescaledb_functions.compressed_data_info({column}) i "
                    "WHERE i.algorithm = 'NULL')"
                ).fetchone()[0]:
                    found.setdefault(hypertable, set()).add(chunk)
    return found


@pytest.mark.finding("PF036", BLOCKING)
def test_pf036_compressed_chunks_with_all_null_batches_under_a_version_that_cannot_restore_them(compressed_db):
    expected = null_blocks(compressed_db)
    assert expected, "MS5.0's compressed chunks hold all-NULL batches (columns it leaves NULL)"
    with read_only(compressed_db.conninfo) as conn:
        real = server_timescaledb(conn)
        assert restorable.restorable_backups(conn, PLAN, real) == [], (
            f"TimescaleDB {real.installed_version} restores them: nothing to say"
        )
        affected = replace(real, installed_version="2.19.3", available_version="2.19.3")
        found = restorable.restorable_backups(conn, PLAN, affected)
    assert sorted(of(found)) == sorted((BLOCKING, "", hypertable) for hypertable in expected)
    for f in found:
        chunks = expected[f.table]
        assert f"{f.table} has {len(chunks)} compressed chunk(s) with all-NULL batches" in f.message
        named = [
            chunk
            for chunk in chunks
            if f"{chunk}," in f.message or f"{chunk} " in f.message or f"{chunk})" in f.message
        ]
        assert len(named) == min(len(chunks), restorable.LISTED)
        if len(chunks) > restorable.LISTED:
            assert f"and {len(chunks) - restorable.LISTED} more" in f.message
        assert "TimescaleDB 2.19.3" in f.message and "Upgrade TimescaleDB to 2.20.1 or later" in f.message

    # The fix the finding prints (decompress those chunks) is run as printed: then nothing blocks.
    with compressed_db.connect() as conn:
        for f in found:
            conn.execute(f.message.rsplit(": ", 1)[1])
    assert null_blocks(compressed_db) == {}
    with read_only(compressed_db.conninfo) as conn:
        after = restorable.restorable_backups(conn, PLAN, affected)
    assert of(after) == [(ADVISORY, str(PLAN.path), None)] and "none with such a batch yet" in after[0].message


@pytest.mark.finding("PF036", ADVISORY)
def test_pf036_compression_planned_under_a_version_that_cannot_restore_its_batches(marked_finding, local_server):
    """The server's real answer judged as a community 2.19.3 would give it (version and license changed), in a
    database where TimescaleDB is not created yet: nothing is compressed, compression is planned."""
    _code, severity = marked_finding
    with read_only(local_server.conninfo()) as conn:
        real = server_timescaledb(conn)
        assert restorable.restorable_backups(conn, PLAN, real) == [], (
            f"TimescaleDB {real.available_version} ({real.edition}) cannot have the problem"
        )
        found = restorable.restorable_backups(
            conn, PLAN, replace(real, installed_version=None, available_version="2.19.3", license="timescale")
        )
    assert of(found) == [(severity, str(PLAN.path), None)]
    assert "TimescaleDB 2.19.3" in found[0].message and "compression is planned" in found[0].message


@pytest.mark.parametrize(
    "version, affected",
    [
        ("2.18.2", False),
        ("2.19.0", True),
        ("2.19.3", True),
        ("2.20.0", True),
        ("2.20.1", False),
        ("2.21.0", False),
        ("2.28.3", False),
    ],
)
def test_the_versions_that_cannot_restore_null_compressed_batches(version, affected):
    """2.19.0 brought NULL compression; 2.20.1 and 2.21.0 shipped the fix (upstream CHANGELOG)."""
    assert restorable.cannot_restore_null_blocks(version) is affected
