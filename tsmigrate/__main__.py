"""``python -m tsmigrate ...`` is the ``tsmigrate`` command (tsmigrate/cli.py), for a checkout whose .venv/bin is
not on the PATH."""

import sys

from .cli import main

sys.exit(main())
