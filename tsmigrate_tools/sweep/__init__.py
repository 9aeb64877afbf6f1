"""Kill sweep: SIGKILL a full run at N moments, then prove a second run finishes the migration.

    python -m tsmigrate_tools.sweep [--points N] [--scale tiny|demo|site] [--server local] [--keep-going]

On a throwaway local cluster the legacy MS5.0 database is built once and frozen as a template,
and its fingerprints are taken on a copy before any run. One uninterrupted full run
(``pytest suites --dsn ...``) on a fresh copy gives its duration T and must end SUCCESS. Then,
for i in 1..N, on a fresh copy each time: the same full run is started and killed with SIGKILL
at T*i/(N+1) seconds; no pg_dump/pg_restore of that run may outlive it; a second full run must
end SUCCESS (in reports/latest.json) within a bounded time, every table must hold the legacy
rows (fingerprints over the legacy columns, NULL-time fills seen as they were), and no scratch copy
of a killed rehearsal may be left.

One line per point on stdout, then ``kill sweep: N points, P passed, F failed``. Exit 0 when
every point passed, 1 otherwise, 2 for a usage error. Copies, temporary directories and the
cluster are removed whatever happens.

    runs         one full run in a process group of its own: its files, start, kill, run to its end
    killed_run   what a killed run was doing (last test, last log line, ledger steps left started)
    leftovers    processes a killed run left behind (its process group, clients naming its database)
    points       the sweep: template, the measured run, each kill point judged
    __main__     the command line
"""
