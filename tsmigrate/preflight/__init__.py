"""Pre-flight checks: will the migration work on this target? Findings only, no changes.

Each check takes a read-only connection (and what else it needs) and returns findings with a
stable code (PF0xx), a location and a fix. The suite turns blocking findings into failed
tests, and the verdict into GO / NO-GO.

- ``environment``: the server, TimescaleDB, client tools, privileges, sessions and room on disk.
- ``files``: the migration files against the ledger, and their lint.
- ``hazards``: the live tables the plan or the files convert.
- ``capacity``: the lock table and TimescaleDB's background workers against what the run and the converted
  database need.
- ``rehearsal_check``: the pending steps applied to a scratch copy.
- ``verdict``: what a GO depends on, checked again before the run changes anything.
- ``checks``: the PF codes and the one way to make a finding of them.
"""
