"""Migration files: discovery, checksums, statements with their lines, and running them.

A migration file is ``<version>_<name>.sql`` (``001_telemetry.sql``), applied in numeric
version order. A file runs in one transaction unless it carries the marker line
``-- tsmigrate:no-transaction`` (for statements PostgreSQL refuses in a transaction).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from pglast import parser as pg_parser

from .lint import PARSER_OFFSETS_ARE_BYTES

log = logging.getLogger(__name__)

FILE_PATTERN = re.compile(r"^(?P<version>\d+)[_-](?P<name>[A-Za-z0-9_.-]+)\.sql$")
NO_TRANSACTION_MARKER = re.compile(r"^\s*--\s*tsmigrate:\s*no-transaction\s*$", re.IGNORECASE | re.MULTILINE)
PSQL_META = re.compile(r"^\s*\\[a-zA-Z!?]", re.MULTILINE)


@dataclass(frozen=True)
class MigrationFile:
    version: str
    name: str
    path: Path
    sql: str = field(repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()

    @property
    def transactional(self) -> bool:
        return not NO_TRANSACTION_MARKER.search(self.sql)

    @property
    def sort_key(self) -> tuple[int, str]:
        return (int(self.version), self.name)

    @property
    def label(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class NamingProblem:
    path: Path
    problem: str


def discover(directory: Path) -> tuple[list[MigrationFile], list[NamingProblem]]:
    """Migration files in version order, and the files whose naming is a problem."""
    files, problems = [], []
    for path in sorted(Path(directory).glob("*.sql")):
        match = FILE_PATTERN.match(path.name)
        if not match:
            problems.append(NamingProblem(path, "name does not follow <version>_<name>.sql (e.g. 011_add_index.sql); "
                                                "the file would never run"))
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            problems.append(NamingProblem(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
            continue
        files.append(MigrationFile(match["version"], match["name"], path, text))
    files.sort(key=lambda f: f.sort_key)
    seen: dict[int, MigrationFile] = {}
    for f in files:
        other = seen.get(int(f.version))
        if other is not None:
            problems.append(NamingProblem(f.path, f"version {f.version} is also used by {other.path.name}; "
                                                  "give each file its own version number"))
        seen[int(f.version)] = f
    return files, problems


def version_gaps(files: list[MigrationFile]) -> list[tuple[int, int]]:
    """Pairs of consecutive versions with numbers missing between them."""
    numbers = sorted({int(f.version) for f in files})
    return [(a, b) for a, b in zip(numbers, numbers[1:]) if b - a > 1]


@dataclass(frozen=True)
class Statement:
    sql: str
    line: int  # 1-based line in the file where the statement starts

    @property
    def excerpt(self) -> str:
        flat = " ".join(self.sql.split())
        return flat if len(flat) <= 160 else flat[:157] + "..."


def line_at(text: str | bytes, offset: int) -> int:
    return text.count(b"\n" if isinstance(text, bytes) else "\n", 0, offset) + 1


def split_statements(sql_text: str) -> list[Statement]:
    """Statements of a file with their starting lines, cut by the real PostgreSQL parser.

    A file the parser refuses is returned whole as one statement at line 1: the server
    then reports the error with its position, which we turn into a line.
    """
    try:
        raw = pg_parser.parse_sql(sql_text)
    except pg_parser.ParseError:
        return [Statement(sql_text, 1)] if sql_text.strip() else []
    # pglast 8 gives str offsets; older releases gave UTF-8 byte offsets (see lint.PARSER_OFFSETS_ARE_BYTES).
    text_units = sql_text.encode("utf-8") if PARSER_OFFSETS_ARE_BYTES else sql_text
    statements = []
    for stmt in raw:
        start = stmt.stmt_location or 0
        end = start + stmt.stmt_len if stmt.stmt_len else len(text_units)
        chunk = text_units[start:end]
        text = chunk.decode("utf-8") if isinstance(chunk, bytes) else chunk
        # stmt_location points after the previous ';', so skip leading blanks and comments for the line.
        stripped = _strip_leading_comments(text)
        first = start + (len(text) - len(stripped) if not PARSER_OFFSETS_ARE_BYTES else
                         len(text.encode("utf-8")) - len(stripped.encode("utf-8")))
        if stripped.strip():
            statements.append(Statement(stripped.rstrip().rstrip(";"), line_at(text_units, first)))
    return statements


def _strip_leading_comments(text: str) -> str:
    while True:
        s = text.lstrip()
        if s.startswith("--"):
            newline = s.find("\n")
            text = "" if newline < 0 else s[newline + 1:]
        elif s.startswith("/*"):
            close = s.find("*/")
            text = "" if close < 0 else s[close + 2:]
        else:
            return s


class MigrationError(RuntimeError):
    """A statement of a migration failed. Carries file, line, excerpt and the server's words."""

    def __init__(self, file: MigrationFile | str, line: int | None, excerpt: str, sqlstate: str | None,
                 message: str, detail: str | None = None, hint: str | None = None):
        self.file = file.label if isinstance(file, MigrationFile) else file
        self.line, self.excerpt, self.sqlstate = line, excerpt, sqlstate
        self.server_message, self.detail, self.hint = message, detail, hint
        super().__init__(self.render())

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    def render(self) -> str:
        lines = [f"{self.location}: {self.server_message}",
                 f"  statement: {self.excerpt}"]
        if self.sqlstate:
            lines.append(f"  SQLSTATE {self.sqlstate}")
        if self.detail:
            lines.append(f"  detail: {self.detail}")
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "statement": self.excerpt, "sqlstate": self.sqlstate,
                "message": self.server_message, "detail": self.detail, "hint": self.hint}


@dataclass
class StatementTiming:
    line: int
    excerpt: str
    seconds: float


@dataclass
class StepResult:
    """What applying one file did: per-statement timings and the server's notices."""

    label: str
    seconds: float = 0.0
    statements: list[StatementTiming] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"label": self.label, "seconds": round(self.seconds, 3), "notices": self.notices,
                "statements": [{"line": s.line, "statement": s.excerpt, "seconds": round(s.seconds, 4)}
                               for s in self.statements]}


def error_line(statement: Statement, exc: psycopg.Error) -> int:
    """The file line of a server error: the statement's line plus the error position within it."""
    position = getattr(exc.diag, "statement_position", None)
    if position:
        try:
            return statement.line + statement.sql[: int(position) - 1].count("\n")
        except ValueError:
            pass
    return statement.line


def execute_file(conn: psycopg.Connection, migration: MigrationFile, *, label: str | None = None) -> StepResult:
    """Run a file's statements one by one on ``conn`` (the caller owns the transaction).

    Raises :class:`MigrationError` for the first statement that fails.
    """
    result = StepResult(label or migration.label)
    handler = lambda diag: result.notices.append(f"{diag.severity}: {diag.message_primary}")
    conn.add_notice_handler(handler)
    started = time.monotonic()
    try:
        for statement in split_statements(migration.sql):
            t0 = time.monotonic()
            try:
                conn.execute(statement.sql)
            except psycopg.Error as exc:
                diag = exc.diag
                raise MigrationError(migration, error_line(statement, exc), statement.excerpt, diag.sqlstate,
                                     diag.message_primary or str(exc).strip(), diag.message_detail,
                                     diag.message_hint) from None
            result.statements.append(StatementTiming(statement.line, statement.excerpt, time.monotonic() - t0))
    finally:
        conn.remove_notice_handler(handler)
        result.seconds = time.monotonic() - started
    return result


def apply_file(conn: psycopg.Connection, migration: MigrationFile, on_success=None) -> StepResult:
    """Apply one file: in one transaction (with ``on_success`` inside it), or statement by statement.

    ``on_success(conn, result)`` runs inside the file's transaction, so a ledger entry written there
    commits atomically with the migration itself.
    """
    if migration.transactional:
        with conn.transaction():
            result = execute_file(conn, migration)
            if on_success:
                on_success(conn, result)
        return result
    result = execute_file(conn, migration)
    if on_success:
        with conn.transaction():
            on_success(conn, result)
    return result
