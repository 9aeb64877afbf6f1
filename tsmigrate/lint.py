"""Static lint of migration SQL files, parsed by PostgreSQL's own parser (pglast).

Every rule has a stable code in RULES (from the registry, tsmigrate/codes.py). TS0xx rules are about turning tables into
hypertables; TS1xx rules are general migration safety (in the spirit of Squawk).
Nothing here needs a database: `volatility` may consult a live server's pg_proc,
and the pre-flight escalates advisories it can settle against the live data.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, ObjectType, TransactionStmtKind
from pglast.parser import ParseError, parse_sql

from .codes import CODES, Code
from .findings import Finding

Volatility = Callable[[str], "str | None"]  # function name -> 'i', 's', 'v' or None (unknown)


# The TS codes of the registry (tsmigrate/codes.py): severity, title and hint of each rule.
RULES: dict[str, Code] = {code: c for code, c in CODES.items() if code.startswith("TS")}

# Functions that are not immutable, by name, for when no live pg_proc is consulted.
# 's' (stable) is fixed within one statement; 'v' (volatile) changes on every call.
BUILTIN_VOLATILITY: dict[str, str] = {
    **dict.fromkeys((
        "now", "current_timestamp", "current_date", "current_time", "localtimestamp",
        "localtime", "statement_timestamp", "transaction_timestamp", "current_setting",
        "txid_current", "txid_current_if_assigned", "pg_current_xact_id", "to_regclass",
        "current_schema", "current_schemas", "current_user", "session_user",
    ), "s"),
    **dict.fromkeys((
        "clock_timestamp", "timeofday", "random", "random_normal", "setseed",
        "gen_random_uuid", "uuidv4", "uuidv7", "uuid_generate_v1", "uuid_generate_v1mc",
        "uuid_generate_v4", "nextval", "currval", "lastval", "setval", "pg_backend_pid",
    ), "v"),
}
SERIAL_TYPES = {"smallserial", "serial", "bigserial", "serial2", "serial4", "serial8"}
TRANSACTION_CONTROL = {
    TransactionStmtKind.TRANS_STMT_BEGIN: "BEGIN", TransactionStmtKind.TRANS_STMT_START: "START TRANSACTION",
    TransactionStmtKind.TRANS_STMT_COMMIT: "COMMIT", TransactionStmtKind.TRANS_STMT_ROLLBACK: "ROLLBACK",
    TransactionStmtKind.TRANS_STMT_PREPARE: "PREPARE TRANSACTION",
}
UNIQUE_KINDS = {ConstrType.CONSTR_PRIMARY: "PRIMARY KEY", ConstrType.CONSTR_UNIQUE: "UNIQUE"}

TableKey = tuple["str | None", str]  # (schema or None, relation), lower case


# --- public API -------------------------------------------------------------------------------

def lint_sql(sql: str, path: str, *, hypertables: Mapping[str, str], transactional: bool = True,
             volatility: Volatility | None = None) -> list[Finding]:
    """Findings for one migration file, in file order.

    `hypertables` maps each table that will become a hypertable ("name" or "schema.name")
    to its time column; tables the file converts itself with create_hypertable are added.
    `transactional` says whether the runner executes this file inside one transaction.
    """
    parsed = _parse(sql)
    context = _FileContext(path=path, lines=parsed.lines, transactional=transactional,
                           volatility=volatility)
    findings = [context.finding("TS009", f"psql meta-command {text!r} cannot run through the driver",
                                offset=start)
                for start, text in parsed.meta_commands]
    if parsed.error is not None:
        message, offset = parsed.error
        findings.append(context.finding("TS000", f"SQL does not parse: {message}",
                                        offset=offset if offset is not None else parsed.lines.last_offset))
        return _in_file_order(findings)

    context.hypertables = [(_table_key(name), column.lower()) for name, column in hypertables.items()]
    context.hypertables += [(_table_key(name), column.lower())
                            for name, column in _converted_tables(parsed.statements).items()]
    for raw in parsed.statements:
        context.statement_offset = parsed.lines.skip_noise(raw.stmt_location or 0)
        for check in CHECKS:
            findings.extend(check(raw.stmt, context))
        _remember(raw.stmt, context)
    return _in_file_order(findings)


def hypertables_created_in(sql: str) -> dict[str, str]:
    """{table as written: time column} for each `create_hypertable(...)` call in the file.

    Knows the classic form create_hypertable('t', 'time', ...), named arguments
    (relation =>, time_column_name =>) and the newer create_hypertable('t', by_range('time')).
    A file that does not parse converts nothing (lint_sql reports the error).
    """
    parsed = _parse(sql)
    return {} if parsed.error is not None else _converted_tables(parsed.statements)


# --- parsing and locations --------------------------------------------------------------------

# Whatever psql would not read as SQL text: comments, quoted text, and meta-commands.
# A backslash at the start of a line inside quoted text or a comment is data, not a command.
_LEXEME = re.compile(r"""
      (?P<meta>^[ \t]*\\[^\n]*)                   # psql meta-command, up to the end of its line
    | --[^\n]*                                    # line comment
    | (?P<block>/\*)                              # block comment; these nest
    | (?<![\w$])[eE]'(?:[^'\\]|\\.|'')*'          # E'...' string, with backslash escapes
    | '(?:[^']|'')*'                              # plain string
    | "(?:[^"]|"")*"                              # quoted identifier
    | (?P<dollar>(?<![\w$])\$(?:[^\W\d]\w*)?\$)   # opening $tag$ of a dollar-quoted string
""", re.VERBOSE | re.MULTILINE | re.DOTALL)
_COMMENT_MARK = re.compile(r"/\*|\*/")
_LEADING_NOISE = re.compile(r"(?:\s+|--[^\n]*|/\*.*?\*/)*", re.DOTALL)


def _psql_meta_commands(sql: str) -> list[tuple[int, int]]:
    """(start, end) of each line psql would read as a backslash command."""
    spans: list[tuple[int, int]] = []
    position = 0
    while (match := _LEXEME.search(sql, position)) is not None:
        end = match.end()
        if match["meta"] is not None:
            spans.append((match.start(), end))
        elif match["block"] is not None:
            end = _block_comment_end(sql, end)
        elif match["dollar"] is not None:
            close = sql.find(match["dollar"], end)
            end = len(sql) if close < 0 else close + len(match["dollar"])
        position = end
    return spans


def _block_comment_end(sql: str, position: int) -> int:
    depth = 1
    for mark in _COMMENT_MARK.finditer(sql, position):
        depth += 1 if mark.group() == "/*" else -1
        if depth == 0:
            return mark.end()
    return len(sql)


def _locations_are_bytes() -> bool:
    # pglast 8 maps libpg_query's UTF-8 byte offsets to str indexes; older releases may not.
    probe = "SELECT 'ééé';SELECT 1"
    return parse_sql(probe)[1].stmt_location != probe.index("SELECT 1")


PARSER_OFFSETS_ARE_BYTES = _locations_are_bytes()  # also used by migrations.split_statements


class _Lines:
    """Turns parser locations into 1-based line numbers of the file."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._utf8 = text.encode("utf-8") if PARSER_OFFSETS_ARE_BYTES else b""
        self._line_starts = [0] + [i + 1 for i, char in enumerate(text) if char == "\n"]
        self.last_offset = len(text.rstrip())  # "syntax error at end of input" has no location

    def index(self, location: int) -> int:
        """The str index of a parser node location."""
        if PARSER_OFFSETS_ARE_BYTES:
            return len(self._utf8[:location].decode("utf-8", errors="ignore"))
        return location

    def line(self, index: int) -> int:
        return bisect.bisect_right(self._line_starts, index)

    def skip_noise(self, location: int) -> int:
        # Older parsers start a statement right after the previous semicolon, before the
        # comments and blank lines that precede it; report the line of its first keyword.
        return _LEADING_NOISE.match(self.text, self.index(location)).end()


@dataclass
class _Parsed:
    lines: _Lines
    statements: tuple[ast.RawStmt, ...] = ()
    meta_commands: list[tuple[int, str]] = field(default_factory=list)  # (str index, text)
    error: tuple[str, int | None] | None = None  # (message, str index)


def _parse(sql: str) -> _Parsed:
    """Parse the file with psql meta-commands blanked out (same length, so lines still match)."""
    spans = _psql_meta_commands(sql)
    meta = [(start + len(sql[start:end]) - len(sql[start:end].lstrip()), sql[start:end].strip())
            for start, end in spans]
    for start, end in spans:
        sql = sql[:start] + " " * (end - start) + sql[end:]
    parsed = _Parsed(lines=_Lines(sql), meta_commands=meta)
    try:
        parsed.statements = parse_sql(sql)
    except ParseError as error:
        message, location = error.args[0], error.args[1] if len(error.args) > 1 else None
        parsed.error = (message, location)  # the server reports error positions in characters
    return parsed


def _in_file_order(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda finding: finding.line or 0)


# --- names ------------------------------------------------------------------------------------

_NAME_PART = re.compile(r'"((?:[^"]|"")*)"|([^."]+)')


def _table_key(name: str) -> TableKey:
    """("schema" or None, "table") from 'table', 'schema.table' or quoted forms, lower case."""
    parts = [quoted.replace('""', '"') if quoted else bare.strip()
             for quoted, bare in _NAME_PART.findall(name)]
    parts = [part.lower() for part in parts if part] or [""]
    return (parts[-2] if len(parts) > 1 else None, parts[-1])


def _range_key(relation: ast.RangeVar) -> TableKey:
    return (relation.schemaname.lower() if relation.schemaname else None, relation.relname.lower())


def _written(relation: ast.RangeVar) -> str:
    return f"{relation.schemaname}.{relation.relname}" if relation.schemaname else relation.relname


def _same_table(a: TableKey, b: TableKey) -> bool:
    # The default schema is unknown here: a bare name matches that name in any schema.
    return a[1] == b[1] and (a[0] is None or b[0] is None or a[0] == b[0])


def _func_name(call: ast.FuncCall) -> str:
    return call.funcname[-1].sval.lower()


def _walk(node) -> Iterator[ast.Node]:
    """The node and every node below it."""
    if isinstance(node, tuple):
        for item in node:
            yield from _walk(item)
    elif isinstance(node, ast.Node):
        yield node
        for attribute in node:
            yield from _walk(getattr(node, attribute))


def _string_value(node) -> str | None:
    while isinstance(node, ast.TypeCast):  # 'conditions'::regclass
        node = node.arg
    if isinstance(node, ast.A_Const) and isinstance(node.val, ast.String):
        return node.val.sval
    return None


def _is_true(node) -> bool:
    while isinstance(node, ast.TypeCast):
        node = node.arg
    if isinstance(node, ast.A_Const) and isinstance(node.val, ast.Boolean):
        return bool(node.val.boolval)
    return (_string_value(node) or "").strip().lower() in {"t", "true", "y", "yes", "on", "1"}


# --- what a file does -------------------------------------------------------------------------

@dataclass
class _FileContext:
    path: str
    lines: _Lines
    transactional: bool
    volatility: Volatility | None
    hypertables: list[tuple[TableKey, str]] = field(default_factory=list)  # (table, time column)
    created: list[TableKey] = field(default_factory=list)  # tables created earlier in this file
    filled: list[TableKey] = field(default_factory=list)  # tables given rows earlier in this file
    statement_offset: int = 0

    def time_column(self, table: TableKey) -> str | None:
        """The time column if `table` will become a hypertable, else None."""
        return next((column for key, column in self.hypertables if _same_table(key, table)), None)

    def was_created(self, table: TableKey) -> bool:
        return any(_same_table(key, table) for key in self.created)

    def was_filled(self, table: TableKey) -> bool:
        return any(_same_table(key, table) for key in self.filled)

    def function_volatility(self, call: ast.FuncCall) -> str | None:
        name = _func_name(call)
        if self.volatility is not None and (known := self.volatility(name)) is not None:
            return known
        if name == "age":  # age(t) compares with today; age(a, b) on timestamps is immutable
            return "s" if len(call.args or ()) == 1 else None
        return BUILTIN_VOLATILITY.get(name)

    def finding(self, code: str, message: str, *, table: str | None = None, node=None,
                offset: int | None = None) -> Finding:
        """A finding at `offset` (a str index), else at `node`, else at the current statement."""
        if offset is None:
            location = getattr(node, "location", None)
            offset = (self.lines.index(location) if isinstance(location, int) and location >= 0
                      else self.statement_offset)
        rule = RULES[code]
        return Finding(code=code, severity=rule.severity, message=message, path=self.path,
                       line=self.lines.line(offset), table=table, hint=rule.hint)


def _remember(stmt: ast.Node, context: _FileContext) -> None:
    """Note tables this statement creates or fills, for the checks of later statements."""
    if isinstance(stmt, ast.CreateStmt):
        context.created.append(_range_key(stmt.relation))
    elif isinstance(stmt, ast.CreateTableAsStmt) and stmt.objtype == ObjectType.OBJECT_TABLE:
        context.created.append(_range_key(stmt.into.rel))
        if not stmt.into.skipData:
            context.filled.append(_range_key(stmt.into.rel))
    elif isinstance(stmt, ast.InsertStmt) or (isinstance(stmt, ast.CopyStmt) and stmt.is_from
                                                and stmt.relation is not None):
        context.filled.append(_range_key(stmt.relation))


@dataclass(frozen=True)
class _HypertableCall:
    table: str | None  # as written in the call
    time_column: str | None
    migrate_data: bool
    node: ast.FuncCall


def _hypertable_calls(stmt: ast.Node) -> Iterator[_HypertableCall]:
    if not isinstance(stmt, ast.SelectStmt):
        return
    for call in _walk(stmt):
        if not (isinstance(call, ast.FuncCall) and _func_name(call) == "create_hypertable"):
            continue
        positional, named = _split_arguments(call)
        dimension = named.get("dimension", named.get("time_column_name", _nth(positional, 1)))
        if isinstance(dimension, ast.FuncCall):  # create_hypertable('t', by_range('time'), ...)
            by_range_positional, by_range_named = _split_arguments(dimension)
            time_column = _string_value(by_range_named.get("column_name", _nth(by_range_positional, 0)))
            migrate_data = named.get("migrate_data", _nth(positional, 4))
        else:  # create_hypertable('t', 'time', ...): migrate_data is the 11th argument
            time_column = _string_value(dimension)
            migrate_data = named.get("migrate_data", _nth(positional, 10))
        yield _HypertableCall(table=_string_value(named.get("relation", _nth(positional, 0))),
                              time_column=time_column, migrate_data=_is_true(migrate_data), node=call)


def _split_arguments(call: ast.FuncCall) -> tuple[list, dict]:
    positional, named = [], {}
    for argument in call.args or ():
        if isinstance(argument, ast.NamedArgExpr):
            named[argument.name.lower()] = argument.arg
        else:
            positional.append(argument)
    return positional, named


def _nth(items: list, index: int):
    return items[index] if index < len(items) else None


def _converted_tables(statements: tuple[ast.RawStmt, ...]) -> dict[str, str]:
    return {call.table: call.time_column
            for raw in statements for call in _hypertable_calls(raw.stmt)
            if call.table and call.time_column}


def _unique_keys(stmt: ast.Node) -> Iterator[tuple[ast.RangeVar, str, list[str], ast.Node | None]]:
    """(table, kind, key columns, node) for each PRIMARY KEY / UNIQUE the statement adds."""
    if isinstance(stmt, ast.IndexStmt) and stmt.unique:
        # An expression column can never be the bare time column.
        columns = [elem.name or "(expression)" for elem in stmt.indexParams]
        yield stmt.relation, "UNIQUE INDEX", columns, None
        return
    for table, column, constraint in _constraints(stmt):
        if constraint.contype in UNIQUE_KINDS and not constraint.indexname:
            columns = [column] if column else [key.sval for key in constraint.keys or ()]
            yield table, UNIQUE_KINDS[constraint.contype], columns, constraint


def _constraints(stmt: ast.Node) -> Iterator[tuple[ast.RangeVar, str | None, ast.Constraint]]:
    """(table, column or None for table constraints, constraint) added by CREATE/ALTER TABLE."""
    if isinstance(stmt, ast.CreateStmt):
        elements, table = stmt.tableElts or (), stmt.relation
    elif isinstance(stmt, ast.AlterTableStmt) and stmt.objtype == ObjectType.OBJECT_TABLE:
        elements, table = [cmd.def_ for cmd in stmt.cmds if cmd.subtype in (
            AlterTableType.AT_AddConstraint, AlterTableType.AT_AddColumn)], stmt.relation
    else:
        return
    for element in elements:
        if isinstance(element, ast.ColumnDef):
            for constraint in element.constraints or ():
                yield table, element.colname, constraint
        elif isinstance(element, ast.Constraint):
            yield table, None, element


def _non_transactional(stmt: ast.Node) -> str | None:
    """The name of a statement PostgreSQL or TimescaleDB refuses inside a transaction block."""
    if isinstance(stmt, ast.IndexStmt) and stmt.concurrent:
        return "CREATE INDEX CONCURRENTLY"
    if isinstance(stmt, ast.DropStmt) and stmt.concurrent:
        return "DROP INDEX CONCURRENTLY"
    if isinstance(stmt, ast.ReindexStmt) and any(p.defname == "concurrently" for p in stmt.params or ()):
        return "REINDEX CONCURRENTLY"
    if isinstance(stmt, ast.VacuumStmt) and stmt.is_vacuumcmd:
        return "VACUUM"
    simple = {ast.AlterSystemStmt: "ALTER SYSTEM", ast.CreatedbStmt: "CREATE DATABASE",
              ast.DropdbStmt: "DROP DATABASE", ast.CreateTableSpaceStmt: "CREATE TABLESPACE",
              ast.DropTableSpaceStmt: "DROP TABLESPACE"}
    if type(stmt) in simple:
        return simple[type(stmt)]
    if isinstance(stmt, ast.AlterTableStmt) and any(
            isinstance(cmd.def_, ast.PartitionCmd) and cmd.def_.concurrent for cmd in stmt.cmds):
        return "DETACH PARTITION CONCURRENTLY"
    if (isinstance(stmt, ast.CreateTableAsStmt) and not stmt.into.skipData
            and any(option.defname == "continuous" for option in stmt.into.options or ())):
        return "CREATE MATERIALIZED VIEW ... WITH (timescaledb.continuous) ... WITH DATA"
    if isinstance(stmt, ast.CallStmt) and _func_name(stmt.funccall) == "refresh_continuous_aggregate":
        return "CALL refresh_continuous_aggregate()"
    return None


def _volatile_default(column: ast.ColumnDef, context: _FileContext) -> str | None:
    """Why adding this column fills every row with a per-row value, or None."""
    type_name = column.typeName.names[-1].sval.lower() if column.typeName else ""
    if type_name in SERIAL_TYPES:
        return f"type {type_name}"
    for constraint in column.constraints or ():
        if constraint.contype == ConstrType.CONSTR_IDENTITY:
            return "an identity"
        if constraint.contype == ConstrType.CONSTR_GENERATED:
            return "a stored generated expression"
        if constraint.contype == ConstrType.CONSTR_DEFAULT:
            for call in _walk(constraint.raw_expr):
                if isinstance(call, ast.FuncCall) and context.function_volatility(call) == "v":
                    return f"volatile default {_func_name(call)}()"
    return None


# --- rules: one check per rule, each yielding findings for one statement ----------------------

def check_unique_without_time_column(stmt, context: _FileContext) -> Iterator[Finding]:
    for table, kind, columns, node in _unique_keys(stmt):
        time_column = context.time_column(_range_key(table))
        if time_column is not None and time_column not in (c.lower() for c in columns):
            yield context.finding(
                "TS001", f"{kind} ({', '.join(columns)}) on {_written(table)} does not include its "
                f"time column {time_column!r}; TimescaleDB refuses it on a hypertable",
                table=_written(table), node=node)


def check_nullable_time_column(stmt, context: _FileContext) -> Iterator[Finding]:
    if not isinstance(stmt, ast.CreateStmt):
        return
    time_column = context.time_column(_range_key(stmt.relation))
    if time_column is None:
        return
    primary_keys = {column.lower() for _, column_name, constraint in _constraints(stmt)
                    if constraint.contype == ConstrType.CONSTR_PRIMARY
                    for column in ([column_name] if column_name else [k.sval for k in constraint.keys or ()])}
    for column in stmt.tableElts or ():
        if not (isinstance(column, ast.ColumnDef) and column.colname.lower() == time_column):
            continue
        not_null = column.is_not_null or time_column in primary_keys or any(
            c.contype == ConstrType.CONSTR_NOTNULL for c in column.constraints or ())
        if not not_null:
            yield context.finding(
                "TS002", f"time column {column.colname!r} of {_written(stmt.relation)} is nullable; "
                "create_hypertable makes it NOT NULL and fails on rows where it is NULL",
                table=_written(stmt.relation), node=column)


def check_index_functions(stmt, context: _FileContext) -> Iterator[Finding]:
    if not isinstance(stmt, ast.IndexStmt):
        return
    parts = [("WHERE clause", stmt.whereClause)] + [("expression", elem.expr) for elem in stmt.indexParams]
    index = f"index {stmt.idxname!r}" if stmt.idxname else "index"
    for where, expression in parts:
        for node in _walk(expression):
            if isinstance(node, ast.SQLValueFunction):
                name, kind = node.op.name.removeprefix("SVFOP_").removesuffix("_N"), "stable"
            elif isinstance(node, ast.FuncCall) and context.function_volatility(node) in ("s", "v"):
                kind = "stable" if context.function_volatility(node) == "s" else "volatile"
                name = f"{_func_name(node)}()"
            else:
                continue
            yield context.finding(
                "TS003", f"{index} on {_written(stmt.relation)} uses {name} ({kind}, not immutable) "
                f"in its {where}; PostgreSQL refuses it", table=_written(stmt.relation), node=node)


def check_non_transactional(stmt, context: _FileContext) -> Iterator[Finding]:
    statement = _non_transactional(stmt) if context.transactional else None
    if statement is not None:
        relation = getattr(stmt, "relation", None)
        table = _written(relation) if isinstance(relation, ast.RangeVar) else None
        yield context.finding(
            "TS004", f"{statement} cannot run inside a transaction block, and this file runs in one",
            table=table)


def check_create_hypertable_migrate_data(stmt, context: _FileContext) -> Iterator[Finding]:
    for call in _hypertable_calls(stmt):
        if call.migrate_data or call.table is None:
            continue
        table = _table_key(call.table)
        if context.was_filled(table):
            yield context.finding(
                "TS005", f"create_hypertable({call.table!r}) without migrate_data => true, but this file "
                "has already put rows into it; the call will fail", table=call.table, node=call.node)
        elif not context.was_created(table):
            yield context.finding(
                "TS006", f"create_hypertable({call.table!r}) without migrate_data => true on a table not "
                "created in this file; it fails if the table holds rows", table=call.table, node=call.node)


def check_foreign_key_into_hypertable(stmt, context: _FileContext) -> Iterator[Finding]:
    for table, _, constraint in _constraints(stmt):
        if constraint.contype != ConstrType.CONSTR_FOREIGN:
            continue
        target = constraint.pktable
        if context.time_column(_range_key(target)) is None:
            continue
        from_hypertable = context.time_column(_range_key(table)) is not None
        yield context.finding(
            "TS007" if from_hypertable else "TS008",
            f"foreign key from {_written(table)} references {_written(target)}, which becomes a hypertable"
            + ("; foreign keys between hypertables are not supported" if from_hypertable else ""),
            table=_written(table), node=constraint)


def check_idempotent(stmt, context: _FileContext) -> Iterator[Finding]:
    missing, what, table = None, "", None
    if isinstance(stmt, ast.CreateStmt) and not stmt.if_not_exists:
        table = _written(stmt.relation)
        missing, what = "IF NOT EXISTS", f"CREATE TABLE {table}"
    elif isinstance(stmt, ast.CreateTableAsStmt) and not stmt.if_not_exists and not stmt.is_select_into:
        kind = "MATERIALIZED VIEW" if stmt.objtype == ObjectType.OBJECT_MATVIEW else "TABLE"
        table = _written(stmt.into.rel)
        missing, what = "IF NOT EXISTS", f"CREATE {kind} {table}"
    elif isinstance(stmt, ast.IndexStmt) and not stmt.if_not_exists:
        table = _written(stmt.relation)
        missing, what = "IF NOT EXISTS", f"CREATE INDEX {stmt.idxname or '(unnamed)'} ON {table}"
    elif isinstance(stmt, ast.CreateSchemaStmt) and not stmt.if_not_exists:
        missing, what = "IF NOT EXISTS", f"CREATE SCHEMA {stmt.schemaname}"
    elif isinstance(stmt, ast.CreateExtensionStmt) and not stmt.if_not_exists:
        missing, what = "IF NOT EXISTS", f"CREATE EXTENSION {stmt.extname}"
    elif isinstance(stmt, ast.CreateSeqStmt) and not stmt.if_not_exists:
        missing, what = "IF NOT EXISTS", f"CREATE SEQUENCE {_written(stmt.sequence)}"
    elif isinstance(stmt, ast.DropStmt) and not stmt.missing_ok:
        kind = stmt.removeType.name.removeprefix("OBJECT_").replace("_", " ")
        missing, what = "IF EXISTS", f"DROP {kind} {', '.join(_dropped_names(stmt))}".rstrip()
        if stmt.removeType == ObjectType.OBJECT_TABLE:
            table = ", ".join(_dropped_names(stmt)) or None
    elif isinstance(stmt, ast.CreateFunctionStmt) and not stmt.replace:
        kind = "PROCEDURE" if stmt.is_procedure else "FUNCTION"
        missing, what = "OR REPLACE", f"CREATE {kind} {'.'.join(n.sval for n in stmt.funcname)}"
    elif isinstance(stmt, ast.ViewStmt) and not stmt.replace:
        table = _written(stmt.view)
        missing, what = "OR REPLACE", f"CREATE VIEW {table}"
    if missing is not None:
        yield context.finding("TS101", f"{what} without {missing} fails when the migration is re-run",
                              table=table)


def _dropped_names(stmt: ast.DropStmt) -> list[str]:
    names = []
    for name in stmt.objects or ():
        if isinstance(name, ast.ObjectWithArgs):  # DROP FUNCTION f(int)
            name = name.objname
        elif isinstance(name, ast.TypeName):  # DROP TYPE t
            name = name.names
        if isinstance(name, ast.String):
            names.append(name.sval)
        elif isinstance(name, tuple):
            names.append(".".join(part.sval for part in name if isinstance(part, ast.String)))
    return names


def check_table_rewrite(stmt, context: _FileContext) -> Iterator[Finding]:
    if not isinstance(stmt, ast.AlterTableStmt) or context.was_created(_range_key(stmt.relation)):
        return  # rewriting a table created in this same file is cheap: it is still empty
    table = _written(stmt.relation)
    for cmd in stmt.cmds:
        reason = None
        if cmd.subtype == AlterTableType.AT_AlterColumnType:
            reason = f"changing the type of column {cmd.name!r}"
        elif cmd.subtype == AlterTableType.AT_AddColumn and (why := _volatile_default(cmd.def_, context)):
            reason = f"adding column {cmd.def_.colname!r} with {why}"
        if reason:
            yield context.finding("TS102", f"{reason} rewrites all of {table} under an ACCESS EXCLUSIVE lock",
                                  table=table)


def check_lock_heavy(stmt, context: _FileContext) -> Iterator[Finding]:
    if not isinstance(stmt, ast.AlterTableStmt) or context.was_created(_range_key(stmt.relation)):
        return  # validating a table created in this same file is instant: it is still empty
    table = _written(stmt.relation)
    for cmd in stmt.cmds:
        reason = None
        if cmd.subtype == AlterTableType.AT_SetNotNull:
            reason = f"SET NOT NULL on column {cmd.name!r} scans {table} under an ACCESS EXCLUSIVE lock"
        elif (cmd.subtype == AlterTableType.AT_AddConstraint and not cmd.def_.skip_validation
              and cmd.def_.contype in (ConstrType.CONSTR_FOREIGN, ConstrType.CONSTR_CHECK)):
            kind = "FOREIGN KEY" if cmd.def_.contype == ConstrType.CONSTR_FOREIGN else "CHECK"
            reason = f"adding a {kind} without NOT VALID scans {table} while holding a heavy lock"
        if reason:
            yield context.finding("TS103", reason, table=table)


def check_transaction_control(stmt, context: _FileContext) -> Iterator[Finding]:
    if context.transactional and isinstance(stmt, ast.TransactionStmt) and stmt.kind in TRANSACTION_CONTROL:
        yield context.finding("TS104", f"{TRANSACTION_CONTROL[stmt.kind]} inside a file the runner "
                                       "already runs in a transaction")


CHECKS: tuple[Callable[[ast.Node, _FileContext], Iterator[Finding]], ...] = (
    check_unique_without_time_column,
    check_nullable_time_column,
    check_index_functions,
    check_non_transactional,
    check_create_hypertable_migrate_data,
    check_foreign_key_into_hypertable,
    check_idempotent,
    check_table_rewrite,
    check_lock_heavy,
    check_transaction_control,
)
