"""The migration plan: what each time-series table becomes, and the benchmark gates.

The plan lives beside the SQL it belongs to (``<migrations>/plan.toml``) and is read
once into frozen dataclasses. Every problem is reported with the file, the key and
what to do, never as a traceback.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, overload

from psycopg import sql

from .encryption import BackupKey, load_key
from .errors import BackupError

PLAN_FILE_NAME = "plan.toml"
# The post-flight's dashboard queries, unless [benchmarks] dashboard_queries names another file. In a folder of
# its own: a .sql file beside the migrations would be read as a migration file.
DASHBOARD_QUERIES_FILE = Path("benchmarks") / "dashboard_queries.sql"

# PostgreSQL interval literals we accept in a plan: "1 hour", "7 days", "90 days".
_INTERVAL = re.compile(
    r"^\s*(\d+)\s*(microseconds?|milliseconds?|seconds?|minutes?|hours?|days?|weeks?|months?|years?)\s*$",
    re.IGNORECASE,
)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_ORDER_BY = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_$]*)(\s+(ASC|DESC))?(\s+NULLS\s+(FIRST|LAST))?\s*$", re.IGNORECASE)
_SECONDS_PER_UNIT = {
    "microsecond": 1e-6,
    "millisecond": 1e-3,
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "week": 7 * 86400,
    "month": 30 * 86400,
    "year": 365 * 86400,
}

NULL_TIME_RULES = ("refuse", "from_column", "previous_by", "constant")


@dataclass(frozen=True)
class PlanProblem:
    """One mistake in a plan: the file, the key (dotted, as TOML names it), what is wrong and the fix, and the
    line of the file where the key is written (when it is)."""

    path: str
    key: str
    problem: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}{f':{self.line}' if self.line else ''}: [{self.key}] {self.problem}"


class PlanError(ValueError):
    """A plan file that cannot be used: every problem found in it (``problems``), each naming file, key and the
    fix. ``path``, ``key`` and ``problem`` are the first one's."""

    def __init__(self, path: Path | str, key: str, problem: str):
        self._hold((PlanProblem(str(path), key, problem),))

    @classmethod
    def of(cls, problems: list[PlanProblem] | tuple[PlanProblem, ...]) -> PlanError:
        error = cls.__new__(cls)
        error._hold(tuple(problems))
        return error

    def _hold(self, problems: tuple[PlanProblem, ...]) -> None:
        self.problems = problems
        self.path, self.key, self.problem = problems[0].path, problems[0].key, problems[0].problem
        text = (
            str(problems[0])
            if len(problems) == 1
            else (f"{len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems))
        )
        ValueError.__init__(self, text)


T = TypeVar("T")


class _Problems:
    """Validation that goes on past a mistake, so that a plan with several is told all of them at once."""

    def __init__(self) -> None:
        self.found: list[PlanProblem] = []

    def check(self, validate: Callable[[], T], default: Any = None) -> T:
        try:
            return validate()
        except PlanError as exc:
            self.found.extend(exc.problems)
            return default

    def raise_any(self) -> None:
        if self.found:
            raise PlanError.of(self.found)


@dataclass(frozen=True)
class Interval:
    """A PostgreSQL interval as written in the plan ("7 days")."""

    text: str
    seconds: float

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class OrderItem:
    """One compress_order_by item, PostgreSQL's defaults filled in (NULLS FIRST exactly when DESC)."""

    column: str
    ascending: bool
    nulls_first: bool

    @classmethod
    def parse(cls, text: str) -> OrderItem | None:
        m = _ORDER_BY.match(text)
        if not m:
            return None
        ascending = (m.group(3) or "ASC").upper() == "ASC"
        return cls(m.group(1), ascending, m.group(5).upper() == "FIRST" if m.group(5) else not ascending)

    def as_sql(self) -> str:
        return (
            f"{sql.Identifier(self.column).as_string(None)} {'ASC' if self.ascending else 'DESC'} "
            f"NULLS {'FIRST' if self.nulls_first else 'LAST'}"
        )


@dataclass(frozen=True)
class NullTimeRule:
    """What the conversion does with rows whose time column is NULL.

    refuse          stop with a message naming the table and the count (the default)
    from_column:C   take the value of column C of the same row (a date or timestamp)
    previous_by:C   take the time of the nearest row before it in order of column C
                    (for example the bigserial id), else the nearest after it
    constant:T      a fixed timestamp, with its UTC offset (2020-01-01 00:00+00)
    """

    kind: str
    argument: str | None = None

    def __str__(self) -> str:
        return self.kind if self.argument is None else f"{self.kind}:{self.argument}"


@dataclass(frozen=True)
class HypertablePlan:
    table: str
    time_column: str
    chunk_interval: Interval
    compress_segment_by: tuple[str, ...] = ()
    compress_order_by: tuple[str, ...] = ()
    compress_after: Interval | None = None
    drop_after: Interval | None = None
    null_time: NullTimeRule = NullTimeRule("refuse")
    keep_unique: tuple[str, ...] = ()
    # Build the hypertable beside the table while the application writes, then swap (online.py). None: online
    # when the table holds more rows than the plan's online_above_rows.
    online: bool | None = None

    @property
    def order_items(self) -> tuple[OrderItem, ...]:
        """compress_order_by, parsed (the plan refuses an item that does not parse: none is left out here)."""
        return tuple(item for text in self.compress_order_by if (item := OrderItem.parse(text)) is not None)

    @property
    def wants_compression(self) -> bool:
        return self.compress_after is not None or bool(self.compress_segment_by)

    @property
    def wants_retention(self) -> bool:
        return self.drop_after is not None


@dataclass(frozen=True)
class BenchmarkThresholds:
    min_insert_rows_per_second: float = 1000.0
    max_dashboard_query_ms: float = 100.0
    min_compression_percent: float = 70.0
    max_storage_gb_per_month: float = 1.0


@dataclass(frozen=True)
class BackupPolicy:
    keep_days: int = 7
    keep_count: int = 10
    # An age key file: backups are encrypted at rest with it (never the key itself in the plan). See encryption.py.
    key_file: Path | None = None

    def key(self) -> BackupKey | None:
        """The key backups are encrypted with, or None (checked when the plan was read)."""
        return load_key(self.key_file) if self.key_file else None


@dataclass(frozen=True)
class Plan:
    path: Path | None
    schema: str = "factory_telemetry"
    application_roles: tuple[str, ...] = ()
    # Whether an edition without compression/retention (apache) may go ahead (with an advisory).
    allow_apache_edition: bool = True
    # During execute the application roles (and their login members) cannot log in; see fence.py.
    fence_application: bool = True
    # Tables without an online setting of their own convert online above this many rows (estimated).
    online_above_rows: int = 1_000_000
    # Connections the conversions copy and build indexes on; None: the server's cores to spare
    # (convert/connections.py conversion_jobs).
    jobs: int | None = None
    hypertables: tuple[HypertablePlan, ...] = ()
    benchmarks: BenchmarkThresholds = field(default_factory=BenchmarkThresholds)
    backup: BackupPolicy = field(default_factory=BackupPolicy)
    # The SQL file of the dashboard queries the post-flight times (format: tsmigrate/bench/dashboard_queries.py).
    dashboard_queries: Path | None = None
    # The run's resource timeline (tsmigrate/timeline.py): seconds between samples, and the replica lag (MiB) past
    # which the live log warns.
    sample_seconds: float = 2.0
    replica_lag_warn_mb: float = 1024.0

    def hypertable(self, table: str) -> HypertablePlan | None:
        return next((h for h in self.hypertables if h.table == table), None)

    @property
    def needs_compression(self) -> bool:
        return any(h.wants_compression for h in self.hypertables)

    @property
    def needs_retention(self) -> bool:
        return any(h.wants_retention for h in self.hypertables)


def parse_interval(value: Any, path: Path | str, key: str) -> Interval:
    if not isinstance(value, str):
        raise PlanError(path, key, f'expected an interval such as "7 days", got {value!r}')
    match = _INTERVAL.match(value)
    if not match or int(match.group(1)) <= 0:
        raise PlanError(path, key, f'{value!r} is not a positive interval; write it like "1 hour" or "90 days"')
    unit = match.group(2).lower().rstrip("s")
    return Interval(value.strip(), int(match.group(1)) * _SECONDS_PER_UNIT[unit])


def _identifier(value: Any, path: Path | str, key: str) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise PlanError(
            path, key, f"{value!r} is not a plain SQL identifier (letters, digits, _; not starting with a digit)"
        )
    return value


def _identifiers(value: Any, path: Path | str, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise PlanError(path, key, f"expected a list of column names, got {value!r}")
    return tuple(_identifier(v, path, key) for v in value)


def _order_by(value: Any, path: Path | str, key: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise PlanError(path, key, f'expected "column [ASC|DESC]" or a list of them, got {value!r}')
    for item in items:
        if not isinstance(item, str) or OrderItem.parse(item) is None:
            raise PlanError(path, key, f'{item!r} is not "column [ASC|DESC] [NULLS FIRST|LAST]"')
    return tuple(" ".join(i.split()) for i in items)


def _null_time(value: Any, path: Path | str, key: str) -> NullTimeRule:
    if not isinstance(value, str):
        raise PlanError(path, key, f"expected one of {', '.join(NULL_TIME_RULES)}, got {value!r}")
    kind, _, argument = value.partition(":")
    kind = kind.strip()
    if kind not in NULL_TIME_RULES:
        raise PlanError(
            path,
            key,
            f"unknown rule {kind!r}; use refuse, from_column:<column>, previous_by:<column> or constant:<timestamp>",
        )
    if kind == "refuse":
        if argument:
            raise PlanError(path, key, "'refuse' takes no argument")
        return NullTimeRule("refuse")
    if not argument.strip():
        raise PlanError(
            path,
            key,
            f"'{kind}' needs an argument, e.g. {kind}:{'2020-01-01 00:00+00' if kind == 'constant' else 'id'}",
        )
    if kind in ("from_column", "previous_by"):
        return NullTimeRule(kind, _identifier(argument.strip(), path, key))
    # The filled value must not depend on the session's time zone: an ISO 8601 timestamp with its offset.
    try:
        stamp = datetime.fromisoformat(argument.strip())
    except ValueError:
        stamp = None
    if stamp is None or stamp.tzinfo is None:
        raise PlanError(
            path,
            key,
            f"'constant' needs a timestamp with its UTC offset, e.g. constant:2020-01-01 "
            f"00:00+00, got {argument.strip()!r}",
        )
    return NullTimeRule(kind, argument.strip())


def _number(value: Any, path: Path | str, key: str, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise PlanError(path, key, f"expected a number >= {minimum:g}, got {value!r}")
    return float(value)


def _known_keys(section: dict, allowed: set[str], path: Path | str, where: str) -> None:
    unknown = sorted(set(section) - allowed)
    if unknown:
        problems = [
            PlanProblem(
                str(path),
                f"{where}.{key}" if where else key,
                f"unknown key; allowed keys here: {', '.join(sorted(allowed))}",
            )
            for key in unknown
        ]
        raise PlanError.of(problems)


def _section(data: dict, name: str, path: Path | str) -> dict:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise PlanError(path, name, f"expected a table ([{name}]), got {type(value).__name__}")
    return value


def _hypertable(table: str, spec: Any, path: Path | str, problems: _Problems) -> HypertablePlan | None:
    """One [hypertables.<table>] entry; its problems go to ``problems`` (None when it cannot be used)."""
    where = f"hypertables.{table}"
    check = problems.check
    check(lambda: _identifier(table, path, where))
    if not isinstance(spec, dict):
        check(lambda: _fail(path, where, "expected a table of settings ([hypertables.<table>])"))
        return None
    check(
        lambda: _known_keys(
            spec,
            {
                "time_column",
                "chunk_interval",
                "compress_segment_by",
                "compress_order_by",
                "compress_after",
                "drop_after",
                "null_time",
                "keep_unique",
                "online",
            },
            path,
            where,
        )
    )
    for required in ("time_column", "chunk_interval"):
        if required not in spec:
            check(
                partial(
                    _fail, path, f"{where}.{required}", "missing; every hypertable needs time_column and chunk_interval"
                )
            )
    time_column = (
        check(lambda: _identifier(spec["time_column"], path, f"{where}.time_column")) if "time_column" in spec else None
    )
    chunk_interval = (
        check(lambda: parse_interval(spec["chunk_interval"], path, f"{where}.chunk_interval"))
        if "chunk_interval" in spec
        else None
    )

    def interval(key: str) -> Interval | None:
        return check(lambda: parse_interval(spec[key], path, f"{where}.{key}")) if key in spec else None

    plan = HypertablePlan(
        table=table,
        time_column=time_column or "",
        chunk_interval=chunk_interval or Interval("1 day", 86400),
        compress_segment_by=check(
            lambda: _identifiers(spec.get("compress_segment_by", []), path, f"{where}.compress_segment_by"), ()
        ),
        compress_order_by=check(
            lambda: _order_by(spec.get("compress_order_by", []), path, f"{where}.compress_order_by"), ()
        ),
        compress_after=interval("compress_after"),
        drop_after=interval("drop_after"),
        null_time=check(
            lambda: _null_time(spec.get("null_time", "refuse"), path, f"{where}.null_time"), NullTimeRule("refuse")
        ),
        keep_unique=check(lambda: _identifiers(spec.get("keep_unique", []), path, f"{where}.keep_unique"), ()),
        online=check(lambda: _boolean(spec, "online", None, path, f"{where}.online")),
    )
    if time_column and time_column in plan.compress_segment_by:
        check(
            lambda: _fail(
                path, f"{where}.compress_segment_by", f"the time column {time_column!r} cannot be a segment-by column"
            )
        )
    if plan.compress_after and plan.drop_after and plan.drop_after.seconds <= plan.compress_after.seconds:
        check(
            lambda: _fail(
                path,
                f"{where}.drop_after",
                f"drop_after ({plan.drop_after}) must be longer than compress_after ({plan.compress_after}), "
                "or data is dropped before it is compressed",
            )
        )
    if plan.null_time.kind == "from_column" and plan.null_time.argument == time_column:
        check(lambda: _fail(path, f"{where}.null_time", "from_column must name another column than the time column"))
    return plan


def _fail(path: Path | str, key: str, problem: str):
    raise PlanError(path, key, problem)


def _key_file(value: Any, path: Path | str | None, where) -> Path | None:
    """A path to an age key file (relative to the plan's directory); the file is read now, so a missing or
    unusable key stops the run before anything changes."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise PlanError(where, "backup.key_file", f"expected the path of a key file, got {value!r}")
    if value.strip().startswith("AGE-SECRET-KEY-"):
        raise PlanError(
            where,
            "backup.key_file",
            "this is a key, not the path of a key file: never put the key in "
            "the plan; write it to a file only its owner reads and name that file here",
        )
    key_path = Path(value.strip()).expanduser()
    if not key_path.is_absolute():
        key_path = (Path(path).parent if path else Path.cwd()) / key_path
    try:
        load_key(key_path)
    except BackupError as exc:
        raise PlanError(where, "backup.key_file", str(exc)) from None
    return key_path


def _dashboard_queries(value: Any, path: Path | str | None, where) -> Path | None:
    """The dashboard queries file: the one named (relative to the plan's directory), else
    benchmarks/dashboard_queries.sql beside the plan when there is one."""
    base = Path(path).parent if path else Path.cwd()
    if value is None:
        default = base / DASHBOARD_QUERIES_FILE
        return default if path and default.is_file() else None
    if not isinstance(value, str) or not value.strip():
        raise PlanError(where, "benchmarks.dashboard_queries", f"expected the path of a SQL file, got {value!r}")
    file = Path(value.strip()).expanduser()
    file = file if file.is_absolute() else base / file
    if not file.is_file():
        raise PlanError(
            where,
            "benchmarks.dashboard_queries",
            f"{file} does not exist: write the dashboard queries there (README: Post-flight checks) or remove the key",
        )
    return file


@overload
def _boolean(section: dict, key: str, default: bool, path, label: str) -> bool: ...
@overload
def _boolean(section: dict, key: str, default: None, path, label: str) -> bool | None: ...
def _boolean(section: dict, key: str, default: bool | None, path, label: str) -> bool | None:
    """``section[key]`` as true/false (``default`` when absent); ``label`` names the key in messages."""
    value = section.get(key, default)
    if not isinstance(value, bool) and not (value is None and default is None):
        raise PlanError(path, label, f"expected true or false, got {value!r}")
    return value


def parse_plan(data: dict, path: Path | str | None = None) -> Plan:
    """Validate a plan already read from TOML. Raises PlanError with every problem found, not only the first."""
    where = path or "<plan>"
    problems = _Problems()
    check = problems.check
    check(lambda: _known_keys(data, {"plan", "hypertables", "benchmarks", "backup"}, where, ""))
    general = check(lambda: _section(data, "plan", where), {})
    check(
        lambda: _known_keys(
            general,
            {
                "schema",
                "application_roles",
                "allow_apache_edition",
                "fence_application",
                "online_above_rows",
                "sample_seconds",
                "replica_lag_warn_mb",
                "jobs",
            },
            where,
            "plan",
        )
    )
    allow = check(lambda: _boolean(general, "allow_apache_edition", True, where, "plan.allow_apache_edition"), True)
    fence = check(lambda: _boolean(general, "fence_application", True, where, "plan.fence_application"), True)

    tables = check(lambda: _section(data, "hypertables", where), {})
    hypertables = tuple(h for h in (_hypertable(name, spec, where, problems) for name, spec in tables.items()) if h)

    bench = check(lambda: _section(data, "benchmarks", where), {})
    check(
        lambda: _known_keys(
            bench,
            {
                "min_insert_rows_per_second",
                "max_dashboard_query_ms",
                "min_compression_percent",
                "max_storage_gb_per_month",
                "dashboard_queries",
            },
            where,
            "benchmarks",
        )
    )
    defaults = BenchmarkThresholds()

    def threshold(key: str) -> float:
        return check(
            lambda: _number(bench.get(key, getattr(defaults, key)), where, f"benchmarks.{key}"), getattr(defaults, key)
        )

    thresholds = BenchmarkThresholds(
        **{
            key: threshold(key)
            for key in (
                "min_insert_rows_per_second",
                "max_dashboard_query_ms",
                "min_compression_percent",
                "max_storage_gb_per_month",
            )
        }
    )
    if thresholds.min_compression_percent > 100:
        check(lambda: _fail(where, "benchmarks.min_compression_percent", "a percentage cannot exceed 100"))

    backup = check(lambda: _section(data, "backup", where), {})
    check(lambda: _known_keys(backup, {"keep_days", "keep_count", "key_file"}, where, "backup"))
    policy = BackupPolicy(
        keep_days=int(check(lambda: _number(backup.get("keep_days", 7), where, "backup.keep_days", minimum=0), 7)),
        keep_count=int(check(lambda: _number(backup.get("keep_count", 10), where, "backup.keep_count", minimum=1), 10)),
        key_file=check(lambda: _key_file(backup.get("key_file"), path, where)),
    )
    plan = Plan(
        path=Path(path) if path else None,
        schema=check(
            lambda: _identifier(general.get("schema", "factory_telemetry"), where, "plan.schema"), "factory_telemetry"
        ),
        application_roles=check(
            lambda: _identifiers(general.get("application_roles", []), where, "plan.application_roles"), ()
        ),
        allow_apache_edition=allow,
        fence_application=fence,
        online_above_rows=int(
            check(
                lambda: _number(general.get("online_above_rows", 1_000_000), where, "plan.online_above_rows"), 1_000_000
            )
        ),
        jobs=check(lambda: _jobs(general.get("jobs"), where)),
        hypertables=hypertables,
        sample_seconds=check(
            lambda: _number(general.get("sample_seconds", 2.0), where, "plan.sample_seconds", minimum=0.1), 2.0
        ),
        replica_lag_warn_mb=check(
            lambda: _number(general.get("replica_lag_warn_mb", 1024.0), where, "plan.replica_lag_warn_mb"), 1024.0
        ),
        benchmarks=thresholds,
        backup=policy,
        dashboard_queries=check(lambda: _dashboard_queries(bench.get("dashboard_queries"), path, where)),
    )
    problems.raise_any()
    return plan


def _jobs(value, where) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        _fail(
            where,
            "plan.jobs",
            f"must be a whole number of connections, at least 1 (got {value!r}); leave it out "
            "for the server's default (max_parallel_maintenance_workers + 1, within the free connection slots)",
        )
    return value


def _line_of(text: str, key: str) -> int | None:
    """The line of a TOML text where a dotted key is written; for a key that is missing, the header of the
    section it belongs in."""
    section, header = "", None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.split("#", 1)[0].strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = ".".join(part.strip().strip("\"'") for part in stripped.strip("[]").split("."))
            if key == section or key.startswith(section + "."):
                header = number
            continue
        name = stripped.split("=", 1)[0].strip().strip("\"'") if "=" in stripped else None
        if name and (f"{section}.{name}" if section else name) == key:
            return number
    return header


def load_plan(migrations_dir: Path) -> Plan | None:
    """Read ``plan.toml`` from a migrations directory; None when there is none."""
    path = Path(migrations_dir) / PLAN_FILE_NAME
    if not path.exists():
        return None
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib puts "(at line N, column M)" in its message: keep it, it is the location.
        raise PlanError(path, "<syntax>", f"not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise PlanError(path, "<encoding>", f"not UTF-8 text: {exc}") from None
    try:
        return parse_plan(data, path)
    except PlanError as exc:
        raise PlanError.of(
            [PlanProblem(p.path, p.key, p.problem, p.line or _line_of(text, p.key)) for p in exc.problems]
        ) from None
