"""``python -m tsmigrate.report schema`` is ``tsmigrate report schema``: the JSON Schema of reports/*.json."""

import sys

from ..cli import main

sys.exit(main(["report", *sys.argv[1:]]))
