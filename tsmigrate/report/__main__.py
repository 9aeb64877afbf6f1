"""``python -m tsmigrate.report schema``: the JSON Schema of the run records (reports/*.json)."""

import json
import sys

from .record import RUN_RECORD_SCHEMA

if sys.argv[1:] == ["schema"]:
    print(json.dumps(RUN_RECORD_SCHEMA, indent=2))
else:
    sys.exit("usage: python -m tsmigrate.report schema   (prints the JSON Schema of reports/*.json)")
