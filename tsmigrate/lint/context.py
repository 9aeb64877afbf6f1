"""What the lint knows while it reads one file: the tables that become hypertables, the tables created
or filled so far, how volatile a function is, and how a finding is made (its code's severity and hint)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pglast import ast
from pglast.enums import ObjectType

from ..codes import CODES, Code
from ..findings import Finding
from .source import LineMap
from .syntax import TableKey, filled, func_name, range_key, same_table

Volatility = Callable[[str], "str | None"]  # function name -> 'i', 's', 'v' or None (unknown)


@dataclass(frozen=True)
class LiveHypertable:
    """A table the live database already holds as a hypertable (after Phase 3, say), as its catalog says."""

    name: str  # schema.table
    time_column: str
    compression_enabled: bool = False
    compressed_chunks: int = 0
    segment_by: tuple[str, ...] = ()
    order_by: tuple[str, ...] = ()
    chunks: int = 0


# The TS codes of the registry (tsmigrate/codes.py): severity, title and hint of each rule.
RULES: dict[str, Code] = {code: c for code, c in CODES.items() if code.startswith("TS")}

# Functions that are not immutable, by name, for when no live pg_proc is consulted.
# 's' (stable) is fixed within one statement; 'v' (volatile) changes on every call.
BUILTIN_VOLATILITY: dict[str, str] = {
    **dict.fromkeys(
        (
            "now",
            "current_timestamp",
            "current_date",
            "current_time",
            "localtimestamp",
            "localtime",
            "statement_timestamp",
            "transaction_timestamp",
            "current_setting",
            "txid_current",
            "txid_current_if_assigned",
            "pg_current_xact_id",
            "to_regclass",
            "current_schema",
            "current_schemas",
            "current_user",
            "session_user",
        ),
        "s",
    ),
    **dict.fromkeys(
        (
            "clock_timestamp",
            "timeofday",
            "random",
            "random_normal",
            "setseed",
            "gen_random_uuid",
            "uuidv4",
            "uuidv7",
            "uuid_generate_v1",
            "uuid_generate_v1mc",
            "uuid_generate_v4",
            "nextval",
            "currval",
            "lastval",
            "setval",
            "pg_backend_pid",
        ),
        "v",
    ),
}


@dataclass
class FileContext:
    path: str
    lines: LineMap
    transactional: bool
    volatility: Volatility | None
    hypertables: list[tuple[TableKey, str]] = field(default_factory=list)  # (table, time column)
    created: list[TableKey] = field(default_factory=list)  # tables created earlier in this file
    filled: list[TableKey] = field(default_factory=list)  # tables given rows earlier in this file
    live: list[tuple[TableKey, LiveHypertable]] = field(default_factory=list)  # hypertables the database holds now
    statement_offset: int = 0

    def time_column(self, table: TableKey) -> str | None:
        """The time column if `table` will become a hypertable, else None."""
        return next((column for key, column in self.hypertables if same_table(key, table)), None)

    def live_hypertable(self, table: TableKey) -> LiveHypertable | None:
        """What the live catalog says of ``table`` when it is a hypertable already, else None."""
        return next((h for key, h in self.live if same_table(key, table)), None)

    def was_created(self, table: TableKey) -> bool:
        return any(same_table(key, table) for key in self.created)

    def was_filled(self, table: TableKey) -> bool:
        return any(same_table(key, table) for key in self.filled)

    def function_volatility(self, call: ast.FuncCall) -> str | None:
        name = func_name(call)
        if self.volatility is not None and (known := self.volatility(name)) is not None:
            return known
        if name == "age":  # age(t) compares with today; age(a, b) on timestamps is immutable
            return "s" if len(call.args or ()) == 1 else None
        return BUILTIN_VOLATILITY.get(name)

    def finding(
        self, code: str, message: str, *, table: str | None = None, node=None, offset: int | None = None
    ) -> Finding:
        """A finding at `offset` (a str index), else at `node`, else at the current statement."""
        if offset is None:
            location = getattr(node, "location", None)
            offset = (
                self.lines.index(location) if isinstance(location, int) and location >= 0 else self.statement_offset
            )
        rule = RULES[code]
        return Finding(
            code=code,
            severity=rule.severity,
            message=message,
            path=self.path,
            line=self.lines.line(offset),
            table=table,
            hint=rule.hint,
        )


def remember(stmt: ast.Node, context: FileContext) -> None:
    """Note tables this statement creates or fills, for the checks of later statements."""
    if isinstance(stmt, ast.CreateStmt):
        context.created.append(range_key(stmt.relation))
    elif isinstance(stmt, ast.CreateTableAsStmt) and stmt.objtype == ObjectType.OBJECT_TABLE:
        into = filled(stmt.into)
        context.created.append(range_key(into.rel))
        if not into.skipData:
            context.filled.append(range_key(into.rel))
    elif isinstance(stmt, ast.InsertStmt) or (
        isinstance(stmt, ast.CopyStmt) and stmt.is_from and stmt.relation is not None
    ):
        context.filled.append(range_key(stmt.relation))
