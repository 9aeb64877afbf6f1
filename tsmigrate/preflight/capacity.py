"""Pre-flight: does the server have room for the run and for the converted database? Computed from the plan and
the live data, against the server's settings, before anything changes.

- The lock table (``max_locks_per_transaction``). Every chunk is a table with its own indexes. The offline
  conversion creates all chunks of a table and builds their indexes in one transaction, holding a lock on each;
  a read of a whole hypertable (the post-flight's fingerprints, the online conversion's replay and comparison,
  the application's queries without a time bound) locks every chunk and every index of it; ``pg_dump`` locks
  every table and chunk of the database. Each of these is one transaction, and must fit.
- TimescaleDB's background workers. Each database with the extension runs a scheduler in a worker of
  ``timescaledb.max_background_workers``; each job that runs takes one more. Timescale's rule: workers at least
  databases plus concurrent jobs; ``max_worker_processes`` at least that plus ``max_parallel_workers`` plus one
  for the launcher. A scheduler or job without a slot does not start ("no available background worker slots"),
  and the policies the run adds never run.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import date, datetime

import psycopg
from psycopg import sql

from ..convert.catalog import keep_unique_needing_an_index
from ..convert.history import chunks_between, key_before_copy, time_range
from ..convert.online.build import CHUNKS_PER_TRANSACTION
from ..convert.online.state import chooses_online
from ..db import display_name, is_hypertable, one, regclass, row
from ..findings import Finding
from ..plan import HypertablePlan, Plan
from ..target import Target, TargetError
from ..timescale import APACHE, server_timescaledb
from .checks import finding

log = logging.getLogger(__name__)

# Locks a transaction holds, counted in pg_locks on PostgreSQL 15 with TimescaleDB 2.19 (rounded up; the test
# that converts a table of thousands of chunks on a small lock table keeps them honest):
LOCKS_PER_NEW_CHUNK = 10  # a chunk created: the table, its constraint, toast table and index, catalog objects
LOCKS_PER_CHUNK_INDEX = 2  # an index built on each chunk: the index and the lock on the chunk that builds it
LOCKS_PER_CHUNK_KEY = 3  # a primary key or unique constraint on each chunk: index, constraint, chunk
LOCKS_OF_THE_STEP = 64  # the step's own: ledger, sequences, views, catalog

SCHEDULER_BACKEND = "TimescaleDB Background Worker Scheduler"


# -- the history of a table ------------------------------------------------------------------------------
@dataclass(frozen=True)
class History:
    """What the conversion of one planned table will create, estimated from its time column's range."""

    table: str  # schema.table
    first: datetime | date | None
    last: datetime | date | None
    source: str  # how the range was read ("index x", "statistics of the last ANALYZE")
    chunk_interval: str
    chunks: int | None  # at most this many chunks (None: the range is unknown)
    indexes: int  # indexes the hypertable gets (keys included)
    keys: int  # of those, primary keys and unique constraints
    online: bool
    # The online path builds the keys once the rows are in, in one transaction (history.key_before_copy: few
    # chunks); the rows unknown, counted as if it did.
    keys_after_copy: bool = False

    @property
    def offline_locks(self) -> int:
        """The offline conversion's transaction: every chunk created, every chunk index built."""
        plain = self.indexes - self.keys
        return (self.chunks or 0) * (
            LOCKS_PER_NEW_CHUNK + LOCKS_PER_CHUNK_KEY * self.keys + LOCKS_PER_CHUNK_INDEX * plain
        ) + LOCKS_OF_THE_STEP

    @property
    def read_locks(self) -> int:
        """One statement that reads the whole hypertable: every chunk and each of its indexes."""
        return ((self.chunks or 0) + 1) * (1 + self.indexes) + LOCKS_OF_THE_STEP

    @property
    def online_batch_locks(self) -> int:
        """The online copy's transaction: at most CHUNKS_PER_TRANSACTION + 1 chunks created, keys built on each."""
        return (min(self.chunks or 0, CHUNKS_PER_TRANSACTION + 1)) * (
            LOCKS_PER_NEW_CHUNK + LOCKS_PER_CHUNK_KEY * self.keys
        ) + LOCKS_OF_THE_STEP

    @property
    def online_key_locks(self) -> int:
        """The online path's key build after the copy: the keys on every chunk, in one transaction."""
        if not self.keys_after_copy:
            return 0
        return (self.chunks or 0) * LOCKS_PER_CHUNK_KEY * self.keys + LOCKS_OF_THE_STEP

    @property
    def online_locks(self) -> int:
        """The most locks one transaction of the online conversion holds."""
        return max(self.online_batch_locks, self.read_locks, self.online_key_locks)

    def conversion_locks(self) -> int:
        """The most locks one transaction of this table's conversion holds, on the path it takes."""
        if self.online:
            return self.online_locks
        return self.offline_locks


def _index_counts(conn: psycopg.Connection, schema: str, table: str) -> tuple[int, int]:
    """(indexes, of which unique) of a table."""
    total, unique = row(
        conn,
        "SELECT count(*), count(*) FILTER (WHERE indisunique) FROM pg_index WHERE indrelid = %s::regclass",
        (regclass(schema, table),),
    )
    return int(total), int(unique)


def table_history(conn: psycopg.Connection, plan: Plan, h: HypertablePlan) -> History | None:
    """The conversion of a planned table that is a plain table now; None for one that is missing or converted."""
    schema = plan.schema
    if one(conn, "SELECT to_regclass(%s)", (regclass(schema, h.table),)) is None or is_hypertable(
        conn, schema, h.table
    ):
        return None
    readable = True
    try:
        first, last, source = time_range(conn, schema, h.table, h.time_column)
    except psycopg.errors.InsufficientPrivilege as exc:  # the privileges check names the grant
        first, last, source, readable = None, None, f"this role may not read it ({exc.diag.message_primary})", False
    indexes, keys = _index_counts(conn, schema, h.table)
    indexes += sum(
        1
        for c in keep_unique_needing_an_index(conn, regclass(schema, h.table), h.keep_unique)
        if one(conn, "SELECT to_regclass(%s)", (regclass(schema, f"{h.table}_{c}_idx"),)) is None
    )
    chunks = chunks_between(first, last, h.chunk_interval.seconds) if first is not None else None
    if (
        first is None
        and readable
        and one(conn, sql.SQL("SELECT NOT EXISTS (SELECT FROM {})").format(sql.Identifier(schema, h.table)))
    ):
        chunks, source = 0, "the table is empty"
    rows = one(  # by name through the catalog, as chooses_online: no USAGE on the schema needed
        conn,
        "SELECT c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND c.relkind = 'r'",
        (schema, h.table),
    )
    keys_after = chunks is not None and (rows is None or rows < 0 or not key_before_copy(chunks, rows))
    return History(
        display_name(schema, h.table),
        first,
        last,
        source,
        h.chunk_interval.text,
        chunks,
        indexes,
        keys,
        chooses_online(conn, schema, h, plan.online_above_rows),
        keys_after,
    )


# -- the lock table --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LockTable:
    """The shared lock table: room for max_locks_per_transaction objects per server process or prepared transaction
    (PostgreSQL's documentation; the server processes are the connection slots, autovacuum workers, background
    worker slots and WAL senders, and one more for the autovacuum launcher)."""

    max_locks_per_transaction: int
    processes: dict[str, int]  # setting -> value, of the settings that count server processes
    max_prepared_transactions: int

    @property
    def lock_owners(self) -> int:
        """The server processes and prepared transactions the lock table is sized for."""
        return sum(self.processes.values()) + 1 + self.max_prepared_transactions

    @property
    def slots(self) -> int:
        return self.max_locks_per_transaction * self.lock_owners

    def describe(self) -> str:
        processes = " + ".join(f"{k} {v}" for k, v in self.processes.items())
        return (
            f"max_locks_per_transaction {self.max_locks_per_transaction} × ({processes} + 1 + "
            f"max_prepared_transactions {self.max_prepared_transactions}) = {self.slots} locks"
        )

    def setting_for(self, locks: int) -> int:
        """The max_locks_per_transaction that holds ``locks``, rounded up to a multiple of 64."""
        per_slot = math.ceil(locks / self.lock_owners)
        return max(self.max_locks_per_transaction + 1, 64 * math.ceil(per_slot / 64))

    def fix(self, locks: int) -> str:
        return f"`ALTER SYSTEM SET max_locks_per_transaction = {self.setting_for(locks)};` then restart the server"


PROCESS_SETTINGS = ("max_connections", "autovacuum_max_workers", "max_worker_processes", "max_wal_senders")


def lock_table_of(conn: psycopg.Connection) -> LockTable:
    values: dict[str, int] = dict(
        conn.execute(
            "SELECT name, setting::int FROM pg_settings WHERE name = ANY(%s)",
            (["max_locks_per_transaction", "max_prepared_transactions", *PROCESS_SETTINGS],),
        ).fetchall()
    )
    return LockTable(
        values["max_locks_per_transaction"],
        {k: values[k] for k in PROCESS_SETTINGS},
        values["max_prepared_transactions"],
    )


@dataclass(frozen=True)
class Hypertable:
    """A hypertable the database holds now."""

    name: str
    chunks: int
    indexes: int

    @property
    def read_locks(self) -> int:
        return (self.chunks + 1) * (1 + self.indexes) + LOCKS_OF_THE_STEP


def hypertables_now(conn: psycopg.Connection) -> list[Hypertable]:
    if one(conn, "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'") is None:
        return []
    rows = conn.execute("""
        SELECT h.hypertable_schema, h.hypertable_name, h.num_chunks,
               (SELECT count(*) FROM pg_index x
                 WHERE x.indrelid = format('%I.%I', h.hypertable_schema, h.hypertable_name)::regclass)
          FROM timescaledb_information.hypertables h ORDER BY 1, 2""").fetchall()
    return [Hypertable(display_name(s, t), int(c), int(i)) for s, t, c, i in rows]


def relations_pg_dump_locks(conn: psycopg.Connection) -> int:
    """The tables pg_dump locks in its one transaction: every table, chunk, materialized view and foreign table
    outside the system schemas."""
    return int(
        one(
            conn,
            """
        SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%'""",
        )
    )


@dataclass(frozen=True)
class LockNeeds:
    """What the run and the converted database will ask of the lock table."""

    table: LockTable
    histories: list[History]
    hypertables: list[Hypertable]
    pg_dump_relations_now: int

    @property
    def new_chunks(self) -> int:
        return sum(h.chunks or 0 for h in self.histories)

    @property
    def pg_dump(self) -> int:
        """pg_dump of the converted database: every relation of today plus the chunks the conversions create."""
        return self.pg_dump_relations_now + self.new_chunks + LOCKS_OF_THE_STEP

    def largest_read(self) -> tuple[str, int] | None:
        """(hypertable, locks) of the largest read of a whole hypertable, after the run."""
        reads = [(h.name, h.read_locks) for h in self.hypertables]
        reads += [(h.table, h.read_locks) for h in self.histories if h.chunks is not None]
        return max(reads, key=lambda r: r[1], default=None)


def lock_needs(conn: psycopg.Connection, plan: Plan) -> LockNeeds:
    histories = [h for h in (table_history(conn, plan, e) for e in plan.hypertables) if h is not None]
    return LockNeeds(lock_table_of(conn), histories, hypertables_now(conn), relations_pg_dump_locks(conn))


def lock_table(conn: psycopg.Connection, plan: Plan | None) -> list[Finding]:
    """PF060 for each offline conversion that would run out of locks; PF061 when a read of the largest hypertable
    or pg_dump of the converted database would; PF063 for a table whose history cannot be read cheaply."""
    if plan is None:
        return []
    needs = lock_needs(conn, plan)
    table = needs.table
    found: list[Finding] = []
    read = needs.largest_read()
    database_need = max(needs.pg_dump, read[1] if read else 0)
    for h in needs.histories:
        if h.chunks is None:
            found.append(
                finding(
                    "PF063",
                    f"{h.table}: cannot count the chunks its conversion creates: {h.source}. "
                    "The lock table's check leaves the table out",
                    table=h.table,
                )
            )
            continue
        log.info(
            "%s: %s to %s (%s): at most %d chunks of %s, %d indexes; %s conversion needs %d locks in one transaction",
            h.table,
            h.first,
            h.last,
            h.source,
            h.chunks,
            h.chunk_interval,
            h.indexes,
            "the online" if h.online else "the offline",
            h.conversion_locks(),
        )
        if not h.online and h.offline_locks > table.slots:
            online_fits = h.online_locks <= table.slots
            found.append(
                finding(
                    "PF060",
                    (
                        f"{h.table}: the offline conversion creates up to {h.chunks} chunks (its rows span "
                        f"{h.first} to {h.last}: {h.source}; chunk interval {h.chunk_interval}) and builds "
                        f"{h.indexes} indexes on each, in one transaction: about {h.offline_locks} locks. The lock "
                        f"table holds {table.describe()}: the conversion would fail with `out of shared memory` after "
                        f"copying every row. Fix: {table.fix(max(h.offline_locks, database_need))}"
                        + (
                            f"; or set `online = true` under [hypertables.{h.table.split('.')[-1]}] in plan.toml "
                            "(the online conversion holds at most about "
                            f"{h.online_locks} locks at once)"
                            if online_fits
                            else ""
                        )
                    ),
                    table=h.table,
                )
            )
    if database_need > table.slots:
        what = []
        if read and read[1] > table.slots:
            chunks = next(
                (x.chunks for x in needs.hypertables if x.name == read[0]),
                next((x.chunks for x in needs.histories if x.table == read[0]), 0),
            )
            what.append(
                f"a read of all of {read[0]} (up to {chunks} chunks, each with its indexes: the "
                "post-flight's fingerprint, the application's queries without a time bound) needs about "
                f"{read[1]} locks"
            )
        if needs.pg_dump > table.slots:
            what.append(
                f"pg_dump of the converted database locks {needs.pg_dump_relations_now} tables and "
                f"{needs.new_chunks} new chunks: about {needs.pg_dump} locks"
            )
        found.append(
            finding(
                "PF061",
                f"After the conversion, {'; '.join(what)}. The lock table holds "
                f"{table.describe()}. Fix: {table.fix(database_need)}",
                table=read[0] if read else None,
            )
        )
    return found


# -- background workers ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TimescaleDatabases:
    """The databases of the server that run a TimescaleDB scheduler, and how each was seen."""

    checked: dict[str, int]  # connected: database -> its scheduled jobs of its own (job_id >= 1000)
    running: list[str]  # not connectable, but a scheduler runs in it (pg_stat_activity)
    unknown: list[str]  # neither: not connectable and no scheduler seen (one may lack a slot)

    @property
    def names(self) -> list[str]:
        return sorted(set(self.checked) | set(self.running))

    def describe(self) -> str:
        parts = [f"{len(self.checked)} found by connecting ({', '.join(sorted(self.checked)) or 'none'})"]
        if self.running:
            parts.append(
                f"{len(self.running)} seen running a scheduler in pg_stat_activity (its backend_type or "
                f"application_name '{SCHEDULER_BACKEND}'; this role may not connect to it) "
                f"({', '.join(self.running)})"
            )
        if self.unknown:
            parts.append(
                f"{len(self.unknown)} this role may not connect to and without a running scheduler, not "
                f"counted ({', '.join(self.unknown)})"
            )
        return "; ".join(parts)


def timescale_databases(conn: psycopg.Connection, target: Target | None) -> TimescaleDatabases:
    """Each database of the server, connected to where the role may (pg_extension says whether TimescaleDB is
    created, timescaledb_information.jobs its jobs); else judged by a TimescaleDB scheduler running in it
    (pg_stat_activity: backend_type, or the application_name every role sees)."""
    databases = [
        r[0]
        for r in conn.execute(
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname"
        ).fetchall()
    ]
    # backend_type shows only to roles with pg_read_all_stats; the scheduler's application_name shows to every role.
    running = {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT datname FROM pg_stat_activity WHERE datname IS NOT NULL "
            "AND (backend_type = %s OR application_name = %s)",
            (SCHEDULER_BACKEND, SCHEDULER_BACKEND),
        ).fetchall()
    }
    current = one(conn, "SELECT current_database()")
    checked: dict[str, int] = {}
    seen_running: list[str] = []
    unknown: list[str] = []
    for name in databases:
        try:
            other = conn if name == current or target is None else target.with_dbname(name).connect(connect_timeout=5)
        except TargetError:
            (seen_running if name in running else unknown).append(name)
            continue
        try:
            if one(other, "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'") is not None:
                checked[name] = int(
                    one(other, "SELECT count(*) FROM timescaledb_information.jobs WHERE scheduled AND job_id >= 1000")
                    or 0
                )
        except psycopg.Error:
            (seen_running if name in running else unknown).append(name)
        finally:
            if other is not conn:
                other.close()
    return TimescaleDatabases(checked, seen_running, [u for u in unknown if u not in running])


@dataclass(frozen=True)
class WorkerSettings:
    max_background_workers: int
    max_worker_processes: int
    max_parallel_workers: int


def worker_settings(conn: psycopg.Connection) -> WorkerSettings | None:
    values: dict[str, int] = dict(
        conn.execute(
            "SELECT name, setting::int FROM pg_settings WHERE name IN "
            "('timescaledb.max_background_workers', 'max_worker_processes', "
            "'max_parallel_workers')"
        ).fetchall()
    )
    if "timescaledb.max_background_workers" not in values:  # TimescaleDB not loaded: PF002/PF003 say so
        return None
    return WorkerSettings(
        values["timescaledb.max_background_workers"], values["max_worker_processes"], values["max_parallel_workers"]
    )


def plan_jobs(conn: psycopg.Connection, plan: Plan) -> int:
    """The policy jobs the run adds: a compression and a retention policy per table that asks for them, unless the
    edition has none (the apache edition records them as skipped). An edition this role cannot tell counts them."""
    try:
        if server_timescaledb(conn).edition == APACHE:
            return 0
    except psycopg.Error:  # reading shared_preload_libraries needs pg_read_all_settings
        pass
    return sum(
        int(h.compress_after is not None) + int(h.drop_after is not None)
        for h in plan.hypertables
        if not is_hypertable(conn, plan.schema, h.table)
    )


def background_workers(
    conn: psycopg.Connection,
    plan: Plan | None,
    target: Target | None,
    *,
    rehearse: bool = True,
    keep_failed: bool = True,
) -> list[Finding]:
    """PF062 when timescaledb.max_background_workers or max_worker_processes cannot serve the TimescaleDB
    databases of the server (this one included once converted, and the copy the rehearsal or a failed run makes)
    and the jobs that may run at once (each database's own, and the plan's policies)."""
    settings = worker_settings(conn)
    if plan is None or settings is None:
        return []
    dbs = timescale_databases(conn, target)
    current = one(conn, "SELECT current_database()")
    databases = len(dbs.names) + (0 if current in dbs.names else 1)
    copies = 1 if (rehearse or keep_failed) else 0
    jobs = sum(dbs.checked.values()) + plan_jobs(conn, plan)
    workers_needed = databases + copies + jobs
    processes_needed = max(workers_needed, settings.max_background_workers) + settings.max_parallel_workers + 1
    counted = (
        f"{databases} TimescaleDB database{'s' if databases != 1 else ''} once {current} is converted "
        f"({dbs.describe()})"
        + (
            ", 1 copy of it ("
            + "; ".join(
                (["the rehearsal's scratch copy"] if rehearse else [])
                + (["the database a failed run keeps renamed, unless --drop-failed"] if keep_failed else [])
            )
            + ")"
            if copies
            else ""
        )
        + f", {jobs} jobs that may run at once (the plan's policies and the databases' own)"
    )
    log.info(
        "background workers: %s: %d needed; timescaledb.max_background_workers %d, max_worker_processes %d",
        counted,
        workers_needed,
        settings.max_background_workers,
        settings.max_worker_processes,
    )
    short, fixes = [], []
    if settings.max_background_workers < workers_needed:
        short.append(
            f"timescaledb.max_background_workers is {settings.max_background_workers}, needs at least {workers_needed}"
        )
        fixes.append(f"`ALTER SYSTEM SET timescaledb.max_background_workers = {workers_needed};`")
    if settings.max_worker_processes < processes_needed:
        short.append(
            f"max_worker_processes is {settings.max_worker_processes}, needs at least {processes_needed} "
            f"(the TimescaleDB workers, max_parallel_workers {settings.max_parallel_workers}, and 1 for "
            "TimescaleDB's launcher)"
        )
        fixes.append(f"`ALTER SYSTEM SET max_worker_processes = {processes_needed};`")
    if not short:
        return []
    return [
        finding(
            "PF062",
            f"Background workers: {counted}: {'; '.join(short)}. A scheduler or job without a slot "
            "does not start ('no available background worker slots' in the server log), and the "
            f"policies stay unscheduled. Fix: {' '.join(fixes)} then restart the server",
        )
    ]
