"""tsmigrate: move a live MS5.0 database from PostgreSQL 15 to TimescaleDB, in place, and prove it.

Plain Python modules (no pytest here except ``plugin``); the suites under suites/ drive them, wired by fixtures/.
``run`` is one migration run (lock, ledger, backup, steps, restore), ``summary`` what a run concluded and its
verdict, ``preflight/`` the gate's checks, ``convert/`` turning a table into a hypertable, ``integrity/`` and
``bench/`` the post-flight's, ``report/`` the words, record and HTML report. The project's own tools (sweep, soak,
convbench, appsim) are apart, in tsmigrate_tools/. docs/architecture.md follows one run through the modules.
"""

__version__ = "0.1.0"
