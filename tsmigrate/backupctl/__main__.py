"""``python -m tsmigrate.backupctl ...`` is ``tsmigrate backup ...`` (the command line is in tsmigrate/cli.py)."""

import sys

from ..cli import main

sys.exit(main(["backup", *sys.argv[1:]]))
