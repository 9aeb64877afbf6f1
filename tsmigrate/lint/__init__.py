"""Static lint of migration SQL files, parsed by PostgreSQL's own parser (pglast).

Every rule has a stable code in context.RULES (from the registry, tsmigrate/codes.py); the checks are in
rules.py. Nothing here needs a database: `volatility` may consult a live server's pg_proc,
and the pre-flight escalates advisories it can settle against the live data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..findings import Finding
from .context import FileContext, LiveHypertable, Volatility, remember
from .rules import CHECKS
from .source import parse
from .syntax import converted_tables, table_key


def lint_sql(sql: str, path: str, *, hypertables: Mapping[str, str], transactional: bool = True,
             volatility: Volatility | None = None, live: Sequence[LiveHypertable] = ()) -> list[Finding]:
    """Findings for one migration file, in file order.

    `hypertables` maps each table that will become a hypertable ("name" or "schema.name")
    to its time column; tables the file converts itself with create_hypertable are added.
    `transactional` says whether the runner executes this file inside one transaction.
    `live`: the hypertables the live database holds already, with their compression state (the rules for
    what TimescaleDB refuses on an existing hypertable apply to them).
    """
    parsed = parse(sql)
    context = FileContext(path=path, lines=parsed.lines, transactional=transactional,
                          volatility=volatility)
    findings = [context.finding("TS009", f"psql meta-command {text!r} cannot run through the driver",
                                offset=start)
                for start, text in parsed.meta_commands]
    if parsed.error is not None:
        message, offset = parsed.error
        findings.append(context.finding("TS000", f"SQL does not parse: {message}",
                                        offset=offset if offset is not None else parsed.lines.last_offset))
        return _in_file_order(findings)

    context.live = [(table_key(h.name), h) for h in live]
    context.hypertables = [(table_key(h.name), h.time_column.lower()) for h in live]
    context.hypertables += [(table_key(name), column.lower()) for name, column in hypertables.items()]
    context.hypertables += [(table_key(name), column.lower())
                            for name, column in converted_tables(parsed.statements).items()]
    for raw in parsed.statements:
        context.statement_offset = parsed.lines.skip_noise(raw.stmt_location or 0)
        for check in CHECKS:
            findings.extend(check(raw.stmt, context))
        remember(raw.stmt, context)
    return _in_file_order(findings)


def hypertables_created_in(sql: str) -> dict[str, str]:
    """{table as written: time column} for each `create_hypertable(...)` call in the file.

    Knows the classic form create_hypertable('t', 'time', ...), named arguments
    (relation =>, time_column_name =>) and the newer create_hypertable('t', by_range('time')).
    A file that does not parse converts nothing (lint_sql reports the error).
    """
    parsed = parse(sql)
    return {} if parsed.error is not None else converted_tables(parsed.statements)


def _in_file_order(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda finding: finding.line or 0)
