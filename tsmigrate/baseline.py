"""The post-flight baseline: a backup taken before the run, and what it says the database held.

Where it comes from, first match wins:
1. an explicit ``--baseline DIR`` (one backup directory, ``<backups>/<db>-<UTC time>``);
2. the backup the execute suite of the same session took before its first change;
3. the newest backup of the database under the ``--backups`` directory.

Besides the manifest's fingerprints, the dump is read (never restored) for what it listed:
views, functions, triggers and extensions (``pg_restore -l``), the grants (``pg_restore -s``)
and, to count exactly how many rows of one table differ, that table's rows (``pg_restore -a``).
An encrypted backup's dump is decrypted beside it once, when first read, and removed by ``close()``.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .backup import DUMP_DIR, MANIFEST, NAME_PATTERN, Backup, BackupError
from .dumps import tool
from .encryption import SUFFIX, BackupKey
from .fingerprint import TableFingerprint
from .tool_objects import OWN_SCHEMA, is_own_trigger


class NoBaseline(LookupError):
    """No backup to compare with; the message says where we looked and how to give one."""


class BaselineError(RuntimeError):
    """A baseline was named but cannot be used; the message says why."""


# A line of ``pg_restore -l``: "289; 1255 17533 FUNCTION factory_telemetry f(text, integer) postgres".
_TOC_LINE = re.compile(
    r"^\d+; \d+ \d+ (?P<kind>MATERIALIZED VIEW DATA|MATERIALIZED VIEW|VIEW|FUNCTION|PROCEDURE|TRIGGER)"
    r" (?P<schema>\S+) (?P<tag>.+) (?P<owner>\S+)$"
)
_TOC_EXTENSION = re.compile(r"^\d+; \d+ \d+ EXTENSION - (?P<name>\S+)")
# A grant as pg_dump writes it: "GRANT SELECT,INSERT ON TABLE factory_telemetry.metric_hist TO ms5_user_production;"
_GRANT = re.compile(
    r"^GRANT (?P<privileges>[A-Z ,]+) ON (?P<kind>TABLE|SEQUENCE|SCHEMA|FUNCTION|PROCEDURE) "
    r"(?P<object>.+) TO (?P<grantee>\"(?:[^\"]|\"\")+\"|\S+?)( WITH GRANT OPTION)?;$"
)
_ALL_PRIVILEGES = {
    "TABLE": ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"),
    "SEQUENCE": ("USAGE", "SELECT", "UPDATE"),
    "SCHEMA": ("USAGE", "CREATE"),
    "FUNCTION": ("EXECUTE",),
    "PROCEDURE": ("EXECUTE",),
}


def unquote(name: str) -> str:
    """A role or object name as pg_dump prints it ("Name" quoted when needed) back to the name."""
    if len(name) >= 2 and name[0] == name[-1] == '"':
        return name[1:-1].replace('""', '"')
    return name


def _own(kind: str, schema: str, tag: str) -> bool:
    """This tool's own objects (see tool_objects.py): a later run drops or replaces them, so none is "missing"."""
    if schema == OWN_SCHEMA:
        return True
    table, _, trigger = tag.partition(" ")
    return kind == "TRIGGER" and is_own_trigger(table, trigger)


@dataclass(frozen=True)
class DumpObject:
    """A view, materialized view, function, procedure, trigger or extension the dump lists."""

    kind: str  # VIEW, MATERIALIZED VIEW, FUNCTION, PROCEDURE, TRIGGER, EXTENSION
    schema: str  # '-' for an extension
    tag: str  # name; "name(argument types)" for a function; "table trigger" for a trigger

    def describe(self) -> str:
        if self.kind == "EXTENSION":
            return f"extension {self.tag}"
        if self.kind == "TRIGGER":
            table, _, trigger = self.tag.partition(" ")
            return f"trigger {trigger} on {self.schema}.{table}"
        return f"{self.kind.lower()} {self.schema}.{self.tag}"


@dataclass(frozen=True)
class Grant:
    kind: str  # TABLE (also views), SEQUENCE, SCHEMA, FUNCTION, PROCEDURE
    object: str  # as pg_dump wrote it: schema.name, quoted where needed
    privileges: tuple[str, ...]
    grantee: str


@dataclass
class Baseline:
    backup: Backup
    source: str  # how it was found, in words
    _toc: list[DumpObject] | None = field(default=None, repr=False)
    _grants: list[Grant] | None = field(default=None, repr=False)
    _opened: Path | None = field(default=None, repr=False)
    _closing: ExitStack = field(default_factory=ExitStack, repr=False)

    @property
    def fingerprints(self) -> dict[str, TableFingerprint]:
        return self.backup.fingerprints

    @property
    def filled_after(self) -> datetime | None:
        """When the backup's snapshot was taken: NULL-time fills before it are part of what it holds."""
        taken = self.backup.manifest.get("snapshot_at")
        return datetime.fromisoformat(taken) if taken else None

    @property
    def database(self) -> str:
        return str(self.backup.manifest.get("database", "?"))

    def describe(self) -> str:
        taken = self.backup.manifest.get("created_at", "at an unknown time")
        return f"backup {self.backup.path} of {self.database}, taken {taken} ({self.source})"

    @property
    def has_dump(self) -> bool:
        toc = self.backup.path / DUMP_DIR / "toc.dat"
        return toc.is_file() or toc.with_name(toc.name + SUFFIX).is_file()

    def dump_dir(self) -> Path:
        """The dump in plaintext: the backup's own, or (encrypted) a copy decrypted on first use until close()."""
        if self._opened is None:
            try:
                self._opened = self._closing.enter_context(self.backup.opened_dump())
            except BackupError as exc:
                raise BaselineError(f"the baseline {self.backup.path} cannot be read: {exc}") from None
        return self._opened

    def close(self) -> None:
        """Remove the decrypted copy, if one was made."""
        self._closing.close()
        self._opened = None

    def _pg_restore(self, *args: str) -> str:
        if not self.has_dump:
            raise BaselineError(
                f"the baseline {self.backup.path} has no dump ({DUMP_DIR}/toc.dat); "
                "give a complete backup directory with --baseline"
            )
        result = subprocess.run([tool("pg_restore"), *args, str(self.dump_dir())], capture_output=True, text=True)
        if result.returncode != 0:
            raise BaselineError(f"pg_restore cannot read the dump in {self.backup.path}: {result.stderr.strip()[:300]}")
        return result.stdout

    def objects(self) -> list[DumpObject]:
        """Views, materialized views, functions, procedures, triggers and extensions the dump holds."""
        if self._toc is None:
            found = []
            for line in self._pg_restore("-l").splitlines():
                if m := _TOC_EXTENSION.match(line):
                    found.append(DumpObject("EXTENSION", "-", m["name"]))
                elif (
                    (m := _TOC_LINE.match(line))
                    and m["kind"] != "MATERIALIZED VIEW DATA"
                    and not _own(m["kind"], m["schema"], m["tag"])
                ):
                    found.append(DumpObject(m["kind"], m["schema"], m["tag"]))
            self._toc = found
        return self._toc

    def grants(self, grantee: str | None = None) -> list[Grant]:
        """The GRANT statements of the dump (to ``grantee`` only, when given)."""
        if self._grants is None:
            grants = []
            for line in self._pg_restore("--schema-only", "-f", "-").splitlines():
                m = _GRANT.match(line)
                if not m or "(" in m["privileges"]:  # column privileges: not followed here
                    continue
                privileges = tuple(p.strip() for p in m["privileges"].split(","))
                if privileges == ("ALL",):
                    privileges = _ALL_PRIVILEGES[m["kind"]]
                grants.append(Grant(m["kind"], m["object"], privileges, unquote(m["grantee"])))
            self._grants = grants
        return [g for g in self._grants if grantee is None or g.grantee == grantee]

    @contextmanager
    def table_data(self, schema: str, table: str) -> Iterator[TableData | None]:
        """One table's rows from the dump, streamed (``None`` when the dump holds no data for it,
        for example for a hypertable, whose rows pg_dump keeps in its chunks)."""
        if not self.has_dump:
            yield None
            return
        args = [tool("pg_restore"), "--data-only", "-n", schema, "-t", table, "-f", "-", str(self.dump_dir())]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdout is not None  # stdout=PIPE
        stdout = proc.stdout
        try:
            encoding, columns = "UTF8", None
            for raw in stdout:
                line = raw.decode("utf-8", errors="replace")
                if line.startswith("SET client_encoding") and "'" in line:
                    encoding = line.split("'")[1]
                elif line.startswith("COPY ") and line.rstrip().endswith("FROM stdin;"):
                    inside = line[line.index("(") + 1 : line.rindex(")")]
                    columns = [unquote(c.strip()) for c in re.findall(r'"(?:[^"]|"")*"|[^,]+', inside)]
                    break
            if columns is None:
                yield None
                return

            def rows() -> Iterator[bytes]:
                for raw in stdout:
                    if raw == b"\\.\n":
                        return
                    yield raw

            yield TableData(tuple(columns), encoding, rows())
        finally:
            if proc.poll() is None:
                proc.kill()
            stdout.close()
            proc.wait()


@dataclass
class TableData:
    columns: tuple[str, ...]  # the COPY column list of the dump
    encoding: str  # the dump's client_encoding
    rows: Iterator[bytes]  # one line per row, COPY text format


def backups_of(backups_dir: Path, dbname: str) -> list[Path]:
    """This database's backup directories under ``backups_dir``, newest first."""
    found = []
    for path in Path(backups_dir).glob(f"{dbname}-*"):
        m = NAME_PATTERN.match(path.name)
        if path.is_dir() and m and m["db"] == dbname and (path / MANIFEST).is_file():
            found.append((m["stamp"], path))
    return [p for _, p in sorted(found, reverse=True)]


def load_explicit(path: Path, key: BackupKey | None = None) -> Baseline:
    """The backup named by --baseline; BaselineError says what is wrong with it."""
    path = Path(path)
    if not path.is_dir():
        raise BaselineError(
            f"--baseline {path}: no such directory; give one backup directory "
            "(backups/<db>-<UTC time>) taken before the migration"
        )
    if not (path / MANIFEST).is_file():
        inside = sorted(p.name for p in path.iterdir() if (p / MANIFEST).is_file())
        hint = f" It holds backups: {', '.join(inside[-3:])}; name one of them." if inside else ""
        raise BaselineError(f"--baseline {path} is not a backup directory (it has no {MANIFEST}).{hint}")
    try:
        backup = Backup.load(path, key)
    except BackupError as exc:
        raise BaselineError(f"--baseline: {exc}") from None
    if "fingerprints" not in backup.manifest:
        raise BaselineError(
            f"--baseline {path}: its {MANIFEST} records no table fingerprints; it was not written by tsmigrate's backup"
        )
    return Baseline(backup, "given with --baseline")


def resolve_baseline(
    *, explicit: Path | None, in_run: Backup | None, backups_dir: Path, dbname: str, key: BackupKey | None = None
) -> Baseline:
    """The baseline to compare with. Raises NoBaseline (with how to give one) or BaselineError.
    ``key`` opens an encrypted backup (the plan's key file)."""
    if explicit is not None:
        return load_explicit(explicit, key)
    if in_run is not None:
        return Baseline(in_run, "the backup this run's execute suite took before its first change")
    candidates = backups_of(backups_dir, dbname)
    if candidates:
        return Baseline(Backup.load(candidates[0], key), f"the newest backup of {dbname} in {backups_dir}")
    raise NoBaseline(
        f"no baseline to compare with: no backup of {dbname} in {backups_dir} and no --baseline given. "
        f"Give the backup taken before the migration with --baseline DIR (a {dbname}-<UTC time> "
        "directory of the execute run), or point --backups at the directory that holds it."
    )
