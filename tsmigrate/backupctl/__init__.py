"""A backup directory by hand: the commands of the rollback guide (docs/rollback.md), as ``tsmigrate backup``.

    tsmigrate backup new-key FILE                        a key file for encrypted backups
    tsmigrate backup list [DIR]                          the backups under DIR (default backups/)
    tsmigrate backup verify BACKUP [--key-file FILE]     files as recorded, dump readable
        [--trial-restore [--dsn DSN]]                    and the trial restore, on that server
    tsmigrate backup decrypt BACKUP DEST --key-file FILE a decrypted copy (a plain backup directory)
    tsmigrate backup database-sql BACKUP DBNAME          the database's own settings and grants, as SQL
    tsmigrate backup compare BACKUP [--dsn DSN]          the database's content against the backup
    tsmigrate backup restore BACKUP [--dsn DSN]          the automatic restore, by hand

``python -m tsmigrate.backupctl ...`` is the same command. Exit 0 when all is well, 1 when the backup or the
database is not as it should be (the reason on stderr), 2 for a wrong command line. The connection for
``compare``, ``restore`` and the trial restore is --dsn, else libpq's PG* variables; the trial restore creates
and drops a scratch database there (see trial.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .. import encryption, trial
from ..backup import MANIFEST, NAME_PATTERN, Backup, pin_file, verify_backup
from ..dumps import database_properties
from ..encryption import decrypt_into, load_key, new_key, plain_manifest
from ..errors import BackupError
from ..fingerprint import compare, fingerprint_database
from ..restore import restore_backup
from ..target import resolve_target


class Refused(Exception):
    """What is wrong, for stderr and exit 1."""


def _backup(path: str, key_file: str | None) -> Backup:
    return Backup.load(Path(path), load_key(Path(key_file)) if key_file else None)


def cmd_new_key(args) -> str:
    key = new_key(Path(args.file))
    return (
        f"key file {key.path} written (owner-only); public key {key.recipient}.\n"
        f'Name it in plan.toml:  [backup] key_file = "{key.path.resolve()}"\n'
        "Keep a copy away from the backups (a password manager, a safe): without it no encrypted backup "
        "can be restored."
    )


def cmd_verify(args) -> str:
    backup = _backup(args.backup, args.key_file)
    problems = verify_backup(backup)
    if problems:
        raise Refused(f"{backup.path} is not usable: " + "; ".join(problems))
    files = backup.manifest.get("files", {})
    how = f"encrypted for {backup.manifest['encryption']['recipient']}; " if backup.encrypted else ""
    said = (
        f"{backup.path}: {how}{len(files)} files as recorded in {MANIFEST}, pg_restore reads the dump "
        f"(database {backup.manifest.get('database')}, "
        f"TimescaleDB {backup.manifest.get('timescaledb_version') or 'none'})"
    )
    if not args.trial_restore:
        return said
    if trial.MANIFEST_KEY not in backup.manifest:
        raise Refused(f"{backup.path} was taken by an older tsmigrate: its manifest has no trial plan to restore")
    target = resolve_target(args.dsn)
    problems = trial.trial_restore(target, backup)
    if problems:
        raise Refused(f"{backup.path} does not restore: " + "; ".join(problems))
    chunks = [trial.TrialChunk.from_dict(c) for c in backup.manifest[trial.MANIFEST_KEY]["chunks"]]
    return (
        f"{said}; its trial restore on {target.describe()} loaded the schema, TimescaleDB's catalog and "
        f"{len(chunks)} chunks ({', '.join(c.describe() for c in chunks) or 'no hypertable'}), which read back "
        "as backed up"
    )


def cmd_decrypt(args) -> str:
    backup = _backup(args.backup, args.key_file)
    dest = Path(args.dest)
    if not backup.encrypted:
        raise Refused(f"{backup.path} is not encrypted: use it as it is")
    if backup.key is None:
        raise Refused(f"{backup.path} is encrypted: name its key file with --key-file")
    if dest.exists():
        raise Refused(f"{dest} exists already: name a new directory (nothing is overwritten)")
    problems = verify_backup(backup)
    if problems:
        raise Refused(f"{backup.path} is not usable: " + "; ".join(problems))
    dest.mkdir(mode=0o700, parents=True)
    try:
        decrypt_into(backup.path, backup.manifest, backup.key, dest)
        (dest / MANIFEST).write_text(json.dumps(plain_manifest(backup.manifest, backup.path), indent=2))
        (dest / MANIFEST).chmod(0o600)
        problems = verify_backup(Backup.load(dest))
        if problems:
            raise Refused(f"the decrypted copy in {dest} does not verify: " + "; ".join(problems))
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return (
        f"decrypted into {dest} and verified ({len(backup.manifest['encryption']['files'])} files). It is plaintext: "
        f"remove it (rm -r {dest}) once the restore is done"
    )


def cmd_database_sql(args) -> str:
    backup = Backup.load(Path(args.backup))
    statements = database_properties(backup.manifest, args.dbname)
    return (
        "\n".join(s.as_string(None) + ";" for s in statements)
        or "-- the backup recorded no database settings or grants"
    )


def cmd_compare(args) -> str:
    backup = Backup.load(Path(args.backup))
    target = resolve_target(args.dsn)
    if args.dbname:
        target = target.with_dbname(args.dbname)
    expected = backup.fingerprints
    with target.connect() as conn:
        now = fingerprint_database(conn, [(schema, table) for schema, table in (n.split(".", 1) for n in expected)])
    differences = compare(expected, now)
    if differences:
        raise Refused(f"{target.describe()} differs from the backup {backup.path}: " + "; ".join(map(str, differences)))
    rows = sum(f.rows for f in expected.values())
    return (
        f"{target.describe()} is identical to the backup {backup.path.name}: {len(expected)} tables, {rows} rows, "
        "every fingerprint matches"
    )


def cmd_list(args) -> str:
    directory = Path(args.directory)
    if not directory.is_dir():
        raise Refused(
            f"{directory} is not a directory: name the backups directory (--backups of the run; default backups/)"
        )
    found = []
    for path in sorted(directory.iterdir(), reverse=True):
        named = NAME_PATTERN.match(path.name)
        if not (path.is_dir() and named and (path / MANIFEST).exists()):
            continue
        try:
            manifest = Backup.load(path).manifest
        except BackupError as exc:
            found.append(f"{path}: {exc}")
            continue
        size = sum(int(f.get("size", 0)) for f in manifest.get("files", {}).values())
        tables = manifest.get("fingerprints", {})
        rows = sum(int(t.get("rows", 0)) for t in tables.values())
        notes = ["encrypted" if encryption.is_encrypted(manifest) else "plain"]
        if pin_file(path).exists():
            notes.append(f"pinned ({pin_file(path).name})")
        found.append(
            f"{path}: database {manifest.get('database')}, taken {named['stamp']}, {size / 2**20:.1f} MiB, "
            f"{len(tables)} tables, {rows} rows, TimescaleDB {manifest.get('timescaledb_version') or 'none'}, "
            + ", ".join(notes)
        )
    return "\n".join(found) or f"no backup in {directory}"


def cmd_restore(args) -> str:
    backup = _backup(args.backup, args.key_file)
    target = resolve_target(args.dsn)
    outcome = restore_backup(target, backup, keep_failed=not args.drop_failed, jobs=args.jobs)
    return f"{outcome.summary()} (from {backup.path}, {outcome.seconds:.1f} s)"
