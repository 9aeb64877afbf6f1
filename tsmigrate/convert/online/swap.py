"""The swap (and the swap back): one short locked transaction that moves the name and all that goes with it;
then verification and the end of the legacy table."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import psycopg
from psycopg import sql

from ...db import insertable_columns, one, regclass, row
from ...fingerprint import ALGORITHMS, PINNED_SETTINGS
from ...plan import HypertablePlan
from ...tool_objects import CAPTURE_BACK_INSERT_TRIGGER, CAPTURE_BACK_TRIGGER, CAPTURE_TRIGGER, OWN_SCHEMA
from ..catalog import primary_key_columns
from ..result import ConversionError
from .build import Grant, grant, relation_grants
from .capture import forget_own_replays, pending_range, replay, set_replayed, with_lock_retries
from .state import PHASE_AFTER_SWAP, PHASE_COPY, Names, PhaseHook, conversion_state


# -- 5. swap -------------------------------------------------------------------------------------------
class StepClock:
    """Milliseconds per step of the locked transaction, added into ``into`` (for the benchmark's breakdown)."""

    def __init__(self, into: dict[str, float] | None) -> None:
        self.into = into if into is not None else {}
        self.last = time.monotonic()

    def done(self, step: str) -> None:
        now = time.monotonic()
        self.into[step] = round(self.into.get(step, 0.0) + 1000 * (now - self.last), 1)
        self.last = now


@dataclass(frozen=True)
class SavedView:
    schema: str
    name: str
    materialized: bool
    definition: str
    owner: str
    options: list[str] | None
    comment: str | None
    grants: tuple[Grant, ...]
    indexes: tuple[str, ...]


def dependent_views(conn: psycopg.Connection, regclass: str) -> list[SavedView]:
    """Views and materialized views that read the table, directly or through other views, in creation order."""
    rows = conn.execute(
        """
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
         GROUP BY 1, 2, 3, 4, 5, 6, 7, 8 ORDER BY max(deps.depth), 1, 2""",
        (regclass, regclass),
    ).fetchall()
    views = []
    for schema, name, materialized, definition, owner, options, comment, view_regclass, _ in rows:
        indexes = tuple(
            r[0]
            for r in conn.execute(
                "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass", (view_regclass,)
            )
        )
        views.append(
            SavedView(
                schema,
                name,
                materialized,
                definition,
                owner,
                options,
                comment,
                tuple(relation_grants(conn, view_regclass)),
                indexes,
            )
        )
    return views


def check_views_can_move(conn: psycopg.Connection, names: Names) -> None:
    """Before anything changes: the views that read the table are recreated on the hypertable, which only their
    owner (or a member of that role) may do."""
    foreign = [
        f"{v.schema}.{v.name} (owner {v.owner})"
        for v in dependent_views(conn, regclass(names.schema, names.table))
        if not one(conn, "SELECT pg_has_role(current_user, %s, 'MEMBER')", (v.owner,))
    ]
    if foreign:
        raise ConversionError(
            f"{names.schema}.{names.table}: the conversion recreates the views that read it, and "
            f"{one(conn, 'SELECT current_user')} may not recreate {', '.join(foreign)}: run as "
            "their owner or a superuser, or grant the run's role membership in the owner role"
        )


def drop_views(conn: psycopg.Connection, views: list[SavedView]) -> None:
    for v in reversed(views):
        conn.execute(
            sql.SQL("DROP {} {}").format(
                sql.SQL("MATERIALIZED VIEW" if v.materialized else "VIEW"), sql.Identifier(v.schema, v.name)
            )
        )


def create_views(conn: psycopg.Connection, views: list[SavedView]) -> None:
    for v in views:
        ident = sql.Identifier(v.schema, v.name)
        kind = sql.SQL("MATERIALIZED VIEW" if v.materialized else "VIEW")
        options = sql.SQL(" WITH ({})").format(sql.SQL(", ".join(v.options))) if v.options else sql.SQL("")
        conn.execute(
            sql.SQL("CREATE {} {}{} AS {}").format(kind, ident, options, sql.SQL(v.definition.rstrip().rstrip(";")))
        )
        conn.execute(sql.SQL("ALTER {} {} OWNER TO {}").format(kind, ident, sql.Identifier(v.owner)))
        if v.comment is not None:
            conn.execute(sql.SQL("COMMENT ON {} {} IS {}").format(kind, ident, sql.Literal(v.comment)))
        grant(conn, ident, list(v.grants))
        for index in v.indexes:
            conn.execute(index)


def rename_tables(conn: psycopg.Connection, names: Names, leaving: str, leaving_to: str, arriving: str) -> None:
    conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(names.ident(leaving), sql.Identifier(leaving_to)))
    conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(names.ident(arriving), sql.Identifier(names.table)))


def own_sequences(conn: psycopg.Connection, names: Names, previous_owner: str) -> None:
    """Sequences owned by the other table's columns (bigserial ids) go to the table with the name: they would be
    dropped with the other one otherwise. Both tables' defaults use them already (copied by LIKE)."""
    for seq, column in conn.execute(
        """
            SELECT d.objid::regclass::text, a.attname FROM pg_depend d
              JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
              JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
             WHERE d.classid = 'pg_class'::regclass AND d.refobjid = %s::regclass AND d.deptype = 'a'
               AND d.refobjsubid > 0""",
        (regclass(names.schema, previous_owner),),
    ).fetchall():
        conn.execute(
            sql.SQL("ALTER SEQUENCE {} OWNED BY {}.{}").format(
                sql.SQL(seq), names.ident(names.table), sql.Identifier(column)
            )
        )


def rename_indexes(conn: psycopg.Connection, names: Names, pairs: list[tuple[str, str]]) -> None:
    """ALTER INDEX ... RENAME (which renames a constraint's index with its constraint)."""
    for old, new in pairs:
        if old and new:
            conn.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(names.ident(old), sql.Identifier(new)))


def backs_constraint(conn: psycopg.Connection, schema: str, index: str) -> bool:
    return bool(
        one(
            conn,
            "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conindid = to_regclass(%s))",
            (regclass(schema, index),),
        )
    )


def split_renames(
    conn: psycopg.Connection, names: Names, renames: list[list[str]]
) -> tuple[list[list[str]], list[list[str]]]:
    """(named before the swap's lock, named under it). Renaming a hypertable's index renames each chunk's: work
    per chunk, kept out of the lock where the name is one no statement of the application can use. A constraint's
    name can be (ON CONFLICT ON CONSTRAINT, error messages), so a constraint's index is renamed under the lock."""
    early: list[list[str]] = []
    late: list[list[str]] = []
    for final, legacy_aside, built in renames:
        constrained = backs_constraint(conn, names.schema, built) or (
            legacy_aside != "" and backs_constraint(conn, names.schema, final)
        )
        (late if constrained else early).append([final, legacy_aside, built])
    return early, late


def name_indexes_early(conn: psycopg.Connection, names: Names, early: list[list[str]]) -> None:
    """Within the caller's transaction (legacy index renames take a lock that does not stop the application's
    reads and writes): the legacy table's plain indexes go aside, the new table's take their names."""
    rename_indexes(conn, names, [(final, legacy_aside) for final, legacy_aside, _ in early])
    rename_indexes(conn, names, [(built, final) for final, _, built in early])


def unname_indexes_early(conn: psycopg.Connection, names: Names, early: list[list[str]]) -> None:
    """The swap did not happen: the names go back (the legacy table's as they were)."""
    with conn.transaction():
        rename_indexes(conn, names, [(final, built) for final, _, built in early])
        rename_indexes(conn, names, [(legacy_aside, final) for final, legacy_aside, _ in early])


def application_triggers(conn: psycopg.Connection, regclass: str) -> list[tuple[str, str, str]]:
    """The application's triggers: not ours (change capture), not TimescaleDB's own (its insert blocker)."""
    return conn.execute(
        "SELECT tgname, pg_get_triggerdef(oid), tgenabled FROM pg_trigger WHERE tgrelid = %s::regclass "
        "AND NOT tgisinternal AND tgname NOT LIKE 'tsmigrate\\_capture%%' "
        "AND tgfoid::regproc::text NOT LIKE '\\_timescaledb%%' ORDER BY tgname",
        (regclass,),
    ).fetchall()


def checked_application_triggers(conn: psycopg.Connection, names: Names) -> list[tuple[str, str, str]]:
    triggers = application_triggers(conn, regclass(names.schema, names.table))
    odd = [name for name, _, enabled in triggers if enabled != "O"]
    if odd:
        raise ConversionError(
            f"{names.schema}.{names.table} has triggers that are disabled or fire only on replicas "
            f"({', '.join(odd)}); a hypertable cannot keep that state: enable or drop them first"
        )
    return triggers


def sync_identity(conn: psycopg.Connection, names: Names, source: str, target: str) -> None:
    """Identity columns have a sequence of their own per table: the target's goes on from where the source's is."""
    for (column,) in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attidentity <> '' AND NOT attisdropped",
        (regclass(names.schema, target),),
    ).fetchall():
        source_seq, target_seq = (
            one(conn, "SELECT pg_get_serial_sequence(%s, %s)", (regclass(names.schema, t), column))
            for t in (source, target)
        )
        last, called = row(conn, sql.SQL("SELECT last_value, is_called FROM {}").format(sql.SQL(source_seq)))
        conn.execute("SELECT setval(%s::regclass, %s, %s)", (target_seq, last, called))


def move_name(
    conn: psycopg.Connection,
    names: Names,
    renames: list[list[str]],
    triggers,
    *,
    legacy_to: str,
    steps: StepClock | None = None,
) -> list[str]:
    """Within the caller's transaction, the table's lock held: the new table takes the name and everything the
    application sees with it (index names, sequences, triggers, dependent views); the legacy one goes to
    ``legacy_to``. Returns the views recreated."""
    steps = steps or StepClock(None)
    views = dependent_views(conn, regclass(names.schema, names.table))
    drop_views(conn, views)
    steps.done("drop_views")
    for trigger in (CAPTURE_TRIGGER, CAPTURE_TRIGGER + "_truncate"):
        conn.execute(
            sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(trigger), names.ident(names.table))
        )
    rename_tables(conn, names, names.table, legacy_to, names.new)
    # Index names are unique per schema: the legacy table's go aside before the new ones take them.
    rename_indexes(conn, names, [(final, aside) for final, aside, _ in renames])
    rename_indexes(conn, names, [(built, final) for final, _, built in renames])
    steps.done("rename")
    own_sequences(conn, names, legacy_to)
    sync_identity(conn, names, legacy_to, names.table)
    steps.done("sequences")
    for _, definition, _ in triggers:  # "ON schema.table" now names the hypertable
        conn.execute(sql.SQL(definition))
    steps.done("application_triggers")
    create_views(conn, views)
    steps.done("create_views")
    return [f"{v.schema}.{v.name}" for v in views]


def swap_in(
    conn: psycopg.Connection,
    names: Names,
    h: HypertablePlan,
    keys,
    columns,
    renames,
    *,
    on_swapped: Callable[[psycopg.Connection], None] | None,
    own_xids: set[int],
    on_phase: PhaseHook,
    capture_back_mark: int,
    steps_ms: dict[str, float] | None = None,
) -> tuple[float, int]:
    """The short transaction of the online path; returns when the legacy table's lock was granted
    (``time.monotonic()``: the caller measures the lock until the commit that releases it) and the keys replayed
    under it. Nothing in it grows
    with the table's rows: the backlog replayed is a few keys (the caller caught up before), the capture back is
    armed before it (capture.arm_capture_back), the truncation check reads an index of truncations."""
    triggers = checked_application_triggers(conn, names)
    conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(names.ident(names.table)))
    locked = time.monotonic()
    on_phase("locked", conn)
    steps = StepClock(steps_ms)
    # Every change left in the log: the lock waited for the last writer, so none is still to commit.
    after, newest = pending_range(conn, names, PHASE_COPY)
    replayed = replay(
        conn, names, keys, columns, names.table, names.new, PHASE_COPY, after, newest, time_column=h.time_column
    )
    set_replayed(conn, names, newest)
    forget_own_replays(conn, names, capture_back_mark)
    steps.done("catch_up")
    on_phase("swapping", conn)
    move_name(conn, names, renames, triggers, legacy_to=names.legacy, steps=steps)
    conn.execute(
        f"UPDATE {OWN_SCHEMA}.online_conversions SET state = 'swapped', swapped_at = now(), "
        "swap_ms = %s WHERE table_schema = %s AND table_name = %s",
        (1000 * (time.monotonic() - locked), names.schema, names.table),
    )
    own_xids.add(int(one(conn, "SELECT pg_current_xact_id()::text")))
    if on_swapped is not None:
        on_swapped(conn)
    steps.done("record")
    return locked, replayed


# -- 6. after the swap ---------------------------------------------------------------------------------
def verify(conn: psycopg.Connection, schema: str, table: str) -> tuple[int, list[str]]:
    """Compare the legacy table (written by nobody since the swap) with the hypertable, leaving out the keys the
    application changed in the hypertable since the swap and the rows above the watermark without a legacy row of
    their key (inserted since). Returns (rows compared, differing keys: up to 10).

    At the cost of one hashing pass over each table: per side the row count and the sum of 64-bit row hashes
    (:func:`hash_sums`, as the post-flight fingerprints take them). A sum does not depend on the rows' order, so
    no join and no sort; a difference goes unseen only if the sums collide, with a probability of about 2^-64,
    the fingerprints' own standard. Only when the sides differ are the rows joined by key, to name the keys that
    differ (:func:`differing_rows`). Both under the fingerprints' pinned settings: row text depends on them."""
    state = conversion_state(conn, schema, table)
    if state is None or state["state"] != "swapped":
        raise ConversionError(f"{schema}.{table}: no online conversion to verify")
    with conn.transaction():
        conn.execute(PINNED_SETTINGS)
        legacy, new = hash_sums(conn, schema, table, state)
        if legacy == new:
            return legacy[0], []
        return differing_rows(conn, schema, table, state)


def compared_columns(conn: psycopg.Connection, schema: str, state: dict) -> tuple[list[str], list[str]]:
    """(key, columns compared): the legacy table's primary key and the columns an INSERT names."""
    legacy = state["legacy_name"]
    return primary_key_columns(conn, regclass(schema, legacy)), insertable_columns(conn, schema, legacy)


def hash_sums(
    conn: psycopg.Connection, schema: str, table: str, state: dict
) -> tuple[tuple[int, Decimal], tuple[int, Decimal]]:
    """(rows, sum of row hashes) of the legacy table and of the hypertable, each over the rows :func:`verify`
    compares: keys not in the change log since the swap; on the hypertable's side, no row above the watermark
    without a legacy row of its key. One statement, so both sides are read in one snapshot while the application
    writes."""
    names = Names(schema, table)
    keys, columns = compared_columns(conn, schema, state)
    row_hash = ALGORITHMS["hte64"][0]

    def same_key(a: str, b: str) -> sql.Composable:
        return sql.SQL(" AND ").join(
            sql.SQL("{}.{k} = {}.{k}").format(sql.Identifier(a), sql.Identifier(b), k=sql.Identifier(k)) for k in keys
        )

    def hashes(relation: str, alias: str, where: sql.Composable) -> sql.Composable:
        text = sql.SQL("row({})::text").format(sql.SQL(", ").join(sql.Identifier(alias, c) for c in columns))
        return sql.SQL(
            "SELECT {hash} AS h FROM {relation} {alias} "
            "WHERE NOT EXISTS (SELECT 1 FROM {changes} c WHERE c.phase = {phase} AND {changed}) AND {where}"
        ).format(
            hash=sql.SQL(row_hash).format(row=text),
            relation=names.ident(relation),
            alias=sql.Identifier(alias),
            changes=names.changes,
            phase=sql.Literal(PHASE_AFTER_SWAP),
            changed=same_key("c", alias),
            where=where,
        )

    legacy = state["legacy_name"]
    above = above_watermark(state, "n")
    # The rows above the watermark apart, so only they meet the anti-join (an index range, or the newest chunks);
    # an OR in one scan would make it a correlated subquery per row, which keeps the scan out of parallel workers.
    # The watermark's column is a key column or the time column, never NULL (a NULL would drop its row from this
    # side only: the counts would differ, and the join would answer).
    new_rows = sql.SQL("{} UNION ALL {}").format(
        hashes(table, "n", sql.SQL("NOT ({})").format(above)),
        hashes(
            table,
            "n",
            sql.SQL("{} AND EXISTS (SELECT 1 FROM {} o WHERE {})").format(
                above, names.ident(legacy), same_key("o", "n")
            ),
        ),
    )
    # Each side a plain aggregate over one pass (numeric sum: no overflow), which PostgreSQL runs in parallel.
    legacy_rows, legacy_sum, new_count, new_sum = row(
        conn,
        sql.SQL(
            "SELECT l.n, l.h, n.n, n.h FROM (SELECT count(*) AS n, coalesce(sum(h), 0) AS h FROM ({}) x) l, "
            "(SELECT count(*) AS n, coalesce(sum(h), 0) AS h FROM ({}) y) n"
        ).format(hashes(legacy, "l", sql.SQL("true")), new_rows),
    )
    return (legacy_rows, legacy_sum), (new_count, new_sum)


def differing_rows(conn: psycopg.Connection, schema: str, table: str, state: dict) -> tuple[int, list[str]]:
    """(rows compared, up to 10 keys that differ): the legacy table and the hypertable joined by key, row by row,
    leaving out what :func:`verify` leaves out."""
    names = Names(schema, table)
    keys, columns = compared_columns(conn, schema, state)
    on = sql.SQL(" AND ").join(sql.SQL("l.{k} = n.{k}").format(k=sql.Identifier(k)) for k in keys)
    as_text = lambda alias: sql.SQL("row({})::text").format(  # noqa: E731 - one expression, used twice
        sql.SQL(", ").join(sql.Identifier(alias, c) for c in columns)
    )
    changed = sql.SQL(" AND ").join(sql.SQL("c.{k} = coalesce(l.{k}, n.{k})").format(k=sql.Identifier(k)) for k in keys)
    key_text = sql.SQL("row({})::text").format(
        sql.SQL(", ").join(sql.SQL("coalesce(l.{k}, n.{k})").format(k=sql.Identifier(k)) for k in keys)
    )
    compared, differing = row(
        conn,
        sql.SQL("""
        SELECT count(*), (array_agg({key_text}) FILTER (WHERE {lrow} IS DISTINCT FROM {nrow}))[1:10]
          FROM {legacy} l FULL JOIN {new} n ON {on}
         WHERE NOT EXISTS (SELECT 1 FROM {changes} c WHERE c.phase = {phase} AND {changed})
           AND NOT (l IS NULL AND {inserted_since})""").format(
            inserted_since=above_watermark(state, "n"),
            key_text=key_text,
            lrow=sql.SQL("CASE WHEN l IS NULL THEN NULL ELSE {} END").format(as_text("l")),
            nrow=sql.SQL("CASE WHEN n IS NULL THEN NULL ELSE {} END").format(as_text("n")),
            legacy=names.ident(state["legacy_name"]),
            new=names.ident(table),
            on=on,
            changes=names.changes,
            phase=sql.Literal(PHASE_AFTER_SWAP),
            changed=changed,
        ),
    )
    return compared, list(differing or [])


def drop_capture_back(conn: psycopg.Connection, names: Names) -> None:
    for trigger in (CAPTURE_BACK_TRIGGER, CAPTURE_BACK_INSERT_TRIGGER):
        conn.execute(
            sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(trigger), names.ident(names.table))
        )


def drop_legacy(conn: psycopg.Connection, schema: str, table: str) -> str:
    """End an online conversion: the legacy table, the change log and its triggers go. Returns what was dropped."""
    names = Names(schema, table)
    state = conversion_state(conn, schema, table)
    if state is None or state["state"] != "swapped":
        raise ConversionError(f"{schema}.{table}: no legacy table of an online conversion is kept")
    with conn.transaction():
        drop_capture_back(conn, names)
        conn.execute(sql.SQL("DROP TABLE {}").format(names.ident(state["legacy_name"])))
        conn.execute(sql.SQL("DROP TABLE {}").format(names.changes))
        conn.execute(sql.SQL("DROP FUNCTION {}()").format(names.capture_function))
        conn.execute(
            f"DELETE FROM {OWN_SCHEMA}.online_conversions WHERE table_schema = %s AND table_name = %s", (schema, table)
        )
    return f"{schema}.{state['legacy_name']}"


def above_watermark(state: dict, alias: str | None = None) -> sql.Composable:
    """The rows the capture back leaves to a range: above the watermark (none, for a conversion without one)."""
    if not state.get("watermark_column"):
        return sql.SQL("false")
    column = sql.Identifier(alias, state["watermark_column"]) if alias else sql.Identifier(state["watermark_column"])
    return sql.SQL("{} > {}").format(column, sql.Literal(state["watermark"]))


def take_above_watermark(
    conn: psycopg.Connection, names: Names, state: dict, columns: list[str], source: str, target: str
) -> int:
    """Within the caller's transaction: ``target``'s rows above the watermark made what ``source``'s are."""
    if not state.get("watermark_column"):
        return 0
    conn.execute(sql.SQL("DELETE FROM {} WHERE {}").format(names.ident(target), above_watermark(state)))
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    return conn.execute(
        sql.SQL(
            "INSERT INTO {target} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM {source} WHERE {above}"
        ).format(target=names.ident(target), cols=cols, source=names.ident(source), above=above_watermark(state))
    ).rowcount


def swap_back(
    conn: psycopg.Connection, schema: str, table: str, *, lock_timeout_ms: int = 500, attempts: int = 20
) -> int:
    """Undo an online conversion in one short transaction: the rows the application changed in the hypertable
    since the swap are replayed into the legacy table, which takes the name back; the hypertable is dropped.
    Returns the keys replayed. The ledger's record of the conversion goes too, so a later run converts again."""
    names = Names(schema, table)
    state = conversion_state(conn, schema, table)
    if state is None or state["state"] != "swapped":
        raise ConversionError(f"{schema}.{table}: no online conversion to undo (its legacy table is not kept)")
    legacy = state["legacy_name"]
    keys = primary_key_columns(conn, regclass(schema, legacy))
    columns = insertable_columns(conn, schema, legacy)
    renames = state["index_renames"]
    time_column = one(  # the hypertable's time dimension: the swap back's replay names the chunks it reads
        conn,
        "SELECT column_name FROM timescaledb_information.dimensions WHERE hypertable_schema = %s "
        "AND hypertable_name = %s ORDER BY dimension_number LIMIT 1",
        (schema, table),
    )

    def body() -> int:
        conn.execute(
            sql.SQL("LOCK TABLE {}, {} IN ACCESS EXCLUSIVE MODE").format(names.ident(table), names.ident(legacy))
        )
        # The rows above the watermark first (the application's inserts, not captured), then the captured keys
        # (inserts at or below it, updates, deletes: a key in both is replaced twice, ending as it is now).
        replayed = take_above_watermark(conn, names, state, columns, table, legacy)
        replayed += replay(
            conn,
            names,
            keys,
            columns,
            table,
            legacy,
            PHASE_AFTER_SWAP,
            0,
            one(conn, sql.SQL("SELECT coalesce(max(change_id), 0) FROM {}").format(names.changes)),
            time_column=time_column,
        )
        hypertable = regclass(schema, table)
        views = dependent_views(conn, hypertable)
        drop_views(conn, views)
        triggers = application_triggers(conn, hypertable)
        drop_capture_back(conn, names)
        rename_tables(conn, names, table, names.new, legacy)
        own_sequences(conn, names, names.new)
        sync_identity(conn, names, names.new, table)
        conn.execute(sql.SQL("DROP TABLE {}").format(names.ident(names.new)))  # its index names go with it
        rename_indexes(conn, names, [(aside, final) for final, aside, _ in renames])
        existing = {r[0] for r in application_triggers(conn, regclass(schema, table))}
        for name, definition, _ in triggers:
            if name not in existing:
                conn.execute(sql.SQL(definition))
        create_views(conn, views)
        conn.execute(sql.SQL("DROP TABLE {}").format(names.changes))
        conn.execute(sql.SQL("DROP FUNCTION {}()").format(names.capture_function))
        conn.execute(
            f"DELETE FROM {OWN_SCHEMA}.online_conversions WHERE table_schema = %s AND table_name = %s", (schema, table)
        )
        if one(conn, "SELECT to_regclass(%s)", (f"{OWN_SCHEMA}.ledger",)) is not None:
            conn.execute(f"DELETE FROM {OWN_SCHEMA}.ledger WHERE step = %s", (f"convert:{table}",))
        return replayed

    return with_lock_retries(conn, names, f"{schema}.{table}: swapping back", lock_timeout_ms, attempts, body)
