import sys

from ..convert.online.__main__ import main

sys.exit(main())
