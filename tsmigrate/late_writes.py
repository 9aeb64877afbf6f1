"""Rows others committed after the backup, carried from the failed database into the restored one.

A restore puts back the backup; anything another session committed after the backup's snapshot (a
session the fence could not stop, or a run with the fence off) is only in the failed database. Such
rows are found by their ``xmin``: a transaction the backup's snapshot does not see, and not one of the
run's own steps. They are copied into the restored database (inserted, or updated where the key is
there already: the newest version wins), table by table in foreign-key order, each in a savepoint; rows
that cannot go in are named by key. Sequences of the restored database are moved up to where they are
in the failed one, so new rows never reuse an id the failed copy holds.

Deletions made after the backup leave no row to find: they are found by key instead, as the keys of the
restored database that the failed one no longer holds (looked for only where the row counts differ, or where
the run's own steps may have taken rows away too). They are carried as deletions, in reverse foreign-key order;
where the run's own applied steps may have deleted from the same table, the deletions cannot be told from the
run's and are not carried but named, by table and key. Rows of a hypertable that sit in compressed batches are not
looked at: a batch has no row xmin, and only a compression job (paused while the run lasts) puts rows there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from .convert.catalog import primary_key_columns
from .convert.online import legacy_tables
from .db import insertable_columns, is_hypertable, one
from .db import regclass as regclass_of
from .errors import first_line
from .lint import rows_changed_in
from .lint.syntax import TableKey, same_table
from .target import Target

log = logging.getLogger(__name__)

_XID_SPACE = 1 << 32
_KEYS_SHOWN = 10
_ROW_BY_ROW_LIMIT = 10_000


@dataclass
class TableCarry:
    table: str
    found: int = 0  # rows in the failed database newer than the backup
    inserted: int = 0
    updated: int = 0
    left_keys: list[str] = field(default_factory=list)  # rows that could not be carried (their keys)
    problem: str | None = None
    compressed_chunks: int = 0  # chunks whose compressed batches were not looked at (see _row_sources)
    deleted: int = 0  # rows deleted by others after the backup, deleted in the restored database too
    # Keys deleted after the backup in a table the run's own steps may have deleted from: not told apart, not carried.
    deletions_left: list[str] = field(default_factory=list)
    deletion_problem: str | None = None

    @property
    def left(self) -> int:
        return self.found - self.inserted - self.updated


@dataclass
class CarryReport:
    source: str  # the failed database, where the rows are
    tables: list[TableCarry] = field(default_factory=list)
    sequences: list[str] = field(default_factory=list)  # "seq: 10 -> 25"

    @property
    def found(self) -> int:
        return sum(t.found for t in self.tables)

    @property
    def carried(self) -> int:
        return sum(t.inserted + t.updated for t in self.tables)

    @property
    def left(self) -> list[TableCarry]:
        return [t for t in self.tables if t.left or t.deletions_left]

    @property
    def deleted(self) -> int:
        return sum(t.deleted for t in self.tables)

    @property
    def changed(self) -> bool:
        """Whether others changed anything after the backup (rows written or deleted)."""
        return bool(self.found or self.deleted or any(t.deletions_left for t in self.tables))

    def describe(self) -> str:
        if not self.changed:
            return "no rows were committed or deleted by others after the backup"
        parts = []
        if self.found:
            carried = ", ".join(f"{t.table} {t.inserted + t.updated}" for t in self.tables if t.inserted + t.updated)
            parts.append(
                f"{self.carried} of {self.found} rows committed by others after the backup were carried over "
                f"from {self.source}" + (f" ({carried})" if carried else "")
            )
        if self.deleted:
            deleted = ", ".join(f"{t.table} {t.deleted}" for t in self.tables if t.deleted)
            parts.append(f"{self.deleted} rows deleted by others after the backup were deleted again ({deleted})")
        for t in self.tables:
            if t.left:
                parts.append(f"NOT carried: {t.left} rows of {t.table} ({t.problem}; keys {_keys(t.left_keys)})")
            if t.deletions_left:
                parts.append(
                    f"NOT carried: {len(t.deletions_left)} rows of {t.table} deleted after the backup are "
                    f"back ({t.deletion_problem}; keys {_keys(t.deletions_left)})"
                )
        return "; ".join(parts)


def _keys(keys: list[str]) -> str:
    return (", ".join(keys[:_KEYS_SHOWN]) + (" ..." if len(keys) > _KEYS_SHOWN else "")) or "unknown"


def parse_snapshot(text: str) -> tuple[int, int, list[int]]:
    xmin, xmax, xip = text.split(":")
    return int(xmin), int(xmax), [int(x) for x in xip.split(",") if x]


def _full_xid(snapshot_xmax: int) -> sql.Composable:
    """The 64-bit id of a row's xmin, taken as the one nearest the snapshot's xmax (a run is far shorter than
    2^31 transactions)."""
    return sql.SQL("({xmax} + ((t.xmin::text::bigint - {low} + {shift}) % {space} - {half}))").format(
        xmax=sql.Literal(snapshot_xmax),
        low=sql.Literal(snapshot_xmax % _XID_SPACE),
        shift=sql.Literal(_XID_SPACE + _XID_SPACE // 2),
        space=sql.Literal(_XID_SPACE),
        half=sql.Literal(_XID_SPACE // 2),
    )


def newer_rows_filter(snapshot: str, own_xids: set[int]) -> sql.Composable:
    """WHERE clause (table alias ``t``) for rows committed by others after the snapshot."""
    _, xmax, _ = parse_snapshot(snapshot)
    full = _full_xid(xmax)
    return sql.SQL(
        "NOT pg_visible_in_snapshot({full}::text::xid8, {snap}::pg_snapshot) AND {full} <> ALL({own}::bigint[])"
    ).format(full=full, snap=sql.Literal(snapshot), own=sql.Literal(sorted(own_xids)))


def foreign_key_order(conn: psycopg.Connection, tables: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Tables with every table they reference (among ``tables``) before them."""
    edges = conn.execute("""
        SELECT cn.nspname, c.relname, fn.nspname, f.relname FROM pg_constraint k
          JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
          JOIN pg_class f ON f.oid = k.confrelid JOIN pg_namespace fn ON fn.oid = f.relnamespace
         WHERE k.contype = 'f' AND k.conrelid <> k.confrelid""").fetchall()
    wanted = set(tables)
    needs: dict[tuple[str, str], set[tuple[str, str]]] = {t: set() for t in tables}
    for cs, ct, fs, ft in edges:
        if (cs, ct) in wanted and (fs, ft) in wanted:
            needs[(cs, ct)].add((fs, ft))
    ordered: list[tuple[str, str]] = []
    done: set[tuple[str, str]] = set()
    while len(ordered) < len(tables):
        ready = [t for t in tables if t not in done and needs[t] <= done] or [t for t in tables if t not in done][
            :1
        ]  # a cycle: take one and go on
        for t in ready:
            ordered.append(t)
            done.add(t)
    return ordered


def _row_sources(src: psycopg.Connection, schema: str, table: str) -> tuple[list[sql.Composable], int]:
    """Where to read a table's rows with their xmin: the table itself, or for a hypertable each chunk that is not
    compressed (TimescaleDB gives compressed batches no row xmin; only a compression job, paused while the run
    lasts, puts rows there). Returns the sources and how many compressed chunks were left out."""
    if not is_hypertable(src, schema, table):
        return [sql.Identifier(schema, table)], 0
    # An online conversion swapped in the hypertable: what the application wrote during the copy is in the legacy
    # table (the hypertable's copies of those rows are the run's own); what it wrote after the swap is in chunks.
    legacy: list[sql.Composable] = [
        sql.SQL("ONLY {}").format(sql.Identifier(s, kept))
        for s, t, kept in legacy_tables(src)
        if (s, t) == (schema, table)
    ]
    chunks = src.execute(
        """SELECT chunk_schema, chunk_name, is_compressed FROM timescaledb_information.chunks
                             WHERE hypertable_schema = %s AND hypertable_name = %s""",
        (schema, table),
    ).fetchall()
    return (
        legacy + [sql.SQL("ONLY {}").format(sql.Identifier(s, c)) for s, c, compressed in chunks if not compressed],
        sum(1 for *_, compressed in chunks if compressed),
    )


def _carry_table(
    src: psycopg.Connection, dst: psycopg.Connection, schema: str, table: str, where: sql.Composable
) -> TableCarry:
    result = TableCarry(f"{schema}.{table}")
    src_columns = set(insertable_columns(src, schema, table))
    columns = [c for c in insertable_columns(dst, schema, table) if c in src_columns]
    ident = sql.Identifier(schema, table)
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    regclass = regclass_of(schema, table)
    key = [c for c in primary_key_columns(dst, regclass) if c in columns]
    dst.execute("DROP TABLE IF EXISTS pg_temp.tsmigrate_carry")
    dst.execute(sql.SQL("CREATE TEMPORARY TABLE tsmigrate_carry AS SELECT {} FROM {} WITH NO DATA").format(cols, ident))
    sources, result.compressed_chunks = _row_sources(src, schema, table)
    for source in sources:
        with (
            src.cursor().copy(
                sql.SQL("COPY (SELECT {} FROM {} t WHERE {}) TO STDOUT").format(
                    sql.SQL(", ").join(sql.Identifier("t", c) for c in columns), source, where
                )
            ) as out,
            dst.cursor().copy(sql.SQL("COPY tsmigrate_carry ({}) FROM STDIN").format(cols)) as into,
        ):
            for block in out:
                into.write(block)
    result.found = one(dst, "SELECT count(*) FROM tsmigrate_carry")
    if not result.found:
        return result
    conflict: sql.Composable
    if key and len(key) < len(columns):
        conflict = sql.SQL("ON CONFLICT ({}) DO UPDATE SET {}").format(
            sql.SQL(", ").join(map(sql.Identifier, key)),
            sql.SQL(", ").join(
                sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in columns if c not in key
            ),
        )
    elif key:
        conflict = sql.SQL("ON CONFLICT DO NOTHING")
    else:
        conflict = sql.SQL("")

    def insert(where: sql.Composable) -> sql.Composed:
        return sql.SQL(
            "INSERT INTO {t} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM tsmigrate_carry {where} "
            "{conflict} RETURNING xmax = 0"
        ).format(t=ident, cols=cols, where=where, conflict=conflict)

    def count(rows) -> None:
        result.inserted += sum(1 for (fresh,) in rows if fresh)
        result.updated += sum(1 for (fresh,) in rows if not fresh)

    try:
        with dst.transaction():
            count(dst.execute(insert(sql.SQL(""))).fetchall())
        return result
    except psycopg.Error as exc:
        result.problem = first_line(exc)
    # Row by row, to carry what can be and name what cannot.
    key_expr = sql.SQL("row({})::text").format(sql.SQL(", ").join(map(sql.Identifier, key or columns[:3])))
    rows = dst.execute(
        sql.SQL("SELECT ctid::text, {} FROM tsmigrate_carry LIMIT %s").format(key_expr), (_ROW_BY_ROW_LIMIT,)
    ).fetchall()
    insert_one_row = insert(sql.SQL("WHERE ctid = %s::tid"))
    for ctid, row_key in rows:
        try:
            with dst.transaction():
                count(dst.execute(insert_one_row, (ctid,)).fetchall())
        except psycopg.Error:
            result.left_keys.append(row_key)
    return result


def _deleted_keys(
    src: psycopg.Connection, dst: psycopg.Connection, schema: str, table: str, key: list[str]
) -> list[str]:
    """Keys the restored database holds that the failed one no longer does (as row(...) texts): its keys are
    copied over into a temporary table and compared there."""
    ident = sql.Identifier(schema, table)
    cols = sql.SQL(", ").join(map(sql.Identifier, key))
    dst.execute("DROP TABLE IF EXISTS pg_temp.tsmigrate_kept_keys")
    dst.execute(
        sql.SQL("CREATE TEMPORARY TABLE tsmigrate_kept_keys AS SELECT {} FROM {} WITH NO DATA").format(cols, ident)
    )
    with src.cursor().copy(sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT").format(cols, ident)) as out:
        with dst.cursor().copy(sql.SQL("COPY tsmigrate_kept_keys ({}) FROM STDIN").format(cols)) as into:
            for block in out:
                into.write(block)
    dst.execute("ANALYZE pg_temp.tsmigrate_kept_keys")
    match = sql.SQL(" AND ").join(sql.SQL("k.{c} = t.{c}").format(c=sql.Identifier(c)) for c in key)
    return [
        r[0]
        for r in dst.execute(
            sql.SQL(
                "SELECT row({})::text FROM {} t WHERE NOT EXISTS (SELECT 1 FROM pg_temp.tsmigrate_kept_keys k WHERE {})"
            ).format(sql.SQL(", ").join(sql.Identifier("t", c) for c in key), ident, match)
        ).fetchall()
    ]


def _carry_deletions(
    src: psycopg.Connection,
    dst: psycopg.Connection,
    schema: str,
    table: str,
    result: TableCarry,
    run_may_have_deleted: bool,
    run_may_have_added: bool,
) -> None:
    """Rows deleted after the backup: deleted in ``dst`` too, or, where the run's own steps may have deleted from
    the table, named in ``result`` and left."""
    key = primary_key_columns(dst, regclass_of(schema, table))
    if not key:
        return  # nothing to find rows by; such a table cannot be told apart (and is rare: MS5.0's all have keys)
    ident = sql.Identifier(schema, table)
    if not (run_may_have_deleted or run_may_have_added):
        # Without deletions (and with no row the run's own steps added), both hold the same number of rows.
        counts = [one(c, sql.SQL("SELECT count(*) FROM {}").format(ident)) for c in (src, dst)]
        if counts[0] == counts[1]:
            return
    gone = _deleted_keys(src, dst, schema, table, key)
    if not gone:
        return
    if run_may_have_deleted:
        result.deletions_left = gone
        result.deletion_problem = "the run's own steps may have deleted rows there too: they cannot be told apart"
        return
    match = sql.SQL(" AND ").join(sql.SQL("k.{c} = t.{c}").format(c=sql.Identifier(c)) for c in key)
    try:
        with dst.transaction():
            result.deleted = dst.execute(
                sql.SQL(
                    "DELETE FROM {} t WHERE NOT EXISTS (SELECT 1 FROM pg_temp.tsmigrate_kept_keys k WHERE {})"
                ).format(ident, match)
            ).rowcount
    except psycopg.Error as exc:
        result.deletions_left = gone
        result.deletion_problem = first_line(exc)


# TimescaleDB's catalog sequences are the extension's (a superuser's): a failed conversion's rolled-back
# create_hypertable may have moved them in the failed copy, and no row of the application's takes their values.
_NOT_THE_APPLICATIONS = "schemaname NOT LIKE '\\_timescaledb%'"


def advance_sequences(src: psycopg.Connection, dst: psycopg.Connection) -> list[str]:
    """Move every sequence of ``dst`` up to its value in ``src`` where that is ahead (TimescaleDB's own aside)."""
    ahead: dict[str, int] = dict(
        src.execute(
            "SELECT format('%I.%I', schemaname, sequencename), last_value FROM pg_sequences "
            f"WHERE last_value IS NOT NULL AND {_NOT_THE_APPLICATIONS}"
        ).fetchall()
    )
    moved = []
    for name, value in dst.execute(
        f"SELECT format('%I.%I', schemaname, sequencename), last_value FROM pg_sequences WHERE {_NOT_THE_APPLICATIONS}"
    ).fetchall():
        newer = ahead.get(name)
        if newer is not None and (value is None or newer > value):
            dst.execute("SELECT setval(%s::regclass, %s, true)", (name, newer))
            moved.append(f"{name}: {value} -> {newer}")
    return moved


@dataclass(frozen=True)
class RunsOwnRowChanges:
    """What the run's own applied migration files may have done to the rows of each table: taken rows away, or
    added some ((schema or None, table) keys; None: anything, as when a file holds a DO block). The conversions
    change no row count and delete nothing."""

    taken_from: frozenset[TableKey] | None = None
    added_to: frozenset[TableKey] | None = None

    @classmethod
    def of_files(cls, sql_texts: list[str]) -> RunsOwnRowChanges:
        taken: set[TableKey] = set()
        added: set[TableKey] = set()
        for text in sql_texts:
            changed = rows_changed_in(text)
            if changed is None:
                return cls(None, None)
            taken |= changed[0]
            added |= changed[1]
        return cls(frozenset(taken), frozenset(added))

    def may_take(self, schema: str, table: str) -> bool:
        return self.taken_from is None or any(same_table(k, (schema.lower(), table.lower())) for k in self.taken_from)

    def may_add(self, schema: str, table: str) -> bool:
        return self.added_to is None or any(same_table(k, (schema.lower(), table.lower())) for k in self.added_to)


def carry_over(
    source: Target,
    dest: Target,
    snapshot: str,
    own_xids: set[int],
    tables: list[tuple[str, str]],
    runs_own: RunsOwnRowChanges = RunsOwnRowChanges(),
) -> CarryReport:
    """Carry rows committed after ``snapshot`` by others than the run from ``source`` into ``dest``, and the rows
    they deleted. ``runs_own``: what the run's own steps may have done to rows (by default: anything, so that no
    deletion is carried that may have been the run's)."""
    report = CarryReport(source.dbname or source.describe())
    where = newer_rows_filter(snapshot, own_xids)
    with source.connect(autocommit=False) as src, dest.connect(autocommit=False) as dst:
        src.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        if one(dst, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
            # The rows' own side effects (audit rows, counters) were committed too and are carried with them.
            dst.execute("SET LOCAL session_replication_role = replica")
        present = {
            tuple(r)
            for r in src.execute(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p')"
            ).fetchall()
        }
        ordered = foreign_key_order(dst, [t for t in tables if t in present])
        for schema, table in ordered:
            carried = _carry_table(src, dst, schema, table, where)
            if carried.found:
                log.info(
                    "carry-over: %s: %d newer rows, %d inserted, %d updated, %d left",
                    carried.table,
                    carried.found,
                    carried.inserted,
                    carried.updated,
                    carried.left,
                )
            report.tables.append(carried)
        # Deletions after the inserts, children before their parents.
        by_name = {t.table: t for t in report.tables}
        for schema, table in reversed(ordered):
            result = by_name[f"{schema}.{table}"]
            _carry_deletions(
                src, dst, schema, table, result, runs_own.may_take(schema, table), runs_own.may_add(schema, table)
            )
            if result.deleted or result.deletions_left:
                log.info(
                    "carry-over: %s: %d rows deleted after the backup deleted again, %d not told apart",
                    result.table,
                    result.deleted,
                    len(result.deletions_left),
                )
        report.sequences = advance_sequences(src, dst)
        dst.commit()
    return report
