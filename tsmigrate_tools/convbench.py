"""What the migration costs, measured beside what it cannot beat, in one run on one server.

    python -m tsmigrate_tools.convbench [--rows 2500000] [--interval 1] [--tenfold] [--json reports/bench-....json]

A legacy MS5.0 database of about ``--rows`` metric rows (a sample per metric every ``--interval`` seconds, as
production writes them: so the hypertable's one-hour chunks hold what they will hold in production) is built
on a throwaway server and cloned for each measurement, so every figure sees the same data:

- the conversion of metric_hist (ours, in one transaction) against a plain copy of the table ending in the
  same shape (CREATE TABLE AS, then the same CREATE INDEXes, the plan's keep_unique index and the foreign
  keys): the limit; and against
  ``create_hypertable(migrate_data => true)`` after the key fix, what a hand migration does;
- an application inserting a row every 100 ms through our conversion: its longest wait, rows lost;
- our online conversion (build beside, capture, swap) with the same application: its longest wait (limit
  1 s), rows lost, and how long the table was locked for the swap;
- with ``--tenfold``, the conversions again at 10x the rows: how their cost grows (limit 10.5x), beside how
  the plain copy's grows on the same server;
- our backup (fingerprints in the dump's snapshot, pg_dump, verification) against ``pg_dump -Fd`` with
  the same jobs;
- the post-flight's equality pass (fingerprints of every table) against one ``hashtextextended`` pass
  over the same tables.

Prints one line per figure with its ratio to its limit and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

from tsmigrate.backup import take_backup
from tsmigrate.convert import convert_online, convert_table
from tsmigrate.dumps import tool
from tsmigrate.fingerprint import fingerprint_database, user_tables
from tsmigrate.janitor import ScratchDatabase, drop_database, freeze
from tsmigrate.legacy import SCALES, build_legacy_database
from tsmigrate.plan import load_plan
from tsmigrate.servers import ServerStartError, throwaway_server
from tsmigrate.target import Target
from tsmigrate.timescale import server_timescaledb
from tsmigrate_tools.appsim import TelemetryWriter

PROJECT = Path(__file__).resolve().parents[1]
TEMPLATE = "ms5_bench_template"
SCHEMA, TABLE = "factory_telemetry", "metric_hist"
APP_ROLE = "ms5_bench_app"


def _timed(action) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def plain_copy(conn: psycopg.Connection, plan_entry) -> float:
    """CREATE TABLE AS, then what the converted table ends up with: the table's own indexes, an index per
    ``keep_unique`` column of the plan, its foreign keys. The cost of writing the rows, indexes and checks once."""
    indexes = [
        r[0]
        for r in conn.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass", (f"{SCHEMA}.{TABLE}",)
        ).fetchall()
    ]
    foreign_keys = [
        r[0]
        for r in conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'",
            (f"{SCHEMA}.{TABLE}",),
        ).fetchall()
    ]

    def copy() -> None:
        conn.execute(f"CREATE TABLE {SCHEMA}.bench_copy AS SELECT * FROM {SCHEMA}.{TABLE}")
        for i, definition in enumerate(indexes):
            head, _, tail = definition.partition(" ON ")
            conn.execute(
                f"CREATE {'UNIQUE ' if 'UNIQUE' in head else ''}INDEX bench_copy_{i} ON "
                f"{SCHEMA}.bench_copy " + tail.split(" ", 1)[1]
            )
        for column in plan_entry.keep_unique:
            conn.execute(
                sql.SQL("CREATE INDEX ON {} ({})").format(sql.Identifier(SCHEMA, "bench_copy"), sql.Identifier(column))
            )
        for definition in foreign_keys:
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD {}").format(sql.Identifier(SCHEMA, "bench_copy"), sql.SQL(definition))
            )

    return _timed(copy)


def migrate_data(conn: psycopg.Connection, chunk_interval: str) -> float:
    conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")

    def convert() -> None:
        conn.execute(f"ALTER TABLE {SCHEMA}.{TABLE} DROP CONSTRAINT {TABLE}_pkey")
        conn.execute(f"ALTER TABLE {SCHEMA}.{TABLE} ADD PRIMARY KEY (id, ts)")
        conn.execute(f"UPDATE {SCHEMA}.{TABLE} SET ts = now() WHERE ts IS NULL")
        conn.execute(
            "SELECT create_hypertable(%s::regclass, by_range('ts', %s::interval), migrate_data => true)",
            (f"{SCHEMA}.{TABLE}", chunk_interval),
        )

    return _timed(convert)


def ours(conn: psycopg.Connection, plan_entry) -> tuple[float, int]:
    conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    has_compression = server_timescaledb(conn).has_compression
    rows = 0

    def convert() -> None:
        nonlocal rows
        with conn.transaction():
            rows = convert_table(conn, SCHEMA, plan_entry, has_compression=has_compression).rows

    return _timed(convert), rows


def online(server, dbname: str, plan_entry) -> tuple[float, int, dict, TelemetryWriter, int]:
    """Our online conversion while the application inserts every 100 ms: (seconds, rows it verified after the
    swap, what it did, the writer, rows the writer committed that are missing)."""
    conninfo = server.conninfo(dbname)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        has_compression = conn.execute("SHOW timescaledb.license").fetchone()[0] == "timescale"
        writer = TelemetryWriter(psycopg.conninfo.make_conninfo(conninfo, user=APP_ROLE, password=server.password))
        writer.start()
        time.sleep(1)
        started = time.monotonic()
        result = convert_online(
            lambda: psycopg.connect(conninfo, autocommit=True),
            conn,
            SCHEMA,
            plan_entry,
            has_compression=has_compression,
            own_xids=set(),
        )
        seconds = time.monotonic() - started
        time.sleep(1)
        writer.stop()
        return seconds, result.rows, result.online, writer, len(writer.missing(conn))


class Figures:
    """Each figure beside its limit, printed as measured and kept for the JSON."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def ratio(
        self, name: str, seconds: float, limit_name: str, limit: float, allowed: float | None, rows: int | None = None
    ) -> float:
        """``allowed`` None: shown beside the limit, with no target of its own."""
        ratio = seconds / limit if limit else float("inf")
        met = None if allowed is None else ratio <= allowed
        self.rows.append(
            {
                "figure": name,
                "seconds": round(seconds, 2),
                "limit": limit_name,
                "limit_seconds": round(limit, 2),
                "ratio": round(ratio, 2),
                "allowed_ratio": allowed,
                "met": met,
                "rows": rows,
                "rows_per_second": round(rows / seconds) if rows else None,
            }
        )
        rate = f"{rows / seconds:>10,.0f} rows/s" if rows else " " * 17
        verdict = "(no target)" if met is None else f"(allowed {allowed}) {'met' if met else 'NOT met'}"
        print(
            f"  {name:<46} {seconds:7.1f} s {rate}  vs {limit_name:<36} {limit:6.1f} s  ratio {ratio:5.2f} {verdict}",
            flush=True,
        )
        return ratio

    def writer(self, name: str, writer: TelemetryWriter, lost: int, *, limit_s: float | None = None, **more) -> None:
        met = None if limit_s is None else writer.longest_wait < limit_s and lost == 0
        self.rows.append(
            {
                "figure": name,
                "longest_wait_seconds": round(writer.longest_wait, 3),
                "rows_lost": lost,
                "rows_committed": len(writer.committed),
                "limit_seconds": limit_s,
                "met": met,
                **more,
            }
        )
        extra = "".join(f", {k.replace('_', ' ')} {v}" for k, v in more.items())
        limit = f" (limit {limit_s:g} s: {'met' if met else 'NOT met'})" if limit_s is not None else ""
        print(
            f"  {name}: longest wait {writer.longest_wait:.2f} s{limit}, committed rows lost {lost}{extra}", flush=True
        )


def legacy_template(server, rows: int, interval_s: int, name: str) -> str:
    """A frozen legacy database of about ``rows`` metric rows sampled every ``interval_s`` (production: 1 s)."""
    site = replace(SCALES["demo"], metric_interval_s=interval_s, days=1.0)
    scale = replace(site, days=rows / site.metric_hist_rows)
    admin = server.conninfo()
    build_legacy_database(admin, scale, dbname=name, replace_existing=True)
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone():
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE ms5_user_production").format(
                    sql.Identifier(APP_ROLE), sql.Literal(server.password)
                )
            )
        freeze(conn, name)
    return name


def conversions(server, template: str, entry, figures: Figures, label: str) -> dict[str, float]:
    """Plain copy, migrate_data, ours offline (with a writer) and online (with a writer) on clones of ``template``."""

    def clone(tag: str) -> ScratchDatabase:
        return ScratchDatabase(server.conninfo(), f"ms5_bench_{tag}_{secrets.token_hex(2)}", template=template)

    with clone("copy") as db, psycopg.connect(server.conninfo(db), autocommit=True) as conn:
        rows = conn.execute(f"SELECT count(*) FROM {SCHEMA}.{TABLE}").fetchone()[0]
        limit = plain_copy(conn, entry)
    with clone("migrate") as db, psycopg.connect(server.conninfo(db), autocommit=True) as conn:
        hand = migrate_data(conn, entry.chunk_interval.text)
    with clone("ours") as db, psycopg.connect(server.conninfo(db), autocommit=True) as conn:
        writer = TelemetryWriter(
            psycopg.conninfo.make_conninfo(server.conninfo(db), user=APP_ROLE, password=server.password)
        )
        writer.start()
        time.sleep(1)
        offline, converted = ours(conn, entry)
        time.sleep(1)
        writer.stop()
        lost = len(writer.missing(conn))
    print(f" {label}: {rows:,} metric rows", flush=True)
    figures.ratio(
        f"our conversion of metric_hist ({label})", offline, "plain copy with the same indexes", limit, 1.5, converted
    )
    figures.ratio(
        f"create_hypertable(migrate_data => true) ({label})",
        hand,
        "plain copy with the same indexes",
        limit,
        None,
        rows,
    )
    figures.writer(f"a writer every 100 ms through our conversion ({label})", writer, lost)
    with clone("online") as db:
        seconds, verified, did, writer, lost = online(server, db, entry)
    figures.ratio(
        f"our online conversion of metric_hist ({label})",
        seconds,
        "plain copy with the same indexes",
        limit,
        None,
        verified,
    )
    figures.writer(
        f"a writer every 100 ms through the online conversion ({label})",
        writer,
        lost,
        limit_s=1.0,
        table_locked_ms=round(did["swap_seconds"] * 1000),
        swap_attempts=did["swap_attempts"],
        copy_seconds=round(did["copy_seconds"], 1),
        keys_replayed=did["replayed"],
    )
    return {"rows": rows, "plain": limit, "offline": offline, "online": seconds, "swap": did["swap_seconds"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tsmigrate_tools.convbench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_500_000)
    parser.add_argument(
        "--interval",
        type=int,
        default=1,
        help="seconds between samples of a metric (MS5.0 production: 1; 60 makes 60x smaller chunks)",
    )
    parser.add_argument(
        "--tenfold",
        action="store_true",
        help="also measure the conversions at 10x --rows and print how their cost grows",
    )
    parser.add_argument("--jobs", type=int, default=2, help="pg_dump jobs, for both backups")
    parser.add_argument("--json", type=Path, default=None, help="where to write the figures (default reports/)")
    args = parser.parse_args(argv)
    if args.rows < 1000 or args.jobs < 1 or args.interval < 1:
        parser.error("--rows must be at least 1000, --jobs and --interval at least 1")
    entry = load_plan(PROJECT / "migrations").hypertable(TABLE)
    figures = Figures()
    try:
        with throwaway_server("local") as server, tempfile.TemporaryDirectory(prefix="tsmigrate-bench-") as tmp:
            template = legacy_template(server, args.rows, args.interval, TEMPLATE)
            print(
                f"convbench: legacy MS5.0 database, a sample every {args.interval} s, on {server.describe()}",
                flush=True,
            )
            at_n = conversions(server, template, entry, figures, "N")
            target_db = f"ms5_bench_backup_{secrets.token_hex(2)}"
            with ScratchDatabase(server.conninfo(), target_db, template=template) as db:
                target = Target(server.conninfo(db), "bench")
                conninfo, env = target.for_client_programs()
                dump = _timed(
                    lambda: subprocess.run(
                        [tool("pg_dump"), "-Fd", "-j", str(args.jobs), "-f", str(Path(tmp) / "plain"), "-d", conninfo],
                        env=env,
                        check=True,
                        capture_output=True,
                    )
                )
                # Our backup proves itself by a trial restore (an empty database and the schema, a chunk a
                # hypertable): its limit is the plain dump plus a schema-only pg_restore of it.
                with ScratchDatabase(server.conninfo(), f"{db}_schema") as schema_db:
                    schema = _timed(
                        lambda: subprocess.run(
                            [
                                tool("pg_restore"),
                                "--schema-only",
                                "-d",
                                Target(server.conninfo(schema_db), "bench").for_client_programs()[0],
                                str(Path(tmp) / "plain"),
                            ],
                            env=env,
                            check=True,
                            capture_output=True,
                        )
                    )
                backup = _timed(lambda: take_backup(target, Path(tmp) / "ours", jobs=args.jobs))
                figures.ratio(
                    "our backup (fingerprints, dump, verification)",
                    backup,
                    f"pg_dump -Fd -j{args.jobs} + a schema-only pg_restore",
                    dump + schema,
                    1.5,
                )
                with psycopg.connect(server.conninfo(db), autocommit=True) as conn:
                    tables = user_tables(conn)
                    equality = _timed(lambda: fingerprint_database(conn, tables))
                    one_pass = _timed(
                        lambda: [
                            conn.execute(
                                sql.SQL("SELECT sum(hashtextextended(t::text, 0)) FROM {} t").format(
                                    sql.Identifier(s, t)
                                )
                            ).fetchone()
                            for s, t in tables
                        ]
                    )
                figures.ratio("our equality pass (fingerprints)", equality, "one hashtextextended pass", one_pass, 2.0)
            if args.tenfold:
                with psycopg.connect(server.conninfo(), autocommit=True) as conn:
                    drop_database(conn, template)
                big = legacy_template(server, 10 * args.rows, args.interval, TEMPLATE + "_10n")
                at_10n = conversions(server, big, entry, figures, "10N")
                for what in ("offline", "online"):
                    figures.ratio(
                        f"{what} conversion at 10N",
                        at_10n[what],
                        f"{what} conversion at N",
                        at_n[what],
                        10.5,
                        at_10n["rows"],
                    )
                # What the same machine's plain copy does at 10N: how much of the growth is the server's own
                # (sorts ten times as large, a table that no longer fits in memory), not the conversion's.
                figures.ratio(
                    "plain copy at 10N", at_10n["plain"], "plain copy at N", at_n["plain"], None, at_10n["rows"]
                )
    except ServerStartError as exc:
        print(f"convbench: cannot start a throwaway server: {exc}", flush=True)
        return 3
    out = args.json or PROJECT / "reports" / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": args.rows, "interval_s": args.interval, "figures": figures.rows}, indent=2))
    print(f"convbench: figures written to {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
