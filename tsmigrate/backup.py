"""Backups the run owns: dump, manifest, verification and pruning (the restore is restore.py).

A backup is a directory ``<backups>/<dbname>-<UTC time>/`` holding
- ``dump/``: pg_dump directory format (parallel jobs), taken in the same snapshot as
- ``manifest.json``: versions, database settings, sizes and sha256 of every file, and the
  content fingerprint of every table, computed in that snapshot;
- ``roles.sql``: the cluster's roles as far as the connected role may read them, as they were
  before the run's fence (see fence.py).
A backup is verified before it is used: its files against the manifest, and a trial restore of its schema and a chunk
of each hypertable into a scratch database (see trial.py); a backup that fails either is not kept.
Everything is readable by its owner only. With a key file (``[backup] key_file`` in the plan) every
file but the manifest is encrypted at rest once the backup is verified (see encryption.py); what reads
the dump gets a decrypted copy for the time it needs it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

from . import encryption, fence, trial
from .db import row, timescaledb_version
from .dumps import chunk_count, run_with_progress, tool, tool_major
from .encryption import BackupKey
from .errors import BackupError
from .fingerprint import TableFingerprint, fingerprint_database, user_tables
from .target import Target, redact

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
DUMP_DIR = "dump"
ROLES_FILE = "roles.sql"
NAME_PATTERN = re.compile(r"^(?P<db>.+)-(?P<stamp>\d{8}T\d{6}Z)$")


@dataclass
class Backup:
    path: Path
    manifest: dict = field(repr=False)
    key: BackupKey | None = field(default=None, repr=False)  # opens an encrypted backup

    @property
    def dump_dir(self) -> Path:
        """Where the dump is on disk (encrypted files when ``encrypted``: read it through ``opened_dump``)."""
        return self.path / DUMP_DIR

    @property
    def encrypted(self) -> bool:
        return encryption.is_encrypted(self.manifest)

    @contextmanager
    def opened_dump(self) -> Iterator[Path]:
        """The dump directory in plaintext for pg_restore: the dump itself, or a decrypted copy for the duration."""
        with encryption.opened(self.path, self.manifest, self.key, only=DUMP_DIR) as root:
            yield root / DUMP_DIR

    @property
    def fingerprints(self) -> dict[str, TableFingerprint]:
        return {k: TableFingerprint.from_dict(v) for k, v in self.manifest["fingerprints"].items()}

    @property
    def manifest_sha256(self) -> str:
        return hashlib.sha256((self.path / MANIFEST).read_bytes()).hexdigest()

    @classmethod
    def load(cls, path: Path, key: BackupKey | None = None) -> Backup:
        manifest_path = Path(path) / MANIFEST
        try:
            return cls(Path(path), json.loads(manifest_path.read_text()), key)
        except FileNotFoundError:
            raise BackupError(f"{path} is not a backup: it has no {MANIFEST}") from None
        except json.JSONDecodeError as exc:
            raise BackupError(f"{manifest_path} is damaged (not JSON: {exc})") from None


def room_needed(database_bytes: int) -> int:
    """Free bytes a backup of a database this size needs (the dump is compressed, so this is on the safe side)."""
    return int(database_bytes * 1.1) + (64 << 20)


def _files_of(directory: Path) -> dict[str, dict]:
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        files[str(path.relative_to(directory))] = {"size": path.stat().st_size, "sha256": digest.hexdigest()}
    return files


def _database_facts(conn: psycopg.Connection) -> dict:
    facts = row(
        conn,
        """
        SELECT d.datname, pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, d.datctype,
               pg_database_size(d.oid), current_setting('server_version'), current_setting('server_version_num')::int,
               array(SELECT unnest(s.setconfig) FROM pg_db_role_setting s
                      WHERE s.setdatabase = d.oid AND s.setrole = 0),
               array(SELECT format('%%s %%s',
                                   CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                        ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                                   a.privilege_type)
                       FROM aclexplode(d.datacl) a WHERE a.grantee <> d.datdba)
          FROM pg_database d WHERE d.datname = current_database()""",
    )
    keys = (
        "database",
        "owner",
        "encoding",
        "collate",
        "ctype",
        "size_bytes",
        "server_version",
        "server_version_num",
        "settings",
        "grants",
    )
    return {**dict(zip(keys, facts, strict=True)), "timescaledb_version": timescaledb_version(conn)}


def take_backup(
    target: Target, backups_dir: Path, *, jobs: int = 2, now: datetime | None = None, key: BackupKey | None = None
) -> Backup:
    """Dump the target with a manifest and fingerprints from the same snapshot, then verify it
    (and, with a key, encrypt it at rest and verify that it decrypts)."""
    backups_dir = Path(backups_dir)
    try:
        backups_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise BackupError(
            f"cannot create the backups directory {backups_dir}: {exc.strerror}; point --backups at a "
            "writable directory"
        ) from None
    with target.connect() as conn:
        facts = _database_facts(conn)
        server_major = facts["server_version_num"] // 10000
        dump_major = tool_major("pg_dump")
        if dump_major < server_major:
            raise BackupError(
                f"pg_dump is version {dump_major} but the server is {server_major}; "
                f"install postgresql-client-{server_major}"
            )
        free = shutil.disk_usage(backups_dir).free
        needed = room_needed(facts["size_bytes"])
        if free < needed:
            raise BackupError(
                f"not enough free room for the backup in {backups_dir}: {free / 2**30:.2f} GiB free, "
                f"about {needed / 2**30:.2f} GiB needed (database size {facts['size_bytes'] / 2**30:.2f} GiB). "
                "Free room there or point --backups at a larger disk."
            )
    if facts["timescaledb_version"]:
        # Parallel dump workers take NOWAIT locks that TimescaleDB's policy jobs can hold: one process.
        jobs = 1
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    path = backups_dir / f"{facts['database']}-{stamp}"
    try:
        path.mkdir(mode=0o700)
        return _take_backup(target, path, facts, jobs, key)
    except OSError as exc:
        shutil.rmtree(path, ignore_errors=True)
        raise BackupError(
            f"the backup could not be written to {path}: {exc.strerror or exc}; free room there or "
            "point --backups at another disk"
        ) from None
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise


def _take_backup(target: Target, path: Path, facts: dict, jobs: int, key: BackupKey | None) -> Backup:
    conninfo, env = target.for_client_programs()
    with target.connect(autocommit=False) as snap:
        snap.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot, visible, snapshot_at = row(snap, "SELECT pg_export_snapshot(), pg_current_snapshot()::text, now()")
        tables = user_tables(snap)
        chunks = chunk_count(snap)
        args = [
            tool("pg_dump"),
            "-Fd",
            "-j",
            str(max(1, jobs)),
            "-v",
            f"--snapshot={snapshot}",
            "-f",
            str(path / DUMP_DIR),
            "-d",
            conninfo,
        ]
        # The dump and the fingerprints read the same snapshot: side by side, they take as long as the longer.
        dump_failed: list[BaseException] = []
        processes: list[subprocess.Popen] = []

        def dump() -> None:
            try:
                run_with_progress(
                    args,
                    env,
                    "backup (pg_dump)",
                    len(tables),
                    re.compile(r"dumping contents of table"),
                    started_process=processes.append,
                    chunks=chunks,
                )
            except BaseException as exc:  # handed to the caller below
                dump_failed.append(exc)

        dumper = threading.Thread(target=dump, name="pg_dump", daemon=True)
        dumper.start()
        log.info("backup: fingerprinting %d tables in snapshot %s while pg_dump runs", len(tables), snapshot)
        try:
            fingerprints = fingerprint_database(
                snap,
                tables,
                high_water=True,
                progress=lambda i, n, fp, s: (
                    log.info("backup: fingerprinted %s (%d rows), %d of %d", fp.name, fp.rows, i, n) if s > 2 else None
                ),
            )
        except BaseException:
            for proc in processes:  # Ctrl-C or a failure here: the dump ends with it
                proc.kill()
            dumper.join()
            raise
        dumper.join()
        # What the trial restore loads, chosen and fingerprinted in the same snapshot (one chunk or two a hypertable).
        trial_plan = trial.plan_trial(snap) if not dump_failed else None
        snap.rollback()
        if dump_failed:
            raise dump_failed[0]

    roles_note = _dump_roles(target, path, env, facts["database"])
    manifest = {
        "format": 1,
        "created_at": datetime.now(UTC).isoformat(),
        "target": target.describe(),
        **facts,
        "pg_dump_version": tool_major("pg_dump"),
        # Which transactions the dump sees: rows committed by any other are newer than the backup.
        "snapshot": visible,
        "snapshot_at": snapshot_at.isoformat(),
        "roles": roles_note,
        "files": _files_of(path),
        "fingerprints": {k: v.to_dict() for k, v in fingerprints.items()},
        "chunks": chunks,  # the hypertables' chunks in the dump (the restore counts them as their parts)
        trial.MANIFEST_KEY: trial_plan,
    }
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    for p in [path, *path.rglob("*")]:
        p.chmod(0o700 if p.is_dir() else 0o600)
    backup = Backup(path, json.loads((path / MANIFEST).read_text()), key)
    problems = verify_backup(backup, hashes=False) or trial.trial_restore(target, backup)
    if not problems and key is not None:
        manifest["encryption"] = encryption.seal(path, manifest["files"], key)
        manifest["files"] = _files_of(path)
        (path / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        backup = Backup(path, json.loads((path / MANIFEST).read_text()), key)
        problems = verify_backup(backup) or encryption.check_decrypts(path, backup.manifest, key)
        log.info("backup: encrypted at rest for %s (key file %s)", key.recipient, key.path)
    if problems:
        raise BackupError(f"the backup in {path} failed verification: " + "; ".join(problems))
    log.info(
        "backup: %s verified (%d files, %.1f MB)",
        path,
        len(manifest["files"]),
        sum(f["size"] for f in manifest["files"].values()) / 1e6,
    )
    return backup


def _dump_roles(target: Target, path: Path, env: dict, database: str) -> str:
    conninfo, _ = target.for_client_programs()
    args = [tool("pg_dumpall"), "--roles-only", "--no-role-passwords", "-f", str(path / ROLES_FILE), "-d", conninfo]
    result = subprocess.run(args, env=env, capture_output=True, text=True, umask=0o077)
    if result.returncode != 0:
        (path / ROLES_FILE).unlink(missing_ok=True)
        return f"not saved: the connected role may not read them ({redact(result.stderr.strip()[:200])})"
    # The run fences the application just before its backup: roles.sql would bring the fence back with the
    # roles. Its last lines put them as they were before it (LOGIN, their own comment).
    with target.connect() as conn, open(path / ROLES_FILE, "a") as f:
        fenced = fence.fences(conn, database)
        if fenced:
            f.write(
                "\n-- tsmigrate: the run fenced these roles (NOLOGIN) just before this backup; as they were before:\n"
            )
        for r in fenced:
            f.write(
                sql.SQL("ALTER ROLE {} LOGIN;\nCOMMENT ON ROLE {} IS {};\n")
                .format(
                    sql.Identifier(r.role),
                    sql.Identifier(r.role),
                    sql.Literal(r.comment) if r.comment is not None else sql.SQL("NULL"),
                )
                .as_string(conn)
            )
    return f"saved in {ROLES_FILE} (without passwords; fenced roles as they were before the fence)"


# -- verification and pruning ---------------------------------------------------------------------


def verify_backup(backup: Backup, *, hashes: bool = True) -> list[str]:
    """Problems found: files that differ from the manifest (as they are on disk: encrypted ones are checked without
    the key), a key that does not open an encrypted backup, or a dump pg_restore cannot read. ``hashes=False``
    right after the manifest was made from the same files: reading them all again proves nothing more."""
    problems = []
    expected = backup.manifest.get("files", {})
    actual = _files_of(backup.path) if hashes else expected
    for name, meta in expected.items():
        got = actual.get(name)
        if got is None:
            problems.append(f"{name} is missing")
        elif got != meta:
            problems.append(f"{name} differs from the manifest (size {got['size']} vs {meta['size']}, sha256 changed)")
    for name in sorted(set(actual) - set(expected)):
        problems.append(f"{name} is not in the manifest")
    if not problems:
        try:
            with encryption.opened(backup.path, backup.manifest, backup.key, only=f"{DUMP_DIR}/toc.dat") as root:
                result = subprocess.run(
                    [tool("pg_restore"), "-l", str(root / DUMP_DIR)], capture_output=True, text=True
                )
        except BackupError as exc:  # the key (missing, another one) or a damaged file: named in the message
            return [str(exc)]
        if result.returncode != 0:
            problems.append(f"pg_restore cannot read the dump's table of contents: {result.stderr.strip()[:300]}")
    return problems


def pin_file(backup_path: Path) -> Path:
    """Beside the backup (not in it: its files are all in the manifest)."""
    return backup_path.parent / f"{backup_path.name}.keep"


def pin_backup(backup: Backup, reason: str) -> Path:
    """Keep this backup out of pruning until the user removes it (and this file) explicitly."""
    path = pin_file(backup.path)
    path.write_text(
        f"{reason}\nThis backup is never pruned automatically: remove {backup.path} and this file "
        "yourself once you no longer need it.\n"
    )
    path.chmod(0o600)
    return path


def prune_backups(
    backups_dir: Path,
    dbname: str,
    *,
    keep_days: int,
    keep_count: int,
    keep: Path | None = None,
    now: datetime | None = None,
) -> list[Path]:
    """Remove this database's backups older than keep_days beyond the newest keep_count (never a pinned one)."""
    now = now or datetime.now(UTC)
    mine = []
    for p in Path(backups_dir).glob(f"{dbname}-*"):
        m = NAME_PATTERN.match(p.name)
        if p.is_dir() and m and m["db"] == dbname:
            mine.append((datetime.strptime(m["stamp"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC), p))
    mine.sort(reverse=True)
    removed = []
    for i, (stamp, p) in enumerate(mine):
        if i < keep_count or (keep and p.resolve() == Path(keep).resolve()) or pin_file(p).exists():
            continue
        if now - stamp > timedelta(days=keep_days):
            shutil.rmtree(p)
            removed.append(p)
    return removed
