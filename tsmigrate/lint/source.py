"""Reading a migration file's SQL text: psql meta-commands found and blanked out, the rest parsed by
PostgreSQL's own parser (pglast), and parser locations turned into lines of the file as written."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from pglast import ast
from pglast.parser import ParseError, parse_sql

# Whatever psql would not read as SQL text: comments, quoted text, and meta-commands.
# A backslash at the start of a line inside quoted text or a comment is data, not a command.
_LEXEME = re.compile(
    r"""
      (?P<meta>^[ \t]*\\[^\n]*)                   # psql meta-command, up to the end of its line
    | --[^\n]*                                    # line comment
    | (?P<block>/\*)                              # block comment; these nest
    | (?<![\w$])[eE]'(?:[^'\\]|\\.|'')*'          # E'...' string, with backslash escapes
    | '(?:[^']|'')*'                              # plain string
    | "(?:[^"]|"")*"                              # quoted identifier
    | (?P<dollar>(?<![\w$])\$(?:[^\W\d]\w*)?\$)   # opening $tag$ of a dollar-quoted string
""",
    re.VERBOSE | re.MULTILINE | re.DOTALL,
)
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


class LineMap:
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
        noise = _LEADING_NOISE.match(self.text, self.index(location))
        assert noise is not None  # the pattern matches the empty string too
        return noise.end()


@dataclass
class ParsedFile:
    lines: LineMap
    statements: tuple[ast.RawStmt, ...] = ()
    meta_commands: list[tuple[int, str]] = field(default_factory=list)  # (str index, text)
    error: tuple[str, int | None] | None = None  # (message, str index)


def parse(sql: str) -> ParsedFile:
    """Parse the file with psql meta-commands blanked out (same length, so lines still match)."""
    spans = _psql_meta_commands(sql)
    meta = [
        (start + len(sql[start:end]) - len(sql[start:end].lstrip()), sql[start:end].strip()) for start, end in spans
    ]
    for start, end in spans:
        sql = sql[:start] + " " * (end - start) + sql[end:]
    parsed = ParsedFile(lines=LineMap(sql), meta_commands=meta)
    try:
        parsed.statements = parse_sql(sql)
    except ParseError as error:
        message, location = error.args[0], error.args[1] if len(error.args) > 1 else None
        parsed.error = (message, location)  # the server reports error positions in characters
    return parsed
