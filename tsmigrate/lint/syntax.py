"""Reading pglast syntax trees: table names and their keys, walking nodes, literal values, the
create_hypertable calls, the keys and constraints a statement adds, statements refused in a transaction."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, ObjectType

TableKey = tuple["str | None", str]  # (schema or None, relation), lower case

UNIQUE_KINDS = {ConstrType.CONSTR_PRIMARY: "PRIMARY KEY", ConstrType.CONSTR_UNIQUE: "UNIQUE"}

_Field = TypeVar("_Field")


def filled(value: _Field | None) -> _Field:
    """A node field PostgreSQL's grammar always fills for the statement at hand (pglast types every field as
    optional): the relation of a CREATE TABLE, the INTO of a CREATE TABLE AS, the commands of an ALTER TABLE."""
    if value is None:
        raise ValueError("pglast returned a statement without a part PostgreSQL's grammar always fills")
    return value


# --- names ------------------------------------------------------------------------------------

_NAME_PART = re.compile(r'"((?:[^"]|"")*)"|([^."]+)')


def table_key(name: str) -> TableKey:
    """("schema" or None, "table") from 'table', 'schema.table' or quoted forms, lower case."""
    parts = [quoted.replace('""', '"') if quoted else bare.strip() for quoted, bare in _NAME_PART.findall(name)]
    parts = [part.lower() for part in parts if part] or [""]
    return (parts[-2] if len(parts) > 1 else None, parts[-1])


def range_key(relation: ast.RangeVar | None) -> TableKey:
    relation = filled(relation)
    return (relation.schemaname.lower() if relation.schemaname else None, filled(relation.relname).lower())


def as_written(relation: ast.RangeVar | None) -> str:
    relation = filled(relation)
    return f"{relation.schemaname}.{relation.relname}" if relation.schemaname else filled(relation.relname)


def same_table(a: TableKey, b: TableKey) -> bool:
    # The default schema is unknown here: a bare name matches that name in any schema.
    return a[1] == b[1] and (a[0] is None or b[0] is None or a[0] == b[0])


def func_name(call: ast.FuncCall) -> str:
    return filled(filled(call.funcname)[-1].sval).lower()


# --- nodes and values -------------------------------------------------------------------------


def walk(node) -> Iterator[ast.Node]:
    """The node and every node below it."""
    if isinstance(node, tuple):
        for item in node:
            yield from walk(item)
    elif isinstance(node, ast.Node):
        yield node
        for attribute in node:
            yield from walk(getattr(node, attribute))


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


# --- create_hypertable calls ------------------------------------------------------------------


@dataclass(frozen=True)
class _HypertableCall:
    table: str | None  # as written in the call
    time_column: str | None
    migrate_data: bool
    node: ast.FuncCall


def hypertable_calls(stmt: ast.Node) -> Iterator[_HypertableCall]:
    if not isinstance(stmt, ast.SelectStmt):
        return
    for call in walk(stmt):
        if not (isinstance(call, ast.FuncCall) and func_name(call) == "create_hypertable"):
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
        yield _HypertableCall(
            table=_string_value(named.get("relation", _nth(positional, 0))),
            time_column=time_column,
            migrate_data=_is_true(migrate_data),
            node=call,
        )


def _split_arguments(call: ast.FuncCall) -> tuple[list, dict]:
    positional, named = [], {}
    for argument in call.args or ():
        if isinstance(argument, ast.NamedArgExpr):
            named[filled(argument.name).lower()] = argument.arg
        else:
            positional.append(argument)
    return positional, named


def _nth(items: list, index: int):
    return items[index] if index < len(items) else None


def converted_tables(statements: tuple[ast.RawStmt, ...]) -> dict[str, str]:
    return {
        call.table: call.time_column
        for raw in statements
        for call in hypertable_calls(filled(raw.stmt))
        if call.table and call.time_column
    }


# --- what a statement adds or needs -----------------------------------------------------------


def unique_keys(stmt: ast.Node) -> Iterator[tuple[ast.RangeVar, str, list[str], ast.Node | None]]:
    """(table, kind, key columns, node) for each PRIMARY KEY / UNIQUE the statement adds."""
    if isinstance(stmt, ast.IndexStmt) and stmt.unique:
        # An expression column can never be the bare time column.
        columns = [elem.name or "(expression)" for elem in filled(stmt.indexParams)]
        yield filled(stmt.relation), "UNIQUE INDEX", columns, None
        return
    for table, column, constraint in constraints(stmt):
        if constraint.contype in UNIQUE_KINDS and not constraint.indexname:
            columns = [column] if column else [key.sval for key in constraint.keys or ()]
            yield table, UNIQUE_KINDS[constraint.contype], columns, constraint


def constraints(stmt: ast.Node) -> Iterator[tuple[ast.RangeVar, str | None, ast.Constraint]]:
    """(table, column or None for table constraints, constraint) added by CREATE/ALTER TABLE."""
    elements: tuple | list
    if isinstance(stmt, ast.CreateStmt):
        elements, table = stmt.tableElts or (), filled(stmt.relation)
    elif isinstance(stmt, ast.AlterTableStmt) and stmt.objtype == ObjectType.OBJECT_TABLE:
        elements, table = (
            [
                cmd.def_
                for cmd in filled(stmt.cmds)
                if cmd.subtype in (AlterTableType.AT_AddConstraint, AlterTableType.AT_AddColumn)
            ],
            filled(stmt.relation),
        )
    else:
        return
    for element in elements:
        if isinstance(element, ast.ColumnDef):
            for constraint in element.constraints or ():
                yield table, element.colname, constraint
        elif isinstance(element, ast.Constraint):
            yield table, None, element


def non_transactional(stmt: ast.Node) -> str | None:
    """The name of a statement PostgreSQL or TimescaleDB refuses inside a transaction block."""
    if isinstance(stmt, ast.IndexStmt) and stmt.concurrent:
        return "CREATE INDEX CONCURRENTLY"
    if isinstance(stmt, ast.DropStmt) and stmt.concurrent:
        return "DROP INDEX CONCURRENTLY"
    if isinstance(stmt, ast.ReindexStmt) and any(p.defname == "concurrently" for p in stmt.params or ()):
        return "REINDEX CONCURRENTLY"
    if isinstance(stmt, ast.VacuumStmt) and stmt.is_vacuumcmd:
        return "VACUUM"
    simple = {
        ast.AlterSystemStmt: "ALTER SYSTEM",
        ast.CreatedbStmt: "CREATE DATABASE",
        ast.DropdbStmt: "DROP DATABASE",
        ast.CreateTableSpaceStmt: "CREATE TABLESPACE",
        ast.DropTableSpaceStmt: "DROP TABLESPACE",
    }
    if type(stmt) in simple:
        return simple[type(stmt)]
    if isinstance(stmt, ast.AlterTableStmt) and any(
        isinstance(cmd.def_, ast.PartitionCmd) and cmd.def_.concurrent for cmd in filled(stmt.cmds)
    ):
        return "DETACH PARTITION CONCURRENTLY"
    if (
        isinstance(stmt, ast.CreateTableAsStmt)
        and not filled(stmt.into).skipData
        and any(option.defname == "continuous" for option in filled(stmt.into).options or ())
    ):
        return "CREATE MATERIALIZED VIEW ... WITH (timescaledb.continuous) ... WITH DATA"
    if isinstance(stmt, ast.CallStmt) and func_name(filled(stmt.funccall)) == "refresh_continuous_aggregate":
        return "CALL refresh_continuous_aggregate()"
    return None
