"""The run's reports, in plain Python, one concern per module; fixtures/reporting.py hands them to pytest-html.

    words        the operator's words for the verdict: terminal lines, title, headline, what to do next
    record       the JSON run record and its JSON Schema
    redaction    no password in the record or the written files
    environment  facts about the plan, migrations, client tools and server, for the environment table
    html         the banner and the tables of the HTML report
    charts       the one SVG bar chart (step durations, benchmark figures against their limits)

``python -m tsmigrate.report schema`` prints the record's JSON Schema.
"""

from ..summary import GOOD_VERDICTS, VERDICTS
from .charts import Bar, LogScale, bar_chart_svg
from .environment import client_tools_facts, local_facts, migrations_facts, plan_facts, server_facts, timescaledb_facts
from .html import (
    REPORT_CSS,
    banner_html,
    benchmarks_html,
    figures_chart_svg,
    figures_table_html,
    findings_html,
    fingerprints_html,
    run_sections_html,
    step_detail_html,
    steps_html,
)
from .record import (
    RECORD_FORMAT,
    RUN_RECORD_SCHEMA,
    before_fingerprints,
    run_record,
    validate_run_record,
    write_run_record,
)
from .redaction import redact_record, scrub_secrets
from .words import KIND_WORDS, headline, kind_words, next_steps, run_title, terminal_lines

__all__ = [
    "GOOD_VERDICTS",
    "KIND_WORDS",
    "RECORD_FORMAT",
    "REPORT_CSS",
    "RUN_RECORD_SCHEMA",
    "VERDICTS",
    "Bar",
    "LogScale",
    "banner_html",
    "bar_chart_svg",
    "before_fingerprints",
    "benchmarks_html",
    "client_tools_facts",
    "figures_chart_svg",
    "figures_table_html",
    "findings_html",
    "fingerprints_html",
    "headline",
    "kind_words",
    "local_facts",
    "migrations_facts",
    "next_steps",
    "plan_facts",
    "redact_record",
    "run_record",
    "run_sections_html",
    "run_title",
    "scrub_secrets",
    "server_facts",
    "step_detail_html",
    "steps_html",
    "terminal_lines",
    "timescaledb_facts",
    "validate_run_record",
    "write_run_record",
]
