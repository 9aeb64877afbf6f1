"""What the migration costs, each figure beside its limit measured in the same run on the same server.

    tsmigrate bench [--rows 2500000] [--interval 1,10,60] [--tenfold] [--jobs N]
                    [--json FILE] [--readme README.md]
    tsmigrate bench --from-json FILE --readme README.md   # the README's table again

For each density (``--interval``: seconds between two samples of a metric; MS5.0 production writes one a second)
a legacy MS5.0 database of about ``--rows`` metric rows is built on a throwaway server (and, with ``--tenfold``,
one of ten times the rows), and cloned for each measurement, so every figure of a size sees the same data:

- the limit: a plain copy of metric_hist (``CREATE TABLE AS``, then the legacy table's own indexes, nothing more);
- our offline conversion (one transaction, the table locked) while the application inserts every 100 ms
  (appsim.TelemetryWriter: it waits, it loses nothing), against the limit: at most 1.5x (the ANALYZE that follows
  its commit, while the application writes, is among its phases);
- our online conversion with the same application writing through it: against the limit (at most 1.5x); the
  writer's longest wait (at most 1 s) and rows lost (none); the swap's lock (at most 300 ms);
- with ``--tenfold``: each conversion at 10N against itself at N (at most 10.5x), the plain copy's own growth
  beside it, the swap's lock at 10N (still at most 300 ms);
- where each conversion's time goes (its phases, when the conversion reports them);
- once, at the first density and N: the application's inserts into the hypertable while the online path's
  swap-back trigger is on it (until drop-legacy), against the same inserts after drop-legacy (at most 1.1x);
  our backup against ``pg_dump -Fd`` with the same jobs (at most 1.5x); the post-flight's equality pass
  against one ``hashtextextended`` pass (at most 2x).

Prints one line per figure with its ratio to its limit, writes the figures as JSON (default
reports/bench-<time>.json) and, with ``--readme``, the README's table between its ``<!-- bench-table -->`` markers.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tsmigrate.backup import take_backup
from tsmigrate.convert import convert_online, convert_table
from tsmigrate.convert.connections import conversion_jobs
from tsmigrate.convert.offline import analyze_after_commit
from tsmigrate.convert.online import drop_legacy
from tsmigrate.convert.result import phase
from tsmigrate.db import one
from tsmigrate.dumps import tool
from tsmigrate.fingerprint import fingerprint_database, user_tables
from tsmigrate.janitor import ScratchDatabase, drop_database, freeze
from tsmigrate.legacy import SCALES, build_legacy_database
from tsmigrate.plan import HypertablePlan, load_plan
from tsmigrate.servers import ServerStartError, throwaway_server
from tsmigrate.target import Target
from tsmigrate.timescale import server_timescaledb
from tsmigrate_tools.appsim import TelemetryWriter

PROJECT = Path(__file__).resolve().parents[1]
SCHEMA, TABLE = "factory_telemetry", "metric_hist"
APP_ROLE = "ms5_bench_app"
MARKER = "<!-- bench-table -->"
PLAIN = "plain copy (CREATE TABLE AS + the legacy indexes)"
# The bounds of issues 22 and 23, each a ratio to a limit measured in the same run.
CONVERSION_BOUND, GROWTH_BOUND, INSERT_BOUND, BACKUP_BOUND, EQUALITY_BOUND = 1.5, 10.5, 1.1, 1.5, 2.0
SWAP_LOCK_BOUND_S, WRITER_WAIT_BOUND_S = 0.3, 1.0


def timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


class Figures:
    """Each figure beside its limit, printed as measured and kept for the JSON."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.profiles: list[dict] = []

    def add(
        self,
        figure: str,
        seconds: float,
        limit: str,
        limit_seconds: float,
        allowed: float | None,
        *,
        interval_s: int | None = None,
        size: str = "",
        rows: int | None = None,
        rows_lost: int | None = None,
        **more,
    ) -> dict:
        """``allowed`` None: shown beside the limit, with no target of its own. A figure with ``rows_lost`` is met
        only when none was lost."""
        ratio = seconds / limit_seconds if limit_seconds else float("inf")
        met = None if allowed is None else ratio <= allowed and not rows_lost
        entry = {
            "figure": figure,
            "interval_s": interval_s,
            "size": size,
            "seconds": round(seconds, 3),
            "limit": limit,
            "limit_seconds": round(limit_seconds, 3),
            "ratio": round(ratio, 2),
            "allowed_ratio": allowed,
            "met": met,
            "rows": rows,
            "rows_lost": rows_lost,
            **more,
        }
        self.rows.append(entry)
        where = f"[{size}{f', every {interval_s} s' if interval_s else ''}]" if size else ""
        verdict = "(no target)" if met is None else f"(allowed {allowed}) {'met' if met else 'NOT MET'}"
        lost = f", rows lost {rows_lost}" if rows_lost is not None else ""
        value, against = (
            (f"{1000 * seconds:.0f} ms", f"{1000 * limit_seconds:.0f} ms")
            if limit == "fixed bound"
            else (f"{seconds:.1f} s", f"{limit_seconds:.1f} s")
        )
        print(f"  {figure} {where}: {value}{lost} vs {limit} {against}: ratio {ratio:.2f} {verdict}", flush=True)
        return entry

    def profile(self, path: str, interval_s: int, size: str, phases: dict[str, float] | None) -> None:
        if not phases:
            return
        self.profiles.append({"path": path, "interval_s": interval_s, "size": size, "phases": phases})
        total = sum(phases.values()) or 1.0
        spent = ", ".join(f"{k} {v:.1f} s ({100 * v / total:.0f} %)" for k, v in phases.items())
        print(f"    where the {path} conversion's time goes [{size}, every {interval_s} s]: {spent}", flush=True)


def legacy_template(server, rows: int, interval_s: int, name: str) -> str:
    """A frozen legacy database of about ``rows`` metric rows, a sample per metric every ``interval_s``."""
    site = replace(SCALES["demo"], metric_interval_s=interval_s, days=1.0)
    build_legacy_database(
        server.conninfo(), replace(site, days=rows / site.metric_hist_rows), dbname=name, replace_existing=True
    )
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone():
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE ms5_user_production").format(
                    sql.Identifier(APP_ROLE), sql.Literal(server.password)
                )
            )
        freeze(conn, name)
    return name


def plain_copy(conn: psycopg.Connection) -> float:
    """CREATE TABLE AS, then the legacy table's own indexes (as pg_get_indexdef gives them, on the copy)."""
    indexes = [
        r[0]
        for r in conn.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass",
            (f"{SCHEMA}.{TABLE}",),
        ).fetchall()
    ]

    def copy() -> None:
        conn.execute(
            sql.SQL("CREATE TABLE {} AS SELECT * FROM {}").format(
                sql.Identifier(SCHEMA, "bench_copy"), sql.Identifier(SCHEMA, TABLE)
            )
        )
        for i, definition in enumerate(indexes):
            unique = definition.startswith("CREATE UNIQUE")
            columns = definition[definition.index(" USING ") :]  # " USING btree (...)"
            conn.execute(
                sql.SQL("CREATE {}INDEX {} ON {}{}").format(
                    sql.SQL("UNIQUE " if unique else ""),
                    sql.Identifier(f"bench_copy_{i}"),
                    sql.Identifier(SCHEMA, "bench_copy"),
                    sql.SQL(columns),
                )
            )

    return timed(copy)


def writer_for(server, dbname: str) -> TelemetryWriter:
    return TelemetryWriter(
        psycopg.conninfo.make_conninfo(server.conninfo(dbname), user=APP_ROLE, password=server.password)
    )


def offline(server, dbname: str, entry: HypertablePlan) -> tuple[float, int, TelemetryWriter, int, dict | None]:
    """Our offline conversion while the application writes: (seconds, rows, writer, rows it lost, phases)."""
    with psycopg.connect(server.conninfo(dbname), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        has_compression = server_timescaledb(conn).has_compression
        writer = writer_for(server, dbname)
        writer.start()
        time.sleep(1)
        started = time.monotonic()
        with conn.transaction():
            result = convert_table(conn, SCHEMA, entry, has_compression=has_compression)
        seconds = time.monotonic() - started
        # As tsmigrate.convert.convert does: statistics after the commit, the application no longer kept out (its
        # time is shown among the phases, not in the figure: the plain copy gathers none either).
        with phase(result.phases, "analyze, after the commit"):
            analyze_after_commit(conn, SCHEMA, TABLE)
        time.sleep(1)
        writer.stop()
        return seconds, result.rows, writer, len(writer.missing(conn)), result.phases


def online(server, dbname: str, entry: HypertablePlan, jobs: int) -> tuple[float, int, dict, TelemetryWriter, int]:
    """Our online conversion while the application writes: (seconds, rows verified after the swap, what the
    online path did, the writer, rows it lost)."""
    conninfo = server.conninfo(dbname)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        has_compression = server_timescaledb(conn).has_compression
        writer = writer_for(server, dbname)
        writer.start()
        time.sleep(1)
        started = time.monotonic()
        result = convert_online(
            lambda: psycopg.connect(conninfo, autocommit=True),
            conn,
            SCHEMA,
            entry,
            has_compression=has_compression,
            own_xids=set(),
            workers=jobs,
        )
        seconds = time.monotonic() - started
        time.sleep(1)
        writer.stop()
        did = dict(result.online or {})
        if result.phases:
            did["phases"] = result.phases
        return seconds, result.rows, did, writer, len(writer.missing(conn))


def insert_cost(conn: psycopg.Connection, rows: int, tries: int = 3) -> float:
    """The best of ``tries`` INSERTs of ``rows`` metric rows into the table (each rolled back: the same table
    every time), as the application writes them: new rows, now."""
    best = float("inf")
    for _ in range(tries):
        with conn.transaction(force_rollback=True):
            metric = one(
                conn, sql.SQL("SELECT id FROM {} ORDER BY id LIMIT 1").format(sql.Identifier(SCHEMA, "metric_def"))
            )
            started = time.monotonic()
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (metric_def_id, ts, value_real) "
                    "SELECT %s, now() + make_interval(secs => i / 1000.0), i FROM generate_series(1, %s) i"
                ).format(sql.Identifier(SCHEMA, TABLE)),
                (metric, rows),
            )
            best = min(best, time.monotonic() - started)
    return best


def conversions(server, template: str, entry, jobs: int, figures: Figures, interval_s: int, size: str) -> dict:
    """The plain copy, our offline and online conversions (each with a writer) on clones of ``template``."""
    at: dict[str, Any] = {"interval_s": interval_s, "size": size}

    def clone(tag: str) -> ScratchDatabase:
        return ScratchDatabase(server.conninfo(), f"ms5_bench_{tag}_{secrets.token_hex(2)}", template=template)

    with clone("copy") as db, psycopg.connect(server.conninfo(db), autocommit=True) as conn:
        rows = one(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(SCHEMA, TABLE)))
        limit = plain_copy(conn)
    print(f" {size}, a sample every {interval_s} s: {rows:,} metric rows; {PLAIN}: {limit:.1f} s", flush=True)
    with clone("offline") as db:
        seconds, converted, writer, lost, phases = offline(server, db, entry)
    figures.add(
        "offline conversion",
        seconds,
        PLAIN,
        limit,
        CONVERSION_BOUND,
        rows=converted,
        legacy_rows=rows,
        rows_lost=lost,
        writer_rows=len(writer.committed),
        writer_longest_wait_s=round(writer.longest_wait, 3),
        **at,
    )
    figures.profile("offline", interval_s, size, phases)
    with clone("online") as db:
        online_s, verified, did, writer, lost = online(server, db, entry, jobs)
    figures.add(
        "online conversion",
        online_s,
        PLAIN,
        limit,
        CONVERSION_BOUND,
        rows=verified,
        legacy_rows=rows,
        rows_lost=lost,
        writer_rows=len(writer.committed),
        **at,
    )
    figures.add(
        "application's longest wait through the online conversion",
        writer.longest_wait,
        "fixed bound",
        WRITER_WAIT_BOUND_S,
        1.0,
        rows_lost=lost,
        writer_rows=len(writer.committed),
        **at,
    )
    swap_s = did.get("swap_seconds")
    if swap_s is not None:
        figures.add(
            "swap lock",
            swap_s,
            "fixed bound",
            SWAP_LOCK_BOUND_S,
            1.0,
            swap_attempts=did.get("swap_attempts"),
            **at,
        )
    figures.profile("online", interval_s, size, did.get("phases"))
    return {"rows": rows, "plain": limit, "offline": seconds, "online": online_s, "swap": swap_s}


def insert_costs(server, template: str, entry, jobs: int, figures: Figures, interval_s: int, rows: int) -> None:
    """The application's inserts with what the online path leaves on the hypertable until drop-legacy, and
    without it (the same hypertable, after drop-legacy)."""
    with ScratchDatabase(server.conninfo(), f"ms5_bench_inserts_{secrets.token_hex(2)}", template=template) as db:
        with psycopg.connect(server.conninfo(db), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            convert_online(
                lambda: psycopg.connect(server.conninfo(db), autocommit=True),
                conn,
                SCHEMA,
                entry,
                has_compression=server_timescaledb(conn).has_compression,
                own_xids=set(),
                workers=jobs,
            )
            kept = insert_cost(conn, rows)
            drop_legacy(conn, SCHEMA, TABLE)
            alone = insert_cost(conn, rows)
    figures.add(
        f"{rows:,} inserts before drop-legacy",
        kept,
        "the same inserts after drop-legacy",
        alone,
        INSERT_BOUND,
        interval_s=interval_s,
        size="N",
        rows=rows,
    )


def backup_and_equality(server, template: str, jobs: int, figures: Figures, tmp: Path) -> None:
    with ScratchDatabase(server.conninfo(), f"ms5_bench_backup_{secrets.token_hex(2)}", template=template) as db:
        target = Target(server.conninfo(db), "bench")
        conninfo, env = target.for_client_programs()
        dump = timed(
            lambda: subprocess.run(
                [tool("pg_dump"), "-Fd", "-j", str(jobs), "-f", str(tmp / "plain"), "-d", conninfo],
                env=env,
                check=True,
                capture_output=True,
            )
        )
        backup = timed(lambda: take_backup(target, tmp / "ours", jobs=jobs))
        figures.add(
            "our backup (fingerprints, dump, verification, trial restore)",
            backup,
            f"pg_dump -Fd -j{jobs}",
            dump,
            BACKUP_BOUND,
            size="N",
        )
        with psycopg.connect(server.conninfo(db), autocommit=True) as conn:
            tables = user_tables(conn)
            equality = timed(lambda: fingerprint_database(conn, tables))
            one_pass = timed(
                lambda: [
                    conn.execute(
                        sql.SQL("SELECT sum(hashtextextended(t::text, 0)) FROM {} t").format(sql.Identifier(s, t))
                    ).fetchone()
                    for s, t in tables
                ]
            )
        figures.add(
            "our equality pass (fingerprints)",
            equality,
            "one hashtextextended pass",
            one_pass,
            EQUALITY_BOUND,
            size="N",
        )


# -- the README's table --------------------------------------------------------------------------------
def _cell(f: dict | None) -> str:
    if f is None:
        return ""
    mark = "" if f["met"] is None else (" ✓" if f["met"] else " ✗")
    lost = f", {f['rows_lost']} lost" if f.get("rows_lost") is not None else ""
    if f["limit"] == "fixed bound":
        return f"{1000 * f['seconds']:.0f} ms{lost}{mark}"
    return f"{f['seconds']:.1f} s / {f['limit_seconds']:.1f} s = {f['ratio']:.2f}x{lost}{mark}"


def readme_table(record: dict) -> str:
    """Markdown: one line per figure and density, its N and 10N cells (value against its limit), the bound."""
    lines = [
        f"Measured by `make bench ROWS={record['rows']}{' ARGS=--tenfold' if record.get('tenfold') else ''}` "
        f"on {record.get('server', 'a throwaway server')}, {record.get('jobs', '?')} jobs, "
        f"{record.get('when', '')} (✓ within its bound, ✗ not):",
        "",
        "| figure | a sample every | N | 10N | against | bound |",
        "|---|---|---|---|---|---|",
    ]
    by_key: dict[tuple, dict] = {}
    order: list[tuple] = []
    for f in record["figures"]:
        key = (f["figure"], f["interval_s"])
        if key not in by_key:
            order.append(key)
            by_key[key] = {}
        by_key[key][f["size"]] = f
    for figure, interval_s in order:
        sizes = by_key[(figure, interval_s)]
        first = next(iter(sizes.values()))
        bound = (
            f"{1000 * first['limit_seconds']:.0f} ms"
            if first["limit"] == "fixed bound"
            else (f"{first['allowed_ratio']}x" if first["allowed_ratio"] is not None else "(shown)")
        )
        n = sizes.get("N") or sizes.get("")
        lines.append(
            f"| {figure} | {f'{interval_s} s' if interval_s else ''} | {_cell(n)} | "
            f"{_cell(sizes.get('10N') or sizes.get('10N/N'))} | {first['limit']} | {bound} |"
        )
    profiles = record.get("profiles", [])
    if profiles:
        names = list(dict.fromkeys(name for p in profiles for name in p["phases"]))
        lines += [
            "",
            "Where each conversion's time goes (seconds per phase):",
            "",
            f"| conversion | a sample every | size | {' | '.join(names)} |",
            "|---|---|---|" + "---|" * len(names),
        ]
        for p in profiles:
            cells = " | ".join(f"{p['phases'][n]:.1f}" if n in p["phases"] else "" for n in names)
            lines.append(f"| {p['path']} | {p['interval_s']} s | {p['size']} | {cells} |")
    return "\n".join(lines)


def write_readme(readme: Path, record: dict) -> None:
    text = readme.read_text(encoding="utf-8")
    if text.count(MARKER) != 2:
        raise SystemExit(
            f"convbench: {readme} must hold two {MARKER} lines (the table goes between them); it holds "
            f"{text.count(MARKER)}. Add them where the table belongs, then run again."
        )
    head, _, rest = text.partition(MARKER)
    _, _, tail = rest.partition(MARKER)
    readme.write_text(f"{head}{MARKER}\n{readme_table(record)}\n{MARKER}{tail}", encoding="utf-8")
    print(f"convbench: the table in {readme} regenerated", flush=True)


# -- the run ---------------------------------------------------------------------------------------
def intervals(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: seconds as whole numbers, comma-separated (1,10,60)") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: each interval at least 1 s")
    return values


def measure(args, entry: HypertablePlan, figures: Figures, record: dict) -> None:
    with throwaway_server("local") as server, tempfile.TemporaryDirectory(prefix="tsmigrate-bench-") as tmp:
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            jobs = args.jobs or conversion_jobs(conn, None)
            version = one(conn, "SELECT current_setting('server_version')")
            timescaledb = server_timescaledb(conn)
        record.update(
            server=f"PostgreSQL {version.split()[0]}, TimescaleDB {timescaledb.available_version or '?'} "
            f"({timescaledb.edition or 'edition unknown'})",
            jobs=jobs,
        )
        print(f"convbench: {server.describe()}, {jobs} jobs", flush=True)
        for i, interval_s in enumerate(args.interval):
            template = legacy_template(server, args.rows, interval_s, f"ms5_bench_{interval_s}s")
            at_n = conversions(server, template, entry, jobs, figures, interval_s, "N")
            if i == 0:
                insert_costs(server, template, entry, jobs, figures, interval_s, args.insert_rows)
                backup_and_equality(server, template, jobs, figures, Path(tmp))
            with psycopg.connect(server.conninfo(), autocommit=True) as conn:
                drop_database(conn, template)
            if not args.tenfold:
                continue
            big = legacy_template(server, 10 * args.rows, interval_s, f"ms5_bench_{interval_s}s_10n")
            at_10n = conversions(server, big, entry, jobs, figures, interval_s, "10N")
            with psycopg.connect(server.conninfo(), autocommit=True) as conn:
                drop_database(conn, big)
            for what in ("offline", "online"):
                figures.add(
                    f"{what} conversion, 10N against N",
                    at_10n[what],
                    f"{what} conversion at N",
                    at_n[what],
                    GROWTH_BOUND,
                    interval_s=interval_s,
                    size="10N/N",
                    rows=at_10n["rows"],
                )
            # The same server's plain copy at 10N: how much of the growth is the server's own (sorts ten times as
            # large, a table that no longer fits in memory), not the conversion's.
            figures.add(
                "plain copy, 10N against N",
                at_10n["plain"],
                "plain copy at N",
                at_n["plain"],
                None,
                interval_s=interval_s,
                size="10N/N",
                rows=at_10n["rows"],
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tsmigrate bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_500_000, help="metric rows at N (default 2500000)")
    parser.add_argument(
        "--interval",
        type=intervals,
        default=[1, 10, 60],
        help="seconds between two samples of a metric, comma-separated (default 1,10,60; production: 1)",
    )
    parser.add_argument("--tenfold", action="store_true", help="also measure at 10x --rows")
    parser.add_argument(
        "--jobs", type=int, default=None, help="connections for the conversions and pg_dump (default: the plan's)"
    )
    parser.add_argument("--insert-rows", type=int, default=50_000, help="rows of the insert-cost figure")
    parser.add_argument("--json", type=Path, default=None, help="where to write the figures (default reports/)")
    parser.add_argument("--readme", type=Path, default=None, help="regenerate the table of this README")
    parser.add_argument("--from-json", type=Path, default=None, help="measure nothing: the README's table from FILE")
    args = parser.parse_args(argv)
    if args.from_json is not None:
        if args.readme is None:
            parser.error("--from-json needs --readme")
        write_readme(args.readme, json.loads(args.from_json.read_text(encoding="utf-8")))
        return 0
    if args.rows < 1000 or (args.jobs is not None and args.jobs < 1) or args.insert_rows < 1:
        parser.error("--rows must be at least 1000, --jobs and --insert-rows at least 1")
    plan = load_plan(PROJECT / "migrations")
    entry = plan.hypertable(TABLE) if plan else None
    if entry is None:
        parser.error(f"migrations/plan.toml plans no {TABLE}: the benchmark converts it")
    args.jobs = args.jobs or (plan.jobs if plan else None)
    figures = Figures()
    record: dict = {
        "rows": args.rows,
        "intervals_s": args.interval,
        "tenfold": args.tenfold,
        "when": f"{datetime.now(UTC):%Y-%m-%d}",
    }
    try:
        measure(args, entry, figures, record)
    except ServerStartError as exc:
        print(f"convbench: cannot start a throwaway server: {exc}", flush=True)
        return 3
    record.update(figures=figures.rows, profiles=figures.profiles)
    out = args.json or PROJECT / "reports" / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2), encoding="utf-8")
    missed = [f for f in figures.rows if f["met"] is False]
    print(
        f"convbench: {len(figures.rows)} figures, {len(missed)} not within their bound"
        + (f" ({'; '.join(sorted({f['figure'] for f in missed}))})" if missed else "")
        + f"; written to {out}",
        flush=True,
    )
    if args.readme is not None:
        write_readme(args.readme, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
