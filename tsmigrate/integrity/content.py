"""Post-flight integrity of the data: every table of the baseline as before.

``content_differences``: every table of the baseline has the same row count and the same
content fingerprint over the columns it had before (rows whose NULL time the conversion
filled are seen as they were). When the dump of the baseline holds the table's rows, the
rows that differ are counted exactly (a set difference of row hashes, in a temporary table
that disappears with the transaction).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from ..baseline import Baseline
from ..convert.catalog import primary_key_columns
from ..convert.nulltime import columns_as_before_fills
from ..db import display_name, one
from ..fingerprint import BUCKETS, PINNED_SETTINGS, TableFingerprint, compare, fingerprint_table, table_columns

# Counting the exact rows that differ needs the baseline rows in a temporary table: up to this many.
EXACT_COUNT_MAX_ROWS = 2_000_000


@dataclass(frozen=True)
class TableDifference:
    table: str
    kind: str  # missing, columns, rows (count differs), content (same count, rows differ)
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class RowDifference:
    gone: int  # rows of the baseline not found now (deleted or changed)
    new: int  # rows now that the baseline did not have (inserted or changed)
    examples: tuple[str, ...] = ()  # keys of some rows of the baseline that are gone or changed

    def describe(self) -> str:
        e = f" (for example {'; '.join(self.examples)})" if self.examples else ""
        if self.gone == self.new:
            return f"{self.gone} row{'s' if self.gone != 1 else ''} differ{'s' if self.gone == 1 else ''}{e}"
        return (
            f"{self.gone} row{'s' if self.gone != 1 else ''} of the baseline gone or changed{e}, "
            f"{self.new} row{'s' if self.new != 1 else ''} not in the baseline"
        )


def fingerprints_as_before(
    conn: psycopg.Connection, before: dict[str, TableFingerprint], filled_after: datetime | None = None
) -> tuple[dict[str, TableFingerprint], list[TableDifference]]:
    """Today's fingerprints over the columns each table had before; tables or columns gone are problems.

    ``filled_after``: when ``before`` was taken (a backup's snapshot); NULL-time fills made earlier count as
    they are now. Without it every fill is shown as the NULL it was (``before`` from the legacy database)."""
    now, problems = {}, []
    for name, old in sorted(before.items()):
        schema, table = old.schema, old.table
        existing = table_columns(conn, schema, table)
        if not existing:
            continue  # compare() reports the table as missing
        gone = [c for c in old.columns if c not in existing]
        if gone:
            problems.append(
                TableDifference(
                    name,
                    "columns",
                    f"{name}: column{'s' if len(gone) > 1 else ''} "
                    f"{', '.join(gone)} existed before and {'are' if len(gone) > 1 else 'is'} gone; "
                    "restore them from the baseline backup or fix the migration that dropped them",
                )
            )
            continue
        now[name] = fingerprint_table(
            conn,
            schema,
            table,
            old.columns,
            algorithm=old.algorithm,
            overrides=columns_as_before_fills(conn, schema, table, filled_after),
        )
    return now, problems


def count_row_differences(conn: psycopg.Connection, baseline: Baseline, old: TableFingerprint) -> RowDifference | None:
    """Exactly how many rows of one table differ from the dump of the baseline (None if it cannot tell).

    The dump's rows go into a temporary table inside a transaction that is rolled back.
    """
    if old.rows > EXACT_COUNT_MAX_ROWS:
        return None
    table = sql.Identifier(old.schema, old.table)
    scratch = sql.Identifier("pg_temp", "tsmigrate_baseline_rows")
    with baseline.table_data(old.schema, old.table) as data:
        if (
            data is None
            or set(old.columns) - set(data.columns)
            or set(data.columns) - set(table_columns(conn, old.schema, old.table))
        ):
            return None
        with conn.transaction(force_rollback=True):
            conn.execute(PINNED_SETTINGS)  # row text as the fingerprints read it
            conn.execute(sql.SQL("SET LOCAL client_encoding = {}").format(sql.Literal(data.encoding)))
            conn.execute(
                sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                    scratch, sql.SQL(", ").join(map(sql.Identifier, data.columns)), table
                )
            )
            with (
                conn.cursor() as cur,
                cur.copy(
                    sql.SQL("COPY {} ({}) FROM STDIN").format(
                        scratch, sql.SQL(", ").join(map(sql.Identifier, data.columns))
                    )
                ) as copy,
            ):
                for line in data.rows:
                    copy.write(line)
            overrides = columns_as_before_fills(conn, old.schema, old.table, baseline.filled_after)
            then = sql.SQL("md5(ROW({})::text)").format(sql.SQL(", ").join(sql.Identifier("t", c) for c in old.columns))
            now = sql.SQL("md5(ROW({})::text)").format(
                sql.SQL(", ").join(overrides.get(c, sql.Identifier("t", c)) for c in old.columns)
            )
            gone_query = sql.SQL("SELECT {then} FROM {scratch} t EXCEPT ALL SELECT {now} FROM {table} t").format(
                then=then, now=now, scratch=scratch, table=table
            )
            new_query = sql.SQL("SELECT {now} FROM {table} t EXCEPT ALL SELECT {then} FROM {scratch} t").format(
                then=then, now=now, scratch=scratch, table=table
            )
            gone = one(conn, sql.SQL("SELECT count(*) FROM ({}) d").format(gone_query))
            new = one(conn, sql.SQL("SELECT count(*) FROM ({}) d").format(new_query))
            keys = [
                c for c in primary_key_columns(conn, display_name(old.schema, old.table)) if c in old.columns
            ] or list(old.columns[:1])
            examples = (
                conn.execute(
                    sql.SQL("SELECT {keys} FROM {scratch} t WHERE {then} IN ({gone}) LIMIT 3").format(
                        keys=sql.SQL(", ").join(sql.Identifier("t", k) for k in keys),
                        scratch=scratch,
                        then=then,
                        gone=gone_query,
                    )
                ).fetchall()
                if gone
                else []
            )
    if not gone and not new:
        return None  # the dump's rows match: the difference lies elsewhere, the row groups tell
    shown = tuple(", ".join(f"{k}={v}" for k, v in zip(keys, example, strict=True)) for example in examples)
    return RowDifference(gone, new, shown)


def content_differences(
    conn: psycopg.Connection,
    baseline: Baseline,
    measured: tuple[dict[str, TableFingerprint], list[TableDifference]] | None = None,
) -> list[TableDifference]:
    """Every table of the baseline: row count and content as before (see the module's docstring).

    ``measured``: what fingerprints_as_before returned, when the caller has it already.
    """
    before = baseline.fingerprints
    now, problems = measured if measured is not None else fingerprints_as_before(conn, before, baseline.filled_after)
    problems = list(problems)
    skipped = {p.table for p in problems}
    for diff in compare({k: v for k, v in before.items() if k not in skipped}, now):
        old, new = before[diff.table], now.get(diff.table)
        if new is None:
            problems.append(
                TableDifference(
                    diff.table,
                    "missing",
                    f"{diff.table}: the table existed before and is gone; restore it from the baseline backup",
                )
            )
            continue
        grown = _grown_only(conn, old, new, baseline.filled_after)
        if grown is not None:
            problems.append(grown)
            continue
        exact = count_row_differences(conn, baseline, old)
        if new.rows != old.rows:
            how = f": {exact.describe()}" if exact else ""
            problems.append(
                TableDifference(
                    diff.table,
                    "rows",
                    f"{diff.table}: {old.rows} rows before, {new.rows} now ({new.rows - old.rows:+d}){how}",
                )
            )
        else:
            if exact:
                how = exact.describe()
            else:
                changed = sum(1 for a, b in zip(old.buckets, new.buckets, strict=True) if a != b)
                n = max(1, changed // 2)  # a changed row leaves its old group and joins another
                how = (
                    f"at least {n} row{'s differ' if n != 1 else ' differs'} (in {changed} of {BUCKETS} row groups)"
                    if changed
                    else f"rows differ (more than {EXACT_COUNT_MAX_ROWS:,} rows: too many to count "
                    f"from the dump here; compare with pg_restore --data-only -t {old.table} on a scratch database)"
                )
            problems.append(
                TableDifference(diff.table, "content", f"{diff.table}: same row count ({old.rows}) but {how}")
            )
    return problems


def _grown_only(
    conn: psycopg.Connection, old: TableFingerprint, new: TableFingerprint, filled_after: datetime | None
) -> TableDifference | None:
    """Rows written after the backup (ids above the backup's highest), with every row of the backup as it was:
    the application kept writing (fence_application = false, or a session the fence could not stop)."""
    if old.high_water is None or new.rows <= old.rows:
        return None
    column, top = old.high_water
    if column not in table_columns(conn, old.schema, old.table):
        return None
    then = fingerprint_table(
        conn,
        old.schema,
        old.table,
        old.columns,
        up_to=old.high_water,
        algorithm=old.algorithm,
        overrides=columns_as_before_fills(conn, old.schema, old.table, filled_after),
    )
    if (then.rows, then.digest) != (old.rows, old.digest):
        return None
    added = new.rows - old.rows
    return TableDifference(
        old.name,
        "grown",
        f"{old.name}: {added} row{'s' if added != 1 else ''} written after the "
        f"backup ({column} above {top}); every row of the backup is as it was",
    )
