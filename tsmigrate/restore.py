"""A restore that never leaves the user without a database.

A new database is created and filled from the backup's dump, its fingerprints are checked against the
manifest, and only then are names swapped (the failed database is kept under a new name unless told
otherwise). TimescaleDB needs timescaledb_pre_restore() and post_restore() around pg_restore, and the same
extension version as the dump.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from psycopg import sql

from . import encryption
from .backup import Backup, verify_backup
from .dumps import copy_database, load_dump
from .errors import BackupError
from .fingerprint import compare, fingerprint_database
from .janitor import drop_database, hand_over, while_alone
from .late_writes import CarryReport
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
    carried: CarryReport | None = None  # rows others committed after the backup, carried from the failed copy
    owner: str | None = None  # who owns the restored database
    original_owner: str | None = None  # who owned it at the backup (the run's role may not be a member of it)

    def owner_note(self) -> str:
        """Who owns the restored database when the run's role could not give it back, and how to."""
        if not self.owner or not self.original_owner or self.owner == self.original_owner:
            return ""
        return (
            f"; it is owned by {self.owner} (it was {self.original_owner}'s, and {self.owner} may not create "
            "a database for that role): hand it back as a superuser with "
            f"{hand_over(self.database, self.original_owner)}"
        )

    @property
    def complete(self) -> bool:
        """No row committed after the backup was left behind: nothing was lost."""
        return not (self.carried and self.carried.left)

    def carried_words(self) -> str:
        """What others wrote or deleted after the backup, and what of it was carried into the restored database."""
        if self.carried is None:
            return "no rows were committed or deleted by others after the backup"
        return self.carried.describe()

    def summary(self) -> str:
        kept = f"; the failed database is kept as {self.kept_failed_as}" if self.kept_failed_as else ""
        kept += self.owner_note()
        if self.carried is None or not self.carried.changed:
            return (
                f"RESTORED: {self.database} is identical to the backup (every table's fingerprint matches) and "
                f"nothing was written by others after it{kept}"
            )
        if not self.carried.left:
            return (
                f"RESTORED: {self.database} is the backup (proven: every table's fingerprint matched) plus "
                f"{self.carried.describe()}{kept}"
            )
        if not any(t.left for t in self.carried.tables):
            return (
                f"RESTORED, DELETIONS NOT CARRIED: {self.database} is the backup (proven) but "
                f"{self.carried.describe()}. {self.kept_failed_as} shows what stands without them: delete those "
                "keys from the restored database where the application deleted them, before it starts"
            )
        return (
            f"RESTORED, ROWS LEFT BEHIND: {self.database} is the backup (proven) but {self.carried.describe()}. "
            f"Those rows are only in {self.kept_failed_as}: copy them over by key (COPY out of "
            f"{self.kept_failed_as}, INSERT into {self.database}) before the application starts"
        )


def restore_backup(
    target: Target,
    backup: Backup,
    *,
    keep_failed: bool = True,
    jobs: int = 2,
    carry: Callable[[Target, Target], CarryReport] | None = None,
) -> RestoreOutcome:
    """Restore into a new database, prove it, then swap names. Close your own connections first.

    ``carry(failed, restored)``, if given, runs once the failed database is renamed away (no session
    can write to it any more) and before the restored one takes its name: rows others committed
    after the backup go from the one to the other (see late_writes.py). A failed database that still holds
    rows not carried over is always kept.
    """
    started = time.monotonic()
    encryption.check_key(backup.manifest, backup.key, backup.path)  # a missing or wrong key, said as such
    problems = verify_backup(backup)
    if problems:
        raise BackupError(f"will not restore from {backup.path}: " + "; ".join(problems))
    m = backup.manifest
    dbname = m["database"]
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    new_name, failed_name = f"{dbname}_restore_{stamp}"[:63], f"{dbname}_failed_{stamp}"[:63]
    admin_target = target.with_dbname("postgres")
    ts_version = m.get("timescaledb_version")
    if ts_version:
        with admin_target.connect() as admin:
            available = admin.execute(
                "SELECT 1 FROM pg_available_extension_versions WHERE name = 'timescaledb' AND version = %s",
                (ts_version,),
            ).fetchone()
        if not available:
            raise BackupError(
                f"the backup was taken with TimescaleDB {ts_version}, which this server does not "
                f"offer; install that version to restore {backup.path}"
            )
    new_target = target.with_dbname(new_name)
    carried = None
    # The copy is dropped if anything below fails; once it took the database's name, it is the database.
    new_database = copy_database(admin_target, new_name, m, keep=True)
    with new_database:
        _load_and_prove(backup, new_target, jobs)
        # The copy is proven; renaming does not touch its content, so the proof holds under the old name.
        with admin_target.connect() as admin:
            while_alone(
                admin,
                dbname,
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(dbname), sql.Identifier(failed_name)),
            )
            try:
                if carry is not None:
                    carried = carry(target.with_dbname(failed_name), new_target)
                while_alone(
                    admin,
                    new_name,
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(new_name), sql.Identifier(dbname)),
                )
            except BaseException:
                # Never leave the user without a database of that name: put the failed one back.
                while_alone(
                    admin,
                    failed_name,
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        sql.Identifier(failed_name), sql.Identifier(dbname)
                    ),
                )
                raise
    keep_failed = keep_failed or bool(carried and carried.left)
    if not keep_failed:
        with admin_target.connect() as admin:
            drop_database(admin, failed_name)
    return RestoreOutcome(
        dbname,
        failed_name if keep_failed else None,
        time.monotonic() - started,
        carried,
        owner=new_database.owner,
        original_owner=m["owner"],
    )


def _load_and_prove(backup: Backup, new_target: Target, jobs: int) -> None:
    """Load the dump into the new, empty database and prove it holds what the backup fingerprinted."""
    m = backup.manifest
    with backup.opened_dump() as dump_dir:
        load_dump(m, new_target, dump_dir, jobs=jobs)
    with new_target.connect() as conn:
        differences = compare(
            backup.fingerprints,
            fingerprint_database(
                conn,
                [(schema, table) for schema, _, table in (k.partition(".") for k in backup.fingerprints)],
                like=backup.fingerprints,
            ),
        )
    if differences:
        raise BackupError(
            f"the restored copy {new_target.dbname} does not match the backup: "
            + "; ".join(map(str, differences))
            + f". {m['database']} was left as it is."
        )
