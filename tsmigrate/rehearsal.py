"""Rehearsal: apply the pending steps to a scratch copy of the target, and report the first failure.

The copy is a new database on the same server (the target itself is never touched), made
with pg_dump | pg_restore. Large tables (above ``full_copy_bytes``) get their schema and a
sample that keeps the hazards visible: every row whose time column is NULL, plus the newest
rows. The copy is dropped at the end, whatever happened.
"""

from __future__ import annotations

import logging
import re
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from .causes import Cause, classify
from .convert import ConversionError, convert_table
from .db import one
from .dumps import TIMESCALEDB_SCHEMAS, die_with_parent, tool
from .janitor import NewDatabase, drop_database
from .migrations import MigrationError, MigrationFile, apply_file
from .plan import Plan
from .target import Target, redact
from .timescale import server_timescaledb

log = logging.getLogger(__name__)


class RehearsalUnavailable(RuntimeError):
    """No scratch copy could be made (privileges, tools); the reason says which."""


class RehearsalNotFaithful(RehearsalUnavailable):
    """A scratch copy could be made, but not as the target is (its hypertables, chunks, compression): a rehearsal on
    it would prove nothing about the target, so it is a NO-GO with the reason, never a silent pass."""


# Chunks of each hypertable whose rows the scratch copy gets (the newest, compressed or not); the others are made
# as they are (the same chunks, compression state and settings) but empty, so a large history costs no copy.
SAMPLED_CHUNKS = 3


@dataclass
class RehearsalResult:
    scratch: str
    sampled: dict[str, int] = field(default_factory=dict)  # table -> rows copied, for sampled tables
    steps: list[tuple[str, float]] = field(default_factory=list)  # (label, seconds) of the steps that ran
    # label -> (line, seconds) of each statement of a file that ran (tsmigrate.preflight.window scales them one by one)
    statements: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    error: MigrationError | ConversionError | None = None
    failed_step: str | None = None
    copy_seconds: float = 0.0
    copied_bytes: int = 0  # the scratch copy's size before the steps (preflight.window scales the backup)
    # A server resource the rehearsal ran out of (disk, locks, ...): the run needs at least as much, so it counts
    # against the GO wherever it struck, the sample copy included.
    cause: Cause | None = None
    cause_error: str | None = None  # the server's words for it

    @property
    def ok(self) -> bool:
        return self.error is None


def _large_tables(conn: psycopg.Connection, limit_bytes: int) -> list[tuple[str, str]]:
    return [
        (r[0], r[1])
        for r in conn.execute(
            """SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND pg_total_relation_size(c.oid) > %s
              AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname NOT LIKE '\\_timescaledb%%'""",
            (limit_bytes,),
        ).fetchall()
    ]


def _copy_sample(
    source: psycopg.Connection, scratch: psycopg.Connection, schema: str, table: str, time_column: str | None, rows: int
) -> int:
    ident = sql.Identifier(schema, table)
    if time_column:
        col = sql.Identifier(time_column)
        select = sql.SQL(
            "(SELECT * FROM {t} WHERE {c} IS NULL) UNION ALL "
            "(SELECT * FROM (SELECT * FROM {t} WHERE {c} IS NOT NULL ORDER BY {c} DESC LIMIT {n}) s)"
        ).format(t=ident, c=col, n=sql.Literal(rows))
    else:
        select = sql.SQL("SELECT * FROM {} LIMIT {}").format(ident, sql.Literal(rows))
    copied = 0
    with scratch.transaction():
        with (
            source.cursor().copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT binary)").format(select)) as out,
            scratch.cursor().copy(sql.SQL("COPY {} FROM STDIN (FORMAT binary)").format(ident)) as into,
        ):
            for block in out:
                into.write(block)
        copied = one(scratch, sql.SQL("SELECT count(*) FROM {}").format(ident))
    return copied


SCRATCH_INFIX = "_rehearsal_"


def _scratch_prefix(dbname: str) -> str:
    # A database name has at most 63 bytes: the target's name is cut, never the stamp that tells copies apart.
    return dbname.encode()[: 63 - len(SCRATCH_INFIX) - 14].decode(errors="ignore") + SCRATCH_INFIX


def scratch_name(dbname: str, stamp: datetime) -> str:
    return f"{_scratch_prefix(dbname)}{stamp:%Y%m%d%H%M%S}"


# A rehearsal holds this advisory lock (on the admin connection, for as long as its scratch copy exists), so a
# copy whose lock nobody holds was left by a pre-flight that was killed: its session, and so its lock, is gone.
_IN_USE_LOCK = sql.SQL("pg_try_advisory_lock(hashtext('tsmigrate rehearsal'), hashtext({}))")


def claim_scratch_name(admin: psycopg.Connection, name: str) -> None:
    """Mark ``name`` as this session's scratch copy for as long as ``admin`` stays open."""
    admin.execute(sql.SQL("SELECT {}").format(_IN_USE_LOCK.format(sql.Literal(name))))


def drop_stale_scratch_copies(admin: psycopg.Connection, dbname: str) -> list[str]:
    """Scratch copies of this target that killed pre-flights left: dropped, and named in the log.

    Only names this module makes (``<db>_rehearsal_<UTC stamp>``) are considered, and only those whose
    rehearsal's session is gone (nobody holds its advisory lock): a rehearsal running now is left alone.
    """
    prefix = _scratch_prefix(dbname)
    stale = []
    for (name,) in admin.execute(
        "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,)
    ).fetchall():
        if not re.fullmatch(r"[0-9]{14}", name[len(prefix) :]):
            continue  # not a name this module made
        if one(admin, sql.SQL("SELECT {}").format(_IN_USE_LOCK.format(sql.Literal(name)))):
            stale.append(name)  # the lock is now ours: released when this session ends
    for name in stale:
        log.warning("rehearsal: dropping %s, a scratch copy a killed pre-flight left", name)
        drop_database(admin, name)
    return stale


def _hypertables(conn: psycopg.Connection) -> tuple[str | None, list[tuple[str, str]]]:
    """(TimescaleDB's version in the target or None, its hypertables)."""
    version = one(conn, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    if version is None:
        return None, []
    return version, [
        tuple(r)
        for r in conn.execute(
            "SELECT hypertable_schema, hypertable_name FROM timescaledb_information.hypertables"
        ).fetchall()
    ]


def _chunks_left_empty(conn: psycopg.Connection) -> list[str]:
    """The chunk tables whose rows the copy leaves out: all but the newest SAMPLED_CHUNKS of each hypertable, with
    the compressed chunks that hold their rows."""
    return sorted(
        {
            r[0]
            for r in conn.execute(
                """
        WITH ranked AS (
            SELECT c.schema_name, c.table_name, c.compressed_chunk_id,
                   row_number() OVER (PARTITION BY c.hypertable_id ORDER BY max(ds.range_end) DESC) AS newest
              FROM _timescaledb_catalog.chunk c
              JOIN _timescaledb_catalog.chunk_constraint cc ON cc.chunk_id = c.id AND cc.dimension_slice_id IS NOT NULL
              JOIN _timescaledb_catalog.dimension_slice ds ON ds.id = cc.dimension_slice_id
             -- not a dropped chunk's row
             WHERE to_regclass(format('%%I.%%I', c.schema_name, c.table_name)) IS NOT NULL
               AND c.hypertable_id NOT IN (SELECT compressed_hypertable_id FROM _timescaledb_catalog.hypertable
                                            WHERE compressed_hypertable_id IS NOT NULL)
             GROUP BY c.id, c.schema_name, c.table_name, c.compressed_chunk_id, c.hypertable_id)
        SELECT format('%%I.%%I', r.schema_name, r.table_name) FROM ranked r WHERE r.newest > %s
        UNION ALL
        SELECT format('%%I.%%I', z.schema_name, z.table_name) FROM ranked r
          JOIN _timescaledb_catalog.chunk z ON z.id = r.compressed_chunk_id WHERE r.newest > %s""",
                (SAMPLED_CHUNKS, SAMPLED_CHUNKS),
            ).fetchall()
        }
    )


def _copy_target(
    target: Target,
    scratch: str,
    large: list[tuple[str, str]],
    plan: Plan | None,
    sample_rows: int,
    result: RehearsalResult,
) -> None:
    """pg_dump | pg_restore into the (empty) scratch database, large tables as samples. A database that is
    TimescaleDB already is copied as TimescaleDB documents it (same extension version, timescaledb_pre_restore() and
    post_restore()): hypertables, chunks, compression state and settings, policies (paused in the copy); the rows
    of the newest chunks only."""
    started = time.monotonic()
    conninfo, env = target.for_client_programs()
    scratch_target = target.with_dbname(scratch)
    scratch_conninfo, _ = scratch_target.for_client_programs()
    dump = [tool("pg_dump"), "-Fc", "-d", conninfo] + [
        f"--exclude-table-data={sql.Identifier(s, t).as_string(None)}" for s, t in large
    ]
    with target.connect() as conn:
        superuser = one(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        ts_version, hypertables = _hypertables(conn)
        left_out = _chunks_left_empty(conn) if hypertables and superuser else []
    # A hypertable's rows are its chunks': sampled as the newest chunks, never row by row into the copy.
    large[:] = [t for t in large if t not in hypertables]
    if hypertables and not superuser:
        raise RehearsalNotFaithful(
            f"the target holds {len(hypertables)} hypertables, and only a superuser may load TimescaleDB's catalog "
            "into a copy (timescaledb_pre_restore()): a copy made by this role would hold plain tables, so the "
            "rehearsal would prove nothing. Run the pre-flight as a superuser, or (knowing what it does not test) "
            "--no-rehearse"
        )
    if not superuser:
        # TimescaleDB's catalog is the extension's: only a superuser may load it (the copy's CREATE EXTENSION fills
        # it); a role that is not one rehearses a database without hypertables yet (the pre-flight's PF052).
        dump += [f"--exclude-table-data={schema}.*" for schema in TIMESCALEDB_SCHEMAS]
    dump += [f"--exclude-table-data={name}" for name in left_out]
    faithful = bool(hypertables)
    if faithful:
        with scratch_target.connect() as conn:
            conn.execute(sql.SQL("CREATE EXTENSION timescaledb VERSION {}").format(sql.Literal(ts_version)))
            conn.execute("SELECT timescaledb_pre_restore()")
    restore = [tool("pg_restore"), "--no-owner", "-d", scratch_conninfo]
    log.info(
        "rehearsal: copying %s into scratch database %s (%d large tables sampled%s)",
        target.describe(),
        scratch,
        len(large),
        f"; TimescaleDB {ts_version}: {len(hypertables)} hypertables, {len(left_out)} chunk tables without their rows"
        if faithful
        else "",
    )
    dumper = subprocess.Popen(dump, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=die_with_parent)
    try:
        restorer = subprocess.run(
            restore, stdin=dumper.stdout, capture_output=True, text=True, env=env, preexec_fn=die_with_parent
        )
    except BaseException:
        dumper.kill()
        dumper.wait()
        raise
    assert dumper.stdout is not None and dumper.stderr is not None  # both PIPE
    dumper.stdout.close()
    dump_err = dumper.stderr.read().decode(errors="replace")
    if dumper.wait() != 0:
        cause = classify(dump_err + "\n" + restorer.stderr)  # pg_restore's side may be what broke the pipe
        if cause is not None:
            result.cause, result.cause_error = cause, redact((restorer.stderr or dump_err).strip()[:300])
            result.failed_step = "copying the target"
            return
        raise RehearsalUnavailable(f"pg_dump for the rehearsal failed: {redact(dump_err.strip()[:500])}")
    if faithful:
        with scratch_target.connect() as conn:
            # Paused before the scheduler starts again: no policy of the copy compresses or drops its chunks.
            conn.execute("UPDATE _timescaledb_config.bgw_job SET scheduled = false WHERE id >= 1000")
            conn.execute("SELECT timescaledb_post_restore()")
    if restorer.returncode != 0:
        cause = classify(restorer.stderr)
        if cause is not None:
            result.cause, result.cause_error = (
                cause,
                f"pg_restore into the scratch copy: {redact(restorer.stderr.strip()[:300])}",
            )
            result.failed_step = "copying the target"
            return
        if faithful:
            raise RehearsalNotFaithful(
                f"the scratch copy of a TimescaleDB database is not as the target is: "
                f"pg_restore reported {redact(restorer.stderr.strip()[:500])}"
            )
        # pg_restore reports errors it went past (e.g. an extension comment); the steps will tell.
        log.warning("rehearsal: pg_restore reported: %s", redact(restorer.stderr.strip()[:500]))
    times = {h.table: h.time_column for h in plan.hypertables} if plan else {}
    with target.connect() as source, scratch_target.connect() as copy:
        for schema, table in large:
            try:
                result.sampled[f"{schema}.{table}"] = _copy_sample(
                    source, copy, schema, table, times.get(table), sample_rows
                )
            except psycopg.Error as exc:
                cause = classify(exc)
                if cause is not None:
                    result.cause, result.cause_error = cause, exc.diag.message_primary or str(exc)
                    result.failed_step = f"copying a sample of {schema}.{table}"
                    return
                log.warning("rehearsal: no sample of %s.%s (%s)", schema, table, exc.diag.message_primary)
    result.copy_seconds = time.monotonic() - started


def _apply_steps(
    conn: psycopg.Connection, pending: list[MigrationFile], plan: Plan | None, result: RehearsalResult
) -> None:
    """The pending files, then the plan's conversions, until the first failure (recorded in ``result``)."""
    for f in pending:
        t0 = time.monotonic()
        try:
            applied = apply_file(conn, f)
        except MigrationError as exc:
            result.error, result.failed_step = exc, f.label
            return
        result.steps.append((f.label, time.monotonic() - t0))
        result.statements[f.label] = [(s.line, s.seconds) for s in applied.statements]
        log.info("rehearsal: %s applied in %.2f s", f.label, time.monotonic() - t0)
    if plan is None:
        return
    has_compression = server_timescaledb(conn).has_compression
    for h in plan.hypertables:
        t0 = time.monotonic()
        try:
            with conn.transaction():
                convert_table(conn, plan.schema, h, has_compression=has_compression)
        except (ConversionError, psycopg.Error) as exc:
            result.error = (
                exc
                if isinstance(exc, ConversionError)
                else ConversionError(f"converting {plan.schema}.{h.table}: {exc}")
            )
            result.failed_step = f"convert {plan.schema}.{h.table}"
            return
        result.steps.append((f"convert {plan.schema}.{h.table}", time.monotonic() - t0))


def rehearse(
    target: Target,
    pending: list[MigrationFile],
    plan: Plan | None,
    *,
    full_copy_bytes: int = 256 << 20,
    sample_rows: int = 100_000,
) -> RehearsalResult:
    """Copy, apply the pending files and the plan's conversions, report; the copy is dropped whatever happens."""
    with target.connect() as conn:
        if not one(conn, "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user"):
            raise RehearsalUnavailable(
                "the connected role may not create databases, so no scratch copy can be made; "
                "grant CREATEDB for the rehearsal, or run it with --no-rehearse"
            )
        large = _large_tables(conn, full_copy_bytes)
        owner = one(conn, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()")
    admin_target = target.with_dbname("postgres")
    source_db = target.dbname or "db"
    result = RehearsalResult(scratch_name(source_db, datetime.now(UTC)))
    with admin_target.connect() as admin:  # open until the copy is dropped: it holds the copy's in-use lock
        drop_stale_scratch_copies(admin, source_db)
        claim_scratch_name(admin, result.scratch)
        with NewDatabase(admin_target.connect, result.scratch, owner=owner):
            _copy_target(target, result.scratch, large, plan, sample_rows, result)
            if result.cause is None:
                with target.with_dbname(result.scratch).connect() as conn:
                    result.copied_bytes = int(one(conn, "SELECT pg_database_size(current_database())") or 0)
                    _apply_steps(conn, pending, plan, result)
            if result.error is not None and result.cause is None:
                result.cause = classify(result.error)
                result.cause_error = str(result.error).splitlines()[0] if result.cause else None
    return result
