"""A restore that never leaves the user without a database.

A new database is created and filled from the backup's dump, its fingerprints are checked against the
manifest, and only then are names swapped (the failed database is kept under a new name unless told
otherwise). TimescaleDB needs timescaledb_pre_restore() and post_restore() around pg_restore, and the same
extension version as the dump.
"""

from __future__ import annotations

import logging
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from psycopg import sql

from . import sealing
from .backup import Backup, _run_with_progress, tool, verify_backup
from .carry import CarryReport
from .errors import BackupError
from .fingerprint import compare, fingerprint_database
from .janitor import NewDatabase, drop_database, hand_over, while_alone
from .target import Target

log = logging.getLogger(__name__)

# -- restore --------------------------------------------------------------------------------------

@dataclass
class RestoreOutcome:
    """A restore that happened, so a proven one: restore_backup raises, and leaves the database as it was,
    when the restored copy does not match the backup's fingerprints."""

    database: str
    kept_failed_as: str | None
    seconds: float
    carried: CarryReport | None = None   # rows others committed after the backup, carried from the failed copy
    owner: str | None = None             # who owns the restored database
    original_owner: str | None = None    # who owned it at the backup (the run's role may not be a member of it)

    def owner_note(self) -> str:
        """Who owns the restored database when the run's role could not give it back, and how to."""
        if not self.owner or not self.original_owner or self.owner == self.original_owner:
            return ""
        return (f"; it is owned by {self.owner} (it was {self.original_owner}'s, and {self.owner} may not create "
                f"a database for that role): hand it back as a superuser with {hand_over(self.database, self.original_owner)}")

    @property
    def complete(self) -> bool:
        """No row committed after the backup was left behind: nothing was lost."""
        return not (self.carried and self.carried.left)

    def summary(self) -> str:
        kept = f"; the failed database is kept as {self.kept_failed_as}" if self.kept_failed_as else ""
        kept += self.owner_note()
        if self.carried is None or not self.carried.changed:
            return (f"RESTORED: {self.database} is identical to the backup (every table's fingerprint matches) and "
                    f"nothing was written by others after it{kept}")
        if not self.carried.left:
            return (f"RESTORED: {self.database} is the backup (proven: every table's fingerprint matched) plus "
                    f"{self.carried.describe()}{kept}")
        if not any(t.left for t in self.carried.tables):
            return (f"RESTORED, DELETIONS NOT CARRIED: {self.database} is the backup (proven) but "
                    f"{self.carried.describe()}. {self.kept_failed_as} shows what stands without them: delete those "
                    "keys from the restored database where the application deleted them, before it starts")
        return (f"RESTORED, ROWS LEFT BEHIND: {self.database} is the backup (proven) but {self.carried.describe()}. "
                f"Those rows are only in {self.kept_failed_as}: copy them over by key (COPY out of "
                f"{self.kept_failed_as}, INSERT into {self.database}) before the application starts")


def database_properties(manifest: dict, dbname: str) -> list[sql.Composed]:
    """The database's own settings and grants the backup recorded (a dump without --create has neither)."""
    statements = []
    for setting in manifest.get("settings") or []:
        name, _, value = setting.partition("=")
        statements.append(sql.SQL("ALTER DATABASE {} SET {} = {}").format(
            sql.Identifier(dbname), sql.Identifier(name), sql.Literal(value)))
    for grant in manifest.get("grants") or []:
        grantee, privilege = grant.rsplit(" ", 1)
        statements.append(sql.SQL("GRANT {} ON DATABASE {} TO {}").format(
            sql.SQL(privilege), sql.Identifier(dbname), sql.SQL(grantee)))
    return statements


def restore_backup(target: Target, backup: Backup, *, keep_failed: bool = True, jobs: int = 2,
                   carry: Callable[[Target, Target], CarryReport] | None = None) -> RestoreOutcome:
    """Restore into a new database, prove it, then swap names. Close your own connections first.

    ``carry(failed, restored)``, if given, runs once the failed database is renamed away (no session
    can write to it any more) and before the restored one takes its name: rows others committed
    after the backup go from the one to the other (see carry.py). A failed database that still holds
    rows not carried over is always kept.
    """
    started = time.monotonic()
    sealing.check_key(backup.manifest, backup.key, backup.path)   # a missing or wrong key, said as such
    problems = verify_backup(backup)
    if problems:
        raise BackupError(f"will not restore from {backup.path}: " + "; ".join(problems))
    m = backup.manifest
    dbname = m["database"]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    new_name, failed_name = f"{dbname}_restore_{stamp}"[:63], f"{dbname}_failed_{stamp}"[:63]
    admin_target = target.with_dbname("postgres")
    ts_version = m.get("timescaledb_version")
    if ts_version:
        with admin_target.connect() as admin:
            available = admin.execute("SELECT 1 FROM pg_available_extension_versions WHERE name = 'timescaledb' "
                                      "AND version = %s", (ts_version,)).fetchone()
        if not available:
            raise BackupError(f"the backup was taken with TimescaleDB {ts_version}, which this server does not "
                              f"offer; install that version to restore {backup.path}")
    new_target = target.with_dbname(new_name)
    carried = None
    # The copy is dropped if anything below fails; once it took the database's name, it is the database.
    new_database = copy_database(admin_target, new_name, m, keep=True)
    with new_database:
        _load_and_prove(backup, new_target, jobs)
        # The copy is proven; renaming does not touch its content, so the proof holds under the old name.
        with admin_target.connect() as admin:
            while_alone(admin, dbname, sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(dbname), sql.Identifier(failed_name)))
            try:
                if carry is not None:
                    carried = carry(target.with_dbname(failed_name), new_target)
                while_alone(admin, new_name, sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(new_name), sql.Identifier(dbname)))
            except BaseException:
                # Never leave the user without a database of that name: put the failed one back.
                while_alone(admin, failed_name, sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(failed_name), sql.Identifier(dbname)))
                raise
    keep_failed = keep_failed or bool(carried and carried.left)
    if not keep_failed:
        with admin_target.connect() as admin:
            drop_database(admin, failed_name)
    return RestoreOutcome(dbname, failed_name if keep_failed else None, time.monotonic() - started, carried,
                          owner=new_database.owner, original_owner=m["owner"])


# TimescaleDB's own schemas: their tables are the extension's (a superuser's), filled by CREATE EXTENSION.
TIMESCALEDB_SCHEMAS = ("_timescaledb_catalog", "_timescaledb_config", "_timescaledb_internal", "_timescaledb_cache")
# The one catalog row every database with the extension has of its own: its install's uuid (a new one is fine).
_OWN_ROWS_OF_EVERY_INSTALL = {"_timescaledb_catalog.metadata"}


def timescaledb_catalog_rows(dump_dir: Path) -> list[str]:
    """TimescaleDB catalog tables the dump holds rows of (hypertables, chunks, jobs...): only a superuser may load
    them (timescaledb_pre_restore() sets a superuser's parameter, and the tables are the extension's)."""
    args = [tool("pg_restore"), "--data-only", "-f", "-", str(dump_dir)]
    for schema in TIMESCALEDB_SCHEMAS:
        args += ["-n", schema]
    text = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    filled, table, rows = [], None, 0
    for line in text.splitlines():
        if table is None:
            copy = re.match(r"COPY (\S+) .*FROM stdin;$", line)
            table, rows = (copy.group(1), 0) if copy else (None, 0)
        elif line == "\\.":
            if rows and table not in _OWN_ROWS_OF_EVERY_INSTALL:
                filled.append(table)
            table = None
        else:
            rows += 1
    return filled


def _without_timescaledb_catalog_data(dump_dir: Path, list_file: Path, based_on: Path | None = None) -> Path:
    """A pg_restore list (-L) of the dump (of the entries ``based_on`` lists, else all) without the data of
    TimescaleDB's schemas (empty but for the install's uuid: timescaledb_catalog_rows said so), which a role that
    is not a superuser may not load."""
    listing = based_on.read_text() if based_on else subprocess.run(
        [tool("pg_restore"), "-l", str(dump_dir)], capture_output=True, text=True, check=True).stdout
    kept = [(";" + line) if re.search(r" (TABLE DATA|SEQUENCE SET) (" + "|".join(TIMESCALEDB_SCHEMAS) + r") ", line) else line
            for line in listing.splitlines()]
    list_file.write_text("\n".join(kept) + "\n")
    return list_file


def copy_database(admin_target: Target, name: str, manifest: dict, *, keep: bool) -> NewDatabase:
    """The empty database a dump is restored into, made as the backed-up one was (owner, encoding, locale); dropped
    when the block fails and, unless ``keep``, when it ends. A role that may not create it for the owner creates it
    as itself (NewDatabase.owner says who owns it)."""
    return NewDatabase(admin_target.connect, name, owner=manifest["owner"], encoding=manifest["encoding"],
                       collate=manifest["collate"], ctype=manifest["ctype"], keep=keep)


def load_dump(manifest: dict, new_target: Target, dump_dir: Path, *, jobs: int = 1, list_file: Path | None = None,
              what: str = "restore (pg_restore)", tables: int | None = None, chunks: int | None = None) -> None:
    """pg_restore the dump (the entries ``list_file`` names, else all) into the new, empty database, then give the
    database the settings and grants the backup recorded. ``tables``, ``chunks``: how many of each it loads, for
    the progress lines (default: all the backup holds).

    As a superuser, TimescaleDB's catalog is restored between timescaledb_pre_restore() and post_restore(), as
    Timescale documents. A role that is not one creates the extension (it is trusted) and restores everything but
    the catalog's data, which must then hold nothing of the database's own (no hypertable, chunk or job): otherwise
    the restore needs a superuser, and says so before it changes anything.
    """
    ts_version = manifest.get("timescaledb_version")
    superuser = True
    with tempfile.TemporaryDirectory(prefix="tsmigrate-restore-") as scratch:
        if ts_version:
            with new_target.connect() as conn:
                superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
                filled = [] if superuser else timescaledb_catalog_rows(dump_dir)
                if filled:
                    raise BackupError(
                        f"the backup of {manifest.get('database')} holds TimescaleDB catalog rows ({', '.join(filled)}: "
                        "hypertables, chunks or jobs) that only a superuser may restore; restore it as a superuser "
                        "(README: Backups and restore)")
                conn.execute(sql.SQL("CREATE EXTENSION timescaledb VERSION {}").format(sql.Literal(ts_version)))
                if superuser:
                    conn.execute("SELECT timescaledb_pre_restore()")
            if not superuser:
                list_file = _without_timescaledb_catalog_data(dump_dir, Path(scratch) / "restore.list", list_file)
        conninfo, env = new_target.for_client_programs()
        # TimescaleDB's catalog tables reference each other: their data must load in dump order.
        parallel = 1 if ts_version else max(1, jobs)
        args = [tool("pg_restore"), "-j", str(parallel), "-v", "--exit-on-error", "-d", conninfo,
                *(["-L", str(list_file)] if list_file else []), str(dump_dir)]
        _run_with_progress(args, env, what, tables if tables is not None else len(manifest["fingerprints"]),
                           re.compile(r"processing data for table"),
                           chunks=chunks if chunks is not None else manifest.get("chunks", 0))
    with new_target.connect() as conn:
        if ts_version and superuser:
            conn.execute("SELECT timescaledb_post_restore()")
        for statement in database_properties(manifest, new_target.dbname):
            conn.execute(statement)


def _load_and_prove(backup: Backup, new_target: Target, jobs: int) -> None:
    """Load the dump into the new, empty database and prove it holds what the backup fingerprinted."""
    m = backup.manifest
    with backup.opened_dump() as dump_dir:
        load_dump(m, new_target, dump_dir, jobs=jobs)
    with new_target.connect() as conn:
        differences = compare(backup.fingerprints, fingerprint_database(conn, list(
            tuple(k.split(".", 1)) for k in backup.fingerprints), like=backup.fingerprints))
    if differences:
        raise BackupError(f"the restored copy {new_target.dbname} does not match the backup: "
                          + "; ".join(map(str, differences)) + f". {m['database']} was left as it is.")
