"""What the migration costs, measured beside what it cannot beat, in one run on one server.

    python -m tsmigrate.convbench [--rows 2500000] [--json reports/bench-....json]

A legacy MS5.0 database of about ``--rows`` metric rows is built on a throwaway server and cloned for
each measurement, so every figure sees the same data:

- the conversion of metric_hist (ours, in one transaction) against a plain copy of the table with the
  same indexes (CREATE TABLE AS, then the same CREATE INDEXes): the limit; and against
  ``create_hypertable(migrate_data => true)`` after the key fix, what a hand migration does;
- an application inserting a row every 100 ms through our conversion: its longest wait, rows lost;
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
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from psycopg import sql

from .appsim import TelemetryWriter
from .backup import take_backup, tool
from .config import load_plan
from .conversion import convert_table
from .fingerprint import fingerprint_database, user_tables
from .janitor import ScratchDatabase, freeze
from .legacy import SCALES, build_legacy_database
from .servers import ServerStartError, throwaway_server
from .target import Target
from .timescale import server_timescaledb

PROJECT = Path(__file__).resolve().parents[1]
TEMPLATE = "ms5_bench_template"
SCHEMA, TABLE = "factory_telemetry", "metric_hist"
APP_ROLE = "ms5_bench_app"


def _timed(action) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def plain_copy(conn: psycopg.Connection) -> float:
    """CREATE TABLE AS and the table's own CREATE INDEXes: the cost of writing the rows and indexes once."""
    indexes = [r[0] for r in conn.execute("SELECT pg_get_indexdef(indexrelid) FROM pg_index "
                                          "WHERE indrelid = %s::regclass", (f"{SCHEMA}.{TABLE}",)).fetchall()]

    def copy() -> None:
        conn.execute(f"CREATE TABLE {SCHEMA}.bench_copy AS SELECT * FROM {SCHEMA}.{TABLE}")
        for i, definition in enumerate(indexes):
            head, _, tail = definition.partition(" ON ")
            conn.execute(f"CREATE {'UNIQUE ' if 'UNIQUE' in head else ''}INDEX bench_copy_{i} ON "
                         f"{SCHEMA}.bench_copy " + tail.split(" ", 1)[1])
    return _timed(copy)


def migrate_data(conn: psycopg.Connection, chunk_interval: str) -> float:
    conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")

    def convert() -> None:
        conn.execute(f"ALTER TABLE {SCHEMA}.{TABLE} DROP CONSTRAINT {TABLE}_pkey")
        conn.execute(f"ALTER TABLE {SCHEMA}.{TABLE} ADD PRIMARY KEY (id, ts)")
        conn.execute(f"UPDATE {SCHEMA}.{TABLE} SET ts = now() WHERE ts IS NULL")
        conn.execute("SELECT create_hypertable(%s::regclass, by_range('ts', %s::interval), migrate_data => true)",
                     (f"{SCHEMA}.{TABLE}", chunk_interval))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tsmigrate.convbench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_500_000)
    parser.add_argument("--jobs", type=int, default=2, help="pg_dump jobs, for both backups")
    parser.add_argument("--json", type=Path, default=None, help="where to write the figures (default reports/)")
    args = parser.parse_args(argv)
    if args.rows < 1000 or args.jobs < 1:
        parser.error("--rows must be at least 1000 and --jobs at least 1")
    plan = load_plan(PROJECT / "migrations")
    entry = plan.hypertable(TABLE)
    scale = replace(SCALES["demo"], days=args.rows / (SCALES["demo"].metric_hist_rows / SCALES["demo"].days))
    figures: list[dict] = []

    def figure(name: str, seconds: float, limit_name: str, limit: float, allowed: float, rows: int | None = None) -> None:
        ratio = seconds / limit if limit else float("inf")
        figures.append({"figure": name, "seconds": round(seconds, 2), "limit": limit_name,
                        "limit_seconds": round(limit, 2), "ratio": round(ratio, 2), "allowed_ratio": allowed,
                        "met": ratio <= allowed, "rows_per_second": round(rows / seconds) if rows else None})
        rate = f"{rows / seconds:>10,.0f} rows/s" if rows else " " * 17
        print(f"  {name:<44} {seconds:7.1f} s {rate}  vs {limit_name:<34} {limit:6.1f} s  ratio {ratio:5.2f} "
              f"(allowed {allowed}) {'met' if ratio <= allowed else 'NOT met'}", flush=True)

    try:
        with throwaway_server("local") as server, tempfile.TemporaryDirectory(prefix="tsmigrate-bench-") as tmp:
            admin = server.conninfo()
            build_legacy_database(admin, scale, dbname=TEMPLATE, replace_existing=True)
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE ms5_user_production").format(
                    sql.Identifier(APP_ROLE), sql.Literal(server.password)))
                freeze(conn, TEMPLATE)
            print(f"convbench: legacy MS5.0 database of ~{scale.metric_hist_rows:,} metric rows on {server.describe()}",
                  flush=True)

            def clone(tag: str) -> ScratchDatabase:
                return ScratchDatabase(admin, f"ms5_bench_{tag}_{secrets.token_hex(2)}", template=TEMPLATE)

            with clone("copy") as db, psycopg.connect(server.conninfo(db), autocommit=True) as conn:
                rows = conn.execute(f"SELECT count(*) FROM {SCHEMA}.{TABLE}").fetchone()[0]
                limit = plain_copy(conn)
            with clone("migrate") as db, psycopg.connect(server.conninfo(db), autocommit=True) as conn:
                hand = migrate_data(conn, entry.chunk_interval.text)
            with clone("ours") as db, psycopg.connect(server.conninfo(db), autocommit=True) as conn:
                writer = TelemetryWriter(psycopg.conninfo.make_conninfo(server.conninfo(db), user=APP_ROLE,
                                                                         password=server.password))
                writer.start()
                time.sleep(1)
                conversion, converted = ours(conn, entry)
                time.sleep(1)
                writer.stop()
                lost = len(writer.missing(conn))
            figure("our conversion of metric_hist", conversion, "plain copy with the same indexes", limit, 1.5, converted)
            figure("create_hypertable(migrate_data => true)", hand, "plain copy with the same indexes", limit, 1.5, rows)
            print(f"  an application inserting every 100 ms through our conversion: longest wait "
                  f"{writer.longest_wait:.1f} s, committed rows lost {lost} ({writer.describe()})", flush=True)
            figures.append({"figure": "writer during our conversion", "longest_wait_seconds": round(writer.longest_wait, 2),
                            "rows_lost": lost, "rows_committed": len(writer.committed)})

            with clone("backup") as db:
                target = Target(server.conninfo(db), "bench")
                conninfo, env = target.for_client_programs()
                dump = _timed(lambda: subprocess.run(
                    [tool("pg_dump"), "-Fd", "-j", str(args.jobs), "-f", str(Path(tmp) / "plain"), "-d", conninfo],
                    env=env, check=True, capture_output=True))
                backup = _timed(lambda: take_backup(target, Path(tmp) / "ours", jobs=args.jobs))
                figure("our backup (fingerprints, dump, verification)", backup, f"pg_dump -Fd -j{args.jobs}", dump, 1.5)
                with psycopg.connect(server.conninfo(db), autocommit=True) as conn:
                    tables = user_tables(conn)
                    equality = _timed(lambda: fingerprint_database(conn, tables))
                    one_pass = _timed(lambda: [conn.execute(sql.SQL("SELECT sum(hashtextextended(t::text, 0)) FROM {} t")
                                                            .format(sql.Identifier(s, t))).fetchone()
                                               for s, t in tables])
                figure("our equality pass (fingerprints)", equality, "one hashtextextended pass", one_pass, 2.0)
    except ServerStartError as exc:
        print(f"convbench: cannot start a throwaway server: {exc}", flush=True)
        return 3
    out = args.json or PROJECT / "reports" / f"bench-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": args.rows, "figures": figures}, indent=2))
    print(f"convbench: figures written to {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
