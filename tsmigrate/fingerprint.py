"""Content fingerprints of tables: row count plus an order-independent hash of every row.

A fingerprint is computed over a chosen list of columns (the table's columns before the
migration), so columns a migration adds do not count. The hash is a sum of 64-bit row
hashes: one pass, no sort, the same whatever order the rows are stored in (a hypertable
spreads them over chunks), computed by parallel workers where PostgreSQL uses them.

Row hashes are PostgreSQL's ``hashtextextended`` of the row's text (the hash partitioning relies on, so it
does not change between versions). Fingerprints recorded before it (``md5-60``, in older backups) are
recomputed the way they were taken (with their 64 buckets by row hash, which narrowed a difference down; the
exact rows are counted from the backup's dump instead): a comparison always uses the algorithm of its older side.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from .db import one
from .tool_objects import OWN_SCHEMA, unfinished_builds

log = logging.getLogger(__name__)

BUCKETS = 64
# Row text depends on these settings: every fingerprint (and every row-by-row comparison) is taken under them.
PINNED_SETTINGS = (
    "SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; "
    "SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 1"
)
# algorithm: (row hash of a row's text, its 64-bit value from that hash, its bucket from that hash, or None)
ALGORITHMS = {
    "hte64": ("hashtextextended({row}, 0)", "h", None),  # no buckets: see fingerprint_table
    "md5-60": (
        "md5({row})",
        "('x' || substr(h, 1, 15))::bit(60)::bigint",
        "('x' || substr(h, 16, 2))::bit(8)::int % 64",
    ),
}
CURRENT_ALGORITHM = "hte64"


@dataclass(frozen=True)
class TableFingerprint:
    schema: str
    table: str
    columns: tuple[str, ...]
    rows: int
    digest: str  # sum of row hashes, as text (numeric)
    buckets: tuple[str, ...] = field(default=(), repr=False)  # "rows:hash sum" per bucket
    # (sequence-backed column, its highest value) when taken: rows above it were written later
    # (see integrity/content.py)
    high_water: tuple[str, int] | None = None
    algorithm: str = CURRENT_ALGORITHM

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"

    def to_dict(self) -> dict:
        return {
            "schema": self.schema,
            "table": self.table,
            "columns": list(self.columns),
            "rows": self.rows,
            "digest": self.digest,
            "buckets": list(self.buckets),
            "algorithm": self.algorithm,
            **({"high_water": list(self.high_water)} if self.high_water else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> TableFingerprint:
        high_water = d.get("high_water")
        return cls(
            d["schema"],
            d["table"],
            tuple(d["columns"]),
            int(d["rows"]),
            str(d["digest"]),
            tuple(d.get("buckets", ())),
            (high_water[0], int(high_water[1])) if high_water else None,
            d.get("algorithm", "md5-60"),
        )


@dataclass(frozen=True)
class Difference:
    table: str
    problem: str

    def __str__(self) -> str:
        return f"{self.table}: {self.problem}"


def user_tables(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """Ordinary and partitioned tables of user schemas (not catalogs, not TimescaleDB's, not ours: neither our
    schema nor a hypertable an online conversion is building, which a killed run may have left)."""
    rows = conn.execute(
        """
        SELECT n.nspname, c.relname
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p')
           AND n.nspname NOT IN ('pg_catalog', 'information_schema', %s)
           AND n.nspname NOT LIKE 'pg\\_%%'
           AND n.nspname NOT LIKE '\\_timescaledb%%'
           AND n.nspname NOT IN ('timescaledb_information', 'timescaledb_experimental')
           AND NOT c.relispartition
         ORDER BY 1, 2
        """,
        (OWN_SCHEMA,),
    ).fetchall()
    building = unfinished_builds(conn)
    return [(r[0], r[1]) for r in rows if (r[0], r[1]) not in building]


def table_columns(conn: psycopg.Connection, schema: str, table: str) -> tuple[str, ...]:
    rows = conn.execute(
        """SELECT a.attname FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum""",
        (schema, table),
    ).fetchall()
    return tuple(r[0] for r in rows)


def serial_column(conn: psycopg.Connection, schema: str, table: str) -> str | None:
    """The column whose default takes values from a sequence (the bigserial id), if any."""
    row = conn.execute(
        """
        SELECT a.attname FROM pg_attrdef ad
          JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
                          AND d.refclassid = 'pg_class'::regclass
          JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
          JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
         WHERE ad.adrelid = to_regclass(format('%%I.%%I', %s::text, %s::text))
         ORDER BY a.attnum LIMIT 1""",
        (schema, table),
    ).fetchone()
    return row[0] if row else None


def fingerprint_table(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    columns: tuple[str, ...] | None = None,
    overrides: dict[str, sql.Composable] | None = None,
    up_to: tuple[str, int] | None = None,
    high_water: bool = False,
    algorithm: str = CURRENT_ALGORITHM,
) -> TableFingerprint:
    """Fingerprint one table over ``columns`` (default: all of them).

    ``overrides`` replaces a column by an expression (used to see rows as they were
    before a documented change, e.g. a NULL time value that the conversion filled).
    ``up_to`` (column, value) counts only rows whose column is at most value; ``high_water`` records
    the table's sequence-backed column and its highest value. ``algorithm``: see ALGORITHMS (a comparison uses
    the one its other side was taken with).
    """
    columns = columns or table_columns(conn, schema, table)
    overrides = overrides or {}
    exprs = sql.SQL(", ").join(overrides.get(c, sql.Identifier("t", c)) for c in columns)
    row_hash, value, bucket = ALGORITHMS[algorithm]
    # One pass: each row's hash and its value; the row count and the sum (numeric: no overflow), per bucket where
    # the algorithm keeps buckets. Without buckets it is a plain aggregate, which PostgreSQL runs in parallel
    # workers: as fast as one hash pass over the table.
    rows_of = sql.SQL(
        "(SELECT {value} AS v{bucket} FROM (SELECT {row_hash} AS h FROM {table} AS t WHERE {where}) AS hashed) AS x"
    ).format(
        value=sql.SQL(value),
        bucket=sql.SQL(f", {bucket} AS b") if bucket else sql.SQL(""),
        row_hash=sql.SQL(row_hash).format(row=sql.SQL("ROW({})::text").format(exprs)),
        table=sql.Identifier(schema, table),
        where=sql.SQL("{} <= {}").format(sql.Identifier("t", up_to[0]), sql.Literal(up_to[1]))
        if up_to
        else sql.SQL("true"),
    )
    query = (
        sql.SQL("SELECT b, count(*), sum(v)::text FROM {} GROUP BY b")
        if bucket
        else sql.SQL("SELECT 0, count(*), coalesce(sum(v), 0)::text FROM {}")
    ).format(rows_of)
    with conn.transaction():
        conn.execute(PINNED_SETTINGS)
        by_bucket = {b: (count, total) for b, count, total in conn.execute(query).fetchall()}
        mark = None
        column = serial_column(conn, schema, table) if high_water else None
        if column:
            top = one(
                conn, sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(column), sql.Identifier(schema, table))
            )
            mark = (column, int(top)) if top is not None else None
    rows = sum(count for count, _ in by_bucket.values())
    digest = sum(int(total) for _, total in by_bucket.values())
    buckets = (
        tuple(f"{by_bucket[b][0]}:{by_bucket[b][1]}" if b in by_bucket else "0:0" for b in range(BUCKETS))
        if bucket
        else ()
    )
    return TableFingerprint(schema, table, tuple(columns), int(rows), str(digest), buckets, mark, algorithm)


def fingerprint_database(
    conn: psycopg.Connection,
    tables: list[tuple[str, str]] | None = None,
    progress=None,
    high_water: bool = False,
    like: dict[str, TableFingerprint] | None = None,
) -> dict[str, TableFingerprint]:
    """Fingerprints of every user table (or the ones given), keyed by schema.table; ``like``: fingerprints to
    compare with, whose algorithm each table's is taken with."""
    tables = tables if tables is not None else user_tables(conn)
    result: dict[str, TableFingerprint] = {}
    started = time.monotonic()
    for i, (schema, table) in enumerate(tables, 1):
        other = (like or {}).get(f"{schema}.{table}")
        fp = fingerprint_table(
            conn, schema, table, high_water=high_water, algorithm=other.algorithm if other else CURRENT_ALGORITHM
        )
        result[fp.name] = fp
        if progress:
            progress(i, len(tables), fp, time.monotonic() - started)
    return result


def compare(before: dict[str, TableFingerprint], after: dict[str, TableFingerprint]) -> list[Difference]:
    """Differences between two sets of fingerprints, in words a DBA reads."""
    differences = []
    for name, old in sorted(before.items()):
        new = after.get(name)
        if new is None:
            differences.append(Difference(name, "table is missing"))
        elif new.algorithm != old.algorithm:
            differences.append(
                Difference(
                    name,
                    f"fingerprints taken with different algorithms ({old.algorithm}, "
                    f"{new.algorithm}): not comparable; this is a bug of tsmigrate",
                )
            )
        elif new.rows != old.rows:
            differences.append(Difference(name, f"{old.rows} rows before, {new.rows} now ({new.rows - old.rows:+d})"))
        elif new.digest != old.digest:
            # same algorithm (checked above): as many buckets on both sides
            changed = (
                sum(1 for a, b in zip(old.buckets, new.buckets, strict=True) if a != b)
                if old.buckets and new.buckets
                else 0
            )
            where = (
                f" (in {changed} of {BUCKETS} row groups: at least {max(1, changed // 2)} rows differ)"
                if changed
                else ""
            )
            differences.append(Difference(name, f"same row count ({old.rows}) but row contents differ{where}"))
    return differences
