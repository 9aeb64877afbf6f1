"""Post-flight benchmarks: figures measured on the migrated database, each beside its limit from the plan.

Nothing they do stays in the user's tables: inserts run in a transaction that is rolled back (with negative
ids given explicitly, so no sequence moves either), queries run in read-only transactions, compression is
measured inside a transaction that is rolled back. The reports draw the figures (tsmigrate.report.html).

    figures      Figure (value beside limit), BenchSkipped, how the numbers are written
    ingest       rows per second through COPY and batched INSERTs
    dashboard    one dashboard query timed and explained, its chunk exclusion judged
    dashboard_queries   the dashboard queries as data: the SQL file beside the plan and its parser
    storage      compression ratio of old chunks, storage per month projected (the projection the
                 pre-flight's prediction shares: month_bytes, project, advice)
"""

from .dashboard import QueryResult, percentile, run_dashboard_query
from .dashboard_queries import (
    DashboardQuery,
    DashboardQueryError,
    Window,
    load_dashboard_queries,
    parse_dashboard_queries,
)
from .figures import BenchSkipped, Figure, fmt, fmt_margin
from .ingest import IngestResult, ingest_batched, ingest_copy
from .storage import (
    CompressionResult,
    Growth,
    StorageResult,
    measure_compression,
    month_bytes,
    planned_compression,
    project,
    project_storage,
)

__all__ = [
    "BenchSkipped",
    "CompressionResult",
    "DashboardQuery",
    "DashboardQueryError",
    "Figure",
    "Growth",
    "IngestResult",
    "QueryResult",
    "StorageResult",
    "Window",
    "fmt",
    "fmt_margin",
    "ingest_batched",
    "ingest_copy",
    "load_dashboard_queries",
    "measure_compression",
    "month_bytes",
    "parse_dashboard_queries",
    "percentile",
    "planned_compression",
    "project",
    "project_storage",
    "run_dashboard_query",
]
