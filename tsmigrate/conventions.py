"""Migration file conventions: what a file's name (and, for dbmate, its content) says about it.

Understood: Flyway, golang-migrate, dbmate and tsmigrate's own plain names. A directory follows
one of them; migrations.discover decides which from the directory's contents. Each convention
says, for one file, whether it runs forward (versioned or repeatable) or not at all (undo, down),
its version as written and the integers that order it, and which part of the file runs (all of it,
or a dbmate file's up section) with the file line that part starts on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

VERSIONED, REPEATABLE, IGNORED = "versioned", "repeatable", "ignored"


@dataclass(frozen=True)
class Named:
    """What a convention reads from one file."""

    kind: str  # VERSIONED, REPEATABLE or IGNORED
    version: str | None  # as written; None for a repeatable file
    name: str  # name or description, as written
    why_ignored: str = ""  # for an IGNORED file: what it is


@dataclass(frozen=True)
class Section:
    """The part of a file that runs."""

    body: str  # the SQL, as written
    first_line: int = 1  # the file line ``body`` starts on
    no_transaction: bool = False  # the convention's own marker asked for no transaction
    problem: str | None = None  # why the file cannot run as it is (with ``problem_line``)
    problem_line: int | None = None


@dataclass(frozen=True)
class Convention:
    name: str
    shape: str  # the names it takes, for messages
    read_name: Callable[[str, str], Named | None]  # (file name, text) -> Named, or None: not this convention
    version_key: Callable[[str], tuple[int, ...]]  # version as written -> what orders it
    section: Callable[[str], Section]  # text -> what runs

    def __str__(self) -> str:
        return self.name


def whole_file(text: str) -> Section:
    return Section(text)


def integer_version(version: str) -> tuple[int, ...]:
    return (int(version),)


# -- Flyway ------------------------------------------------------------------------------------------
# V<version>__<description>.sql runs once; R__<description>.sql runs after every versioned file, and again
# whenever it changes; U<version>__<description>.sql undoes (Flyway Teams) and never runs forward here.
FLYWAY_NAME = re.compile(r"^(?:(?P<prefix>[VU])(?P<version>\d+(?:[._]\d+)*)|R)__(?P<description>.+)\.sql$")


def flyway_name(file_name: str, text: str) -> Named | None:
    match = FLYWAY_NAME.match(file_name)
    if not match:
        return None
    if match["prefix"] is None:
        return Named(REPEATABLE, None, match["description"])
    if match["prefix"] == "U":
        return Named(IGNORED, match["version"], match["description"], "a Flyway undo migration")
    return Named(VERSIONED, match["version"], match["description"])


def flyway_version(version: str) -> tuple[int, ...]:
    """Flyway's order: parts split on '.' or '_', compared as integers, trailing zeros dropped (1.0 is 1)."""
    parts = [int(p) for p in re.split(r"[._]", version)]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


# -- golang-migrate ----------------------------------------------------------------------------------
GOLANG_MIGRATE_NAME = re.compile(r"^(?P<version>\d+)_(?P<name>.+)\.(?P<direction>up|down)\.sql$")


def golang_migrate_name(file_name: str, text: str) -> Named | None:
    match = GOLANG_MIGRATE_NAME.match(file_name)
    if not match:
        return None
    if match["direction"] == "down":
        return Named(IGNORED, match["version"], match["name"], "a golang-migrate down migration")
    return Named(VERSIONED, match["version"], match["name"])


# -- dbmate ------------------------------------------------------------------------------------------
# One file holds both directions: what follows '-- migrate:up' runs, up to '-- migrate:down'.
# Options follow the marker on its line ('-- migrate:up transaction:false').
DBMATE_NAME = re.compile(r"^(?P<version>\d+)_(?P<name>.+)\.sql$")
DBMATE_UP = re.compile(r"^--[ \t]*migrate:up(?=\s|$)(?P<options>[^\n]*)$", re.MULTILINE)
DBMATE_DOWN = re.compile(r"^--[ \t]*migrate:down(?=\s|$)", re.MULTILINE)


def dbmate_name(file_name: str, text: str) -> Named | None:
    match = DBMATE_NAME.match(file_name)
    if not match or not DBMATE_UP.search(text):
        return None
    return Named(VERSIONED, match["version"], match["name"])


def dbmate_section(text: str) -> Section:
    up = DBMATE_UP.search(text)
    assert up is not None  # the convention takes only files with the up marker (dbmate_name)
    down = DBMATE_DOWN.search(text)
    up_line = text.count("\n", 0, up.start()) + 1
    pairs = [pair.partition(":") for pair in up["options"].split() if pair.count(":") == 1]
    options = {key: value for key, _, value in pairs}
    no_transaction = options.get("transaction", "").strip().lower() == "false"
    if down is not None and down.start() < up.start():
        down_line = text.count("\n", 0, down.start()) + 1
        return Section(
            "",
            problem=f"'-- migrate:down' (line {down_line}) comes before '-- migrate:up' (line "
            f"{up_line}); dbmate needs the up section first: move the down section below it",
            problem_line=down_line,
        )
    for number, line in enumerate(text[: up.start()].split("\n"), start=1):
        if line.strip() and not line.lstrip().startswith("--"):
            return Section(
                "",
                problem=f"line {number} holds SQL before '-- migrate:up', which dbmate refuses "
                "(and would never run): move it into the up section",
                problem_line=number,
            )
    # The body starts with the marker line itself (a comment), as dbmate's own up block does.
    return Section(text[up.start() : down.start() if down else len(text)], up_line, no_transaction)


# -- plain: tsmigrate's own <version>_<name>.sql -----------------------------------------------------
PLAIN_NAME = re.compile(r"^(?P<version>\d+)[_-](?P<name>[A-Za-z0-9_.-]+)\.sql$")


def plain_name(file_name: str, text: str) -> Named | None:
    match = PLAIN_NAME.match(file_name)
    return Named(VERSIONED, match["version"], match["name"]) if match else None


FLYWAY = Convention(
    "Flyway", "V<version>__<description>.sql, R__<description>.sql", flyway_name, flyway_version, whole_file
)
GOLANG_MIGRATE = Convention(
    "golang-migrate", "<version>_<name>.up.sql with its .down.sql", golang_migrate_name, integer_version, whole_file
)
DBMATE = Convention(
    "dbmate", "<version>_<name>.sql with a '-- migrate:up' line", dbmate_name, integer_version, dbmate_section
)
PLAIN = Convention("plain", "<version>_<name>.sql, e.g. 011_add_index.sql", plain_name, integer_version, whole_file)

# The first that reads a file's name claims it: a golang-migrate or dbmate name is also a plain one.
CONVENTIONS: tuple[Convention, ...] = (FLYWAY, GOLANG_MIGRATE, DBMATE, PLAIN)

UNDERSTOOD = "; ".join(f"{c.name}: {c.shape}" for c in CONVENTIONS)

FLYWAY_CALLBACK = re.compile(r"^(?:before|after)[A-Z]\w*\.sql$")


def recognise(file_name: str, text: str) -> tuple[Convention, Named] | None:
    """The convention that claims the file, with what it reads from it; None when none does."""
    for convention in CONVENTIONS:
        named = convention.read_name(file_name, text)
        if named is not None:
            return convention, named
    return None


def unrecognised(file_name: str) -> str:
    """Why a file no convention claims is a problem, naming the conventions understood."""
    if FLYWAY_CALLBACK.match(file_name):
        return (
            f"a Flyway callback, which tsmigrate does not run: put what it does in a versioned or repeatable "
            f"file. Conventions understood: {UNDERSTOOD}"
        )
    return f"the name follows no convention, so the file would never run. Conventions understood: {UNDERSTOOD}"
