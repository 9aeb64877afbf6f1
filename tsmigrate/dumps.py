"""PostgreSQL's client programs as the run uses them: which pg_dump and pg_restore (and their major version), a
child that dies with the run, progress read from their verbose output; and loading a dump into a new, empty
database (as a superuser between timescaledb_pre_restore() and post_restore(); as a role that is not one, without
TimescaleDB's catalog data). The backup, its trial restore and the restore all build on it."""

from __future__ import annotations

import ctypes
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from .db import one
from .errors import BackupError
from .janitor import NewDatabase
from .target import Target, redact

log = logging.getLogger(__name__)


def tool(name: str) -> str:
    """Path of a PostgreSQL client program: in $TSMIGRATE_PG_BINDIR when it has it (CI points it at the server's
    major), else in the bin directory pg_config names, else on PATH."""
    override = os.environ.get("TSMIGRATE_PG_BINDIR")
    if override and (Path(override) / name).exists():
        return str(Path(override) / name)
    pg_config = shutil.which("pg_config")
    if pg_config:
        bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip()
        if bindir and (Path(bindir) / name).exists():
            return str(Path(bindir) / name)
    found = shutil.which(name)
    if not found:
        raise BackupError(f"{name} not found; install the PostgreSQL client programs (postgresql-client-15)")
    return found


def tool_major(name: str) -> int:
    out = subprocess.run([tool(name), "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    if not match:
        raise BackupError(f"cannot read the version of {name} from {out.strip()!r}")
    return int(match.group(1))


def die_with_parent() -> None:
    """In the child, before exec: the kernel kills it when the run dies, even by SIGKILL (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the run's own handlers still end the child on Ctrl-C and SIGTERM


CHUNK_SCHEMA = "_timescaledb_internal"  # where TimescaleDB keeps the chunks (and compressed chunks) of hypertables


def run_with_progress(
    args: list[str],
    env: dict,
    what: str,
    total: int,
    counter: re.Pattern,
    started_process: Callable[[subprocess.Popen], None] | None = None,
    chunks: int = 0,
) -> None:
    """Run a pg_dump/pg_restore (-v) and log progress every few seconds from its verbose output: ``total`` tables
    and ``chunks`` chunks (a hypertable's rows are in its chunks: they are counted as its parts, not as tables).

    The child ends with the run: killed if the run is interrupted, and by the kernel if the run dies.
    """
    started = last = time.monotonic()
    done, chunks_done = 0, 0
    tail: list[str] = []
    proc = subprocess.Popen(
        args,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        umask=0o077,
        preexec_fn=die_with_parent,
    )
    if started_process is not None:
        started_process(proc)

    def told() -> str:
        return f"{done} of {total} tables" + (f", {chunks_done} of {chunks} chunks" if chunks else "")

    assert proc.stderr is not None  # stderr=PIPE
    try:
        for line in proc.stderr:
            tail = ([*tail, line.rstrip()])[-20:]
            if counter.search(line):
                if CHUNK_SCHEMA in line:
                    chunks_done += 1
                else:
                    done += 1
                now = time.monotonic()
                if now - last >= 2:
                    rate = (done + chunks_done) / (now - started)
                    todo = max(0, total - done) + max(0, chunks - chunks_done)
                    left = todo / rate if rate > 0 else 0
                    log.info("%s: %s (about %.0f s left)", what, told(), left)
                    last = now
        proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        raise BackupError(
            f"{what} failed (exit {proc.returncode}):\n  "
            + "\n  ".join(redact(line, (env.get("PGPASSWORD", ""),)) for line in tail if line)
        )
    log.info("%s: %s in %.1f s", what, told(), time.monotonic() - started)


def chunk_count(conn: psycopg.Connection) -> int:
    """Chunks (and compressed chunks) a dump of this database holds: tables in TimescaleDB's chunk schema."""
    return one(
        conn,
        """SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE n.nspname = %s AND c.relkind = 'r'""",
        (CHUNK_SCHEMA,),
    )


# -- taking a backup ------------------------------------------------------------------------------


def database_properties(manifest: dict, dbname: str) -> list[sql.Composed]:
    """The database's own settings and grants the backup recorded (a dump without --create has neither)."""
    statements = []
    for setting in manifest.get("settings") or []:
        name, _, value = setting.partition("=")
        statements.append(
            sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                sql.Identifier(dbname), sql.Identifier(name), sql.Literal(value)
            )
        )
    for grant in manifest.get("grants") or []:
        grantee, privilege = grant.rsplit(" ", 1)
        statements.append(
            sql.SQL("GRANT {} ON DATABASE {} TO {}").format(
                sql.SQL(privilege), sql.Identifier(dbname), sql.SQL(grantee)
            )
        )
    return statements


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
    listing = (
        based_on.read_text()
        if based_on
        else subprocess.run(
            [tool("pg_restore"), "-l", str(dump_dir)], capture_output=True, text=True, check=True
        ).stdout
    )
    kept = [
        (";" + line)
        if re.search(r" (TABLE DATA|SEQUENCE SET) (" + "|".join(TIMESCALEDB_SCHEMAS) + r") ", line)
        else line
        for line in listing.splitlines()
    ]
    list_file.write_text("\n".join(kept) + "\n")
    return list_file


def copy_database(admin_target: Target, name: str, manifest: dict, *, keep: bool) -> NewDatabase:
    """The empty database a dump is restored into, made as the backed-up one was (owner, encoding, locale); dropped
    when the block fails and, unless ``keep``, when it ends. A role that may not create it for the owner creates it
    as itself (NewDatabase.owner says who owns it)."""
    return NewDatabase(
        admin_target.connect,
        name,
        owner=manifest["owner"],
        encoding=manifest["encoding"],
        collate=manifest["collate"],
        ctype=manifest["ctype"],
        keep=keep,
    )


def load_dump(
    manifest: dict,
    new_target: Target,
    dump_dir: Path,
    *,
    jobs: int = 1,
    list_file: Path | None = None,
    what: str = "restore (pg_restore)",
    tables: int | None = None,
    chunks: int | None = None,
) -> None:
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
                superuser = one(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                filled = [] if superuser else timescaledb_catalog_rows(dump_dir)
                if filled:
                    raise BackupError(
                        f"the backup of {manifest.get('database')} holds TimescaleDB catalog rows "
                        f"({', '.join(filled)}: hypertables, chunks or jobs) that only a superuser may restore; "
                        "restore it as a superuser (README: Backups and restore)"
                    )
                conn.execute(sql.SQL("CREATE EXTENSION timescaledb VERSION {}").format(sql.Literal(ts_version)))
                if superuser:
                    conn.execute("SELECT timescaledb_pre_restore()")
            if not superuser:
                list_file = _without_timescaledb_catalog_data(dump_dir, Path(scratch) / "restore.list", list_file)
        conninfo, env = new_target.for_client_programs()
        # TimescaleDB's catalog tables reference each other: their data must load in dump order.
        parallel = 1 if ts_version else max(1, jobs)
        args = [
            tool("pg_restore"),
            "-j",
            str(parallel),
            "-v",
            "--exit-on-error",
            "-d",
            conninfo,
            *(["-L", str(list_file)] if list_file else []),
            str(dump_dir),
        ]
        run_with_progress(
            args,
            env,
            what,
            tables if tables is not None else len(manifest["fingerprints"]),
            re.compile(r"processing data for table"),
            chunks=chunks if chunks is not None else manifest.get("chunks", 0),
        )
    with new_target.connect() as conn:
        if ts_version and superuser:
            conn.execute("SELECT timescaledb_post_restore()")
        for statement in database_properties(manifest, conn.info.dbname):
            conn.execute(statement)
