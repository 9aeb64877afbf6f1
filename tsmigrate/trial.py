"""The backup's trial restore: proof that a backup restores, at the cost of a small part of it.

A dump that pg_restore can list may still not load: TimescaleDB 2.19.0 to 2.20.0 dump all-NULL compressed batches
that they cannot read back (upstream pull request 8153), a CHECK constraint may call a function that reads a table
not loaded yet, an object may need a role the server lacks. The trial loads into a scratch database, always
dropped, what such defects live in: the whole schema (before and after the data: tables, chunks, indexes,
constraints, triggers, grants), TimescaleDB's catalog, and of each hypertable the chunk compressed last (with its
compressed rows: written by the version in use) and the uncompressed chunk created last, with the rows of the plain
tables their foreign keys reach. Each chunk must then read back as the backup fingerprinted it (every row
decompressed and hashed).

The chunks are chosen, and fingerprinted, in the backup's own snapshot (``plan_trial``); the plan travels in the
manifest, so the trial needs nothing but the dump and a server.
"""

from __future__ import annotations

import logging
import re
import subprocess
import tempfile
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import psycopg

from .db import display_name, timescaledb_version
from .dumps import CHUNK_SCHEMA, copy_database, load_dump, tool
from .errors import BackupError
from .fingerprint import TableFingerprint, compare, fingerprint_table
from .target import Target


class DumpedBackup(Protocol):
    """What the trial reads of a backup (backup.Backup): backup.py calls this module, not the other way."""

    manifest: dict

    def opened_dump(self) -> AbstractContextManager[Path]: ...


log = logging.getLogger(__name__)

MANIFEST_KEY = "trial"
TIMESCALE_DATA = ("_timescaledb_catalog", "_timescaledb_config")  # extension tables pg_dump dumps the rows of


@dataclass(frozen=True)
class TrialChunk:
    hypertable: str  # schema.table as a person writes it
    chunk: tuple[str, str]  # the chunk table (where an uncompressed chunk's rows are)
    compressed: tuple[str, str] | None  # the table of its compressed rows, when it is compressed
    fingerprint: TableFingerprint  # the chunk's rows, read in the backup's snapshot

    def to_dict(self) -> dict:
        return {
            "hypertable": self.hypertable,
            "chunk": list(self.chunk),
            "compressed": list(self.compressed) if self.compressed else None,
            "fingerprint": self.fingerprint.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> TrialChunk:
        return cls(
            d["hypertable"],
            tuple(d["chunk"]),
            tuple(d["compressed"]) if d["compressed"] else None,
            TableFingerprint.from_dict(d["fingerprint"]),
        )

    def describe(self) -> str:
        how = "compressed chunk" if self.compressed else "chunk"
        return f"{how} {display_name(*self.chunk)} of {self.hypertable}"


def plan_trial(conn: psycopg.Connection) -> dict:
    """In the backup's snapshot: the chunks the trial restores (with their fingerprints) and the plain tables whose
    rows they need (what their foreign keys reach, followed on). JSON-ready, for the manifest."""
    if timescaledb_version(conn) is None:
        return {"chunks": [], "tables": []}
    rows = conn.execute(
        """SELECT h.hypertable_schema, h.hypertable_name, pick.schema_name, pick.table_name,
                  cc.schema_name, cc.table_name
             FROM timescaledb_information.hypertables h
             JOIN _timescaledb_catalog.hypertable ht ON ht.schema_name = h.hypertable_schema
                                                    AND ht.table_name = h.hypertable_name
            CROSS JOIN LATERAL (
                  (SELECT c.schema_name, c.table_name, c.compressed_chunk_id FROM _timescaledb_catalog.chunk c
                    WHERE c.hypertable_id = ht.id AND c.compressed_chunk_id IS NOT NULL AND NOT c.osm_chunk
                      AND to_regclass(format('%I.%I', c.schema_name, c.table_name)) IS NOT NULL
                    ORDER BY c.compressed_chunk_id DESC LIMIT 1)
                  UNION ALL
                  (SELECT c.schema_name, c.table_name, c.compressed_chunk_id FROM _timescaledb_catalog.chunk c
                    WHERE c.hypertable_id = ht.id AND c.compressed_chunk_id IS NULL AND NOT c.osm_chunk
                      AND to_regclass(format('%I.%I', c.schema_name, c.table_name)) IS NOT NULL
                    ORDER BY c.id DESC LIMIT 1)) pick
             LEFT JOIN _timescaledb_catalog.chunk cc ON cc.id = pick.compressed_chunk_id
            ORDER BY 1, 2, cc.id NULLS LAST"""
    ).fetchall()
    chunks = [
        TrialChunk(display_name(hs, ht), (cs, ct), (zs, zt) if zs else None, fingerprint_table(conn, cs, ct))
        for hs, ht, cs, ct, zs, zt in rows
    ]
    tables = conn.execute(
        """WITH RECURSIVE seed AS (
                SELECT format('%I.%I', hypertable_schema, hypertable_name)::regclass AS rel
                  FROM timescaledb_information.hypertables),
           reached(rel) AS (
                SELECT c.confrelid FROM pg_constraint c JOIN seed s ON c.conrelid = s.rel WHERE c.contype = 'f'
                UNION
                SELECT c.confrelid FROM pg_constraint c JOIN reached r ON c.conrelid = r.rel WHERE c.contype = 'f'),
           leaves AS (   -- a partitioned table's rows are in its partitions
                SELECT r.rel AS relid FROM reached r JOIN pg_class c ON c.oid = r.rel WHERE c.relkind = 'r'
                UNION
                SELECT t.relid FROM reached r, pg_partition_tree(r.rel) t WHERE t.isleaf)
           SELECT n.nspname, c.relname FROM leaves l JOIN pg_class c ON c.oid = l.relid
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.oid NOT IN (SELECT rel FROM seed)
            ORDER BY 1, 2"""
    ).fetchall()
    return {"chunks": [c.to_dict() for c in chunks], "tables": [list(t) for t in tables]}


def _entries(toc: str, chunks: list[TrialChunk], tables: list[list[str]]) -> tuple[str, int, int]:
    """The dump's table of contents (``pg_restore -l``) without the rows of the tables the trial leaves out: every
    entry but TABLE DATA stays. Returns (the list, how many tables' rows it loads, how many chunks')."""
    wanted = {f"{s} {t} " for s, t in tables}
    for c in chunks:
        wanted.update(f"{s} {t} " for s, t in filter(None, (c.chunk, c.compressed)))
    kept, loaded, chunk_rows = [], 0, 0
    for line in toc.splitlines():
        _, data, rest = line.partition(" TABLE DATA ")
        if data and not line.lstrip().startswith(";"):
            schema = rest.split(" ", 1)[0]
            if not (schema in TIMESCALE_DATA or any(rest.startswith(w) for w in wanted)):
                continue
            if schema == CHUNK_SCHEMA:
                chunk_rows += 1
            else:
                loaded += 1
        kept.append(line)
    return "\n".join(kept) + "\n", loaded, chunk_rows


PROCESSING = re.compile(r'processing data for table "([^"]+)"')


def _failure(exc: BackupError, chunks: list[TrialChunk]) -> str:
    """What failed to load, named as the hypertable's chunk where it is one, and pg_restore's own error."""
    text = str(exc)
    tables = PROCESSING.findall(text)
    errors = [line.strip() for line in text.splitlines() if "error:" in line or "ERROR:" in line or "DETAIL:" in line]
    cause = " ".join(dict.fromkeys(errors)) or text.splitlines()[-1].strip()
    where = "the schema"
    if tables:
        last = tables[-1]
        owner = next((c for c in chunks if last in (".".join(c.chunk), ".".join(c.compressed or ()))), None)
        where = f"the rows of {owner.describe() if owner else last}"
        if owner and owner.compressed and last == ".".join(owner.compressed):
            where += f" (its compressed rows, {last})"
    return f"{where} did not restore: {cause}"


def trial_restore(target: Target, backup: DumpedBackup) -> list[str]:
    """Problems found by restoring the trial's part of the backup into a scratch database (dropped afterwards);
    [] when it restored and every trial chunk read back as fingerprinted. A backup without a trial plan (taken by
    an older tsmigrate) is not tried."""
    m = backup.manifest
    trial = m.get(MANIFEST_KEY)
    if trial is None:
        return []
    chunks = [TrialChunk.from_dict(c) for c in trial["chunks"]]
    started = time.monotonic()
    name = f"{m['database']}_trial_{datetime.now(UTC):%Y%m%d%H%M%S}"[:63]
    scratch = target.with_dbname(name)
    with backup.opened_dump() as dump_dir:
        listed = subprocess.run([tool("pg_restore"), "-l", str(dump_dir)], capture_output=True, text=True)
        if listed.returncode != 0:
            return [f"pg_restore cannot read the dump's table of contents: {listed.stderr.strip()[:300]}"]
        entries, loaded, chunk_rows = _entries(listed.stdout, chunks, trial["tables"])
        try:
            with (
                tempfile.TemporaryDirectory(prefix="tsmigrate-trial-") as tmp,
                copy_database(target.with_dbname("postgres"), name, m, keep=False),
            ):
                list_file = Path(tmp) / "trial.list"
                list_file.write_text(entries)
                try:
                    load_dump(
                        m,
                        scratch,
                        dump_dir,
                        list_file=list_file,
                        what="trial restore (pg_restore)",
                        tables=loaded,
                        chunks=chunk_rows,
                    )
                except BackupError as exc:
                    return [
                        f"the trial restore into scratch database {name} failed: {_failure(exc, chunks)}. A "
                        "restore from this backup would stop there too: fix that cause, then take the backup again"
                    ]
                with scratch.connect() as conn:
                    read = {
                        c.fingerprint.name: fingerprint_table(
                            conn, *c.chunk, columns=c.fingerprint.columns, algorithm=c.fingerprint.algorithm
                        )
                        for c in chunks
                    }
        except psycopg.errors.InsufficientPrivilege as exc:
            return [
                f"the trial restore could not make its scratch database {name}: {str(exc).strip()}; the run's role "
                f"needs what a restore needs: CREATEDB and membership in the database's owner {m['owner']}"
            ]
        except psycopg.Error as exc:
            return [f"the trial restore in scratch database {name} failed: {str(exc).strip()}"]
    differences = compare({c.fingerprint.name: c.fingerprint for c in chunks}, read)
    if differences:
        by_name = {c.fingerprint.name: c for c in chunks}
        return [
            f"the trial restore loaded {by_name[d.table].describe()} but it does not read back as backed up: {d}"
            for d in differences
        ]
    log.info(
        "backup: trial restore into a scratch database: the schema, TimescaleDB's catalog and %d chunk(s) (%s) "
        "restored and read back as backed up, in %.1f s",
        len(chunks),
        ", ".join(c.describe() for c in chunks) or "no hypertable",
        time.monotonic() - started,
    )
    return []
