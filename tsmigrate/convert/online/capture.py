"""Change capture on the legacy table (and on the hypertable after the swap), and the replay of captured keys."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

import psycopg
from psycopg import sql

from ...db import is_hypertable, one, regclass, row
from ...plan import HypertablePlan
from ...tool_objects import CAPTURE_BACK_INSERT_TRIGGER, CAPTURE_BACK_TRIGGER, CAPTURE_TRIGGER, OWN_SCHEMA
from ..catalog import lock_holders, primary_key_columns, yield_autovacuum
from ..nulltime import fill_nulls
from ..result import ConversionError
from .state import PHASE_AFTER_SWAP, PHASE_COPY, Names

log = logging.getLogger("tsmigrate.online")


# -- 1. capture ----------------------------------------------------------------------------------------
def key_columns(conn: psycopg.Connection, names: Names) -> list[tuple[str, str]]:
    table = regclass(names.schema, names.table)
    keys = primary_key_columns(conn, table)
    if not keys:
        raise ConversionError(
            f"{names.schema}.{names.table}: an online conversion needs a primary key to replay the "
            "rows changed during the copy; add one, or set online = false for the table in plan.toml"
        )
    types: dict[str, str] = dict(
        conn.execute(
            """SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
                                  WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped""",
            (table,),
        ).fetchall()
    )
    return [(k, types[k]) for k in keys]


def recorded_columns(
    conn: psycopg.Connection, names: Names, keys: list[tuple[str, str]], time_column: str
) -> list[tuple[str, str]]:
    """What the change log records of a changed row: its key and its time value. The time value lets the replay
    under the swap's lock name the chunks it touches (a statement naming no time is planned across every chunk)."""
    if time_column in {k for k, _ in keys}:
        return keys
    typed = one(
        conn,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s "
        "AND NOT attisdropped",
        (regclass(names.schema, names.table), time_column),
    )
    return keys if typed is None else [*keys, (time_column, typed)]


def start_capture(
    conn: psycopg.Connection, names: Names, keys: list[tuple[str, str]], lock_timeout_ms: int, attempts: int
) -> None:
    key_defs = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(k), sql.SQL(t)) for k, t in keys)
    key_cols = sql.SQL(", ").join(sql.Identifier(k) for k, _ in keys)
    conn.execute(
        sql.SQL("""CREATE TABLE {changes} (change_id bigserial PRIMARY KEY, phase smallint NOT NULL,
                             truncated boolean NOT NULL DEFAULT false, {keys})""").format(
            changes=names.changes, keys=key_defs
        )
    )
    # "Was the table truncated" is asked under the swap's lock: an index of the few truncation records answers it
    # without reading the log, which grows with the copy's length.
    conn.execute(sql.SQL("CREATE INDEX ON {} (change_id) WHERE truncated").format(names.changes))

    def values(row: str) -> sql.Composable:
        return sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.SQL(row), sql.Identifier(k)) for k, _ in keys)

    # An update that moves neither the key nor the time value records the old row only (it names both).
    unchanged = sql.SQL(" AND ").join(
        sql.SQL("OLD.{k} IS NOT DISTINCT FROM NEW.{k}").format(k=sql.Identifier(k)) for k, _ in keys
    )
    # SECURITY DEFINER: the application's roles write the change log without a grant on it; search_path
    # pinned as PostgreSQL's documentation asks of such functions.
    conn.execute(
        sql.SQL("""
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
        END $body$""").format(
            fn=names.capture_function,
            changes=names.changes,
            cols=key_cols,
            old=values("OLD"),
            new=values("NEW"),
            unchanged=unchanged,
        )
    )
    # CREATE TRIGGER waits for the writers in flight (its lock conflicts with theirs), so every row committed
    # after it is captured and every row committed before it is seen by the copy.
    with_lock_retries(
        conn,
        names,
        f"{names.schema}.{names.table}: starting change capture",
        lock_timeout_ms,
        attempts,
        lambda: create_capture_triggers(conn, names, names.table, PHASE_COPY),
    )


def create_capture_triggers(
    conn: psycopg.Connection, names: Names, table: str, phase: int, *, watermark: tuple[str, str] | None = None
) -> None:
    trigger = CAPTURE_TRIGGER if phase == PHASE_COPY else CAPTURE_BACK_TRIGGER
    if watermark is None:
        events = sql.SQL("INSERT OR UPDATE OR DELETE")
    else:
        # Inserts above the watermark are found by range at a swap back: a WHEN clause, evaluated before any
        # function is called, leaves them uncaptured and the application's inserts at their cost.
        column, high = watermark
        events = sql.SQL("UPDATE OR DELETE")
        conn.execute(
            sql.SQL(
                "CREATE TRIGGER {} AFTER INSERT ON {} FOR EACH ROW WHEN (NEW.{col} IS NULL OR NEW.{col} <= {high}) "
                "EXECUTE FUNCTION {}({})"
            ).format(
                sql.Identifier(CAPTURE_BACK_INSERT_TRIGGER),
                names.ident(table),
                names.capture_function,
                sql.Literal(str(phase)),
                col=sql.Identifier(column),
                high=sql.Literal(high),
            )
        )
    conn.execute(
        sql.SQL("CREATE TRIGGER {} AFTER {} ON {} FOR EACH ROW EXECUTE FUNCTION {}({})").format(
            sql.Identifier(trigger), events, names.ident(table), names.capture_function, sql.Literal(str(phase))
        )
    )
    if phase == PHASE_COPY:  # hypertables take no statement triggers on TRUNCATE; the legacy table does
        conn.execute(
            sql.SQL("CREATE TRIGGER {} AFTER TRUNCATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}({})").format(
                sql.Identifier(trigger + "_truncate"),
                names.ident(table),
                names.capture_function,
                sql.Literal(str(phase)),
            )
        )


# -- 5. before the swap: the capture back ------------------------------------------------------------------
def watermark(conn: psycopg.Connection, names: Names, h: HypertablePlan, keys: list[str]) -> tuple[str, str]:
    """(column, value as text) above which the application's new rows will lie: a key column fed by a sequence
    (its highest value now), else the time column (now). Any value keeps a swap back exact (inserts at or below it
    are captured, rows above it are taken by range); a good one leaves the application's inserts uncaptured."""
    legacy = regclass(names.schema, names.table)
    fed = conn.execute(
        """SELECT a.attname FROM pg_attribute a
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE a.attrelid = %s::regclass AND a.attname = ANY(%s) AND NOT a.attisdropped
              AND (a.attidentity <> '' OR pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%%')
            ORDER BY a.attnum LIMIT 1""",
        (legacy, keys),
    ).fetchone()
    if fed is not None:  # the key's index answers max() from its end
        high = one(
            conn, sql.SQL("SELECT max({})::text FROM {}").format(sql.Identifier(fed[0]), names.ident(names.table))
        )
        if high is not None:
            return fed[0], high
    return h.time_column, one(conn, "SELECT now()::text")


def arm_capture_back(conn: psycopg.Connection, names: Names, h: HypertablePlan, keys: list[str]) -> int:
    """Before the swap's lock (creating a trigger on a hypertable is work per chunk): the capture back on the new
    table, and the watermark its insert trigger compares with. Returns the change log's newest id before it: what
    our own replays record through it until the swap is discarded under the lock (:func:`forget_own_replays`)."""
    column, high = watermark(conn, names, h, keys)
    with conn.transaction():
        mark = one(conn, sql.SQL("SELECT coalesce(max(change_id), 0) FROM {}").format(names.changes))
        for trigger in (CAPTURE_BACK_TRIGGER, CAPTURE_BACK_INSERT_TRIGGER):
            conn.execute(
                sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(trigger), names.ident(names.new))
            )
        create_capture_triggers(conn, names, names.new, PHASE_AFTER_SWAP, watermark=(column, high))
        conn.execute(
            f"UPDATE {OWN_SCHEMA}.online_conversions SET watermark_column = %s, watermark = %s "
            "WHERE table_schema = %s AND table_name = %s",
            (column, high, names.schema, names.table),
        )
    return mark


def forget_own_replays(conn: psycopg.Connection, names: Names, mark: int) -> None:
    """Under the swap's lock, after the last replay: the capture back recorded our replays into the new table;
    the application has not seen the table yet, so every such record after ``mark`` is ours."""
    conn.execute(
        sql.SQL("DELETE FROM {} WHERE change_id > %s AND phase = %s").format(names.changes), (mark, PHASE_AFTER_SWAP)
    )


def with_lock_retries(
    conn: psycopg.Connection,
    names: Names,
    what: str,
    lock_timeout_ms: int,
    attempts: int,
    body: Callable[[], object],
    between: Callable[[], None] | None = None,
):
    """Run ``body`` in a transaction whose locks wait at most ``lock_timeout_ms``; retried with jitter. The
    application's statements queue behind a waiting lock, so the wait is kept short and retried rather than long.
    An autovacuum in the way is cancelled first, as PostgreSQL would for a longer wait."""
    tables = [regclass(names.schema, names.table), regclass(names.schema, names.new)]
    for attempt in range(1, attempts + 1):
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{lock_timeout_ms}ms")))
                if vacuums := yield_autovacuum(conn, tables):
                    log.info(
                        "%s: cancelled autovacuum (pid %s) on the table, as PostgreSQL would for a longer wait",
                        what,
                        ", ".join(map(str, vacuums)),
                    )
                return body()
        except psycopg.errors.LockNotAvailable:
            if attempt == attempts:
                raise ConversionError(
                    f"{what}: could not get its lock in {attempts} tries of {lock_timeout_ms} ms; "
                    f"held by {lock_holders(conn, names.schema, names.table, names.new)}. "
                    "Stop that session or "
                    "wait for it, then "
                    "run again (the legacy table is unchanged)."
                ) from None
            log.info("%s: lock not granted in %d ms (try %d of %d); retrying", what, lock_timeout_ms, attempt, attempts)
            time.sleep(random.uniform(0.05, 0.4) * min(attempt, 5))
            if between is not None:
                between()


# -- 4. catch up ---------------------------------------------------------------------------------------
def replay(
    conn: psycopg.Connection,
    names: Names,
    keys: list[str],
    columns: list[str],
    source: str,
    target: str,
    phase: int,
    after: int,
    upto: int,
    *,
    time_column: str | None = None,
    unindexed: bool = False,
) -> int:
    """Within the caller's transaction: the rows whose keys changed in (after, upto] made, in ``target``, as they
    are in ``source`` (deleted where they are gone). Returns how many keys were replayed. With ``time_column``
    (recorded in the change log), a few changes are replayed by statements that name their time values, so only
    the chunks they fall in are planned and locked.

    ``unindexed``: ``target`` has no index on the keys yet (the replay after a copy without them), so every
    statement that finds rows of it reads its chunks: the changes are replayed by a join, each chunk read once by
    a hash join, however few they are (by an array of keys or of time values, it would be read once per value or
    test each row against every value)."""
    if one(
        conn,
        sql.SQL(
            "SELECT 1 FROM {} WHERE phase = %s AND truncated AND change_id > %s AND change_id <= %s LIMIT 1"
        ).format(names.changes),
        (phase, after, upto),
    ):
        raise ConversionError(
            f"{names.schema}.{names.table} was truncated during its online conversion; nothing is swapped: run again"
        )
    few = not unindexed and few_changes(conn, names, phase, after, upto)
    if time_column is not None and few:
        pruned = replay_by_time(conn, names, keys, time_column, columns, source, target, phase, after, upto)
        if pruned is not None:
            return pruned
    if len(keys) == 1 and few:
        return replay_few(conn, names, keys[0], columns, source, target, phase, after, upto)
    key_cols = sql.SQL(", ").join(map(sql.Identifier, keys))
    match = sql.SQL(" AND ").join(sql.SQL("t.{k} = k.{k}").format(k=sql.Identifier(k)) for k in keys)
    conn.execute("DROP TABLE IF EXISTS pg_temp.tsmigrate_replay_keys")
    replayed = conn.execute(
        sql.SQL(
            "CREATE TEMPORARY TABLE tsmigrate_replay_keys ON COMMIT DROP AS "
            "SELECT DISTINCT {cols} FROM {changes} WHERE phase = %s AND NOT truncated "
            "AND change_id > %s AND change_id <= %s"
        ).format(cols=key_cols, changes=names.changes),
        (phase, after, upto),
    ).rowcount
    if not replayed:
        return 0
    conn.execute("ANALYZE pg_temp.tsmigrate_replay_keys")
    # Two statements, not one with a data-modifying WITH: the delete must be done before the insert meets the
    # unique key.
    nestloop = one(conn, "SELECT current_setting('enable_nestloop')") if unindexed else None
    if nestloop is not None:  # a nested loop would read the chunks once per key
        conn.execute("SET LOCAL enable_nestloop = off")
    conn.execute(
        sql.SQL("DELETE FROM {target} t USING pg_temp.tsmigrate_replay_keys k WHERE {match}").format(
            target=names.ident(target), match=match
        )
    )
    if nestloop is not None:  # the insert's lookups in the source go by its key
        conn.execute("SELECT set_config('enable_nestloop', %s, true)", (nestloop,))
    conn.execute(
        sql.SQL(
            "INSERT INTO {target} ({cols}) OVERRIDING SYSTEM VALUE SELECT {tcols} FROM {source} t "
            "JOIN pg_temp.tsmigrate_replay_keys k ON {match}"
        ).format(
            target=names.ident(target),
            cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
            source=names.ident(source),
            match=match,
            tcols=sql.SQL(", ").join(sql.Identifier("t", c) for c in columns),
        )
    )
    return replayed


# Up to this many changes (the swap's last replay, the catch-up's last rounds) are replayed by an array of keys: a
# statement over a hypertable costs per chunk to plan, and the temporary table's join costs more to plan than it saves.
FEW_CHANGES = 1_000


def few_changes(conn: psycopg.Connection, names: Names, phase: int, after: int, upto: int) -> bool:
    """At most FEW_CHANGES changes in (after, upto]: the span says so when it is short; a change committed late
    (a low id left in the log) widens the span, not the count."""
    if upto - after <= FEW_CHANGES:
        return True
    return (
        one(
            conn,
            sql.SQL(
                "SELECT count(*) FROM (SELECT FROM {} WHERE phase = %s AND change_id > %s AND change_id <= %s "
                "LIMIT %s) c"
            ).format(names.changes),
            (phase, after, upto, FEW_CHANGES + 1),
        )
        <= FEW_CHANGES
    )


def replay_few(
    conn: psycopg.Connection,
    names: Names,
    key: str,
    columns: list[str],
    source: str,
    target: str,
    phase: int,
    after: int,
    upto: int,
) -> int:
    """:func:`replay` for a key of one column and a few changes."""
    changed = sql.SQL(
        "ARRAY(SELECT DISTINCT {k} FROM {changes} WHERE phase = {phase} AND NOT truncated "
        "AND change_id > {after} AND change_id <= {upto})"
    ).format(
        k=sql.Identifier(key),
        changes=names.changes,
        phase=sql.Literal(phase),
        after=sql.Literal(after),
        upto=sql.Literal(upto),
    )
    replayed = one(conn, sql.SQL("SELECT cardinality({})").format(changed))
    if not replayed:
        return 0
    conn.execute(sql.SQL("DELETE FROM {} WHERE {} = ANY({})").format(names.ident(target), sql.Identifier(key), changed))
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    conn.execute(
        sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {} WHERE {} = ANY({})").format(
            names.ident(target), cols, cols, names.ident(source), sql.Identifier(key), changed
        )
    )
    return replayed


def replay_by_time(
    conn: psycopg.Connection,
    names: Names,
    keys: list[str],
    time_column: str,
    columns: list[str],
    source: str,
    target: str,
    phase: int,
    after: int,
    upto: int,
) -> int | None:
    """:func:`replay` for a few changes, by their keys and time values written into the statements as constants:
    the planner then excludes every chunk no change falls in (an array read from the change log while the
    statement runs excludes none). A row's version in either table has its time value recorded: the change that
    made it (NEW) or the one that replaced it (OLD). None when the change log cannot say (a log of an earlier
    version without the time column, a change without a time value): the caller replays by key alone."""
    recorded = keys if time_column in keys else [*keys, time_column]
    types: dict[str, str] = dict(
        conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (names.changes.as_string(conn),),
        ).fetchall()
    )
    if time_column not in types:
        return None
    changed = conn.execute(
        sql.SQL(
            "SELECT DISTINCT {} FROM {} WHERE phase = %s AND NOT truncated AND change_id > %s AND change_id <= %s"
        ).format(sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in recorded), names.changes),
        (phase, after, upto),
    ).fetchall()
    if not changed:
        return 0
    at = recorded.index(time_column)
    if any(r[at] is None for r in changed):
        return None

    def constant(value: str, column: str) -> sql.Composable:
        return sql.SQL("{}::{}").format(sql.Literal(value), sql.SQL(types[column]))

    key_values = sorted({tuple(r[recorded.index(k)] for k in keys) for r in changed})
    if len(keys) == 1:
        by_key = sql.SQL("{} = ANY(ARRAY[{}])").format(
            sql.Identifier(keys[0]), sql.SQL(", ").join(constant(v[0], keys[0]) for v in key_values)
        )
    else:
        by_key = sql.SQL("({}) IN (VALUES {})").format(
            sql.SQL(", ").join(map(sql.Identifier, keys)),
            sql.SQL(", ").join(
                sql.SQL("({})").format(sql.SQL(", ").join(constant(v, k) for v, k in zip(values, keys, strict=True)))
                for values in key_values
            ),
        )
    times = [constant(t, time_column) for t in sorted({r[at] for r in changed})]
    by_time = sql.SQL("{} = ANY(ARRAY[{}])").format(sql.Identifier(time_column), sql.SQL(", ").join(times))
    where = sql.SQL("{} AND {}").format(by_key, by_time)

    def per_time(selected: sql.Composable, table: str) -> sql.Composable:
        # TimescaleDB excludes chunks before locking them for `time = constant` (and ranges), not for
        # `time = ANY(...)`, and never for a DELETE on the hypertable: a branch per time value, in a SELECT.
        return sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {} FROM {} WHERE {} AND {} = {}").format(
                selected, names.ident(table), by_key, sql.Identifier(time_column), t
            )
            for t in times
        )

    if is_hypertable(conn, names.schema, target):
        chunks = [
            c
            for (c,) in conn.execute(
                sql.SQL("SELECT DISTINCT c::text FROM ({}) chunks (c)").format(
                    per_time(sql.SQL("tableoid::regclass"), target)
                )
            ).fetchall()
        ]
        if chunks:  # one statement (one round trip) for all the chunks
            conn.execute(
                sql.SQL("WITH {} SELECT 1").format(
                    sql.SQL(", ").join(
                        sql.SQL("d{} AS (DELETE FROM ONLY {} WHERE {})").format(sql.SQL(str(i)), sql.SQL(c), where)
                        for i, c in enumerate(chunks)
                    )
                )
            )
    else:
        conn.execute(sql.SQL("DELETE FROM {} WHERE {}").format(names.ident(target), where))
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    rows = (
        per_time(cols, source)
        if is_hypertable(conn, names.schema, source)
        else sql.SQL("SELECT {} FROM {} WHERE {}").format(cols, names.ident(source), where)
    )
    conn.execute(sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE {}").format(names.ident(target), cols, rows))
    return len(key_values)


def set_replayed(conn: psycopg.Connection, names: Names, upto: int) -> None:
    """Record the newest change id replayed (for the status; the change log, not this, says what is left)."""
    conn.execute(
        f"UPDATE {OWN_SCHEMA}.online_conversions SET replayed_through = %s WHERE table_schema = %s AND table_name = %s",
        (upto, names.schema, names.table),
    )


def pending_range(conn: psycopg.Connection, names: Names, phase: int) -> tuple[int, int]:
    """(after, upto) around every change of ``phase`` left in the log, as the statement sees it. Not a watermark:
    ids are taken when a row is written, not when it commits, so a change committed later may have a lower id;
    it stays in the log (replayed changes are deleted from it) and the next read takes it."""
    after, upto = row(
        conn,
        sql.SQL("SELECT coalesce(min(change_id), 1) - 1, coalesce(max(change_id), 0) FROM {} WHERE phase = %s").format(
            names.changes
        ),
        (phase,),
    )
    return after, upto


def catch_up_round(
    conn: psycopg.Connection,
    names: Names,
    h: HypertablePlan,
    keys: list[str],
    columns: list[str],
    *,
    limit: int | None,
    own_xids: set[int],
    unindexed: bool = False,
) -> tuple[int, int]:
    """One transaction of replay; returns (keys replayed, changes recorded and not yet replayed at its end).
    It replays the ``limit`` oldest changes its snapshot sees; with no limit, every one (:func:`replay` says what
    ``unindexed`` is)."""
    for attempt in (1, 2):
        try:
            with conn.transaction():
                # One snapshot for the round: the changes it replays are exactly the ones it deletes from the log.
                # A change committed meanwhile, whatever its id, is seen by neither and stays for the next round.
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                after, newest = pending_range(conn, names, PHASE_COPY)
                upto = (
                    newest
                    if limit is None
                    else one(
                        conn,
                        sql.SQL(
                            "SELECT coalesce((SELECT change_id FROM {} WHERE phase = %s AND change_id > %s "
                            "ORDER BY change_id OFFSET %s LIMIT 1), %s)"
                        ).format(names.changes),
                        (PHASE_COPY, after, limit - 1, newest),
                    )
                )
                replayed = replay(
                    conn, names, keys, columns, names.table, names.new, PHASE_COPY, after, upto, unindexed=unindexed
                )
                conn.execute(
                    sql.SQL("DELETE FROM {} WHERE phase = %s AND change_id > %s AND change_id <= %s").format(
                        names.changes
                    ),
                    (PHASE_COPY, after, upto),
                )
                set_replayed(conn, names, upto)
                own_xids.add(int(one(conn, "SELECT pg_current_xact_id()::text")))
            # What the application changed while this round ran is the backlog it leaves (read after the commit:
            # this sees what committed meanwhile).
            backlog = one(
                conn,
                sql.SQL("SELECT count(*) FROM {} WHERE phase = %s AND change_id > %s").format(names.changes),
                (PHASE_COPY, after),
            )
            return replayed, backlog
        except psycopg.errors.NotNullViolation:
            if attempt == 2:
                raise
            # The application wrote a row without a time value meanwhile: the plan's rule fills it in the
            # legacy table (recorded, and captured again), then the round runs again.
            with conn.transaction():
                fill_nulls(conn, names.schema, h, keys)
                own_xids.add(int(one(conn, "SELECT pg_current_xact_id()::text")))
    raise AssertionError("unreachable")
