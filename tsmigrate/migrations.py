"""Migration files: discovery, checksums, statements with their lines, and running them.

A directory follows one naming convention (tsmigrate.conventions): Flyway, golang-migrate,
dbmate, or plain ``<version>_<name>.sql`` (``001_telemetry.sql``). Versioned files run once, in
version order; Flyway's repeatable files run after them, and again whenever they change. A file
runs in one transaction unless it carries the marker line ``-- tsmigrate:no-transaction`` (or,
in a dbmate file, ``-- migrate:up transaction:false``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from pglast import parser as pg_parser

from . import conventions
from .conventions import IGNORED, REPEATABLE, VERSIONED, Convention
from .lint.source import PARSER_OFFSETS_ARE_BYTES

log = logging.getLogger(__name__)

NO_TRANSACTION_MARKER = re.compile(r"^\s*--\s*tsmigrate:\s*no-transaction\s*$", re.IGNORECASE | re.MULTILINE)
PSQL_META = re.compile(r"^\s*\\[a-zA-Z!?]", re.MULTILINE)
# Versions this long are dates and times (20240101120000): they leave no gaps worth a note.
DATED_VERSION_DIGITS = 8


@dataclass(frozen=True)
class MigrationFile:
    version: str | None  # as written in the name; None for a repeatable file
    name: str
    path: Path
    body: str = field(repr=False)  # the SQL that runs, as written (a dbmate file: its up section)
    first_line: int = 1  # the file line ``body`` starts on
    convention: str = "plain"
    kind: str = VERSIONED  # VERSIONED or REPEATABLE
    version_key: tuple[int, ...] = ()  # what orders versioned files (Flyway: 1.1 < 1.2 < 1.10 < 2)
    no_transaction: bool = False  # the convention's own marker said so (dbmate transaction:false)

    def __post_init__(self) -> None:
        if self.kind == VERSIONED and not self.version_key:
            assert self.version is not None  # every convention reads a version from a versioned file's name
            object.__setattr__(self, "version_key", (int(self.version),))

    @property
    def sql(self) -> str:
        """The SQL that runs, on the file's own lines: line N of this text is line N of the file,
        so lint findings, statement lines and server error lines all name lines of the file as written."""
        return "\n" * (self.first_line - 1) + self.body

    @property
    def sha256(self) -> str:
        """The checksum of what runs (for a plain file, of the whole file, as the ledger always had it)."""
        return hashlib.sha256(self.body.encode("utf-8")).hexdigest()

    @property
    def transactional(self) -> bool:
        return not self.no_transaction and not NO_TRANSACTION_MARKER.search(self.body)

    @property
    def repeatable(self) -> bool:
        return self.kind == REPEATABLE

    @property
    def step_id(self) -> str:
        """The ledger's key: the version as written, or a repeatable file's name without .sql."""
        if self.repeatable:
            return self.path.stem
        assert self.version is not None  # only a repeatable file has none
        return self.version

    @property
    def sort_key(self) -> tuple:
        """Versioned files by version, then repeatable files by name (Flyway's order)."""
        if self.repeatable:
            return (1, (), self.name)
        return (0, self.version_key, self.name)

    @property
    def label(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class NamingProblem:
    path: Path
    problem: str
    line: int | None = None
    blocking: bool = True  # False: a note (a file that never runs forward: undo, down)


@dataclass(frozen=True)
class _Candidate:
    path: Path
    text: str
    convention: Convention
    named: conventions.Named


def discover(directory: Path) -> tuple[list[MigrationFile], list[NamingProblem]]:
    """Migration files in the order they run, and the files whose naming or layout is a problem.

    The directory's convention is the one most of its files follow; a file of another convention,
    of none, or with a version another file has, is a problem (and does not run).
    """
    candidates, problems = [], []
    for path in sorted(Path(directory).glob("*.sql")):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            problems.append(NamingProblem(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
            continue
        found = conventions.recognise(path.name, text)
        if found is None:
            problems.append(NamingProblem(path, conventions.unrecognised(path.name)))
            continue
        candidates.append(_Candidate(path, text, *found))
    if not candidates:
        return [], problems
    convention = _directory_convention(candidates)
    files: list[MigrationFile] = []
    for c in candidates:
        if c.convention is not convention:
            problems.append(NamingProblem(c.path, _mixed(c, convention, candidates)))
        elif c.named.kind == IGNORED:
            problems.append(
                NamingProblem(
                    c.path,
                    f"{c.named.why_ignored}: tsmigrate runs forward only, so this "
                    "file is not run (a failed run is undone by restoring its backup)",
                    blocking=False,
                )
            )
        else:
            section = convention.section(c.text)
            if section.problem:
                problems.append(NamingProblem(c.path, section.problem, section.problem_line))
                continue
            files.append(
                MigrationFile(
                    c.named.version,
                    c.named.name,
                    c.path,
                    section.body,
                    section.first_line,
                    convention.name,
                    c.named.kind,
                    convention.version_key(c.named.version)
                    if c.named.kind == VERSIONED and c.named.version is not None
                    else (),
                    section.no_transaction,
                )
            )
    files.sort(key=lambda f: f.sort_key)
    duplicates = _duplicates(files)
    problems += duplicates
    return [f for f in files if f.path not in {p.path for p in duplicates}], problems


def _directory_convention(candidates: list[_Candidate]) -> Convention:
    """The convention most files follow (on a tie, the first in conventions.CONVENTIONS)."""
    counts = Counter(c.convention.name for c in candidates)
    return max(conventions.CONVENTIONS, key=lambda conv: (counts[conv.name], -conventions.CONVENTIONS.index(conv)))


def _mixed(candidate: _Candidate, convention: Convention, candidates: list[_Candidate]) -> str:
    counts = Counter(c.convention.name for c in candidates)
    mix = ", ".join(f"{n} {name}" for name, n in counts.most_common())
    why = ""
    if convention is conventions.DBMATE and candidate.convention is conventions.PLAIN:
        why = " (it has no '-- migrate:up' line, so dbmate would refuse it)"
    return (
        f"the directory mixes naming conventions (files: {mix}): it follows {convention.name}, and this file "
        f"follows {candidate.convention.name}{why}, so it would never run. Name every file after one "
        f"convention. Conventions understood: {conventions.UNDERSTOOD}"
    )


def _duplicates(files: list[MigrationFile]) -> list[NamingProblem]:
    """Files whose version (Flyway: 1.0 is 1) or repeatable description an earlier file has already."""
    problems: list[NamingProblem] = []
    seen: dict[tuple, MigrationFile] = {}
    for f in files:
        # Flyway reads '_' in a description as a space: R__a_b.sql and 'R__a b.sql' describe the same.
        key = (f.kind, f.name.replace("_", " ") if f.repeatable else f.version_key)
        other = seen.setdefault(key, f)
        if other is f:
            continue
        if f.repeatable:
            problems.append(
                NamingProblem(
                    f.path, f"the same description as {other.path.name}; give each repeatable file its own description"
                )
            )
        else:
            problems.append(
                NamingProblem(
                    f.path, f"version {f.version} is also used by {other.path.name}; give each file its own version"
                )
            )
    return problems


def version_gaps(files: list[MigrationFile]) -> list[tuple[int, int]]:
    """Pairs of consecutive versions with numbers missing between them.

    Only for whole-number versions: dotted ones (Flyway 1.1) have no next number, and dated ones
    (20240101120000) leave gaps by design.
    """
    versioned = [f for f in files if not f.repeatable]
    if any(len(f.version_key) != 1 or len((f.version or "").lstrip("0")) >= DATED_VERSION_DIGITS for f in versioned):
        return []
    numbers = sorted({f.version_key[0] for f in versioned})
    return [(a, b) for a, b in itertools.pairwise(numbers) if b - a > 1]


@dataclass(frozen=True)
class Statement:
    sql: str
    line: int  # 1-based line in the file where the statement starts

    @property
    def excerpt(self) -> str:
        flat = " ".join(self.sql.split())
        return flat if len(flat) <= 160 else flat[:157] + "..."


def line_at(text: str | bytes, offset: int) -> int:
    if isinstance(text, bytes):
        return text.count(b"\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1


def split_statements(sql_text: str) -> list[Statement]:
    """Statements of a file with their starting lines, cut by the real PostgreSQL parser.

    A file the parser refuses is returned whole as one statement at line 1: the server
    then reports the error with its position, which we turn into a line.
    """
    try:
        raw = pg_parser.parse_sql(sql_text)
    except pg_parser.ParseError:
        return [Statement(sql_text, 1)] if sql_text.strip() else []
    # pglast 8 gives str offsets; older releases gave UTF-8 byte offsets (see lint.source.PARSER_OFFSETS_ARE_BYTES).
    text_units = sql_text.encode("utf-8") if PARSER_OFFSETS_ARE_BYTES else sql_text
    statements = []
    for stmt in raw:
        start = stmt.stmt_location or 0
        end = start + stmt.stmt_len if stmt.stmt_len else len(text_units)
        chunk = text_units[start:end]
        text = chunk.decode("utf-8") if isinstance(chunk, bytes) else chunk
        # stmt_location points after the previous ';', so skip leading blanks and comments for the line.
        stripped = _strip_leading_comments(text)
        first = start + (
            len(text) - len(stripped)
            if not PARSER_OFFSETS_ARE_BYTES
            else len(text.encode("utf-8")) - len(stripped.encode("utf-8"))
        )
        if stripped.strip():
            statements.append(Statement(stripped.rstrip().rstrip(";"), line_at(text_units, first)))
    return statements


def _strip_leading_comments(text: str) -> str:
    while True:
        s = text.lstrip()
        if s.startswith("--"):
            newline = s.find("\n")
            text = "" if newline < 0 else s[newline + 1 :]
        elif s.startswith("/*"):
            close = s.find("*/")
            text = "" if close < 0 else s[close + 2 :]
        else:
            return s


class MigrationError(RuntimeError):
    """A statement of a migration failed. Carries file, line, excerpt and the server's words."""

    def __init__(
        self,
        file: MigrationFile | str,
        line: int | None,
        excerpt: str,
        sqlstate: str | None,
        message: str,
        detail: str | None = None,
        hint: str | None = None,
    ):
        self.file = file.label if isinstance(file, MigrationFile) else file
        self.line, self.excerpt, self.sqlstate = line, excerpt, sqlstate
        self.server_message, self.detail, self.hint = message, detail, hint
        super().__init__(self.render())

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    def render(self) -> str:
        lines = [f"{self.location}: {self.server_message}", f"  statement: {self.excerpt}"]
        if self.sqlstate:
            lines.append(f"  SQLSTATE {self.sqlstate}")
        if self.detail:
            lines.append(f"  detail: {self.detail}")
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "line": self.line,
            "statement": self.excerpt,
            "sqlstate": self.sqlstate,
            "message": self.server_message,
            "detail": self.detail,
            "hint": self.hint,
        }


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
        return {
            "label": self.label,
            "seconds": round(self.seconds, 3),
            "notices": self.notices,
            "statements": [
                {"line": s.line, "statement": s.excerpt, "seconds": round(s.seconds, 4)} for s in self.statements
            ],
        }


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

    def handler(diag: psycopg.errors.Diagnostic) -> None:
        result.notices.append(f"{diag.severity}: {diag.message_primary}")

    conn.add_notice_handler(handler)
    started = time.monotonic()
    try:
        for statement in split_statements(migration.sql):
            t0 = time.monotonic()
            try:
                conn.execute(statement.sql)
            except psycopg.Error as exc:
                diag = exc.diag
                raise MigrationError(
                    migration,
                    error_line(statement, exc),
                    statement.excerpt,
                    diag.sqlstate,
                    diag.message_primary or str(exc).strip(),
                    diag.message_detail,
                    diag.message_hint,
                ) from None
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


def files_digest(files: list[MigrationFile]) -> str:
    """One sha256 over the files' names and contents: what the GO was given (the pre-flight records it, execute and
    the report compare and show it)."""
    return hashlib.sha256(json.dumps({f.label: f.sha256 for f in files}, sort_keys=True).encode()).hexdigest()
