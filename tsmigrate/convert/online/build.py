"""The hypertable beside the legacy table: its shape, what it grants, its indexes, and the copy of the rows."""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta

import psycopg
from psycopg import sql

from ...db import one, regclass, row
from ...plan import HypertablePlan
from ..catalog import keep_unique_needing_an_index, keys_without_time
from ..history import chunks_between
from ..result import ConversionError
from .state import Names, PhaseHook, aside

log = logging.getLogger("tsmigrate.online")

# The online copy creates at most about this many chunks in one transaction, so the locks it holds (each chunk
# and its key indexes) are bounded by a batch, not by the history (the pre-flight's lock check counts on it).
CHUNKS_PER_TRANSACTION = 100

# -- 2. build ------------------------------------------------------------------------------------------
INDEX_HEAD = re.compile(
    r'^CREATE (UNIQUE )?INDEX (?:"(?:[^"]|"")*"|\S+) ON (?:ONLY )?'
    r'(?:(?:"(?:[^"]|"")*"|[^\s".]+)\.)?(?:"(?:[^"]|"")*"|[^\s".]+) USING '
)


Grant = tuple[sql.Composable, sql.Composable, bool]  # (privilege [ (column) ], grantee, with grant option)


def relation_grants(conn: psycopg.Connection, regclass: str) -> list[Grant]:
    """What a relation grants to others than its owner (table and column privileges)."""
    grants: list[Grant] = []
    rows = conn.execute(
        """
        SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type,
               a.is_grantable, NULL::text
          FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.oid = %s::regclass AND a.grantee <> c.relowner
        UNION ALL
        SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type,
               a.is_grantable, att.attname
          FROM pg_attribute att, aclexplode(att.attacl) a
         WHERE att.attrelid = %s::regclass AND att.attacl IS NOT NULL AND NOT att.attisdropped""",
        (regclass, regclass),
    ).fetchall()
    for grantee, privilege, grantable, column in rows:
        who: sql.Composable = sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)
        what: sql.Composable = (
            sql.SQL(privilege)
            if column is None
            else sql.SQL("{} ({})").format(sql.SQL(privilege), sql.Identifier(column))
        )
        grants.append((what, who, grantable))
    return grants


def grant(conn: psycopg.Connection, target: sql.Composable, grants: list[Grant]) -> None:
    for what, who, grantable in grants:
        conn.execute(
            sql.SQL("GRANT {} ON {} TO {}{}").format(
                what, target, who, sql.SQL(" WITH GRANT OPTION" if grantable else "")
            )
        )


def create_beside(conn: psycopg.Connection, names: Names, h: HypertablePlan, legacy_name: str) -> None:
    """The empty hypertable beside the legacy table, shaped like it, without indexes yet. ``legacy_name``: the
    name the legacy table takes at the swap (it must be free)."""
    legacy = regclass(names.schema, names.table)
    new = names.ident(names.new)
    if one(conn, "SELECT to_regclass(%s)", (regclass(names.schema, legacy_name),)) is not None:
        raise ConversionError(
            f"{names.schema}.{legacy_name} exists already; the conversion moves the legacy table "
            f"to that name: rename or drop it first"
        )
    # Identity columns get a sequence of their own: the swap sets it to where the legacy one is.
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED "
            "INCLUDING IDENTITY INCLUDING STORAGE INCLUDING COMMENTS INCLUDING COMPRESSION "
            "INCLUDING STATISTICS)"
        ).format(new, names.ident(names.table))
    )
    owner, comment, rls, force_rls, options = row(
        conn,
        "SELECT pg_get_userbyid(relowner), obj_description(oid, 'pg_class'), relrowsecurity, "
        "relforcerowsecurity, reloptions FROM pg_class WHERE oid = %s::regclass",
        (legacy,),
    )
    conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(new, sql.Identifier(owner)))
    if comment is not None:
        conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(new, sql.Literal(comment)))
    if options:  # fillfactor, autovacuum settings: LIKE does not copy them
        conn.execute(sql.SQL("ALTER TABLE {} SET ({})").format(new, sql.SQL(", ").join(map(sql.SQL, options))))
    grant(conn, new, relation_grants(conn, legacy))
    for name, permissive, roles, command, using, check in conn.execute(
        "SELECT policyname, permissive, roles, cmd, qual, with_check FROM pg_policies "
        "WHERE schemaname = %s AND tablename = %s",
        (names.schema, names.table),
    ).fetchall():
        conn.execute(
            sql.SQL("CREATE POLICY {} ON {} AS {} FOR {} TO {}{}{}").format(
                sql.Identifier(name),
                new,
                sql.SQL(permissive),
                sql.SQL(command),
                sql.SQL(", ").join(sql.SQL("PUBLIC") if r == "public" else sql.Identifier(r) for r in roles),
                sql.SQL(" USING ({})").format(sql.SQL(using)) if using else sql.SQL(""),
                sql.SQL(" WITH CHECK ({})").format(sql.SQL(check)) if check else sql.SQL(""),
            )
        )
    if rls:
        conn.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(new))
    if force_rls:
        conn.execute(sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(new))
    conn.execute(
        "SELECT create_hypertable(%s::regclass, by_range(%s, %s::interval), create_default_indexes => false)",
        (regclass(names.schema, names.new), h.time_column, h.chunk_interval.text),
    )


@dataclass(frozen=True)
class PlannedIndex:
    """An index of the new table: built under ``built``, named ``final`` at the swap (the legacy table's index of
    that name goes to ``legacy_aside``, or nothing when the legacy table has none)."""

    final: str
    legacy_aside: str
    built: str
    key: bool  # a primary key or unique index: built before the copy where the primary key is (driver.py)
    statement: sql.Composed
    # The same index built one chunk per transaction (TimescaleDB's transaction_per_chunk), outside a transaction
    # block: its locks are a chunk's, not the hypertable's. None where the definition has options or a predicate
    # the option cannot be added to safely, or for a constraint.
    per_chunk: sql.Composed | None = None
    primary: bool = False  # a PRIMARY KEY constraint (history.key_before_copy: its cost on a hypertable's chunks)

    def rename(self) -> list[str]:
        return [self.final, self.legacy_aside, self.built]


def planned_indexes(conn: psycopg.Connection, names: Names, h: HypertablePlan) -> list[PlannedIndex]:
    """The legacy table's indexes for the new one, keys with the time column added, plus the keep_unique lookups
    that no other index serves (one whose first column is the keep_unique column finds its rows as well: the key
    ``(id)`` rebuilt as ``(id, ts)`` does, so a third index on every chunk would cost its build and its upkeep
    for nothing)."""
    legacy = regclass(names.schema, names.table)
    new = names.ident(names.new)
    planned: list[PlannedIndex] = []
    rebuilt = {k.name: k for k in keys_without_time(conn, legacy, h.time_column)}
    for index_name, index_def, constraint, kind, columns, unique, plain in conn.execute(
        """
            SELECT i.relname, pg_get_indexdef(i.oid), c.conname, c.contype,
                   array(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(attnum, n)
                          JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum ORDER BY k.n),
                   x.indisunique, i.reloptions IS NULL AND x.indpred IS NULL
              FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
              LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.contype IN ('p', 'u')
             WHERE x.indrelid = %s::regclass ORDER BY i.relname""",
        (legacy,),
    ).fetchall():
        built = aside(index_name, "_tsm")
        key = rebuilt.get(constraint or index_name)
        per_chunk = None
        if constraint is not None:
            cols = list(columns) + ([h.time_column] if key is not None else [])
            statement = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} ({})").format(
                new,
                sql.Identifier(built),
                sql.SQL("PRIMARY KEY" if kind == "p" else "UNIQUE"),
                sql.SQL(", ").join(map(sql.Identifier, cols)),
            )
        elif key is not None:
            statement = sql.SQL("CREATE UNIQUE INDEX {} ON {} ({})").format(
                sql.Identifier(built), new, sql.SQL(", ").join(map(sql.Identifier, (*columns, h.time_column)))
            )
        else:
            head = INDEX_HEAD.match(index_def)
            if head is None:
                raise ConversionError(
                    f"{names.schema}.{names.table}: cannot read the definition of index {index_name} "
                    f"({index_def[:80]}); rewrite it as a plain CREATE INDEX, then run again"
                )
            statement = sql.SQL("CREATE {}INDEX {} ON {} USING {}").format(
                sql.SQL(head.group(1) or ""), sql.Identifier(built), new, sql.SQL(index_def[head.end() :])
            )
            if plain and not unique:  # the definition ends with its column list: the option goes after it
                per_chunk = sql.SQL("{} WITH (timescaledb.transaction_per_chunk)").format(statement)
        planned.append(
            PlannedIndex(
                index_name, aside(index_name, "_legacy"), built, unique, statement, per_chunk, primary=kind == "p"
            )
        )
    for column in keep_unique_needing_an_index(conn, legacy, h.keep_unique):
        final = f"{h.table}_{column}_idx"
        if not any(p.final == final for p in planned):  # nothing of the legacy table holds the name
            built = aside(final, "_tsm")
            statement = sql.SQL("CREATE INDEX {} ON {} ({})").format(sql.Identifier(built), new, sql.Identifier(column))
            planned.append(
                PlannedIndex(
                    final,
                    "",
                    built,
                    False,
                    statement,
                    sql.SQL("{} WITH (timescaledb.transaction_per_chunk)").format(statement),
                )
            )
    return planned


def create_indexes(conn: psycopg.Connection, planned: list[PlannedIndex]) -> None:
    for index in planned:
        conn.execute(index.statement)


def create_indexes_per_chunk(conn: psycopg.Connection, planned: list[PlannedIndex]) -> None:
    """On an autocommit connection: each index built one chunk per transaction where it can be, so the locks held
    at once are a chunk's (an index that cannot be built so is built in one transaction)."""
    for index in planned:
        if index.per_chunk is not None:
            conn.execute(index.per_chunk)
        else:
            with conn.transaction():
                conn.execute(index.statement)


def create_indexes_in_parallel(
    connect: Callable[[], psycopg.Connection], planned: list[PlannedIndex], jobs: int
) -> None:
    """:func:`create_indexes_per_chunk`, the indexes spread over ``jobs`` connections of ``connect`` (autocommit):
    the builds of different indexes share no lock that excludes another (each takes SHARE on a chunk at a time)."""
    if jobs <= 1 or len(planned) <= 1:
        with connect() as conn:
            create_indexes_per_chunk(conn, planned)
        return
    queue, lock = list(reversed(planned)), threading.Lock()

    def work() -> None:
        with connect() as conn:
            while True:
                with lock:
                    if not queue:
                        return
                    index = queue.pop()
                create_indexes_per_chunk(conn, [index])

    with ThreadPoolExecutor(max_workers=min(jobs, len(planned)), thread_name_prefix="tsmigrate-index") as pool:
        for future in [pool.submit(work) for _ in range(min(jobs, len(planned)))]:
            future.result()


def add_foreign_keys(conn: psycopg.Connection, names: Names) -> int:
    """The legacy table's foreign keys on the new one, added after the copy (one check of all rows)."""
    keys = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
        "AND contype = 'f' ORDER BY conname",
        (regclass(names.schema, names.table),),
    ).fetchall()
    for name, definition in keys:
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                names.ident(names.new), sql.Identifier(name), sql.SQL(definition)
            )
        )
    return len(keys)


# -- 3. copy -------------------------------------------------------------------------------------------
def copy(
    connect: Callable[[], psycopg.Connection] | None,
    names: Names,
    column_names: list[str],
    *,
    workers: int,
    batch_rows: int,
    own_xids: set[int],
    on_phase: PhaseHook,
    within: psycopg.Connection | None = None,
    time_column: str | None = None,
    chunk_seconds: float = 0.0,
    skip_duplicates: bool = True,
) -> int:
    """Copy the legacy heap into the hypertable, block range by block range: on ``workers`` connections of
    ``connect``, each range its own transaction; or, ``within`` a connection's open transaction, one after the
    other (the table locked: nothing else writes, and the new table has no index yet).

    On connections of ``connect`` the application writes meanwhile, so a row it updates may be met twice (its old
    version in a range copied before the update committed, its new one in a later range). With
    ``skip_duplicates`` the keys are on the hypertable already and ``ON CONFLICT DO NOTHING`` skips the second;
    without it (no key yet: a plain INSERT, as ``within``, which costs no index upkeep row by row) both are
    copied, and the caller must replay every change logged by the end of the copy before it builds the keys
    (driver.convert_online): every key met twice is in the change log.

    With ``time_column`` (on connections of ``connect``), a range whose rows span more than
    CHUNKS_PER_TRANSACTION chunks of ``chunk_seconds`` is copied in windows of time of that many chunks, each its
    own transaction: the chunks one transaction creates, and so the locks it holds, are bounded by a batch."""
    if within is not None:
        pages, tuples = row(
            within,
            "SELECT relpages, reltuples FROM pg_class WHERE oid = %s::regclass",
            (regclass(names.schema, names.table),),
        )
    else:
        assert connect is not None, "copy() needs connect or within"
        with connect() as conn:
            pages, tuples = row(
                conn,
                "SELECT relpages, reltuples FROM pg_class WHERE oid = %s::regclass",
                (regclass(names.schema, names.table),),
            )
    if pages <= 0 or tuples <= 0:  # never analyzed or vacuumed: guess from the size
        opened = nullcontext(within) if within is not None else connect()  # type: ignore[misc]
        with opened as conn:
            pages = one(
                conn,
                "SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int",
                (regclass(names.schema, names.table),),
            )
        tuples = max(1, pages * 100)
    per_batch = max(1, int(pages * batch_rows / tuples))
    ranges: list[tuple[int, int | None]] = [(start, start + per_batch) for start in range(0, max(pages, 1), per_batch)]
    ranges[-1] = (ranges[-1][0], None)  # the last range is open: the table may have grown since
    total = max(int(tuples), 1)
    copied, lock = 0, threading.Lock()
    started, last_log = time.monotonic(), [0.0]
    columns = sql.SQL(", ").join(map(sql.Identifier, column_names))
    queue = list(reversed(ranges))

    def in_range(high: int | None) -> sql.Composable:
        return sql.SQL("ctid >= %s::tid{}").format(sql.SQL(" AND ctid < %s::tid") if high is not None else sql.SQL(""))

    def range_params(low: int, high: int | None) -> list[str]:
        return [f"({low},0)"] + ([f"({high},0)"] if high is not None else [])

    def one_range(conn: psycopg.Connection, low: int, high: int | None, window: tuple = (None, None)) -> int:
        # A row the application updates meanwhile may be met twice (its new version in a later block): the second
        # is skipped here where the keys exist, else copied too; the replay of its key makes it what it is now.
        since, until = window
        column = sql.Identifier(time_column) if time_column else None
        conditions = [in_range(high)]
        params: list = range_params(low, high)
        if since is not None:
            conditions.append(sql.SQL("{} >= %s").format(column))
            params.append(since)
        if until is not None:  # the first window also takes rows without a time (the replay deals with them)
            conditions.append(sql.SQL("({t} < %s OR {t} IS NULL)" if since is None else "{t} < %s").format(t=column))
            params.append(until)
        return conn.execute(
            sql.SQL(
                "INSERT INTO {new} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM {legacy} WHERE {where}{conflict}"
            ).format(
                new=names.ident(names.new),
                cols=columns,
                legacy=names.ident(names.table),
                where=sql.SQL(" AND ").join(conditions),
                conflict=sql.SQL(" ON CONFLICT DO NOTHING" if within is None and skip_duplicates else ""),
            ),
            params,
        ).rowcount

    def windows(conn: psycopg.Connection, low: int, high: int | None) -> list[tuple]:
        """The windows of time the range is copied in: one, unless its rows span more than a batch of chunks."""
        if time_column is None or chunk_seconds <= 0:
            return [(None, None)]
        first, last = row(
            conn,
            sql.SQL("SELECT min({t}), max({t}) FROM {legacy} WHERE {where}").format(
                t=sql.Identifier(time_column), legacy=names.ident(names.table), where=in_range(high)
            ),
            range_params(low, high),
        )
        if first is None or chunks_between(first, last, chunk_seconds) <= CHUNKS_PER_TRANSACTION:
            return [(None, None)]
        step = timedelta(seconds=chunk_seconds * (CHUNKS_PER_TRANSACTION - 1))
        if first + step <= first:  # a date column with a step under a day: dates cannot split it
            return [(None, None)]
        bounds: list = []
        while (first + step * (len(bounds) + 1)) <= last:
            bounds.append(first + step * (len(bounds) + 1))
        edges = [None, *bounds, None]
        return list(itertools.pairwise(edges))

    def progress(rows: int, last: bool = False) -> None:
        nonlocal copied
        copied += rows
        now = time.monotonic()
        rate = copied / (now - started) if now > started else 0.0
        if last:
            log.info("%s.%s: all %d rows copied into chunks (%.0f rows/s)", names.schema, names.table, copied, rate)
        elif now - last_log[0] >= 5:
            log.info(
                "%s.%s: %d of about %d rows copied into chunks (%.0f rows/s, about %.0f s left%s)",
                names.schema,
                names.table,
                copied,
                total,
                rate,
                max(0.0, (total - copied) / rate) if rate else 0,
                "" if within is not None else "; the application keeps writing",
            )
            last_log[0] = now

    def work() -> None:
        assert connect is not None
        with connect() as conn:
            while True:
                with lock:
                    if not queue:
                        return
                    low, high = queue.pop()
                rows, xids = 0, []
                for window in windows(conn, low, high):
                    with conn.transaction():
                        rows += one_range(conn, low, high, window)
                        xids.append(int(one(conn, "SELECT pg_current_xact_id()::text")))
                on_phase("copying", conn)
                with lock:
                    own_xids.update(xids)
                    progress(rows)

    if within is not None:
        for i, (low, high) in enumerate(ranges):
            progress(one_range(within, low, high), last=i == len(ranges) - 1)
        return copied
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tsmigrate-copy") as pool:
        for future in [pool.submit(work) for _ in range(workers)]:
            future.result()
    return copied
