"""The lint rules: one check per TS rule, each yielding the findings of one statement, and CHECKS, the
order they run in. TS0xx rules are about turning tables into hypertables; TS1xx rules are general
migration safety (in the spirit of Squawk)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, ObjectType, TransactionStmtKind

from ..findings import Finding
from ..timescale import primary_key_seconds
from .context import FileContext
from .syntax import (
    as_written,
    constraints,
    filled,
    func_name,
    hypertable_calls,
    non_transactional,
    range_key,
    table_key,
    unique_keys,
    walk,
)

SERIAL_TYPES = {"smallserial", "serial", "bigserial", "serial2", "serial4", "serial8"}
TRANSACTION_CONTROL = {
    TransactionStmtKind.TRANS_STMT_BEGIN: "BEGIN",
    TransactionStmtKind.TRANS_STMT_START: "START TRANSACTION",
    TransactionStmtKind.TRANS_STMT_COMMIT: "COMMIT",
    TransactionStmtKind.TRANS_STMT_ROLLBACK: "ROLLBACK",
    TransactionStmtKind.TRANS_STMT_PREPARE: "PREPARE TRANSACTION",
}


def check_unique_without_time_column(stmt, context: FileContext) -> Iterator[Finding]:
    for table, kind, columns, node in unique_keys(stmt):
        time_column = context.time_column(range_key(table))
        if time_column is not None and time_column not in (c.lower() for c in columns):
            yield context.finding(
                "TS001",
                f"{kind} ({', '.join(columns)}) on {as_written(table)} does not include its "
                f"time column {time_column!r}; TimescaleDB refuses it on a hypertable",
                table=as_written(table),
                node=node,
            )


def check_nullable_time_column(stmt, context: FileContext) -> Iterator[Finding]:
    if not isinstance(stmt, ast.CreateStmt):
        return
    time_column = context.time_column(range_key(stmt.relation))
    if time_column is None:
        return
    primary_keys = {
        column.lower()
        for _, column_name, constraint in constraints(stmt)
        if constraint.contype == ConstrType.CONSTR_PRIMARY
        for column in ([column_name] if column_name else [k.sval for k in constraint.keys or ()])
    }
    for column in stmt.tableElts or ():
        if not (isinstance(column, ast.ColumnDef) and filled(column.colname).lower() == time_column):
            continue
        not_null = (
            column.is_not_null
            or time_column in primary_keys
            or any(c.contype == ConstrType.CONSTR_NOTNULL for c in column.constraints or ())
        )
        if not not_null:
            yield context.finding(
                "TS002",
                f"time column {column.colname!r} of {as_written(stmt.relation)} is nullable; "
                "create_hypertable makes it NOT NULL and fails on rows where it is NULL",
                table=as_written(stmt.relation),
                node=column,
            )


def check_index_functions(stmt, context: FileContext) -> Iterator[Finding]:
    if not isinstance(stmt, ast.IndexStmt):
        return
    parts = [("WHERE clause", stmt.whereClause)] + [("expression", elem.expr) for elem in filled(stmt.indexParams)]
    index = f"index {stmt.idxname!r}" if stmt.idxname else "index"
    for where, expression in parts:
        for node in walk(expression):
            if isinstance(node, ast.SQLValueFunction):
                name, kind = filled(node.op).name.removeprefix("SVFOP_").removesuffix("_N"), "stable"
            elif isinstance(node, ast.FuncCall) and context.function_volatility(node) in ("s", "v"):
                kind = "stable" if context.function_volatility(node) == "s" else "volatile"
                name = f"{func_name(node)}()"
            else:
                continue
            yield context.finding(
                "TS003",
                f"{index} on {as_written(stmt.relation)} uses {name} ({kind}, not immutable) "
                f"in its {where}; PostgreSQL refuses it",
                table=as_written(stmt.relation),
                node=node,
            )


def check_non_transactional(stmt, context: FileContext) -> Iterator[Finding]:
    statement = non_transactional(stmt) if context.transactional else None
    if statement is not None:
        relation = getattr(stmt, "relation", None)
        table = as_written(relation) if isinstance(relation, ast.RangeVar) else None
        yield context.finding(
            "TS004", f"{statement} cannot run inside a transaction block, and this file runs in one", table=table
        )


def check_create_hypertable_migrate_data(stmt, context: FileContext) -> Iterator[Finding]:
    for call in hypertable_calls(stmt):
        if call.migrate_data or call.table is None:
            continue
        table = table_key(call.table)
        if context.was_filled(table):
            yield context.finding(
                "TS005",
                f"create_hypertable({call.table!r}) without migrate_data => true, but this file "
                "has already put rows into it; the call will fail",
                table=call.table,
                node=call.node,
            )
        elif not context.was_created(table):
            yield context.finding(
                "TS006",
                f"create_hypertable({call.table!r}) without migrate_data => true on a table not "
                "created in this file; it fails if the table holds rows",
                table=call.table,
                node=call.node,
            )


def check_foreign_key_into_hypertable(stmt, context: FileContext) -> Iterator[Finding]:
    for table, _, constraint in constraints(stmt):
        if constraint.contype != ConstrType.CONSTR_FOREIGN:
            continue
        target = constraint.pktable
        if context.time_column(range_key(target)) is None:
            continue
        from_hypertable = context.time_column(range_key(table)) is not None
        yield context.finding(
            "TS007" if from_hypertable else "TS008",
            f"foreign key from {as_written(table)} references {as_written(target)}, which becomes a hypertable"
            + ("; foreign keys between hypertables are not supported" if from_hypertable else ""),
            table=as_written(table),
            node=constraint,
        )


def check_idempotent(stmt, context: FileContext) -> Iterator[Finding]:
    missing, what, table = None, "", None
    if isinstance(stmt, ast.CreateStmt) and not stmt.if_not_exists:
        table = as_written(stmt.relation)
        missing, what = "IF NOT EXISTS", f"CREATE TABLE {table}"
    elif isinstance(stmt, ast.CreateTableAsStmt) and not stmt.if_not_exists and not stmt.is_select_into:
        kind = "MATERIALIZED VIEW" if stmt.objtype == ObjectType.OBJECT_MATVIEW else "TABLE"
        table = as_written(filled(stmt.into).rel)
        missing, what = "IF NOT EXISTS", f"CREATE {kind} {table}"
    elif isinstance(stmt, ast.IndexStmt) and not stmt.if_not_exists:
        table = as_written(stmt.relation)
        missing, what = "IF NOT EXISTS", f"CREATE INDEX {stmt.idxname or '(unnamed)'} ON {table}"
    elif isinstance(stmt, ast.CreateSchemaStmt) and not stmt.if_not_exists:
        missing, what = "IF NOT EXISTS", f"CREATE SCHEMA {stmt.schemaname}"
    elif isinstance(stmt, ast.CreateExtensionStmt) and not stmt.if_not_exists:
        missing, what = "IF NOT EXISTS", f"CREATE EXTENSION {stmt.extname}"
    elif isinstance(stmt, ast.CreateSeqStmt) and not stmt.if_not_exists:
        missing, what = "IF NOT EXISTS", f"CREATE SEQUENCE {as_written(stmt.sequence)}"
    elif isinstance(stmt, ast.DropStmt) and not stmt.missing_ok:
        kind = filled(stmt.removeType).name.removeprefix("OBJECT_").replace("_", " ")
        missing, what = "IF EXISTS", f"DROP {kind} {', '.join(_dropped_names(stmt))}".rstrip()
        if stmt.removeType == ObjectType.OBJECT_TABLE:
            table = ", ".join(_dropped_names(stmt)) or None
    elif isinstance(stmt, ast.CreateFunctionStmt) and not stmt.replace:
        kind = "PROCEDURE" if stmt.is_procedure else "FUNCTION"
        missing, what = "OR REPLACE", f"CREATE {kind} {'.'.join(filled(n.sval) for n in filled(stmt.funcname))}"
    elif isinstance(stmt, ast.ViewStmt) and not stmt.replace:
        table = as_written(stmt.view)
        missing, what = "OR REPLACE", f"CREATE VIEW {table}"
    if missing is not None:
        yield context.finding("TS101", f"{what} without {missing} fails when the migration is re-run", table=table)


def _dropped_names(stmt: ast.DropStmt) -> list[str]:
    names = []
    for name in stmt.objects or ():
        if isinstance(name, ast.ObjectWithArgs):  # DROP FUNCTION f(int)
            name = name.objname
        elif isinstance(name, ast.TypeName):  # DROP TYPE t
            name = name.names
        if isinstance(name, ast.String):
            names.append(filled(name.sval))
        elif isinstance(name, tuple):
            names.append(".".join(filled(part.sval) for part in name if isinstance(part, ast.String)))
    return names


def check_table_rewrite(stmt, context: FileContext) -> Iterator[Finding]:
    if not isinstance(stmt, ast.AlterTableStmt) or context.was_created(range_key(stmt.relation)):
        return  # rewriting a table created in this same file is cheap: it is still empty
    table = as_written(stmt.relation)
    for cmd in filled(stmt.cmds):
        reason = None
        if cmd.subtype == AlterTableType.AT_AlterColumnType:
            reason = f"changing the type of column {cmd.name!r}"
        elif cmd.subtype == AlterTableType.AT_AddColumn and (why := _volatile_default(cmd.def_, context)):
            reason = f"adding column {cmd.def_.colname!r} with {why}"
        if reason:
            yield context.finding(
                "TS102", f"{reason} rewrites all of {table} under an ACCESS EXCLUSIVE lock", table=table
            )


def _volatile_default(column: ast.ColumnDef, context: FileContext) -> str | None:
    """Why adding this column fills every row with a per-row value, or None."""
    type_name = filled(filled(column.typeName.names)[-1].sval).lower() if column.typeName else ""
    if type_name in SERIAL_TYPES:
        return f"type {type_name}"
    for constraint in column.constraints or ():
        if constraint.contype == ConstrType.CONSTR_IDENTITY:
            return "an identity"
        if constraint.contype == ConstrType.CONSTR_GENERATED:
            return "a stored generated expression"
        if constraint.contype == ConstrType.CONSTR_DEFAULT:
            for call in walk(constraint.raw_expr):
                if isinstance(call, ast.FuncCall) and context.function_volatility(call) == "v":
                    return f"volatile default {func_name(call)}()"
    return None


def check_lock_heavy(stmt, context: FileContext) -> Iterator[Finding]:
    if not isinstance(stmt, ast.AlterTableStmt) or context.was_created(range_key(stmt.relation)):
        return  # validating a table created in this same file is instant: it is still empty
    table = as_written(stmt.relation)
    for cmd in filled(stmt.cmds):
        reason = None
        if cmd.subtype == AlterTableType.AT_SetNotNull:
            reason = f"SET NOT NULL on column {cmd.name!r} scans {table} under an ACCESS EXCLUSIVE lock"
        elif (
            cmd.subtype == AlterTableType.AT_AddConstraint
            and not cmd.def_.skip_validation
            and cmd.def_.contype in (ConstrType.CONSTR_FOREIGN, ConstrType.CONSTR_CHECK)
        ):
            kind = "FOREIGN KEY" if cmd.def_.contype == ConstrType.CONSTR_FOREIGN else "CHECK"
            reason = f"adding a {kind} without NOT VALID scans {table} while holding a heavy lock"
        if reason:
            yield context.finding("TS103", reason, table=table)


def check_transaction_control(stmt, context: FileContext) -> Iterator[Finding]:
    if context.transactional and isinstance(stmt, ast.TransactionStmt) and stmt.kind in TRANSACTION_CONTROL:
        yield context.finding(
            "TS104", f"{TRANSACTION_CONTROL[stmt.kind]} inside a file the runner already runs in a transaction"
        )


# -- what TimescaleDB refuses on a hypertable the live database holds already (tsmigrate's own source of these:
# TimescaleDB's src/process_utility.c, and a test that runs each statement on a real server) -------------------

# ALTER TABLE commands TimescaleDB lets through on a hypertable with compression (columnstore) enabled; every
# other one is refused ("operation not supported on hypertables that have columnstore enabled").
ALLOWED_WITH_COMPRESSION = {
    getattr(AlterTableType, name)
    for name in (
        "AT_AddIndex",
        "AT_AddConstraint",
        "AT_ReAddIndex",
        "AT_ResetRelOptions",
        "AT_ReplaceRelOptions",
        "AT_SetRelOptions",
        "AT_ClusterOn",
        "AT_DropCluster",
        "AT_ChangeOwner",
        "AT_SetTableSpace",
        "AT_SetStatistics",
        "AT_AddColumn",
        "AT_ColumnDefault",
        "AT_DropColumn",
        "AT_DropConstraint",
        "AT_ReplicaIdentity",
        "AT_ReAddStatistics",
        "AT_SetCompression",
        "AT_DropNotNull",
        "AT_SetNotNull",
        "AT_SetAccessMethod",
        "AT_SetLogged",
        "AT_SetUnLogged",
        "AT_EnableTrig",
        "AT_EnableAlwaysTrig",
        "AT_EnableReplicaTrig",
        "AT_DisableTrig",
        "AT_EnableTrigAll",
        "AT_DisableTrigAll",
        "AT_EnableTrigUser",
        "AT_DisableTrigUser",
        "AT_AlterColumnType",
    )
    if hasattr(AlterTableType, name)
}


def check_concurrent_index_on_hypertable(stmt, context: FileContext) -> Iterator[Finding]:
    if isinstance(stmt, ast.IndexStmt) and stmt.concurrent and context.live_hypertable(range_key(stmt.relation)):
        yield context.finding(
            "TS010",
            f"CREATE INDEX CONCURRENTLY on {as_written(stmt.relation)}, which the database holds as a "
            "hypertable; TimescaleDB refuses concurrent index builds on hypertables",
            table=as_written(stmt.relation),
            node=stmt,
        )
    elif (
        isinstance(stmt, ast.ReindexStmt)
        and stmt.relation is not None
        and any(getattr(p, "defname", "") == "concurrently" for p in stmt.params or ())
        and context.live_hypertable(range_key(stmt.relation))
    ):
        yield context.finding(
            "TS010",
            f"REINDEX CONCURRENTLY of {as_written(stmt.relation)}, which the database holds as a hypertable; "
            "TimescaleDB refuses it",
            table=as_written(stmt.relation),
            node=stmt,
        )


def check_only_on_hypertable(stmt, context: FileContext) -> Iterator[Finding]:
    relations: list[ast.RangeVar] = []
    if isinstance(stmt, ast.AlterTableStmt) and stmt.objtype == ObjectType.OBJECT_TABLE:
        relations = [filled(stmt.relation)]
    elif isinstance(stmt, ast.TruncateStmt):
        relations = list(stmt.relations or ())
    for relation in relations:
        if not relation.inh and context.live_hypertable(range_key(relation)):
            verb = "ALTER TABLE ONLY" if isinstance(stmt, ast.AlterTableStmt) else "TRUNCATE ONLY"
            yield context.finding(
                "TS011",
                f"{verb} {as_written(relation)}: the database holds it as a hypertable, and TimescaleDB "
                "refuses ONLY on hypertable operations",
                table=as_written(relation),
                node=relation,
            )


def check_alter_compressed_hypertable(stmt, context: FileContext) -> Iterator[Finding]:
    if not isinstance(stmt, ast.AlterTableStmt) or stmt.objtype != ObjectType.OBJECT_TABLE:
        return
    live = context.live_hypertable(range_key(stmt.relation))
    if live is None or not live.compression_enabled:
        return
    table = as_written(stmt.relation)
    state = (
        f"compression enabled, {live.compressed_chunks} compressed chunks"
        if live.compressed_chunks
        else "compression enabled"
    )
    for cmd in filled(stmt.cmds):
        reason = None
        if cmd.subtype not in ALLOWED_WITH_COMPRESSION:
            reason = f"{cmd.subtype.name.removeprefix('AT_')} is not supported on a hypertable with {state}"
        elif cmd.subtype == AlterTableType.AT_AlterColumnType and live.compressed_chunks:
            reason = f"changing the type of column {cmd.name!r} is not supported while it has compressed chunks"
        elif cmd.subtype == AlterTableType.AT_AddColumn and (why := _refused_new_column(cmd.def_)):
            reason = f"adding column {cmd.def_.colname!r} {why} is not supported with {state}"
        elif (
            cmd.subtype == AlterTableType.AT_DropColumn
            and cmd.name
            and cmd.name.lower() in {c.lower() for c in (*live.segment_by, *live.order_by)}
        ):
            reason = (
                f"dropping column {cmd.name!r}, a compression segment-by or order-by column, is not supported "
                f"with {state}"
            )
        if reason:
            yield context.finding("TS012", f"ALTER TABLE {table}: {reason}", table=table)


def _refused_new_column(column: ast.ColumnDef) -> str | None:
    """Why TimescaleDB refuses to add this column to a hypertable with compression enabled, or None."""
    kinds = {c.contype for c in column.constraints or ()}
    if ConstrType.CONSTR_IDENTITY in kinds or (
        column.typeName and filled(filled(column.typeName.names)[-1].sval).lower() in SERIAL_TYPES
    ):
        return "as an identity or serial column"
    if kinds - {ConstrType.CONSTR_NULL, ConstrType.CONSTR_NOTNULL, ConstrType.CONSTR_CHECK, ConstrType.CONSTR_DEFAULT}:
        return "with a constraint other than NOT NULL, CHECK or DEFAULT"
    default = next((c.raw_expr for c in column.constraints or () if c.contype == ConstrType.CONSTR_DEFAULT), None)
    if default is not None and any(
        isinstance(n, (ast.FuncCall, ast.SQLValueFunction, ast.SubLink)) for n in walk(default)
    ):
        return "with a default that is not a constant"
    if (column.is_not_null or ConstrType.CONSTR_NOTNULL in kinds) and default is None:
        return "NOT NULL without a default"
    return None


def check_transition_table_trigger(stmt, context: FileContext) -> Iterator[Finding]:
    if not isinstance(stmt, ast.CreateTrigStmt) or not stmt.transitionRels:
        return
    live = context.live_hypertable(range_key(stmt.relation))
    if live is None:
        return
    table = as_written(stmt.relation)
    # pglast's CreateTrigStmt.events is PostgreSQL's TRIGGER_TYPE_* bits: DELETE is 1 << 3.
    deletes = bool((stmt.events or 0) & (1 << 3))
    if stmt.row:
        why = "ROW triggers with transition tables are not supported on hypertables"
    elif deletes and live.compression_enabled:
        why = "DELETE triggers with transition tables are not supported on a hypertable with compression enabled"
    else:
        return
    yield context.finding("TS013", f"CREATE TRIGGER {stmt.trigname} on {table}: {why}", table=table, node=stmt)


# A primary key whose build on a live hypertable's chunks is expected to take at least this long is reported.
PRIMARY_KEY_REPORTED_S = 10.0


def check_primary_key_on_many_chunks(stmt, context: FileContext) -> Iterator[Finding]:
    for table, kind, _columns, node in unique_keys(stmt):
        live = context.live_hypertable(range_key(table))
        if kind != "PRIMARY KEY" or live is None or primary_key_seconds(live.chunks) < PRIMARY_KEY_REPORTED_S:
            continue
        yield context.finding(
            "TS105",
            f"PRIMARY KEY on {as_written(table)}, a hypertable of {live.chunks:,} chunks: TimescaleDB adds it chunk "
            "by chunk at a cost that grows with the square of their number, about "
            f"{primary_key_seconds(live.chunks):,.0f} s with the table locked (measured: 10.5 s at 800 chunks, "
            "124 s at 1,600)",
            table=as_written(table),
            node=node,
        )


CHECKS: tuple[Callable[[ast.Node, FileContext], Iterator[Finding]], ...] = (
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
    check_concurrent_index_on_hypertable,
    check_only_on_hypertable,
    check_alter_compressed_hypertable,
    check_transition_table_trigger,
    check_primary_key_on_many_chunks,
)
