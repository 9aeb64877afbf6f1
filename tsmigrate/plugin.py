"""The pytest plugin's core: the options, the run's summary and kind (which suites it holds, parsed once), the
plan (read once), one execute test per step, and the verdict as the run's last lines.

Only this module and fixtures/ know pytest; everything they call is plain Python. Each other concern has its
module in fixtures/: gate.py (GO/NO-GO, what the run refuses, what selection may not thin out), run.py (the
execute phase's one way in and out), reporting.py (the record and the reports).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pytest

from .bench import DashboardQuery, load_dashboard_queries
from .options import RunOptions
from .plan import Plan, PlanError, load_plan
from .report.words import terminal_lines
from .run import plan_steps
from .servers import SERVER_KINDS
from .summary import GOOD_VERDICTS, Phase, RunKind, RunSummary, Verdict
from .target import TargetError, password_of, resolve_target

OPTIONS_KEY = pytest.StashKey[RunOptions]()
SUMMARY_KEY = pytest.StashKey[RunSummary]()
REPORT_FILES_KEY = pytest.StashKey[dict]()
PLAN_KEY = pytest.StashKey["Plan | PlanError | None"]()
SECRETS_KEY = pytest.StashKey[set]()  # passwords learnt during the run (a demo server's)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tsmigrate", "PostgreSQL 15 to TimescaleDB migration")

    def option(
        name: str,
        help: str,
        *,
        type: Literal["string", "bool", "int", "float"] = "string",
        default=None,
        choices=None,
        flag_only=False,
    ):
        dest = name.replace("-", "_")
        kwargs = {"dest": dest, "help": f"{help} (ini: {dest})" if not flag_only else help}
        if type == "bool":
            group.addoption(f"--{name}", action="store_true", default=None, **kwargs)
        else:
            group.addoption(f"--{name}", action="store", default=None, choices=choices, **kwargs)
        if not flag_only:
            parser.addini(dest, help=help, type=type, default=default)

    option("dsn", "target database DSN; else libpq's PGHOST/PGDATABASE/PGSERVICE... variables")
    option("demo", "work on a throwaway TimescaleDB server seeded like a real MS5.0 site", type="bool", default=False)
    option(
        "server", f"where throwaway servers come from: {', '.join(SERVER_KINDS)}", choices=SERVER_KINDS, default="auto"
    )
    option(
        "demo-scale",
        "size of the demo's legacy data: tiny, demo or site",
        choices=("tiny", "demo", "site"),
        default="demo",
    )
    option("migrations", "directory of migration files and their plan.toml", default="migrations")
    option("reports", "directory for HTML, JSON and JUnit reports", default="reports")
    option("backups", "directory for backups taken before a run changes anything", default="backups")
    option("ready-timeout", "seconds a throwaway server may take to start", default="60")
    option("write-sample", "pre-flight: seconds to watch the target for rows written by others", default="2")
    option(
        "server-free-disk",
        "pre-flight: GiB free in the server's data directory, as measured on the server "
        "(df), for when the tool cannot measure it from here",
    )
    option(
        "no-restore", "leave the database as a failed step left it (no automatic restore)", type="bool", default=False
    )
    option(
        "drop-failed",
        "after a proven restore, drop the failed database instead of keeping it renamed",
        type="bool",
        default=False,
    )
    option("no-rehearse", "skip the pre-flight rehearsal on a scratch copy of the target", type="bool", default=False)
    option(
        "resolve-interrupted",
        "mark steps a killed run left half done as interrupted and go on",
        type="bool",
        default=False,
    )
    option(
        "baseline",
        "post-flight baseline: a backup directory taken before the migration "
        "(default: the execute run's backup, else the newest one under --backups)",
    )


def _value(config: pytest.Config, dest: str):
    cli = config.getoption(dest)
    return cli if cli is not None else config.getini(dest)


def _path(config: pytest.Config, dest: str) -> Path:
    raw = Path(str(_value(config, dest)))
    if raw.is_absolute():
        return raw
    # A command-line path is relative to where the user stands; an ini one to the ini file.
    base = Path.cwd() if config.getoption(dest) is not None else config.rootpath
    return (base / raw).resolve()


def read_options(config: pytest.Config) -> RunOptions:
    ready_timeout, write_sample = (_seconds(config, dest) for dest in ("ready_timeout", "write_sample"))
    return RunOptions(
        dsn=_value(config, "dsn") or None,
        demo=bool(_value(config, "demo")),
        server=str(_value(config, "server")),
        demo_scale=str(_value(config, "demo_scale")),
        migrations=_path(config, "migrations"),
        reports=_path(config, "reports"),
        backups=_path(config, "backups"),
        ready_timeout=ready_timeout,
        restore=not bool(_value(config, "no_restore")),
        keep_failed=not bool(_value(config, "drop_failed")),
        rehearse=not bool(_value(config, "no_rehearse")),
        resolve_interrupted=bool(_value(config, "resolve_interrupted")),
        baseline=_path(config, "baseline") if _value(config, "baseline") else None,
        write_sample=write_sample,
        server_free_disk=_gib(config, "server_free_disk"),
    )


def _non_negative(config: pytest.Config, dest: str, unit: str) -> float | None:
    """The option's value as a number >= 0 (None when unset); anything else is refused, naming the option."""
    raw = _value(config, dest)
    if raw in (None, ""):
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0:
        raise pytest.UsageError(f"--{dest.replace('_', '-')} must be a number of {unit}, got {raw!r}")
    return value


def _gib(config: pytest.Config, dest: str) -> float | None:
    return _non_negative(config, dest, "GiB (free on the server)")


def _seconds(config: pytest.Config, dest: str) -> float:
    value = _non_negative(config, dest, "seconds")
    if value is None:
        raise pytest.UsageError(f"--{dest.replace('_', '-')} must be a number of seconds, got nothing")
    return value


def options_of(config: pytest.Config) -> RunOptions:
    return config.stash[OPTIONS_KEY]


def summary_of(config: pytest.Config) -> RunSummary:
    return config.stash[SUMMARY_KEY]


def remember_secrets(config: pytest.Config, secrets) -> None:
    """Passwords the run learnt besides the DSN's (a throwaway server's): hidden wherever secrets_of() is used."""
    config.stash.setdefault(SECRETS_KEY, set()).update(s for s in secrets if s)


def secrets_of(config: pytest.Config) -> tuple[str, ...]:
    """Passwords this run could know: in the DSN, in PGPASSWORD, and those remembered since."""
    found = [
        os.environ.get("PGPASSWORD"),
        password_of(options_of(config).dsn or ""),
        *sorted(config.stash.get(SECRETS_KEY, set[str]())),
    ]
    return tuple(dict.fromkeys(s for s in found if s))


def target_description(config: pytest.Config) -> str:
    """The target in words (host:port/database as user), never its password."""
    options = options_of(config)
    if options.demo:
        return f"demo on a throwaway server ({options.server})"
    try:
        return resolve_target(options.dsn).describe()
    except TargetError:
        return "no target given"


def plan_of(config: pytest.Config) -> Plan | None:
    """The plan beside the migration files, read once per session so every part of the run (test generation,
    the checks, the steps, the report) sees the same one. None without a plan file or migrations directory;
    an invalid plan raises its PlanError wherever it is asked for (fixtures/gate.py refuses it at collection)."""
    if PLAN_KEY not in config.stash:
        migrations = options_of(config).migrations
        try:
            config.stash[PLAN_KEY] = load_plan(migrations) if migrations.is_dir() else None
        except PlanError as exc:
            config.stash[PLAN_KEY] = exc
    plan = config.stash[PLAN_KEY]
    if isinstance(plan, PlanError):
        raise plan
    return plan


def plan_or_none(config: pytest.Config) -> Plan | None:
    """The plan, or None on a PlanError: for what is generated or shown before the gate refuses an invalid plan
    at collection (with every problem, once)."""
    try:
        return plan_of(config)
    except PlanError:
        return None


def dashboard_queries(config: pytest.Config) -> tuple[DashboardQuery, ...]:
    """The plan's dashboard queries; () without a plan or file (an invalid plan is the plugin's to refuse).
    Raises DashboardQueryError for a malformed file."""
    plan = plan_or_none(config)
    if plan is None or plan.dashboard_queries is None:
        return ()
    return load_dashboard_queries(plan.dashboard_queries)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.stash[OPTIONS_KEY] = read_options(config)
    config.stash[SUMMARY_KEY] = RunSummary(kind=_gate_before_execute(config, run_kind(config)))
    if config.stash[SUMMARY_KEY].kind:
        _name_reports(config)
    for marker in (
        "preflight: a pre-flight check (its failure means NO-GO)",
        "execute: a migration step",
        "postflight: a post-flight check",
    ):
        config.addinivalue_line("markers", marker)


def _gate_before_execute(config: pytest.Config, kind: RunKind) -> RunKind:
    """`pytest suites/execute` alone still passes the gate: the pre-flight runs first (a NO-GO skips execute).
    The run's kind then holds the pre-flight too."""
    gate = config.rootpath / "suites" / Phase.PREFLIGHT
    if kind.holds(Phase.EXECUTE) and not kind.holds(Phase.PREFLIGHT) and gate.is_dir():
        config.args[:0] = [str(gate)]
        return RunKind.of({*kind.phases, Phase.PREFLIGHT})
    return kind


def run_kind(config: pytest.Config) -> RunKind:
    """Which suites the command line names: preflight, execute, postflight, a combination, full, or NONE (not the
    suites). Parsed once, at configure: everything after asks the summary (RunSummary.kind, .holds)."""
    suites = (config.rootpath / "suites").resolve()
    phases: set[str] = set()
    for arg in config.args:
        path = Path(arg.split("::")[0])
        path = (path if path.is_absolute() else Path(config.invocation_params.dir) / path).resolve()
        if path == suites:
            phases.update(Phase)
        elif path.is_relative_to(suites):
            phases.add(path.relative_to(suites).parts[0])
    return RunKind.of(phases & {p.value for p in Phase})


def _name_reports(config: pytest.Config) -> None:
    """Every suite run leaves an HTML report (self-contained) and JUnit XML, named by time."""
    options = options_of(config)
    options.reports.mkdir(parents=True, exist_ok=True)
    stem = f"{config.stash[SUMMARY_KEY].kind}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    files = {
        "html": options.reports / f"{stem}.html",
        "junit": options.reports / f"{stem}.xml",
        "json": options.reports / f"{stem}.json",
    }
    if getattr(config.option, "htmlpath", None) is None:
        config.option.htmlpath = str(files["html"])
        config.option.self_contained_html = True
    files["html"] = Path(config.option.htmlpath)
    if getattr(config.option, "xmlpath", None) is None:
        config.option.xmlpath = str(files["junit"])
    config.stash[REPORT_FILES_KEY] = files


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """After pytest-html wrote the report: keep a stable reports/latest.html beside it."""
    _print_verdict(config)
    files = config.stash.get(REPORT_FILES_KEY, None)
    if files and files["html"].exists():
        shutil.copyfile(files["html"], options_of(config).reports / "latest.html")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One execute test per step: each migration file in version order, then each planned table."""
    if "step" in metafunc.fixturenames:
        options = options_of(metafunc.config)
        plan = plan_or_none(metafunc.config)
        steps = plan_steps(options.migrations, plan) if options.migrations.is_dir() else []
        metafunc.parametrize("step", steps, ids=[s.label for s in steps])


def _print_verdict(config: pytest.Config) -> None:
    """The verdict, after pytest's own closing line: the last thing the run prints."""
    summary = config.stash.get(SUMMARY_KEY, None)  # absent when the options were refused
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if summary is None or not summary.target or reporter is None:
        return
    lines = terminal_lines(summary)
    good = summary.verdict() in GOOD_VERDICTS
    below = summary.verdict() is Verdict.BELOW_TARGET  # the data is safe; a performance target was missed
    reporter.write_sep("=", lines[0], green=good, yellow=below, red=not good and not below, bold=True)
    for line in lines[1:]:
        reporter.write_line(line, yellow=below, red=not good and not below)


class FailureText:
    """A failure's text in place of pytest's own representation (e.g. with passwords hidden): the terminal, JUnit
    and pytest-html print ``text``; the one-line summaries (-ra, JUnit's message) read ``reprcrash.message``."""

    def __init__(self, text: str, crash=None, message: str | None = None):
        self.text = text
        # pytest's ReprFileLocation (path, line, message) of the original failure, with the message replaced
        self.reprcrash = (
            dataclasses.replace(crash, message=message) if crash is not None and message is not None else crash
        )

    def toterminal(self, out) -> None:
        for line in self.text.splitlines():
            out.line(line)

    def __str__(self) -> str:
        return self.text
