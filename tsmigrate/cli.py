"""``tsmigrate``: one command for the whole tool (the console entry point of the package).

The run itself is pytest (``suites/``); ``tsmigrate preflight`` and ``tsmigrate migrate`` only start it, with
every option passed through. Everything else an operator does by hand is a subcommand here: the kept online
conversions, the backups, the finding codes, the report's schema, and the project's own tools (bench, sweep,
soak), which are imported only when their subcommand runs, so the product never needs them to start.

Exit codes: 0 when all is well; 1 when what was checked is not as it should be (a backup that does not
verify, a database that differs, rows that differ); 2 for a wrong command line or a refused action (no such
online conversion, the server refused); ``preflight``, ``migrate``, ``bench``, ``sweep`` and ``soak`` exit
with their run's own code (README: "The gate in CI").
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import click
import psycopg

PROG = "tsmigrate"
# The checkout that holds suites/ (an editable install, as `make setup` makes), else the working directory.
PROJECT = Path(__file__).resolve().parents[1]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
# Commands that hand their whole line to something else (pytest, a tool's own parser).
PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


def example(*lines: str) -> str:
    """The epilog every subcommand's --help ends with: commands to paste (\b keeps click from rewrapping)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


@click.group(
    context_settings=CONTEXT,
    epilog=example(
        "tsmigrate preflight --dsn 'postgresql://migrator@db.plant.local:5432/factory_telemetry'",
        'tsmigrate online status --dsn "$DSN"',
        "tsmigrate backup list backups/",
    )
    + "\n\nEach subcommand's --help says what it does, with an example.",
)
@click.version_option(package_name="tsmigrate", prog_name=PROG)
def tsmigrate() -> None:
    """Move the MS5.0 database from PostgreSQL 15 to TimescaleDB, in place, and prove nothing was lost.

    The migration itself is a pytest run of suites/ (preflight, migrate); the other commands are what an
    operator does by hand before and after it.
    """


# -- the pytest run ----------------------------------------------------------------------------------


def suite_path(name: str) -> Path:
    for root in (PROJECT, Path.cwd()):
        if (root / "suites").is_dir():
            return root / "suites" / name if name else root / "suites"
    raise click.UsageError(
        f"no suites/ directory in {PROJECT} or {Path.cwd()}: run tsmigrate from the project's checkout "
        "(the one `make setup` installed)"
    )


def run_pytest(suite: str, args: Sequence[str]) -> None:
    """Become ``python -m pytest <suite> <args>``: its exit code, its signals (Ctrl-C, SIGTERM) and its output."""
    argv = [sys.executable, "-m", "pytest", str(suite_path(suite)), *args]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


def wants_help(args: Sequence[str]) -> bool:
    return "--help" in args or "-h" in args


PYTEST_HELP = (
    "Every option is passed to pytest as it is: tsmigrate's own (--dsn, --demo, --migrations, --reports, "
    "--backups, ...: README, Options) and pytest's (-k, -x, -q, ...). The exit code is pytest's: 0 GO / "
    "SUCCESS, 1 NO-GO / RESTORED / FAILED, 2 STOPPED, 3 target unreachable, 4 no target or an invalid plan or "
    "option, 5 no checks collected, 6 BELOW TARGET (README: The gate in CI)."
)


@tsmigrate.command(
    context_settings=PASS_THROUGH,
    help="The go/no-go gate: python -m pytest suites/preflight (read-only). " + PYTEST_HELP,
    epilog=example(
        "tsmigrate preflight --dsn 'postgresql://migrator@db.plant.local:5432/factory_telemetry'",
        "PGSERVICE=ms5 tsmigrate preflight",
        "tsmigrate preflight --demo",
    ),
)
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def preflight(ctx: click.Context, pytest_args: tuple[str, ...]) -> None:
    if wants_help(pytest_args):
        click.echo(ctx.get_help())
        ctx.exit(0)
    run_pytest("preflight", pytest_args)


@tsmigrate.command(
    context_settings=PASS_THROUGH,
    help="The whole migration: python -m pytest suites (pre-flight, then execute and post-flight after a GO). "
    + PYTEST_HELP,
    epilog=example(
        "tsmigrate migrate --dsn 'postgresql://migrator@db.plant.local:5432/factory_telemetry'",
        "tsmigrate migrate --demo --demo-scale tiny",
    ),
)
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def migrate(ctx: click.Context, pytest_args: tuple[str, ...]) -> None:
    if wants_help(pytest_args):
        click.echo(ctx.get_help())
        ctx.exit(0)
    run_pytest("", pytest_args)


# -- online conversions --------------------------------------------------------------------------------

DSN_HELP = "the target database (default: libpq's PG* environment variables)"
SCHEMA_HELP = "the schema of the converted table (default factory_telemetry)"
ONLINE_EXITS = (
    "Exit 0 when done; 1 when verify finds rows that differ; 2 when there is no such kept conversion, the "
    "target cannot be reached or the server refused (the reason on stderr)."
)


def dsn_option(f: Callable) -> Callable:
    return click.option("--dsn", default=None, help=DSN_HELP)(f)


def schema_option(f: Callable) -> Callable:
    return click.option("--schema", default=None, help=SCHEMA_HELP)(f)


@tsmigrate.group(
    context_settings=CONTEXT,
    epilog=example(
        'tsmigrate online status --dsn "$DSN"',
        'tsmigrate online swap-back --dsn "$DSN" metric_hist',
        'tsmigrate online verify metric_hist --dsn "$DSN"',
    ),
)
@dsn_option
@schema_option
@click.pass_context
def online(ctx: click.Context, dsn: str | None, schema: str | None) -> None:
    """After an online conversion: see where it stands, compare, undo it, or end it.

    The legacy table is kept as <table>_legacy until drop-legacy. --dsn and --schema go before or after the
    action and the table, in any order.
    """
    ctx.obj = SimpleNamespace(dsn=dsn, schema=schema)


def online_action(
    ctx: click.Context, dsn: str | None, schema: str | None, act: Callable[[psycopg.Connection, str], int]
) -> None:
    """Connect, run ``act(conn, schema)``, and turn the expected failures into a message and exit 2."""
    from .convert.result import ConversionError
    from .errors import first_line
    from .target import TargetError, redact, resolve_target

    parent = ctx.obj or SimpleNamespace(dsn=None, schema=None)
    dsn = dsn if dsn is not None else parent.dsn
    schema = schema or parent.schema or "factory_telemetry"
    try:
        target = resolve_target(dsn)
        with target.connect() as conn:
            code = act(conn, schema)
    except (ConversionError, TargetError) as exc:
        click.echo(f"tsmigrate online {ctx.info_name}: {exc}", err=True)
        code = 2
    except psycopg.Error as exc:
        click.echo(f"tsmigrate online {ctx.info_name}: the server said: {redact(first_line(exc))}", err=True)
        code = 2
    ctx.exit(code)


def kept_conversion(conn: psycopg.Connection, schema: str, table: str) -> bool:
    from .convert.online.state import conversion_state

    if conversion_state(conn, schema, table) is None:
        click.echo(
            f"{schema}.{table}: no online conversion of this table is kept "
            "(tsmigrate online status lists the kept ones)",
            err=True,
        )
        return False
    return True


@online.command(
    "status",
    epilog=example('tsmigrate online status --dsn "$DSN"', "PGSERVICE=ms5 tsmigrate online status")
    + "\n\n"
    + ONLINE_EXITS,
)
@dsn_option
@schema_option
@click.pass_context
def online_status(ctx: click.Context, dsn: str | None, schema: str | None) -> None:
    """List the tables whose online conversion keeps a legacy table."""
    from .convert.online.state import legacy_tables

    def act(conn: psycopg.Connection, _schema: str) -> int:
        kept = legacy_tables(conn)
        for schema_name, table, legacy in kept:
            click.echo(
                f"{schema_name}.{table}: hypertable swapped in; legacy table kept as {schema_name}.{legacy} "
                f"(undo: tsmigrate online swap-back {table}; end: tsmigrate online drop-legacy {table})"
            )
        if not kept:
            click.echo("no online conversion keeps a legacy table")
        return 0

    online_action(ctx, dsn, schema, act)


@online.command(
    "verify",
    epilog=example('tsmigrate online verify --dsn "$DSN" metric_hist') + "\n\n" + ONLINE_EXITS,
)
@click.argument("table")
@dsn_option
@schema_option
@click.pass_context
def online_verify(ctx: click.Context, table: str, dsn: str | None, schema: str | None) -> None:
    """Compare the hypertable with its kept legacy table (the keys changed since the swap aside): row counts and
    sums of row hashes, then row by row to name any row that differs."""
    from .convert.online.swap import verify

    def act(conn: psycopg.Connection, schema: str) -> int:
        if not kept_conversion(conn, schema, table):
            return 2
        compared, differing = verify(conn, schema, table)
        click.echo(
            f"{schema}.{table}: {compared} rows compared with the legacy table, {len(differing)} differ"
            + (f" (keys {', '.join(differing)})" if differing else "")
        )
        return 1 if differing else 0

    online_action(ctx, dsn, schema, act)


@online.command(
    "swap-back",
    epilog=example('tsmigrate online swap-back --dsn "$DSN" metric_hist') + "\n\n" + ONLINE_EXITS,
)
@click.argument("table")
@dsn_option
@schema_option
@click.pass_context
def online_swap_back(ctx: click.Context, table: str, dsn: str | None, schema: str | None) -> None:
    """Undo: the legacy table takes the name back, with what the application changed since the swap."""
    from .convert.online.swap import swap_back

    def act(conn: psycopg.Connection, schema: str) -> int:
        if not kept_conversion(conn, schema, table):
            return 2
        replayed = swap_back(conn, schema, table)
        click.echo(
            f"{schema}.{table}: the legacy table has its name back, with {replayed} rows the "
            "application changed since the swap; the hypertable is dropped"
        )
        return 0

    online_action(ctx, dsn, schema, act)


@online.command(
    "drop-legacy",
    epilog=example('tsmigrate online drop-legacy --dsn "$DSN" metric_hist') + "\n\n" + ONLINE_EXITS,
)
@click.argument("table")
@dsn_option
@schema_option
@click.pass_context
def online_drop_legacy(ctx: click.Context, table: str, dsn: str | None, schema: str | None) -> None:
    """End it, once the post-flight passed: drop the kept legacy table and its change log (frees its space)."""
    from .convert.online.swap import drop_legacy

    def act(conn: psycopg.Connection, schema: str) -> int:
        if not kept_conversion(conn, schema, table):
            return 2
        click.echo(f"dropped {drop_legacy(conn, schema, table)} and its change log")
        return 0

    online_action(ctx, dsn, schema, act)


# -- backups ---------------------------------------------------------------------------------------------

BACKUP_EXITS = (
    "Exit 0 when all is well; 1 when the backup or the database is not as it should be (the reason on "
    "stderr); 2 for a wrong command line."
)


@tsmigrate.group(
    context_settings=CONTEXT,
    epilog=example(
        "tsmigrate backup list backups/",
        'tsmigrate backup verify backups/factory_telemetry-20261124T021502Z --trial-restore --dsn "$DSN"',
    ),
)
def backup() -> None:
    """A backup directory by hand (docs/rollback.md): list, verify, decrypt, compare, restore."""


def backup_action(ctx: click.Context, run: Callable[[SimpleNamespace], str], **args: object) -> None:
    from .backupctl import Refused
    from .errors import BackupError
    from .target import TargetError

    try:
        said = run(SimpleNamespace(**args))
    except (Refused, BackupError, TargetError) as exc:
        click.echo(f"tsmigrate backup {ctx.info_name}: {exc}", err=True)
        ctx.exit(1)
    except psycopg.Error as exc:
        from .errors import first_line
        from .target import redact

        click.echo(f"tsmigrate backup {ctx.info_name}: the server said: {redact(first_line(exc))}", err=True)
        ctx.exit(1)
    click.echo(said)


@backup.command("new-key", epilog=example("tsmigrate backup new-key /etc/tsmigrate/backup.key") + "\n\n" + BACKUP_EXITS)
@click.argument("file")
@click.pass_context
def backup_new_key(ctx: click.Context, file: str) -> None:
    """Write a new age key file for encrypted backups (owner-only; never over an existing file)."""
    from .backupctl import cmd_new_key

    backup_action(ctx, cmd_new_key, file=file)


@backup.command(
    "list", epilog=example("tsmigrate backup list backups/", "tsmigrate backup list") + "\n\n" + BACKUP_EXITS
)
@click.argument("directory", default="backups", required=False)
@click.pass_context
def backup_list(ctx: click.Context, directory: str) -> None:
    """The backups under DIRECTORY (default backups/), newest first: database, time, size, encrypted, pinned."""
    from .backupctl import cmd_list

    backup_action(ctx, cmd_list, directory=directory)


@backup.command(
    "verify",
    epilog=example(
        'tsmigrate backup verify "$BACKUP"',
        'tsmigrate backup verify "$BACKUP" --trial-restore --dsn "$DSN"',
    )
    + "\n\n"
    + BACKUP_EXITS,
)
@click.argument("backup")
@click.option("--key-file", default=None, help="the key file of an encrypted backup")
@click.option(
    "--trial-restore",
    is_flag=True,
    help="also restore the schema and a chunk of each hypertable into a scratch database, dropped after",
)
@click.option("--dsn", default=None, help="the server of the trial restore (default: libpq's PG* variables)")
@click.pass_context
def backup_verify(ctx: click.Context, backup: str, key_file: str | None, trial_restore: bool, dsn: str | None) -> None:
    """The files are as the manifest recorded them and pg_restore reads the dump (and, asked, restores it)."""
    from .backupctl import cmd_verify

    backup_action(ctx, cmd_verify, backup=backup, key_file=key_file, trial_restore=trial_restore, dsn=dsn)


@backup.command(
    "decrypt",
    epilog=example('tsmigrate backup decrypt --key-file "$KEY" "$BACKUP" "$BACKUP.decrypted"') + "\n\n" + BACKUP_EXITS,
)
@click.argument("backup")
@click.argument("dest")
@click.option("--key-file", required=True, help="the key file ([backup] key_file in plan.toml)")
@click.pass_context
def backup_decrypt(ctx: click.Context, backup: str, dest: str, key_file: str) -> None:
    """A decrypted copy of an encrypted backup in DEST (a new directory), itself a verified backup directory."""
    from .backupctl import cmd_decrypt

    backup_action(ctx, cmd_decrypt, backup=backup, dest=dest, key_file=key_file)


@backup.command(
    "database-sql",
    epilog=example('tsmigrate backup database-sql "$BACKUP" factory_telemetry_rollback | psql -d postgres')
    + "\n\n"
    + BACKUP_EXITS,
)
@click.argument("backup")
@click.argument("dbname")
@click.pass_context
def backup_database_sql(ctx: click.Context, backup: str, dbname: str) -> None:
    """Print the database's own settings and grants the backup recorded, as SQL for DBNAME."""
    from .backupctl import cmd_database_sql

    backup_action(ctx, cmd_database_sql, backup=backup, dbname=dbname)


@backup.command(
    "compare",
    epilog=example(
        'tsmigrate backup compare "$BACKUP" --dsn "$DSN"', 'tsmigrate backup compare "$BACKUP" --dbname "$DB"'
    )
    + "\n\n"
    + BACKUP_EXITS,
)
@click.argument("backup")
@click.option("--dsn", default=None, help="the database (default: libpq's PG* variables)")
@click.option("--dbname", default=None, help="compare this database of the server instead")
@click.pass_context
def backup_compare(ctx: click.Context, backup: str, dsn: str | None, dbname: str | None) -> None:
    """Every table's rows and content fingerprint against the backup's manifest."""
    from .backupctl import cmd_compare

    backup_action(ctx, cmd_compare, backup=backup, dsn=dsn, dbname=dbname)


@backup.command(
    "restore",
    epilog=example(
        'tsmigrate backup restore "$BACKUP" --dsn "postgresql://postgres@db.plant.local/factory_telemetry"',
        'tsmigrate backup restore "$BACKUP" --key-file "$KEY" --drop-failed',
    )
    + "\n\n"
    + BACKUP_EXITS,
)
@click.argument("backup")
@click.option("--dsn", default=None, help="the server (a role that may create databases; default: PG* variables)")
@click.option("--key-file", default=None, help="the key file of an encrypted backup")
@click.option("--drop-failed", is_flag=True, help="drop the database replaced (by default it is kept renamed)")
@click.option("--jobs", default=2, show_default=True, help="pg_restore jobs")
@click.pass_context
def backup_restore(
    ctx: click.Context, backup: str, dsn: str | None, key_file: str | None, drop_failed: bool, jobs: int
) -> None:
    """Restore the backup as the automatic restore does: into a new database, proven against the manifest,
    then the names swapped (the database replaced is kept as <db>_failed_<time>). Roles are not touched:
    docs/rollback.md step 5 puts them back when the server lacks them. Stop the application first."""
    from .backupctl import cmd_restore

    backup_action(ctx, cmd_restore, backup=backup, dsn=dsn, key_file=key_file, drop_failed=drop_failed, jobs=jobs)


# -- the registry, the report -------------------------------------------------------------------------


@tsmigrate.command(
    epilog=example("tsmigrate codes", "tsmigrate codes README.md")
    + "\n\nExit 0 when printed or written; 1 when README cannot be written (no table markers, a file error).",
)
@click.argument("readme", required=False)
def codes(readme: str | None) -> None:
    """Print the table of finding codes (tsmigrate/codes.py), or rewrite it in README."""
    from . import codes as registry

    sys.exit(registry.render(readme))


@tsmigrate.group(context_settings=CONTEXT, epilog=example("tsmigrate report schema > run-record.schema.json"))
def report() -> None:
    """The run records the suites write (reports/*.json)."""


@report.command("schema", epilog=example("tsmigrate report schema | jq .required") + "\n\nExit 0.")
def report_schema() -> None:
    """Print the JSON Schema of the run records (reports/<kind>-<time>.json)."""
    from .report.record import RUN_RECORD_SCHEMA

    click.echo(json.dumps(RUN_RECORD_SCHEMA, indent=2))


# -- the project's own tools: imported when their subcommand runs -----------------------------------------


def run_tool(ctx: click.Context, module: str, args: Sequence[str]) -> None:
    """Hand the whole line to the tool's own ``main(argv)``; its exit code is the command's."""
    import importlib

    if wants_help(args):
        click.echo(ctx.get_help())
        click.echo(f"\nThe options of {module}:\n")
    try:
        tool = importlib.import_module(module)
    except ImportError as exc:
        click.echo(f"tsmigrate {ctx.info_name}: the project's tools are not installed ({exc})", err=True)
        ctx.exit(2)
    try:
        code = tool.main(list(args))
    except SystemExit as exc:  # argparse's --help (0) or a usage error (2)
        code = exc.code if isinstance(exc.code, int) else 2
    ctx.exit(code or 0)


BENCH_EXITS = (
    "Exit 0 when measured (each figure is printed beside its limit, as a ratio); 3 when the throwaway server "
    "would not start; 2 for a wrong command line."
)
SWEEP_EXITS = "Exit 0 when every point passed; 1 otherwise; 2 for a wrong command line."
SOAK_EXITS = (
    "Exit 0 when every run ended as expected with no committed row lost; 1 otherwise; 3 when the throwaway "
    "server would not start; 2 for a wrong command line."
)


@tsmigrate.command(
    context_settings=PASS_THROUGH,
    epilog=example(
        "tsmigrate bench --rows 200000 --interval 1", "tsmigrate bench --rows 2500000 --tenfold --readme README.md"
    )
    + "\n\n"
    + BENCH_EXITS,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def bench(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Conversions at each density and size, inserts, backup and equality pass, each beside its limit measured in
    the same run on a throwaway server (make bench)."""
    run_tool(ctx, "tsmigrate_tools.convbench", args)


@tsmigrate.command(
    context_settings=PASS_THROUGH,
    epilog=example("tsmigrate sweep --points 5 --scale tiny") + "\n\n" + SWEEP_EXITS,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def sweep(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Kill a full run with SIGKILL at N moments; each rerun must end SUCCESS with every row intact (make sweep)."""
    run_tool(ctx, "tsmigrate_tools.sweep.__main__", args)


@tsmigrate.command(
    context_settings=PASS_THROUGH,
    epilog=example("tsmigrate soak --rows 2500000", "tsmigrate soak --rows 2500000 --fence off --fail")
    + "\n\n"
    + SOAK_EXITS,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def soak(ctx: click.Context, args: tuple[str, ...]) -> None:
    """A full run while the application inserts every 100 ms (make soak)."""
    run_tool(ctx, "tsmigrate_tools.soak", args)


def main(argv: Sequence[str] | None = None) -> int:
    """The console entry point; ``python -m tsmigrate.online|backupctl|codes|report`` call it with their prefix."""
    try:
        code = tsmigrate.main(args=list(argv) if argv is not None else None, prog_name=PROG, standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
