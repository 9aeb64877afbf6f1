"""The kill sweep's command line: ``python -m tsmigrate_tools.sweep [--points N] [--scale tiny|demo|site]
[--server local] [--keep-going] [--writer] [--online]``; exit 0 when every point passed, 1 otherwise, 2 for a usage
error."""

from __future__ import annotations

import argparse
import signal
import sys
import time

import psycopg

from tsmigrate.legacy import SCALES

from .points import Point, Sweep, SweepError, say
from .runs import PROJECT


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tsmigrate_tools.sweep",
        description="Kill a full tsmigrate run (pytest suites) with SIGKILL at N evenly spread moments, on fresh "
        "copies of a legacy MS5.0 database, and check each time that a rerun ends SUCCESS with every "
        "legacy row intact and no pg_dump/pg_restore of the killed run left behind.",
    )
    parser.add_argument(
        "--points",
        type=int,
        default=10,
        metavar="N",
        help="how many kill moments, spread evenly over an uninterrupted run (default 10)",
    )
    parser.add_argument(
        "--scale", choices=sorted(SCALES), default="demo", help="history in the legacy database (default demo)"
    )
    parser.add_argument(
        "--server",
        choices=["local"],
        default="local",
        help="where the throwaway server runs (local: initdb/pg_ctl on this machine)",
    )
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="run every point even after one failed (default: stop at the first failure)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="bound on each full run (default: 1800 s for the measured run, "
        "max(300 s, 5 x its duration) for each rerun)",
    )
    parser.add_argument(
        "--rerun-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="pause between the kill and the rerun (default 0: rerun at once, as an automatic "
        "retry would; the killed run's server sessions may still be ending)",
    )
    parser.add_argument(
        "--writer",
        action="store_true",
        help="a login role of the application inserts every 100 ms through each killed run and its "
        "rerun; every row it saw committed must be there at the end",
    )
    parser.add_argument(
        "--online", action="store_true", help="convert every planned table online (the plan's online_above_rows = 0)"
    )
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="seconds the throwaway server may take to start (default 60)",
    )
    args = parser.parse_args(argv)
    if args.points < 1:
        parser.error(f"--points must be at least 1, got {args.points}")
    if args.timeout is not None and args.timeout <= 0:
        parser.error(f"--timeout must be positive, got {args.timeout:g}")
    if args.rerun_delay < 0:
        parser.error(f"--rerun-delay must not be negative, got {args.rerun_delay:g}")
    if args.ready_timeout <= 0:
        parser.error(f"--ready-timeout must be positive, got {args.ready_timeout:g}")
    if not (PROJECT / "suites").is_dir():
        parser.error(
            f"no suites/ directory beside the package ({PROJECT}): run the sweep from a checkout "
            "of the project (pip install -e .)"
        )
    return args


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), message already on stderr
        return exc.code if isinstance(exc.code, int) else 2
    signal.signal(signal.SIGTERM, _terminate)
    sweep_started = time.monotonic()
    sweep = Sweep(args)
    points: list[Point] = []
    try:
        sweep.set_up()
        sweep.measure()
        for i in range(1, args.points + 1):
            points.append(sweep.point(i))
            if not points[-1].passed and not args.keep_going and i < args.points:
                say(f"stopping at the first failed point ({args.points - i} not run; --keep-going runs them all)")
                break
    except SweepError as exc:
        say(f"kill sweep: cannot go on: {exc}")
        return 1
    except KeyboardInterrupt:
        say("kill sweep: interrupted; cleaning up")
        return 1
    except (psycopg.Error, OSError) as exc:
        say(f"kill sweep: stopped by an error: {type(exc).__name__}: {str(exc).strip()}")
        return 1
    finally:
        sweep.close()
    passed = sum(p.passed for p in points)
    failed = len(points) - passed
    not_run = args.points - len(points)
    say(
        f"kill sweep: {args.points} points, {passed} passed, {failed} failed"
        + (f", {not_run} not run" if not_run else "")
        + f" ({time.monotonic() - sweep_started:.0f} s)"
    )
    return 0 if passed == args.points else 1


if __name__ == "__main__":
    sys.exit(main())
