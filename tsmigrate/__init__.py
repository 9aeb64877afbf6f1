"""tsmigrate: move a live MS5.0 database from PostgreSQL 15 to TimescaleDB, in place, and prove it.

Plain Python modules (no pytest here except ``plugin``); the suites under suites/ drive them.
"""

__version__ = "0.1.0"
