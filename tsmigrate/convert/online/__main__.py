"""``python -m tsmigrate.online ...`` is ``tsmigrate online ...`` (status, verify, swap-back, drop-legacy;
the command line and its exit codes are in tsmigrate/cli.py)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from ...cli import main as cli

    return cli(["online", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
