"""Post-flight: the application role reads and writes the converted tables as before.

``exercise_table`` acts as the role (SET ROLE) inside a transaction that is rolled back: it reads
the newest row, inserts a copy of it (with a negative id, so no sequence moves), updates and
deletes that copy, and checks the role may use the id's sequence as inserts with the default
do. ``lost_privileges`` compares the role's privileges with the GRANTs of the baseline's dump.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from .baseline import Grant
from .db import display_name, insertable_columns, one
from .errors import first_line
from .fingerprint import serial_column

_CHECK = {  # grant kind -> the function that says whether a role holds a privilege on it
    "TABLE": "has_table_privilege",
    "SEQUENCE": "has_sequence_privilege",
    "SCHEMA": "has_schema_privilege",
    "FUNCTION": "has_function_privilege",
    "PROCEDURE": "has_function_privilege",
}


def role_exists(conn: psycopg.Connection, role: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def can_act_as(conn: psycopg.Connection, role: str) -> bool:
    """Whether this session may SET ROLE to it (superuser, or member)."""
    return bool(one(conn, "SELECT pg_has_role(current_user, %s, 'MEMBER')", (role,)))


@dataclass(frozen=True)
class AccessOutcome:
    table: str
    done: tuple[str, ...]  # what the role did: SELECT, INSERT, UPDATE, DELETE
    problems: tuple[str, ...]
    notes: tuple[str, ...] = ()  # what could not be tried, and why (not a failure)


_VERB = {"SELECT": "read (SELECT from)", "INSERT": "INSERT into", "UPDATE": "UPDATE", "DELETE": "DELETE from"}


def _grant_hint(privilege: str, table: str, role: str) -> str:
    return f"GRANT {privilege} ON {table} TO {display_name(role)}"


# A background job (compression, retention) in the way: the same work succeeds when tried again.
RETRYABLE_SQLSTATES = ("40P01", "40001", "55P03")  # deadlock, serialization failure, lock not available


def exercise_table(
    conn: psycopg.Connection, role: str, schema: str, table: str, time_column: str, *, attempts: int = 4
) -> AccessOutcome:
    """As ``role``: read, insert, update, delete one row of the table; all rolled back.

    TimescaleDB's jobs lock chunks too: a deadlock or lock timeout with one is tried again (bounded),
    never reported as the application losing access.
    """
    for attempt in range(1, attempts + 1):
        outcome, conflict = _exercise_once(conn, role, schema, table, time_column)
        if conflict is None:
            return outcome
        if attempt == attempts:
            return AccessOutcome(
                outcome.table,
                outcome.done,
                (
                    *outcome.problems,
                    f"{role} on {outcome.table} could not be checked: {attempts} tries met a lock conflict, the last "
                    f"{conflict}; see pg_locks for who holds the table's chunks, then run the post-flight again",
                ),
                outcome.notes,
            )
        time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


def _updatable_column(
    conn: psycopg.Connection, schema: str, table: str, columns: list[str], key: str, time_column: str
) -> str:
    """A column the application updates: not the key or the time, and not one that orders or segments compressed
    chunks (TimescaleDB refuses to update those in a compressed chunk); the time column if there is no other."""
    compressed_by = set()
    if one(conn, "SELECT to_regclass('timescaledb_information.compression_settings')"):
        compressed_by = {
            r[0]
            for r in conn.execute(
                """SELECT attname FROM timescaledb_information.compression_settings
                WHERE hypertable_schema = %s AND hypertable_name = %s
                  AND (segmentby_column_index IS NOT NULL OR orderby_column_index IS NOT NULL)""",
                (schema, table),
            ).fetchall()
        }
    return next((c for c in columns if c not in (key, time_column) and c not in compressed_by), time_column)


def _exercise_once(
    conn: psycopg.Connection, role: str, schema: str, table: str, time_column: str
) -> tuple[AccessOutcome, str | None]:
    name = display_name(schema, table)
    ident, time_col = sql.Identifier(schema, table), sql.Identifier(time_column)
    key = serial_column(conn, schema, table)
    done, problems, notes = [], [], []
    if key is not None:
        seq = one(conn, "SELECT pg_get_serial_sequence(%s, %s)", (name, key))
        if seq and not one(conn, "SELECT has_sequence_privilege(%s, %s, 'USAGE')", (role, seq)):
            problems.append(
                f"{role} may not use sequence {seq}, which gives {name}.{key} its values: inserts fail. "
                f"Fix: GRANT USAGE, SELECT ON SEQUENCE {seq} TO {display_name(role)}"
            )
    columns = insertable_columns(conn, schema, table)
    step = "SET ROLE"
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("SET LOCAL lock_timeout = '10s'")
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
            step = "SELECT"
            newest = conn.execute(
                sql.SQL("SELECT {t} FROM {table} ORDER BY {t} DESC LIMIT 1").format(t=time_col, table=ident)
            ).fetchone()
            done.append("SELECT")
            if newest is None:
                notes.append(f"{name} is empty: {role} could read it; writing was not tried (no row to model it on)")
            elif key is None:
                notes.append(
                    f"{name} has no sequence-backed id: writing was not tried (a copy of a row would "
                    "collide with its key)"
                )
            else:
                lowest = one(
                    conn,
                    sql.SQL("SELECT least(coalesce(min({k}), 0), 0) - 1 FROM {t}").format(
                        k=sql.Identifier(key), t=ident
                    ),
                )
                values = [sql.Literal(lowest) if c == key else sql.Identifier(c) for c in columns]
                step = "INSERT"
                inserted = conn.execute(
                    sql.SQL(
                        "INSERT INTO {t} ({cols}) SELECT {vals} FROM {t} WHERE {time} = {newest} LIMIT 1 "
                        "RETURNING {time}"
                    ).format(
                        t=ident,
                        cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
                        vals=sql.SQL(", ").join(values),
                        time=time_col,
                        newest=sql.Literal(newest[0]),
                    )
                ).fetchone()
                done.append("INSERT")
                if inserted is None:  # a BEFORE INSERT trigger returned NULL: nothing was written
                    problems.append(
                        f"{name}: as {role}, the row inserted was not written (a trigger dropped it); "
                        "updating and deleting were not tried"
                    )
                    return AccessOutcome(name, tuple(done), tuple(problems), tuple(notes)), None
                where = sql.SQL("{k} = {v} AND {time} = {at}").format(
                    k=sql.Identifier(key), v=sql.Literal(lowest), time=time_col, at=sql.Literal(inserted[0])
                )
                step = "UPDATE"
                target = sql.Identifier(_updatable_column(conn, schema, table, columns, key, time_column))
                updated = conn.execute(
                    sql.SQL("UPDATE {t} SET {c} = {c} WHERE {w}").format(t=ident, c=target, w=where)
                ).rowcount
                done.append("UPDATE")
                step = "DELETE"
                deleted = conn.execute(sql.SQL("DELETE FROM {t} WHERE {w}").format(t=ident, w=where)).rowcount
                done.append("DELETE")
                if updated != 1 or deleted != 1:
                    problems.append(
                        f"{name}: as {role}, the row just inserted could not be found again "
                        f"(updated {updated}, deleted {deleted}): row-level security or a trigger hides it"
                    )
    except psycopg.errors.InsufficientPrivilege as exc:
        first = first_line(exc)
        if step == "SET ROLE":
            problems.append(f"this session cannot act as {role} ({first}): connect as a superuser or a member of it")
        else:
            problems.append(f"{role} cannot {_VERB[step]} {name}: {first}. Fix: {_grant_hint(step, name, role)}")
    except psycopg.Error as exc:
        first = f"{step} on {name} failed: {first_line(exc)} (SQLSTATE {exc.sqlstate})"
        if exc.sqlstate in RETRYABLE_SQLSTATES:
            return AccessOutcome(name, tuple(done), (), tuple(notes)), first
        problems.append(f"{role}: {first}")
    return AccessOutcome(name, tuple(done), tuple(problems), tuple(notes)), None


def table_privilege_problems(conn: psycopg.Connection, role: str, schema: str, table: str) -> list[str]:
    """Without acting as the role: whether it holds SELECT, INSERT, UPDATE, DELETE on the table and
    USAGE on the sequence of its id (what PostgreSQL checks when the role does those things)."""
    name = display_name(schema, table)
    if one(conn, "SELECT to_regclass(%s)", (name,)) is None:
        return [f"{name} does not exist"]
    missing = [
        p
        for p in ("SELECT", "INSERT", "UPDATE", "DELETE")
        if not one(conn, "SELECT has_table_privilege(%s, %s, %s)", (role, name, p))
    ]
    problems = (
        [f"{role} lacks {', '.join(missing)} on {name}. Fix: {_grant_hint(', '.join(missing), name, role)}"]
        if missing
        else []
    )
    key = serial_column(conn, schema, table)
    seq = one(conn, "SELECT pg_get_serial_sequence(%s, %s)", (name, key)) if key else None
    if seq and not one(conn, "SELECT has_sequence_privilege(%s, %s, 'USAGE')", (role, seq)):
        problems.append(
            f"{role} may not use sequence {seq}: inserts into {name} fail. "
            f"Fix: GRANT USAGE, SELECT ON SEQUENCE {seq} TO {display_name(role)}"
        )
    return problems


def privileges_now(conn: psycopg.Connection, role: str, grant: Grant) -> tuple[bool, list[str]]:
    """(whether the object exists, the privileges of ``grant`` that ``role`` no longer holds)."""
    if grant.kind == "SCHEMA":
        exists = (
            conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = (parse_ident(%s))[1]", (grant.object,)).fetchone()
            is not None
        )
    elif grant.kind in ("FUNCTION", "PROCEDURE"):
        exists = one(conn, "SELECT to_regprocedure(%s)", (grant.object,)) is not None
    else:
        exists = one(conn, "SELECT to_regclass(%s)", (grant.object,)) is not None
    if not exists:
        return False, []
    check = sql.SQL("SELECT {}(%s, %s, %s)").format(sql.Identifier(_CHECK[grant.kind]))
    obj = one(conn, "SELECT (parse_ident(%s))[1]", (grant.object,)) if grant.kind == "SCHEMA" else grant.object
    return True, [p for p in grant.privileges if not one(conn, check, (role, obj, p))]


def lost_privileges(conn: psycopg.Connection, role: str, grants: list[Grant]) -> tuple[int, list[str]]:
    """Privileges the baseline's dump granted to ``role`` that it no longer holds (objects still there).
    Returns (grants checked, problems)."""
    problems, checked = [], 0
    for grant in grants:
        exists, lost = privileges_now(conn, role, grant)
        if not exists:
            continue  # a missing object is told by the integrity checks
        checked += 1
        if lost:
            kind = "" if grant.kind == "TABLE" else f"{grant.kind} "
            problems.append(
                f"{role} lost {', '.join(lost)} on {grant.kind.lower()} {grant.object} (granted before the "
                f"migration). Fix: GRANT {', '.join(lost)} ON {kind}{grant.object} TO {display_name(role)}"
            )
    return checked, problems
