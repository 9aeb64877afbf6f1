"""Online conversion: the hypertable is built beside the legacy table while the application writes, then swapped in.

1. Capture: a trigger on the legacy table records the key of every row inserted, updated or deleted (and a
   TRUNCATE) in ``tsmigrate."<table>_changes"``; its function is SECURITY DEFINER, so the application's
   roles need no grant.
2. Build: an empty table like the legacy one (columns, defaults on the same sequences, CHECK and NOT NULL,
   owner, grants, comments, row security), made a hypertable; keys that leave out the time column get it;
   the legacy indexes are copied (under names of their own until the swap).
3. Copy: the legacy heap in block ranges, each range its own short transaction, on several connections.
   Nothing is locked beyond what a reader takes; a killed copy leaves only our own objects, which the next
   attempt drops.
4. Catch up: the keys changed meanwhile are replayed (delete by key, copy the row as it is now) until the
   backlog is small.
5. Swap: one short transaction under a short lock timeout, retried: lock the legacy table, replay the rest,
   rename both tables and their indexes, move sequence ownership, the application's triggers and the
   dependent views to the new table, record the step. Application statements that waited for the lock
   resolve the name again and land in the hypertable.
6. After: a trigger on the hypertable keeps recording the keys the application changes, so :func:`swap_back`
   can undo the conversion in seconds, and :func:`verify` compares the legacy table (now still) with the
   hypertable row by row. :func:`drop_legacy` ends it once the post-flight passed.

The state of each conversion is a row of ``tsmigrate.online_conversions``.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import psycopg
from psycopg import sql

from .config import HypertablePlan
from .conversion import (ConversionError, ConversionResult, _fill_nulls, _insertable_columns, _one,
                         apply_policies, keys_without_time, lock_holders, primary_key_columns,
                         refuse_what_timescaledb_cannot_keep)
from .fingerprint import OWN_SCHEMA

log = logging.getLogger(__name__)

STATE_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {OWN_SCHEMA};
CREATE TABLE IF NOT EXISTS {OWN_SCHEMA}.online_conversions (
    table_schema     text NOT NULL,
    table_name       text NOT NULL,
    new_name         text NOT NULL,       -- the hypertable while it is built
    legacy_name      text NOT NULL,       -- the legacy table's name after the swap
    state            text NOT NULL,       -- building, swapped, swapped back
    replayed_through bigint NOT NULL DEFAULT 0,
    started_at       timestamptz NOT NULL DEFAULT now(),
    swapped_at       timestamptz,
    swap_ms          double precision,
    index_renames    jsonb NOT NULL DEFAULT '[]',   -- [[legacy index, its name aside, new index's name while built]]
    PRIMARY KEY (table_schema, table_name)
);
"""

CAPTURE_TRIGGER = "tsmigrate_capture"
CAPTURE_BACK_TRIGGER = "tsmigrate_capture_back"
PHASE_COPY, PHASE_AFTER_SWAP = 0, 1

# Called with the phase's name and the connection doing it: "capturing", "copying" (after each block range),
# "caught up", "swapping" (inside the swap transaction, the table locked). The fault tests end sessions there.
PhaseHook = Callable[[str, psycopg.Connection], None]


def _no_hook(phase: str, conn: psycopg.Connection) -> None:
    pass


def _aside(name: str, suffix: str) -> str:
    return name[:63 - len(suffix)] + suffix


def _regclass(schema: str, table: str) -> str:
    return f"{sql.Identifier(schema).as_string(None)}.{sql.Identifier(table).as_string(None)}"


@dataclass(frozen=True)
class Names:
    schema: str
    table: str

    @property
    def new(self) -> str:
        return _aside(self.table, "_tsm_new")

    @property
    def legacy(self) -> str:
        return _aside(self.table, "_legacy")

    @property
    def changes(self) -> sql.Identifier:
        return sql.Identifier(OWN_SCHEMA, _aside(self.table, "_changes"))

    @property
    def capture_function(self) -> sql.Identifier:
        return sql.Identifier(OWN_SCHEMA, _aside(self.table, "_capture"))

    def ident(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)


@dataclass
class OnlineReport:
    """What the online path did, for the step's details and the benchmark."""
    copied: int = 0
    replayed: int = 0
    rounds: int = 0
    swap_attempts: int = 0
    swap_seconds: float = 0.0       # the window in which the application's statements on the table wait
    copy_seconds: float = 0.0
    verified_rows: int = 0
    legacy_table: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


# -- which tables -------------------------------------------------------------------------------------
def chooses_online(conn: psycopg.Connection, schema: str, h: HypertablePlan, above_rows: int) -> bool:
    """Whether the table converts online: as its plan entry says, else when it holds more than ``above_rows``
    rows (the planner's estimate: no scan). A table that does not exist yet or is a hypertable already does not."""
    row = conn.execute("""SELECT c.reltuples, EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
                                 AND to_regclass('_timescaledb_catalog.hypertable') IS NOT NULL
                            FROM pg_class c WHERE c.oid = to_regclass(%s) AND c.relkind = 'r'""",
                       (_regclass(schema, h.table),)).fetchone()
    if row is None:
        return False
    if row[1] and _one(conn, "SELECT 1 FROM _timescaledb_catalog.hypertable WHERE schema_name = %s AND table_name = %s",
                       (schema, h.table)):
        return False
    return h.online if h.online is not None else row[0] > above_rows


def online_tables(conn: psycopg.Connection, plan) -> list[str]:
    """The plan's tables that convert online, as the target stands now."""
    return [h.table for h in plan.hypertables if chooses_online(conn, plan.schema, h, plan.online_above_rows)]


# -- state ---------------------------------------------------------------------------------------------
def conversion_state(conn: psycopg.Connection, schema: str, table: str) -> dict | None:
    if _one(conn, "SELECT to_regclass(%s)", (f"{OWN_SCHEMA}.online_conversions",)) is None:
        return None
    row = conn.execute(f"""SELECT new_name, legacy_name, state, replayed_through, index_renames
                             FROM {OWN_SCHEMA}.online_conversions WHERE table_schema = %s AND table_name = %s""",
                       (schema, table)).fetchone()
    if row is None:
        return None
    return dict(zip(("new_name", "legacy_name", "state", "replayed_through", "index_renames"), row))


def legacy_tables(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """(schema, table, legacy table) of every conversion whose legacy table is kept beside the hypertable."""
    if _one(conn, "SELECT to_regclass(%s)", (f"{OWN_SCHEMA}.online_conversions",)) is None:
        return []
    return [tuple(r) for r in conn.execute(
        f"SELECT table_schema, table_name, legacy_name FROM {OWN_SCHEMA}.online_conversions "
        "WHERE state = 'swapped' ORDER BY 1, 2").fetchall()]


def discard_unfinished(conn: psycopg.Connection, names: Names) -> bool:
    """Drop what an earlier attempt that did not reach the swap left (the legacy table is untouched by it)."""
    state = conversion_state(conn, names.schema, names.table)
    if state is None or state["state"] != "building":
        return False
    with conn.transaction():
        conn.execute("SET LOCAL lock_timeout = '5s'")
        conn.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
            sql.Identifier(CAPTURE_TRIGGER), names.ident(names.table)))
        conn.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
            sql.Identifier(CAPTURE_TRIGGER + "_truncate"), names.ident(names.table)))
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(names.ident(state["new_name"])))
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(names.changes))
        conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {}()").format(names.capture_function))
        conn.execute(f"DELETE FROM {OWN_SCHEMA}.online_conversions WHERE table_schema = %s AND table_name = %s",
                     (names.schema, names.table))
    log.info("%s.%s: dropped what an unfinished online conversion left (its hypertable and change log); "
             "starting again", names.schema, names.table)
    return True


# -- 1. capture ----------------------------------------------------------------------------------------
def _key_columns(conn: psycopg.Connection, names: Names) -> list[tuple[str, str]]:
    regclass = _regclass(names.schema, names.table)
    keys = primary_key_columns(conn, regclass)
    if not keys:
        raise ConversionError(f"{names.schema}.{names.table}: an online conversion needs a primary key to replay the "
                              "rows changed during the copy; add one, or set online = false for the table in plan.toml")
    types = dict(conn.execute("""SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
                                  WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped""",
                              (regclass,)).fetchall())
    return [(k, types[k]) for k in keys]


def _start_capture(conn: psycopg.Connection, names: Names, keys: list[tuple[str, str]], lock_timeout_ms: int,
                   attempts: int) -> None:
    key_defs = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(k), sql.SQL(t)) for k, t in keys)
    key_cols = sql.SQL(", ").join(sql.Identifier(k) for k, _ in keys)
    conn.execute(sql.SQL("""CREATE TABLE {changes} (change_id bigserial PRIMARY KEY, phase smallint NOT NULL,
                             truncated boolean NOT NULL DEFAULT false, {keys})""").format(
        changes=names.changes, keys=key_defs))

    def values(row: str) -> sql.Composable:
        return sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.SQL(row), sql.Identifier(k)) for k, _ in keys)

    unchanged = sql.SQL(" AND ").join(sql.SQL("OLD.{k} IS NOT DISTINCT FROM NEW.{k}").format(k=sql.Identifier(k))
                                      for k, _ in keys)
    # SECURITY DEFINER: the application's roles write the change log without a grant on it; search_path
    # pinned as PostgreSQL's documentation asks of such functions.
    conn.execute(sql.SQL("""
        CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp AS $body$
        BEGIN
            IF TG_OP = 'TRUNCATE' THEN
                INSERT INTO {changes} (phase, truncated) VALUES (TG_ARGV[0]::smallint, true);
                RETURN NULL;
            END IF;
            IF TG_OP IN ('UPDATE', 'DELETE') THEN
                INSERT INTO {changes} (phase, {cols}) VALUES (TG_ARGV[0]::smallint, {old});
            END IF;
            IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NOT ({unchanged})) THEN
                INSERT INTO {changes} (phase, {cols}) VALUES (TG_ARGV[0]::smallint, {new});
            END IF;
            RETURN NULL;
        END $body$""").format(fn=names.capture_function, changes=names.changes, cols=key_cols,
                              old=values("OLD"), new=values("NEW"), unchanged=unchanged))
    # CREATE TRIGGER waits for the writers in flight (its lock conflicts with theirs), so every row committed
    # after it is captured and every row committed before it is seen by the copy.
    _with_lock_retries(conn, names, f"{names.schema}.{names.table}: starting change capture", lock_timeout_ms, attempts,
                       lambda: _create_capture_triggers(conn, names, names.table, PHASE_COPY))


def _create_capture_triggers(conn: psycopg.Connection, names: Names, table: str, phase: int) -> None:
    trigger = CAPTURE_TRIGGER if phase == PHASE_COPY else CAPTURE_BACK_TRIGGER
    conn.execute(sql.SQL("CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW "
                         "EXECUTE FUNCTION {}({})").format(sql.Identifier(trigger), names.ident(table),
                                                            names.capture_function, sql.Literal(str(phase))))
    if phase == PHASE_COPY:   # hypertables take no statement triggers on TRUNCATE; the legacy table does
        conn.execute(sql.SQL("CREATE TRIGGER {} AFTER TRUNCATE ON {} FOR EACH STATEMENT "
                             "EXECUTE FUNCTION {}({})").format(sql.Identifier(trigger + "_truncate"),
                                                                names.ident(table), names.capture_function,
                                                                sql.Literal(str(phase))))


def _with_lock_retries(conn: psycopg.Connection, names: Names, what: str, lock_timeout_ms: int, attempts: int,
                       body: Callable[[], object], between: Callable[[], None] | None = None):
    """Run ``body`` in a transaction whose locks wait at most ``lock_timeout_ms``; retried with jitter. The
    application's statements queue behind a waiting lock, so the wait is kept short and retried rather than long."""
    for attempt in range(1, attempts + 1):
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{lock_timeout_ms}ms")))
                return body()
        except psycopg.errors.LockNotAvailable:
            if attempt == attempts:
                raise ConversionError(f"{what}: could not get its lock in {attempts} tries of {lock_timeout_ms} ms; "
                                      f"held by {lock_holders(conn, names.schema, names.table)}. Stop that session or "
                                      "wait for it, then "
                                      "run again (the legacy table is unchanged).") from None
            log.info("%s: lock not granted in %d ms (try %d of %d); retrying", what, lock_timeout_ms, attempt, attempts)
            time.sleep(random.uniform(0.05, 0.4) * min(attempt, 5))
            if between is not None:
                between()


# -- 2. build ------------------------------------------------------------------------------------------
_INDEX_HEAD = re.compile(r'^CREATE (UNIQUE )?INDEX (?:"(?:[^"]|"")*"|\S+) ON (?:ONLY )?'
                         r'(?:(?:"(?:[^"]|"")*"|[^\s".]+)\.)?(?:"(?:[^"]|"")*"|[^\s".]+) USING ')


Grant = tuple[sql.Composable, sql.Composable, bool]   # (privilege [ (column) ], grantee, with grant option)


def relation_grants(conn: psycopg.Connection, regclass: str) -> list[Grant]:
    """What a relation grants to others than its owner (table and column privileges)."""
    grants = []
    rows = conn.execute("""
        SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type,
               a.is_grantable, NULL::text
          FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.oid = %s::regclass AND a.grantee <> c.relowner
        UNION ALL
        SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type,
               a.is_grantable, att.attname
          FROM pg_attribute att, aclexplode(att.attacl) a
         WHERE att.attrelid = %s::regclass AND att.attacl IS NOT NULL AND NOT att.attisdropped""",
                        (regclass, regclass)).fetchall()
    for grantee, privilege, grantable, column in rows:
        who = sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)
        what = sql.SQL(privilege) if column is None else sql.SQL("{} ({})").format(sql.SQL(privilege),
                                                                                  sql.Identifier(column))
        grants.append((what, who, grantable))
    return grants


def grant(conn: psycopg.Connection, target: sql.Composable, grants: list[Grant]) -> None:
    for what, who, grantable in grants:
        conn.execute(sql.SQL("GRANT {} ON {} TO {}{}").format(what, target, who,
                                                            sql.SQL(" WITH GRANT OPTION" if grantable else "")))


def _build(conn: psycopg.Connection, names: Names, h: HypertablePlan) -> list[list[str]]:
    """The empty hypertable beside the legacy table; returns the index renames the swap makes."""
    legacy = _regclass(names.schema, names.table)
    new = names.ident(names.new)
    if _one(conn, "SELECT to_regclass(%s)", (_regclass(names.schema, names.legacy),)) is not None:
        raise ConversionError(f"{names.schema}.{names.legacy} exists already; the online conversion keeps the legacy "
                              f"table under that name: rename or drop it first")
    identity = [r[0] for r in conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass "
                                           "AND attidentity <> '' AND NOT attisdropped", (legacy,)).fetchall()]
    if identity:
        raise ConversionError(f"{names.schema}.{names.table}: identity column(s) {', '.join(identity)} would get a new "
                              "sequence in a copy; set online = false for this table in plan.toml")
    conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED "
                         "INCLUDING STORAGE INCLUDING COMMENTS INCLUDING COMPRESSION INCLUDING STATISTICS)").format(
        new, names.ident(names.table)))
    owner, comment, rls, force_rls = conn.execute(
        "SELECT pg_get_userbyid(relowner), obj_description(oid, 'pg_class'), relrowsecurity, relforcerowsecurity "
        "FROM pg_class WHERE oid = %s::regclass", (legacy,)).fetchone()
    conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(new, sql.Identifier(owner)))
    if comment is not None:
        conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(new, sql.Literal(comment)))
    grant(conn, new, relation_grants(conn, legacy))
    for name, permissive, roles, command, using, check in conn.execute(
            "SELECT policyname, permissive, roles, cmd, qual, with_check FROM pg_policies "
            "WHERE schemaname = %s AND tablename = %s", (names.schema, names.table)).fetchall():
        conn.execute(sql.SQL("CREATE POLICY {} ON {} AS {} FOR {} TO {}{}{}").format(
            sql.Identifier(name), new, sql.SQL(permissive), sql.SQL(command),
            sql.SQL(", ").join(sql.SQL("PUBLIC") if r == "public" else sql.Identifier(r) for r in roles),
            sql.SQL(" USING ({})").format(sql.SQL(using)) if using else sql.SQL(""),
            sql.SQL(" WITH CHECK ({})").format(sql.SQL(check)) if check else sql.SQL("")))
    if rls:
        conn.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(new))
    if force_rls:
        conn.execute(sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(new))
    conn.execute("SELECT create_hypertable(%s::regclass, by_range(%s, %s::interval), create_default_indexes => false)",
                 (_regclass(names.schema, names.new), h.time_column, h.chunk_interval.text))

    renames: list[list[str]] = []   # [legacy index, its name aside, the new index's name while built]

    def build_name(final: str) -> str:
        built = _aside(final, "_tsm")
        renames.append([final, _aside(final, "_legacy"), built])
        return built

    rebuilt = {k.name: k for k in keys_without_time(conn, legacy, h.time_column)}
    for index_name, index_def, constraint, kind, columns in conn.execute("""
            SELECT i.relname, pg_get_indexdef(i.oid), c.conname, c.contype,
                   array(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(attnum, n)
                          JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum ORDER BY k.n)
              FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
              LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.contype IN ('p', 'u')
             WHERE x.indrelid = %s::regclass ORDER BY i.relname""", (legacy,)).fetchall():
        built = build_name(index_name)
        key = rebuilt.get(constraint or index_name)
        if constraint is not None:
            cols = list(columns) + ([h.time_column] if key is not None else [])
            conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} ({})").format(
                new, sql.Identifier(built), sql.SQL("PRIMARY KEY" if kind == "p" else "UNIQUE"),
                sql.SQL(", ").join(map(sql.Identifier, cols))))
        elif key is not None:
            conn.execute(sql.SQL("CREATE UNIQUE INDEX {} ON {} ({})").format(
                sql.Identifier(built), new, sql.SQL(", ").join(map(sql.Identifier, (*columns, h.time_column)))))
        else:
            head = _INDEX_HEAD.match(index_def)
            if head is None:
                raise ConversionError(f"{names.schema}.{names.table}: cannot read the definition of index {index_name} "
                                      f"({index_def[:80]}); set online = false for this table in plan.toml")
            conn.execute(sql.SQL("CREATE {}INDEX {} ON {} USING {}").format(
                sql.SQL(head.group(1) or ""), sql.Identifier(built), new, sql.SQL(index_def[head.end():])))
    for column in h.keep_unique:
        final = f"{h.table}_{column}_idx"
        if not any(r[0] == final for r in renames):
            # A new index: nothing of the legacy table holds the name, so the swap only renames it.
            conn.execute(sql.SQL("CREATE INDEX {} ON {} ({})").format(
                sql.Identifier(build_name(final)), new, sql.Identifier(column)))
            renames[-1][1] = ""
    return renames


def _add_foreign_keys(conn: psycopg.Connection, names: Names) -> int:
    """The legacy table's foreign keys on the new one, added after the copy (one check of all rows)."""
    keys = conn.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
                        "AND contype = 'f' ORDER BY conname", (_regclass(names.schema, names.table),)).fetchall()
    for name, definition in keys:
        conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
            names.ident(names.new), sql.Identifier(name), sql.SQL(definition)))
    return len(keys)


# -- 3. copy -------------------------------------------------------------------------------------------
def _copy(connect: Callable[[], psycopg.Connection], names: Names, column_names: list[str], *, workers: int,
          batch_rows: int, own_xids: set[int], on_phase: PhaseHook) -> int:
    """Copy the legacy heap into the hypertable, block range by block range, on ``workers`` connections."""
    with connect() as conn:
        pages, tuples = conn.execute("SELECT relpages, reltuples FROM pg_class WHERE oid = %s::regclass",
                                     (_regclass(names.schema, names.table),)).fetchone()
        if pages <= 0 or tuples <= 0:   # never analyzed or vacuumed: measure
            pages = _one(conn, "SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int",
                         (_regclass(names.schema, names.table),))
            tuples = max(1, pages * 100)
    per_batch = max(1, int(pages * batch_rows / tuples)) if tuples > 0 else 1000
    ranges = [(start, start + per_batch) for start in range(0, max(pages, 1), per_batch)]
    ranges[-1] = (ranges[-1][0], None)   # the last range is open: the table may have grown since
    total = max(int(tuples), 1)
    copied, lock = 0, threading.Lock()
    started, last_log = time.monotonic(), [0.0]
    columns = sql.SQL(", ").join(map(sql.Identifier, column_names))
    # A row the application updates meanwhile may be met twice (its new version in a later block): the second is
    # skipped here, and the replay of its key makes it what it is now.
    statement = sql.SQL("INSERT INTO {new} ({cols}) SELECT {cols} FROM {legacy} WHERE ctid >= %s::tid{upper} "
                        "ON CONFLICT DO NOTHING")
    queue = list(reversed(ranges))

    def work() -> int:
        nonlocal copied
        mine = 0
        with connect() as conn:
            while True:
                with lock:
                    if not queue:
                        return mine
                    low, high = queue.pop()
                upper = sql.SQL(" AND ctid < %s::tid") if high is not None else sql.SQL("")
                params = [f"({low},0)"] + ([f"({high},0)"] if high is not None else [])
                with conn.transaction():
                    rows = conn.execute(statement.format(new=names.ident(names.new), cols=columns,
                                                         legacy=names.ident(names.table), upper=upper),
                                        params).rowcount
                    xid = int(_one(conn, "SELECT pg_current_xact_id()::text"))
                on_phase("copying", conn)
                with lock:
                    own_xids.add(xid)
                    copied += rows
                    mine += rows
                    now = time.monotonic()
                    if now - last_log[0] >= 5:
                        rate = copied / (now - started)
                        log.info("%s.%s: %d of about %d rows copied beside it (%.0f rows/s, about %.0f s left; the "
                                 "application keeps writing)", names.schema, names.table, copied, total, rate,
                                 max(0.0, (total - copied) / rate) if rate else 0)
                        last_log[0] = now

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tsmigrate-copy") as pool:
        for future in [pool.submit(work) for _ in range(workers)]:
            future.result()
    return copied


# -- 4. catch up ---------------------------------------------------------------------------------------
def _replay(conn: psycopg.Connection, names: Names, keys: list[str], columns: list[str], source: str,
            target: str, phase: int, after: int, upto: int) -> int:
    """Within the caller's transaction: the rows whose keys changed in (after, upto] made, in ``target``, as they
    are in ``source`` (deleted where they are gone). Returns how many keys were replayed."""
    if _one(conn, sql.SQL("SELECT 1 FROM {} WHERE phase = %s AND truncated AND change_id > %s AND change_id <= %s "
                          "LIMIT 1").format(names.changes), (phase, after, upto)):
        raise ConversionError(f"{names.schema}.{names.table} was truncated during its online conversion; nothing is "
                              "swapped: run again")
    key_cols = sql.SQL(", ").join(map(sql.Identifier, keys))
    match = sql.SQL(" AND ").join(sql.SQL("t.{k} = k.{k}").format(k=sql.Identifier(k)) for k in keys)
    conn.execute("DROP TABLE IF EXISTS pg_temp.tsmigrate_replay_keys")
    replayed = conn.execute(sql.SQL("CREATE TEMPORARY TABLE tsmigrate_replay_keys ON COMMIT DROP AS "
                                    "SELECT DISTINCT {cols} FROM {changes} WHERE phase = %s AND NOT truncated "
                                    "AND change_id > %s AND change_id <= %s").format(
        cols=key_cols, changes=names.changes), (phase, after, upto)).rowcount
    if not replayed:
        return 0
    conn.execute("ANALYZE pg_temp.tsmigrate_replay_keys")
    # Two statements, not one with a data-modifying WITH: the delete must be done before the insert meets the
    # unique key.
    conn.execute(sql.SQL("DELETE FROM {target} t USING pg_temp.tsmigrate_replay_keys k WHERE {match}").format(
        target=names.ident(target), match=match))
    conn.execute(sql.SQL("INSERT INTO {target} ({cols}) SELECT {tcols} FROM {source} t "
                         "JOIN pg_temp.tsmigrate_replay_keys k ON {match}").format(
        target=names.ident(target), cols=sql.SQL(", ").join(map(sql.Identifier, columns)), source=names.ident(source),
        match=match, tcols=sql.SQL(", ").join(sql.Identifier("t", c) for c in columns)))
    return replayed


def _set_replayed(conn: psycopg.Connection, names: Names, upto: int) -> None:
    conn.execute(f"UPDATE {OWN_SCHEMA}.online_conversions SET replayed_through = %s "
                 "WHERE table_schema = %s AND table_name = %s", (upto, names.schema, names.table))


def _catch_up_round(conn: psycopg.Connection, names: Names, h: HypertablePlan, keys: list[str], columns: list[str],
                    *, limit: int, own_xids: set[int]) -> tuple[int, int]:
    """One transaction of replay; returns (keys replayed, backlog left)."""
    for attempt in (1, 2):
        try:
            with conn.transaction():
                after = _one(conn, f"SELECT replayed_through FROM {OWN_SCHEMA}.online_conversions "
                                   "WHERE table_schema = %s AND table_name = %s", (names.schema, names.table))
                newest = _one(conn, sql.SQL("SELECT coalesce(max(change_id), 0) FROM {}").format(names.changes))
                upto = min(newest, after + limit)
                replayed = _replay(conn, names, keys, columns, names.table, names.new, PHASE_COPY, after, upto)
                _set_replayed(conn, names, upto)
                own_xids.add(int(_one(conn, "SELECT pg_current_xact_id()::text")))
            return replayed, newest - upto
        except psycopg.errors.NotNullViolation:
            if attempt == 2:
                raise
            # The application wrote a row without a time value meanwhile: the plan's rule fills it in the
            # legacy table (recorded, and captured again), then the round runs again.
            with conn.transaction():
                _fill_nulls(conn, names.schema, h, keys)
                own_xids.add(int(_one(conn, "SELECT pg_current_xact_id()::text")))
    raise AssertionError("unreachable")


# -- 5. swap -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _SavedView:
    schema: str
    name: str
    materialized: bool
    definition: str
    owner: str
    options: list[str] | None
    comment: str | None
    grants: tuple[Grant, ...]
    indexes: tuple[str, ...]


def dependent_views(conn: psycopg.Connection, regclass: str) -> list[_SavedView]:
    """Views and materialized views that read the table, directly or through other views, in creation order."""
    rows = conn.execute("""
        WITH RECURSIVE deps(oid, depth) AS (
            SELECT DISTINCT r.ev_class, 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
             WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = %s::regclass AND r.ev_class <> %s::regclass
            UNION
            SELECT r.ev_class, deps.depth + 1 FROM deps JOIN pg_depend d ON d.refobjid = deps.oid
              JOIN pg_rewrite r ON r.oid = d.objid
             WHERE d.classid = 'pg_rewrite'::regclass AND r.ev_class <> deps.oid AND deps.depth < 20)
        SELECT n.nspname, c.relname, c.relkind = 'm', pg_get_viewdef(c.oid), pg_get_userbyid(c.relowner),
               c.reloptions, obj_description(c.oid, 'pg_class'), c.oid::regclass::text, max(deps.depth)
          FROM deps JOIN pg_class c ON c.oid = deps.oid JOIN pg_namespace n ON n.oid = c.relnamespace
         GROUP BY 1, 2, 3, 4, 5, 6, 7, 8 ORDER BY max(deps.depth), 1, 2""", (regclass, regclass)).fetchall()
    views = []
    for schema, name, materialized, definition, owner, options, comment, view_regclass, _ in rows:
        indexes = tuple(r[0] for r in conn.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass", (view_regclass,)))
        views.append(_SavedView(schema, name, materialized, definition, owner, options, comment,
                                tuple(relation_grants(conn, view_regclass)), indexes))
    return views


def _drop_views(conn: psycopg.Connection, views: list[_SavedView]) -> None:
    for v in reversed(views):
        conn.execute(sql.SQL("DROP {} {}").format(sql.SQL("MATERIALIZED VIEW" if v.materialized else "VIEW"),
                                                  sql.Identifier(v.schema, v.name)))


def _create_views(conn: psycopg.Connection, views: list[_SavedView]) -> None:
    for v in views:
        ident = sql.Identifier(v.schema, v.name)
        kind = sql.SQL("MATERIALIZED VIEW" if v.materialized else "VIEW")
        options = sql.SQL(" WITH ({})").format(sql.SQL(", ".join(v.options))) if v.options else sql.SQL("")
        conn.execute(sql.SQL("CREATE {} {}{} AS {}").format(kind, ident, options,
                                                           sql.SQL(v.definition.rstrip().rstrip(";"))))
        conn.execute(sql.SQL("ALTER {} {} OWNER TO {}").format(kind, ident, sql.Identifier(v.owner)))
        if v.comment is not None:
            conn.execute(sql.SQL("COMMENT ON {} {} IS {}").format(kind, ident, sql.Literal(v.comment)))
        grant(conn, ident, list(v.grants))
        for index in v.indexes:
            conn.execute(index)


def _rename_tables(conn: psycopg.Connection, names: Names, leaving: str, leaving_to: str, arriving: str) -> None:
    conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(names.ident(leaving), sql.Identifier(leaving_to)))
    conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(names.ident(arriving), sql.Identifier(names.table)))


def _own_sequences(conn: psycopg.Connection, names: Names, previous_owner: str) -> None:
    """Sequences owned by the other table's columns (bigserial ids) go to the table with the name: they would be
    dropped with the other one otherwise. Both tables' defaults use them already (copied by LIKE)."""
    for seq, column in conn.execute("""
            SELECT d.objid::regclass::text, a.attname FROM pg_depend d
              JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
              JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
             WHERE d.classid = 'pg_class'::regclass AND d.refobjid = %s::regclass AND d.deptype = 'a'
               AND d.refobjsubid > 0""", (_regclass(names.schema, previous_owner),)).fetchall():
        conn.execute(sql.SQL("ALTER SEQUENCE {} OWNED BY {}.{}").format(
            sql.SQL(seq), names.ident(names.table), sql.Identifier(column)))


def _rename_indexes(conn: psycopg.Connection, names: Names, pairs: list[tuple[str, str]]) -> None:
    """ALTER INDEX ... RENAME (which renames a constraint's index with its constraint)."""
    for old, new in pairs:
        if old and new:
            conn.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(names.ident(old), sql.Identifier(new)))


def _application_triggers(conn: psycopg.Connection, regclass: str) -> list[tuple[str, str, str]]:
    """The application's triggers: not ours (change capture), not TimescaleDB's own (its insert blocker)."""
    return conn.execute("SELECT tgname, pg_get_triggerdef(oid), tgenabled FROM pg_trigger WHERE tgrelid = %s::regclass "
                        "AND NOT tgisinternal AND tgname NOT LIKE 'tsmigrate\\_capture%%' "
                        "AND tgfoid::regproc::text NOT LIKE '\\_timescaledb%%' ORDER BY tgname",
                        (regclass,)).fetchall()


def _swap(conn: psycopg.Connection, names: Names, h: HypertablePlan, keys, columns, renames, *,
          on_swapped: Callable[[psycopg.Connection], None] | None, own_xids: set[int], on_phase: PhaseHook) -> float:
    """The short transaction; returns how long the legacy table was locked (seconds)."""
    legacy = _regclass(names.schema, names.table)
    triggers = _application_triggers(conn, legacy)
    odd = [name for name, _, enabled in triggers if enabled != "O"]
    if odd:
        raise ConversionError(f"{names.schema}.{names.table} has triggers that are disabled or fire only on replicas "
                              f"({', '.join(odd)}); a hypertable cannot keep that state: enable or drop them first")
    conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(names.ident(names.table)))
    locked = time.monotonic()
    after = _one(conn, f"SELECT replayed_through FROM {OWN_SCHEMA}.online_conversions "
                       "WHERE table_schema = %s AND table_name = %s", (names.schema, names.table))
    newest = _one(conn, sql.SQL("SELECT coalesce(max(change_id), 0) FROM {}").format(names.changes))
    _replay(conn, names, keys, columns, names.table, names.new, PHASE_COPY, after, newest)
    _set_replayed(conn, names, newest)
    on_phase("swapping", conn)
    views = dependent_views(conn, legacy)
    _drop_views(conn, views)
    conn.execute(sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(CAPTURE_TRIGGER), names.ident(names.table)))
    conn.execute(sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(CAPTURE_TRIGGER + "_truncate"),
                                                        names.ident(names.table)))
    _rename_tables(conn, names, names.table, names.legacy, names.new)
    # Index names are unique per schema: the legacy table's go aside before the new ones take them.
    _rename_indexes(conn, names, [(final, aside) for final, aside, _ in renames])
    _rename_indexes(conn, names, [(built, final) for final, _, built in renames])
    _own_sequences(conn, names, names.legacy)
    for _, definition, _ in triggers:   # "ON schema.table" now names the hypertable
        conn.execute(sql.SQL(definition))
    _create_capture_triggers(conn, names, names.table, PHASE_AFTER_SWAP)
    _create_views(conn, views)
    conn.execute(f"UPDATE {OWN_SCHEMA}.online_conversions SET state = 'swapped', swapped_at = now(), "
                 "swap_ms = %s WHERE table_schema = %s AND table_name = %s",
                 (1000 * (time.monotonic() - locked), names.schema, names.table))
    own_xids.add(int(_one(conn, "SELECT pg_current_xact_id()::text")))
    if on_swapped is not None:
        on_swapped(conn)
    return time.monotonic() - locked


# -- 6. after the swap ---------------------------------------------------------------------------------
def verify(conn: psycopg.Connection, schema: str, table: str) -> tuple[int, list[str]]:
    """Compare the legacy table (written by nobody since the swap) with the hypertable, row by row by key, leaving
    out the keys the application changed in the hypertable since the swap. Returns (rows compared, differing keys)."""
    names = Names(schema, table)
    state = conversion_state(conn, schema, table)
    if state is None or state["state"] != "swapped":
        raise ConversionError(f"{schema}.{table}: no online conversion to verify")
    keys = primary_key_columns(conn, _regclass(schema, state["legacy_name"]))
    columns = [c for c in _insertable_columns(conn, _regclass(schema, state["legacy_name"]))]
    on = sql.SQL(" AND ").join(sql.SQL("l.{k} = n.{k}").format(k=sql.Identifier(k)) for k in keys)
    row = lambda alias: sql.SQL("row({})::text").format(  # noqa: E731 - one expression, used twice
        sql.SQL(", ").join(sql.Identifier(alias, c) for c in columns))
    changed = sql.SQL(" AND ").join(sql.SQL("c.{k} = coalesce(l.{k}, n.{k})").format(k=sql.Identifier(k)) for k in keys)
    key_text = sql.SQL("row({})::text").format(sql.SQL(", ").join(
        sql.SQL("coalesce(l.{k}, n.{k})").format(k=sql.Identifier(k)) for k in keys))
    compared, differing = conn.execute(sql.SQL("""
        SELECT count(*), (array_agg({key_text}) FILTER (WHERE {lrow} IS DISTINCT FROM {nrow}))[1:10]
          FROM {legacy} l FULL JOIN {new} n ON {on}
         WHERE NOT EXISTS (SELECT 1 FROM {changes} c WHERE c.phase = {phase} AND {changed})""").format(
        key_text=key_text, lrow=sql.SQL("CASE WHEN l IS NULL THEN NULL ELSE {} END").format(row("l")),
        nrow=sql.SQL("CASE WHEN n IS NULL THEN NULL ELSE {} END").format(row("n")),
        legacy=names.ident(state["legacy_name"]), new=names.ident(table), on=on, changes=names.changes,
        phase=sql.Literal(PHASE_AFTER_SWAP), changed=changed)).fetchone()
    return compared, list(differing or [])


def drop_legacy(conn: psycopg.Connection, schema: str, table: str) -> str:
    """End an online conversion: the legacy table, the change log and its triggers go. Returns what was dropped."""
    names = Names(schema, table)
    state = conversion_state(conn, schema, table)
    if state is None or state["state"] != "swapped":
        raise ConversionError(f"{schema}.{table}: no legacy table of an online conversion is kept")
    with conn.transaction():
        conn.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(CAPTURE_BACK_TRIGGER),
                                                                      names.ident(table)))
        conn.execute(sql.SQL("DROP TABLE {}").format(names.ident(state["legacy_name"])))
        conn.execute(sql.SQL("DROP TABLE {}").format(names.changes))
        conn.execute(sql.SQL("DROP FUNCTION {}()").format(names.capture_function))
        conn.execute(f"DELETE FROM {OWN_SCHEMA}.online_conversions WHERE table_schema = %s AND table_name = %s",
                     (schema, table))
    return f"{schema}.{state['legacy_name']}"


def swap_back(conn: psycopg.Connection, schema: str, table: str, *, lock_timeout_ms: int = 500,
              attempts: int = 20) -> int:
    """Undo an online conversion in one short transaction: the rows the application changed in the hypertable
    since the swap are replayed into the legacy table, which takes the name back; the hypertable is dropped.
    Returns the keys replayed. The ledger's record of the conversion goes too, so a later run converts again."""
    names = Names(schema, table)
    state = conversion_state(conn, schema, table)
    if state is None or state["state"] != "swapped":
        raise ConversionError(f"{schema}.{table}: no online conversion to undo (its legacy table is not kept)")
    legacy = state["legacy_name"]
    keys = primary_key_columns(conn, _regclass(schema, legacy))
    columns = _insertable_columns(conn, _regclass(schema, legacy))
    renames = state["index_renames"]

    def body() -> int:
        conn.execute(sql.SQL("LOCK TABLE {}, {} IN ACCESS EXCLUSIVE MODE").format(names.ident(table),
                                                                                 names.ident(legacy)))
        replayed = _replay(conn, names, keys, columns, table, legacy, PHASE_AFTER_SWAP, 0,
                           _one(conn, sql.SQL("SELECT coalesce(max(change_id), 0) FROM {}").format(names.changes)))
        hypertable = _regclass(schema, table)
        views = dependent_views(conn, hypertable)
        _drop_views(conn, views)
        triggers = _application_triggers(conn, hypertable)
        conn.execute(sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(CAPTURE_BACK_TRIGGER), names.ident(table)))
        _rename_tables(conn, names, table, names.new, legacy)
        _own_sequences(conn, names, names.new)
        conn.execute(sql.SQL("DROP TABLE {}").format(names.ident(names.new)))   # its index names go with it
        _rename_indexes(conn, names, [(aside, final) for final, aside, _ in renames])
        existing = {r[0] for r in _application_triggers(conn, _regclass(schema, table))}
        for name, definition, _ in triggers:
            if name not in existing:
                conn.execute(sql.SQL(definition))
        _create_views(conn, views)
        conn.execute(sql.SQL("DROP TABLE {}").format(names.changes))
        conn.execute(sql.SQL("DROP FUNCTION {}()").format(names.capture_function))
        conn.execute(f"DELETE FROM {OWN_SCHEMA}.online_conversions WHERE table_schema = %s AND table_name = %s",
                     (schema, table))
        if _one(conn, "SELECT to_regclass(%s)", (f"{OWN_SCHEMA}.ledger",)) is not None:
            conn.execute(f"DELETE FROM {OWN_SCHEMA}.ledger WHERE step = %s", (f"convert:{table}",))
        return replayed

    return _with_lock_retries(conn, names, f"{schema}.{table}: swapping back", lock_timeout_ms, attempts, body)


# -- the whole path ------------------------------------------------------------------------------------
def convert_online(connect: Callable[[], psycopg.Connection], conn: psycopg.Connection, schema: str,
                   h: HypertablePlan, *, has_compression: bool, own_xids: set[int],
                   on_swapped: Callable[[psycopg.Connection], None] | None = None, workers: int = 2,
                   batch_rows: int = 250_000, small_backlog: int = 2_000, max_rounds: int = 50,
                   lock_timeout_ms: int = 300, swap_attempts: int = 30, on_phase: PhaseHook = _no_hook
                   ) -> ConversionResult:
    """Convert one planned table online. ``conn`` is an autocommit connection of the run; ``connect`` opens more
    for the copy. ``on_swapped(conn)`` runs inside the swap transaction (the ledger records the step there)."""
    started = time.monotonic()
    names = Names(schema, h.table)
    result = ConversionResult(table=f"{schema}.{h.table}")
    report = OnlineReport(legacy_table=f"{schema}.{names.legacy}")
    refuse_what_timescaledb_cannot_keep(conn, schema, h, has_compression)
    conn.execute(STATE_DDL)
    discard_unfinished(conn, names)
    typed_keys = _key_columns(conn, names)
    keys = [k for k, _ in typed_keys]
    with conn.transaction():
        conn.execute(f"INSERT INTO {OWN_SCHEMA}.online_conversions (table_schema, table_name, new_name, legacy_name, "
                     "state) VALUES (%s, %s, %s, %s, 'building')", (schema, h.table, names.new, names.legacy))
    _start_capture(conn, names, typed_keys, lock_timeout_ms, swap_attempts)
    on_phase("capturing", conn)
    with conn.transaction():   # NULL times get the plan's rule in the legacy table itself (recorded, captured)
        result.nulls_filled = _fill_nulls(conn, schema, h, keys)
        own_xids.add(int(_one(conn, "SELECT pg_current_xact_id()::text")))
    with conn.transaction():
        renames = _build(conn, names, h)
        conn.execute(f"UPDATE {OWN_SCHEMA}.online_conversions SET index_renames = %s::jsonb "
                     "WHERE table_schema = %s AND table_name = %s",
                     (psycopg.types.json.Jsonb(renames), schema, h.table))
    result.keys_rebuilt = [f"{k.name} ({', '.join(k.columns)}) -> ({', '.join((*k.columns, h.time_column))})"
                           for k in keys_without_time(conn, _regclass(schema, h.table), h.time_column)]
    columns = _insertable_columns(conn, _regclass(schema, h.table))
    t0 = time.monotonic()
    report.copied = _copy(connect, names, columns, workers=workers, batch_rows=batch_rows, own_xids=own_xids,
                          on_phase=on_phase)
    report.copy_seconds = time.monotonic() - t0
    with conn.transaction():
        added = _add_foreign_keys(conn, names)
        conn.execute(sql.SQL("ANALYZE {}").format(names.ident(names.new)))
    log.info("%s: %d rows copied beside it in %.1f s; %d foreign keys checked", result.table, report.copied,
             report.copy_seconds, added)

    def catch_up() -> None:
        for _ in range(max_rounds):
            replayed, backlog = _catch_up_round(conn, names, h, keys, columns, limit=100_000, own_xids=own_xids)
            report.rounds += 1
            report.replayed += replayed
            if backlog <= small_backlog:
                return
        log.warning("%s: the application changes rows faster than they are replayed; swapping with a backlog",
                    result.table)

    catch_up()
    on_phase("caught up", conn)

    def swap() -> float:
        report.swap_attempts += 1
        return _swap(conn, names, h, keys, columns, renames, on_swapped=on_swapped, own_xids=own_xids,
                     on_phase=on_phase)

    for attempt in (1, 2):
        try:
            report.swap_seconds = _with_lock_retries(conn, names, f"{schema}.{h.table}: swapping in the hypertable",
                                                     lock_timeout_ms, swap_attempts, swap, between=catch_up)
            break
        except psycopg.errors.NotNullViolation:
            if attempt == 2:
                raise
            catch_up()   # a row without a time value came in just before the swap: the round fills it
    log.info("%s: swapped in the hypertable; the table was locked for %.0f ms. The legacy table is kept as %s",
             result.table, 1000 * report.swap_seconds, report.legacy_table)
    with conn.transaction():
        apply_policies(conn, schema, h, has_compression, result)
    report.verified_rows, differing = verify(conn, schema, h.table)
    if differing:
        raise ConversionError(f"{result.table}: after the swap, rows differ from the legacy table {report.legacy_table} "
                              f"(keys {', '.join(differing)}); undo with swap-back (README: Online conversion)")
    result.rows = report.verified_rows
    result.chunks = _one(conn, "SELECT count(*) FROM timescaledb_information.chunks "
                               "WHERE hypertable_schema = %s AND hypertable_name = %s", (schema, h.table))
    result.seconds = time.monotonic() - started
    result.rows_per_second = report.copied / report.copy_seconds if report.copy_seconds > 0 else 0.0
    result.online = report.to_dict()
    return result
