"""The dashboard queries as data: SQL a site keeps beside its plan (``migrations/dashboard_queries.sql``, or the
file ``[benchmarks] dashboard_queries`` names), which the post-flight times one by one.

The format, one query per block::

    -- name: latest values per equipment
    -- window: 1 hour of metric_hist.ts
    SELECT ... FROM metric_def d ... WHERE m.ts > %(lo)s AND m.ts <= %(hi)s ...;

A block starts at its ``-- name:`` line (the figure's name; the test id is made of it) and runs to the next
one. The ``-- key: value`` lines right under the name are its header; the one key is ``window: <interval>
of [schema.]table.column``: the query reads the newest <interval> of that table, compares the column with
``%(lo)s`` and ``%(hi)s`` (the window's bounds), and its plan must scan only the chunks that overlap the
window. A query without a window runs as written. The SQL is one SELECT; table names without a schema are
found in the plan's schema first. A literal % is written %%. Comments before the first block are free.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pglast import ast
from pglast.parser import ParseError, parse_sql

from ..plan import Interval, PlanError, parse_interval

_NAME = re.compile(r"^--\s*name:(.*)$")
_HEADER = re.compile(r"^--\s*([A-Za-z_]+):\s*(.*?)\s*$")
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_$]*"
_WINDOW = re.compile(
    rf"^(?P<interval>.+?)\s+of\s+(?P<relation>(?:{_IDENTIFIER}\.)?{_IDENTIFIER})\.(?P<column>{_IDENTIFIER})$"
)
_PARAMETER = re.compile(r"%\((\w*)\)s|%%|%")
HEADER_KEYS = ("window",)
WINDOW_BOUNDS = ("lo", "hi")


class DashboardQueryError(ValueError):
    """A dashboard queries file that cannot be used; the message names the file, the line and the fix."""

    def __init__(self, path: Path | str, line: int, problem: str):
        self.path, self.line, self.problem = str(path), line, problem
        super().__init__(f"{path}:{line}: {problem}")


@dataclass(frozen=True)
class Window:
    """The newest ``interval`` of a table's time column: the query's %(lo)s and %(hi)s."""

    interval: Interval
    relation: str  # "table", or "schema.table"
    column: str

    def __str__(self) -> str:
        return f"{self.interval} of {self.relation}.{self.column}"


@dataclass(frozen=True)
class DashboardQuery:
    title: str  # the figure's name: "latest values per equipment"
    sql: str  # one SELECT, with %(lo)s and %(hi)s when it has a window
    window: Window | None = None
    source: str = ""  # file:line of its '-- name:' line

    @property
    def key(self) -> str:
        """The test id: the title in lower case, words joined by '_'."""
        return re.sub(r"[^a-z0-9]+", "_", self.title.lower()).strip("_")


def load_dashboard_queries(path: Path) -> tuple[DashboardQuery, ...]:
    """The queries of a dashboard queries file. Raises DashboardQueryError naming the file and line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DashboardQueryError(path, 1, f"not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise DashboardQueryError(path, 1, f"cannot be read: {exc.strerror or exc}") from None
    return parse_dashboard_queries(text, path)


def parse_dashboard_queries(text: str, path: Path | str = "<dashboard queries>") -> tuple[DashboardQuery, ...]:
    """The queries written in ``text`` (the file's format: see the module). Raises DashboardQueryError."""
    blocks: list[tuple[int, str, list[tuple[int, str]]]] = []
    for number, line in enumerate(text.splitlines(), 1):
        name = _NAME.match(line.strip())
        if name:
            blocks.append((number, name.group(1).strip(), []))
        elif blocks:
            blocks[-1][2].append((number, line))
        elif line.strip() and not line.strip().startswith("--"):
            raise DashboardQueryError(
                path,
                number,
                "SQL before the first '-- name:' line: start each query with '-- name: <what the dashboard shows>'",
            )
    if not blocks:
        raise DashboardQueryError(
            path, 1, "no query in this file: each starts with '-- name: <what the dashboard shows>' followed by its SQL"
        )
    queries: list[DashboardQuery] = []
    seen: dict[str, int] = {}
    for number, title, lines in blocks:
        query = _query(path, number, title, lines)
        if query.key in seen:
            raise DashboardQueryError(
                path,
                number,
                f"the name {title!r} is taken by the query at line {seen[query.key]}: give each query its own name",
            )
        seen[query.key] = number
        queries.append(query)
    return tuple(queries)


def _query(path: Path | str, number: int, title: str, lines: list[tuple[int, str]]) -> DashboardQuery:
    if not re.search(r"[A-Za-z0-9]", title):
        raise DashboardQueryError(path, number, "the query has no name: write '-- name: <what the dashboard shows>'")
    window = None
    while lines and (header := _HEADER.match(lines[0][1].strip())):
        at, (key, value) = lines[0][0], header.groups()
        if key.lower() not in HEADER_KEYS:
            raise DashboardQueryError(
                path,
                at,
                f"unknown key {key!r} under the query's name; the lines right under "
                f"'-- name:' are 'key: value' with key one of: {', '.join(HEADER_KEYS)}",
            )
        window = _window(path, at, value)
        lines = lines[1:]
    while lines and not lines[-1][1].strip():
        lines = lines[:-1]
    if not any(line.strip() and not line.strip().startswith("--") for _, line in lines):
        raise DashboardQueryError(path, number, f"the query {title!r} has no SQL: write its SELECT under its name")
    first = lines[0][0]
    text = "\n".join(line for _, line in lines).rstrip().rstrip(";").rstrip()
    used = _parameters(path, lines)
    if window and set(WINDOW_BOUNDS) - used:
        raise DashboardQueryError(
            path,
            number,
            f"the query {title!r} has a window but its SQL does not use "
            "%(lo)s and %(hi)s: compare the time column with both "
            f"({window.column} > %(lo)s AND {window.column} <= %(hi)s)",
        )
    if not window and used:
        raise DashboardQueryError(
            path,
            number,
            f"the query {title!r} uses %(lo)s/%(hi)s but has no window: add "
            "'-- window: <interval> of <table>.<time column>' under its name",
        )
    _one_select(path, first, text)
    return DashboardQuery(title, text, window, f"{path}:{number}")


def _window(path: Path | str, at: int, value: str) -> Window:
    match = _WINDOW.match(value)
    if not match:
        raise DashboardQueryError(
            path, at, f"window {value!r} is not '<interval> of [schema.]table.column', e.g. '1 hour of metric_hist.ts'"
        )
    try:
        interval = parse_interval(match.group("interval"), path, "window")
    except PlanError as exc:
        raise DashboardQueryError(path, at, exc.problem) from None
    return Window(interval, match.group("relation"), match.group("column"))


def _parameters(path: Path | str, lines: list[tuple[int, str]]) -> set[str]:
    """The window bounds the SQL uses; a stray % or an unknown %(name)s is an error at its line."""
    used = set()
    for at, line in lines:
        for match in _PARAMETER.finditer(line):
            if match.group(0) == "%%":
                continue
            if match.group(0) == "%":
                raise DashboardQueryError(
                    path, at, "a literal % is written %% (the query is sent with the parameters %(lo)s and %(hi)s)"
                )
            if match.group(1) not in WINDOW_BOUNDS:
                raise DashboardQueryError(
                    path,
                    at,
                    f"unknown parameter %({match.group(1)})s: the only ones are %(lo)s and %(hi)s, the window's bounds",
                )
            used.add(match.group(1))
    return used


def _one_select(path: Path | str, first: int, text: str) -> None:
    """The SQL parses as one SELECT (PostgreSQL's own parser), or an error names the line."""
    plain = text.replace("%(lo)s", "$1").replace("%(hi)s", "$2").replace("%%", "%")
    try:
        statements = parse_sql(plain)
    except ParseError as exc:
        index = exc.args[1] if len(exc.args) > 1 else 0
        raise DashboardQueryError(path, first + plain[:index].count("\n"), f"not valid SQL: {exc.args[0]}") from None
    if len(statements) != 1:
        raise DashboardQueryError(
            path,
            first,
            f"{len(statements)} statements under one name: write one SELECT per "
            "query, each under its own '-- name:' line",
        )
    if not isinstance(statements[0].stmt, ast.SelectStmt):
        raise DashboardQueryError(
            path,
            first,
            f"a {type(statements[0].stmt).__name__}, not a SELECT: the benchmark "
            "only reads, in a read-only transaction",
        )
