"""After an online conversion: see where it stands, undo it, or end it.

    python -m tsmigrate.online status      --dsn DSN
    python -m tsmigrate.online verify      --dsn DSN TABLE [--schema factory_telemetry]
    python -m tsmigrate.online swap-back   --dsn DSN TABLE   # the legacy table takes the name back
    python -m tsmigrate.online drop-legacy --dsn DSN TABLE   # once the post-flight passed: frees its space

Without --dsn the PG* environment variables name the database.
"""

from __future__ import annotations

import argparse
import sys

import psycopg

from ...errors import first_line
from ...target import TargetError, redact, resolve_target
from ..result import ConversionError
from .state import conversion_state, legacy_tables
from .swap import drop_legacy, swap_back, verify


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tsmigrate.online", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["status", "verify", "swap-back", "drop-legacy"])
    parser.add_argument("table", nargs="?", help="the converted table (not for status)")
    parser.add_argument("--dsn", default=None, help="the target database (default: PG* environment variables)")
    parser.add_argument("--schema", default="factory_telemetry")
    args = parser.parse_args(argv)
    if args.action != "status" and not args.table:
        parser.error(f"{args.action} needs the table's name, e.g. metric_hist")
    try:
        target = resolve_target(args.dsn)
        with target.connect() as conn:
            if args.action == "status":
                kept = legacy_tables(conn)
                for schema, table, legacy in kept:
                    print(
                        f"{schema}.{table}: hypertable swapped in; legacy table kept as {schema}.{legacy} "
                        f"(undo: swap-back {table}; end: drop-legacy {table})"
                    )
                if not kept:
                    print("no online conversion keeps a legacy table")
                return 0
            if conversion_state(conn, args.schema, args.table) is None:
                print(f"{args.schema}.{args.table}: no online conversion of this table is kept", file=sys.stderr)
                return 2
            if args.action == "verify":
                compared, differing = verify(conn, args.schema, args.table)
                print(
                    f"{args.schema}.{args.table}: {compared} rows compared with the legacy table, "
                    f"{len(differing)} differ" + (f" (keys {', '.join(differing)})" if differing else "")
                )
                return 1 if differing else 0
            if args.action == "swap-back":
                replayed = swap_back(conn, args.schema, args.table)
                print(
                    f"{args.schema}.{args.table}: the legacy table has its name back, with {replayed} rows the "
                    "application changed since the swap; the hypertable is dropped"
                )
                return 0
            print(f"dropped {drop_legacy(conn, args.schema, args.table)} and its change log")
            return 0
    except (ConversionError, TargetError) as exc:
        print(f"tsmigrate.online: {exc}", file=sys.stderr)
        return 2
    except psycopg.Error as exc:
        print(f"tsmigrate.online: the server said: {redact(first_line(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
