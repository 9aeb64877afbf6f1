"""Static lint of migration SQL files, parsed by PostgreSQL's own parser (pglast).

Every rule has a stable code in context.RULES (from the registry, tsmigrate/codes.py); the checks are in
rules.py. Nothing here needs a database: `volatility` may consult a live server's pg_proc,
and the pre-flight escalates advisories it can settle against the live data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from pglast import ast, parse_plpgsql
from pglast.enums import ObjectType

from ..findings import Finding
from .context import FileContext, LiveHypertable, Volatility, remember
from .rules import CHECKS
from .source import parse
from .syntax import TableKey, converted_tables, filled, func_name, range_key, table_key, walk


def lint_sql(
    sql: str,
    path: str,
    *,
    hypertables: Mapping[str, str],
    transactional: bool = True,
    volatility: Volatility | None = None,
    live: Sequence[LiveHypertable] = (),
) -> list[Finding]:
    """Findings for one migration file, in file order.

    `hypertables` maps each table that will become a hypertable ("name" or "schema.name")
    to its time column; tables the file converts itself with create_hypertable are added.
    `transactional` says whether the runner executes this file inside one transaction.
    `live`: the hypertables the live database holds already, with their compression state (the rules for
    what TimescaleDB refuses on an existing hypertable apply to them).
    """
    parsed = parse(sql)
    context = FileContext(path=path, lines=parsed.lines, transactional=transactional, volatility=volatility)
    findings = [
        context.finding("TS009", f"psql meta-command {text!r} cannot run through the driver", offset=start)
        for start, text in parsed.meta_commands
    ]
    if parsed.error is not None:
        message, offset = parsed.error
        findings.append(
            context.finding(
                "TS000",
                f"SQL does not parse: {message}",
                offset=offset if offset is not None else parsed.lines.last_offset,
            )
        )
        return _in_file_order(findings)

    context.live = [(table_key(h.name), h) for h in live]
    context.hypertables = [(table_key(h.name), h.time_column.lower()) for h in live]
    context.hypertables += [(table_key(name), column.lower()) for name, column in hypertables.items()]
    context.hypertables += [
        (table_key(name), column.lower()) for name, column in converted_tables(parsed.statements).items()
    ]
    for raw in parsed.statements:
        context.statement_offset = parsed.lines.skip_noise(raw.stmt_location or 0)
        stmt = filled(raw.stmt)
        for check in CHECKS:
            findings.extend(check(stmt, context))
        remember(stmt, context)
    return _in_file_order(findings)


def hypertables_created_in(sql: str) -> dict[str, str]:
    """{table as written: time column} for each `create_hypertable(...)` call in the file.

    Knows the classic form create_hypertable('t', 'time', ...), named arguments
    (relation =>, time_column_name =>) and the newer create_hypertable('t', by_range('time')).
    A file that does not parse converts nothing (lint_sql reports the error).
    """
    parsed = parse(sql)
    return {} if parsed.error is not None else converted_tables(parsed.statements)


def rows_changed_in(sql: str, *, calls_count: bool = True) -> tuple[set[TableKey], set[TableKey]] | None:
    """(tables the file's statements may take rows away from, tables they may add rows to), each table as
    (schema or None, table); None when that cannot be told from the text (a CALL, dynamic SQL in a DO block, a
    function called for its effect, a file that does not parse). Taking away: DELETE, TRUNCATE, DROP TABLE, UPDATE
    and MERGE (an update may change a key); adding: INSERT, COPY FROM, UPDATE and MERGE. DO blocks in PL/pgSQL are
    read statement by statement. A restore uses it to tell the run's own deletions from others'.
    ``calls_count``: whether a function a top-level SELECT calls may have changed rows (not for an expression)."""
    parsed = parse(sql)
    if parsed.error is not None:
        return None
    away: set[TableKey] = set()
    added: set[TableKey] = set()
    for raw in parsed.statements:
        if calls_count and isinstance(raw.stmt, ast.SelectStmt) and _calls_unknown_function(raw.stmt):
            return None  # SELECT some_function(): it may delete rows, and nothing here says it does not
        for node in walk(raw.stmt):
            if isinstance(node, ast.CallStmt):
                return None
            if isinstance(node, ast.DoStmt):
                inner = _do_block_changes(node)
                if inner is None:
                    return None
                away |= inner[0]
                added |= inner[1]
            elif isinstance(node, (ast.UpdateStmt, ast.MergeStmt)):
                away.add(range_key(node.relation))
                added.add(range_key(node.relation))
            elif isinstance(node, ast.DeleteStmt):
                away.add(range_key(node.relation))
            elif isinstance(node, ast.TruncateStmt):
                away.update(range_key(r) for r in node.relations or ())
            elif isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_TABLE:
                away.update(table_key(".".join(part.sval for part in name)) for name in node.objects or ())
            elif isinstance(node, ast.InsertStmt) or (
                isinstance(node, ast.CopyStmt) and node.is_from and node.relation is not None
            ):
                added.add(range_key(node.relation))
    return away, added


def _do_block_changes(block: ast.DoStmt) -> tuple[set[TableKey], set[TableKey]] | None:
    """rows_changed_in for the statements of a PL/pgSQL DO block (None: another language, or dynamic SQL)."""
    options = {a.defname: a.arg.sval for a in block.args or () if isinstance(getattr(a, "arg", None), ast.String)}
    if options.get("language", "plpgsql").lower() != "plpgsql" or "as" not in options:
        return None
    body, tag = options["as"], "tsm_do"
    while f"${tag}$" in body:
        tag += "_"
    try:
        tree = parse_plpgsql(f"CREATE FUNCTION tsm_do() RETURNS void LANGUAGE plpgsql AS ${tag}${body}${tag}$")
    except Exception:  # pglast raises its own errors for a body PostgreSQL would refuse
        return None
    away: set[TableKey] = set()
    added: set[TableKey] = set()
    stack: list = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        if "PLpgSQL_stmt_dynfors" in node:
            return None
        if "PLpgSQL_stmt_dynexecute" in node:
            if not _dynamic_ddl_only(node["PLpgSQL_stmt_dynexecute"].get("query", {}).get("PLpgSQL_expr", {})):
                return None
            continue
        expr = node.get("PLpgSQL_expr")
        if isinstance(expr, dict) and "query" in expr:
            # A statement (PERFORM f(), INSERT ...) is judged as one; an expression (an IF's condition, a loop's
            # bounds) can change no row itself, so only the statements inside it count.
            statement = expr.get("parseMode", 0) == 0
            inner = rows_changed_in(expr["query"] if statement else f"SELECT {expr['query']}", calls_count=statement)
            if inner is None:
                return None
            away |= inner[0]
            added |= inner[1]
            continue
        stack.extend(node.values())
    return away, added


_ROW_WORDS = re.compile(r"\b(DELETE|TRUNCATE|UPDATE|INSERT|MERGE|COPY|DROP\s+(TABLE|SCHEMA|OWNED))\b", re.IGNORECASE)
_DDL_START = re.compile(r"^\s*(CREATE|ALTER|COMMENT|GRANT|REVOKE|DROP)\b", re.IGNORECASE)


def _dynamic_ddl_only(expr: dict) -> bool:
    """Whether an EXECUTE's text is built from literals that make DDL touching no rows ('CREATE ROLE ' || ...):
    the literals start with a DDL word and none names a row change. Anything else may change rows."""
    parsed = parse(f"SELECT {expr.get('query', '')}")
    if parsed.error is not None:
        return False
    literals = [
        filled(n.val.sval)
        for raw in parsed.statements
        for n in walk(raw.stmt)
        if isinstance(n, ast.A_Const) and isinstance(n.val, ast.String)
    ]
    text = " ".join(literals)
    return bool(literals) and bool(_DDL_START.match(literals[0])) and not _ROW_WORDS.search(text)


# Functions a migration file calls for their effect that change no row of the application's tables: TimescaleDB's
# API and a few of PostgreSQL's own. Any other function called from a SELECT's target list may (see rows_changed_in).
ROW_SAFE_FUNCTIONS = frozenset(
    {
        "create_hypertable",
        "by_range",
        "by_hash",
        "add_dimension",
        "set_chunk_time_interval",
        "set_integer_now_func",
        "add_compression_policy",
        "remove_compression_policy",
        "add_retention_policy",
        "remove_retention_policy",
        "add_columnstore_policy",
        "remove_columnstore_policy",
        "alter_job",
        "add_reorder_policy",
        "remove_reorder_policy",
        "create_distributed_hypertable",
        "pg_sleep",
        "set_config",
        "current_setting",
        "setval",
        "nextval",
        "now",
        "count",
        "version",
        "format",
        "pg_advisory_lock",
        "pg_advisory_unlock",
    }
)


def _calls_unknown_function(select: ast.SelectStmt) -> bool:
    for target in select.targetList or ():
        for node in walk(target):
            if isinstance(node, ast.FuncCall) and func_name(node) not in ROW_SAFE_FUNCTIONS:
                return True
    return False


def _in_file_order(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda finding: finding.line or 0)
