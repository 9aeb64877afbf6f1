"""Every finding code in one registry: its severity, what it means and how to fix it.

The lint (TS codes) and the pre-flight (PF codes) take their severities and hints from here, and the
README's table of codes is this registry rendered: ``python -m tsmigrate.codes README.md`` rewrites it
(the project's tests fail when the two differ).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from .findings import ADVISORY, BLOCKING


@dataclass(frozen=True)
class Code:
    code: str
    severity: str  # what a finding of this code usually is
    title: str  # what it means
    hint: str  # how to fix it
    otherwise: str = ""  # when a finding of this code carries the other severity ("" = never)

    @property
    def other_severity(self) -> str | None:
        if not self.otherwise:
            return None
        return ADVISORY if self.severity == BLOCKING else BLOCKING

    def severity_text(self) -> str:
        return f"{self.severity}; {self.other_severity} {self.otherwise}" if self.otherwise else self.severity


CODES: dict[str, Code] = {
    c.code: c
    for c in (
        # -- the lint of the migration files (PostgreSQL's parser, no database) --------------------------------
        Code("TS000", BLOCKING, "SQL does not parse", "Fix the syntax error: PostgreSQL would reject this file."),
        Code(
            "TS001",
            BLOCKING,
            "Unique key on a hypertable without its time column",
            "Add the time column to the PRIMARY KEY / UNIQUE constraint or index; "
            "TimescaleDB can only enforce uniqueness within a chunk.",
            "in the pre-flight when the table is in plan.toml: the plan's conversion adds the time column to the key",
        ),
        Code(
            "TS002",
            BLOCKING,
            "Hypertable time column is nullable",
            "Declare the time column NOT NULL (backfill or delete rows where it is NULL first); "
            "create_hypertable sets NOT NULL and fails if any row holds NULL.",
            "in the pre-flight when the table's null_time rule in plan.toml fills the NULLs",
        ),
        Code(
            "TS003",
            BLOCKING,
            "Non-immutable function in an index expression or predicate",
            "Use only IMMUTABLE functions in index expressions and WHERE clauses: "
            "compare against a literal, or move the condition into queries.",
        ),
        Code(
            "TS004",
            BLOCKING,
            "Statement cannot run inside a transaction",
            "Move the statement to a file the runner executes outside a transaction "
            "(non-transactional), one statement per file.",
        ),
        Code(
            "TS005",
            BLOCKING,
            "create_hypertable on a table this file already filled, without migrate_data",
            "Call create_hypertable before loading rows, or pass migrate_data => true.",
        ),
        Code(
            "TS006",
            ADVISORY,
            "create_hypertable on a table that may hold rows, without migrate_data",
            "Pass migrate_data => true if the table holds rows (create_hypertable fails on a "
            "non-empty table otherwise); the pre-flight checks the live row count.",
        ),
        Code(
            "TS007",
            BLOCKING,
            "Foreign key from a hypertable into a hypertable",
            "Drop the foreign key and enforce the reference in application code or a trigger; "
            "no TimescaleDB version supports foreign keys between hypertables.",
        ),
        Code(
            "TS008",
            ADVISORY,
            "Foreign key into a hypertable",
            "Foreign keys into a hypertable need TimescaleDB 2.16 or later and must include the "
            "time column; otherwise drop the foreign key or reference a plain table instead.",
            "in the pre-flight: every unique key of a hypertable includes its time column, so the reference "
            "cannot be kept",
        ),
        Code(
            "TS009",
            BLOCKING,
            "psql meta-command",
            "Remove the backslash command: migrations are run through a driver, not psql. "
            "Inline included files, and connect to the right database in the plan instead.",
        ),
        Code(
            "TS010",
            BLOCKING,
            "Concurrent index build on a hypertable",
            "Drop CONCURRENTLY; to keep the table writable while the index builds, use CREATE INDEX ... WITH "
            "(timescaledb.transaction_per_chunk) in a file the runner runs outside a transaction.",
        ),
        Code(
            "TS011",
            BLOCKING,
            "ONLY on a hypertable",
            "Drop ONLY: TimescaleDB applies the statement to the hypertable and its chunks, and refuses ONLY.",
        ),
        Code(
            "TS012",
            BLOCKING,
            "ALTER TABLE that a hypertable with compression refuses",
            "Decompress its chunks (decompress_chunk) and turn compression off (ALTER TABLE ... SET "
            "(timescaledb.compress = false)) in an earlier step, alter, then enable compression again; or add the "
            "column nullable with a constant default.",
        ),
        Code(
            "TS013",
            BLOCKING,
            "Trigger with transition tables on a hypertable",
            "Use a FOR EACH STATEMENT trigger without DELETE transition tables, or a FOR EACH ROW trigger without "
            "REFERENCING.",
        ),
        Code(
            "TS101",
            ADVISORY,
            "DDL is not idempotent",
            "Use IF NOT EXISTS / IF EXISTS / OR REPLACE so a re-run after a partial failure succeeds.",
        ),
        Code(
            "TS102",
            ADVISORY,
            "Statement rewrites the whole table",
            "Expect an ACCESS EXCLUSIVE lock for the full rewrite; for a large table add a nullable "
            "column, backfill in batches, then switch over.",
        ),
        Code(
            "TS103",
            ADVISORY,
            "Statement scans the table under a heavy lock",
            "Add the constraint NOT VALID, then VALIDATE CONSTRAINT in a later step; for SET NOT NULL "
            "validate a CHECK (col IS NOT NULL) constraint first.",
        ),
        Code(
            "TS104",
            ADVISORY,
            "Transaction control inside a migration file",
            "Remove BEGIN/COMMIT/ROLLBACK: the runner wraps each transactional file in its own "
            "transaction, and a COMMIT here would end it early.",
        ),
        Code(
            "TS105",
            ADVISORY,
            "Primary key added to a hypertable of many chunks",
            "Count its minutes in the window (the figure is the finding's), or add a UNIQUE constraint instead where "
            "nothing needs a primary key: its cost grows with the chunks, not with their square.",
        ),
        # -- the pre-flight's checks of the live target --------------------------------------------------------
        Code(
            "PF001",
            BLOCKING,
            "PostgreSQL version not supported",
            "Run the migration on PostgreSQL 15 (13 at least).",
            "for a version TimescaleDB supports other than MS5.0's 15 (13, 14, 16 and later)",
        ),
        Code(
            "PF002",
            BLOCKING,
            "TimescaleDB not available to the server",
            "Install the TimescaleDB package for this PostgreSQL major version (the target image is "
            "timescale/timescaledb:*-pg15).",
        ),
        Code(
            "PF003",
            BLOCKING,
            "TimescaleDB not preloaded",
            "Add timescaledb to shared_preload_libraries in postgresql.conf and restart the server.",
        ),
        Code(
            "PF004",
            BLOCKING,
            "TimescaleDB edition lacks what the plan needs",
            "Run the community edition (license 'timescale'), or set allow_apache_edition = true in plan.toml to go "
            "without compression and retention.",
            "when plan.toml allows going without them (allow_apache_edition = true), or when the edition cannot be "
            "told",
        ),
        Code(
            "PF005",
            ADVISORY,
            "TimescaleDB extension upgrade pending",
            "Run ALTER EXTENSION timescaledb UPDATE in its own session before the migration.",
        ),
        Code(
            "PF006",
            BLOCKING,
            "pg_dump/pg_restore missing or older than the server",
            "Install the PostgreSQL client programs of the server's major version (postgresql-client-15).",
        ),
        Code(
            "PF007",
            BLOCKING,
            "Connected role lacks privileges",
            "Grant the run's role membership in the role that owns each object named (the statement is in the "
            "finding), or run as that owner; a superuser creates the timescaledb extension where it is not trusted.",
        ),
        Code("PF008", BLOCKING, "Server is a standby", "Run the migration against the primary server."),
        Code(
            "PF009",
            BLOCKING,
            "Too few free connection slots",
            "Stop idle clients or raise max_connections: the run needs a few connections of its own, and the "
            "plan's jobs more for the conversions (or lower jobs in plan.toml [plan]).",
        ),
        Code(
            "PF010",
            ADVISORY,
            "Long-running transaction",
            "Let it finish or end it: it holds back vacuum and may block the conversion's locks.",
        ),
        Code(
            "PF011",
            BLOCKING,
            "Another session holds locks on a table to convert",
            "Stop the application's writers (or wait for that session) before the maintenance window.",
        ),
        Code(
            "PF012",
            ADVISORY,
            "Database encoding or time zone worth a look",
            "Use UTF8; time series are stored as timestamptz, so the server time zone only affects display.",
        ),
        Code(
            "PF013",
            BLOCKING,
            "Not enough free disk for the backup",
            "Free room in the backups directory or point --backups at a larger disk.",
        ),
        Code(
            "PF014",
            BLOCKING,
            "The application is writing to the target",
            "Stop the application for the maintenance window, or let the run's fence stop it (its login roles must be "
            "reachable from application_roles in plan.toml), then run the pre-flight again.",
            "when every writer's role is fenced by the run, when `fence_application = false`, or when a table converts "
            "online (the application keeps writing)",
        ),
        Code(
            "PF015",
            ADVISORY,
            "Another session is connected to the target",
            "Sessions of the application roles are ended by the run's fence; stop any other client for the window "
            "(a restore carries over rows it writes, but it may block the conversion's locks).",
        ),
        Code(
            "PF016",
            ADVISORY,
            "A fence left by a run that died was lifted",
            "Nothing to do: the roles may log in again. Read the report of the run that died to see where it stopped.",
            "when the pre-flight has no session that may lift it: the roles stay fenced",
        ),
        Code(
            "PF017",
            BLOCKING,
            "The application cannot be fenced",
            "Grant the run's role CREATEROLE (ALTER ROLE needs it), or set fence_application = false in plan.toml "
            "and keep the application stopped yourself.",
        ),
        Code(
            "PF020",
            BLOCKING,
            "Migration file naming or ordering problem",
            "Name every file after one convention, with a version of its own: Flyway V<version>__<description>.sql "
            "(and R__<description>.sql), golang-migrate <version>_<name>.up.sql, dbmate <version>_<name>.sql with "
            "-- migrate:up, or plain <version>_<name>.sql.",
        ),
        Code("PF021", ADVISORY, "Gap in migration versions", "Check that no file is missing between these versions."),
        Code(
            "PF022",
            BLOCKING,
            "Applied migration changed since it ran",
            "Restore the file's original content; put the change in a new migration file.",
        ),
        Code(
            "PF023",
            BLOCKING,
            "Applied migration missing from the directory",
            "Restore the file, or point --migrations at the directory this database was migrated from.",
        ),
        Code(
            "PF024",
            BLOCKING,
            "Step left interrupted by a run that died",
            "Inspect the database, then run with --resolve-interrupted (a transactional step is rerun automatically).",
            "for a transactional step (PostgreSQL rolled it back, the next run reruns it), and with "
            "--resolve-interrupted (the run marks the step interrupted and reruns it)",
        ),
        Code(
            "PF025",
            ADVISORY,
            "Migration file that never runs forward",
            "Nothing to do: undo and down files are not run; a failed run is undone by restoring its backup.",
        ),
        Code(
            "PF030",
            BLOCKING,
            "NULL time values in a table to convert",
            "Fill them, or choose a null_time rule for the table in plan.toml.",
            "when the table's null_time rule fills them (each fill is recorded in tsmigrate.time_fills)",
        ),
        Code(
            "PF031",
            BLOCKING,
            "Foreign key into a table to convert",
            "Drop the foreign key (or point it at a plain table) before converting.",
        ),
        Code(
            "PF032",
            BLOCKING,
            "create_hypertable without migrate_data on a populated table",
            "Pass migrate_data => true to create_hypertable.",
        ),
        Code(
            "PF033",
            BLOCKING,
            "Planned table or time column missing",
            "Fix the table/column name in plan.toml, or add the migration that creates it.",
        ),
        Code(
            "PF034",
            ADVISORY,
            "Retention will drop existing rows",
            "Check drop_after in plan.toml: rows older than it are dropped by the retention policy.",
        ),
        Code(
            "PF035",
            ADVISORY,
            "Key rebuilt by the conversion",
            "Nothing to do: the conversion adds the time column to this key; the old column keeps an index.",
            "when a migration file's own create_hypertable converts the table: it fails on such a key",
        ),
        Code(
            "PF036",
            BLOCKING,
            "TimescaleDB version cannot restore dumps of compressed chunks",
            "Upgrade TimescaleDB to 2.20.1 or later (2.21+) before the window (install the package, then "
            "ALTER EXTENSION timescaledb UPDATE in its own session), or decompress the chunks named "
            "(SELECT decompress_chunk(...)): "
            "2.19.0 to 2.20.0 write all-NULL batches that their pg_restore rejects (upstream pull request 8153).",
            "while no compressed chunk holds an all-NULL batch yet (compression planned, or chunks compressed without "
            "one): the run's own backup restores; the site's later backups would not once compression writes one",
        ),
        Code(
            "PF040",
            BLOCKING,
            "Rehearsal failed",
            "Fix the statement named here; the rehearsal ran on a scratch copy, the target is untouched.",
            "when no rehearsal could be made (the role may not create databases, or pg_dump failed)",
        ),
        Code(
            "PF041",
            BLOCKING,
            "A pre-flight check could not run",
            "A check, or what it needs, raised an error the pre-flight does not expect: fix its cause (the error and "
            "where it was raised are named here; often a privilege the connected role lacks, or the state of the "
            "server), then run the pre-flight again. Nothing was changed.",
        ),
        Code(
            "PF050",
            BLOCKING,
            "Connected role may not create in the database",
            "Run the GRANT CREATE ON DATABASE statement in the finding (as the database's owner or a superuser): the "
            "run creates its schema tsmigrate, and CREATE SCHEMA checks it even when the schema exists.",
        ),
        Code(
            "PF051",
            BLOCKING,
            "Connected role may not create in a schema the steps create objects in",
            "Run the GRANT ... ON SCHEMA statement in the finding (as the schema's owner or a superuser).",
        ),
        Code(
            "PF052",
            BLOCKING,
            "Connected role may not make or swap the databases of the rehearsal and the restore",
            "Run the statement in the finding (ALTER ROLE ... CREATEDB, or give the database to a role the run's "
            "role is a member of): without it a failed run cannot be restored automatically.",
        ),
        Code(
            "PF053",
            BLOCKING,
            "Connected role may not end the application's sessions",
            "Run the GRANT pg_signal_backend statement in the finding, or set fence_application = false in plan.toml "
            "and keep the application stopped yourself.",
        ),
        Code(
            "PF054",
            ADVISORY,
            "Connected role may not read the server's settings",
            "Nothing is needed: the checks work from what the role sees; GRANT pg_read_all_settings (or pg_monitor) to "
            "the run's role lets them read shared_preload_libraries and data_directory.",
        ),
        # -- the server's capacity for the run and the converted database (tsmigrate/preflight/capacity.py) -------
        Code(
            "PF055",
            BLOCKING,
            "Owner of a planned table may not run TimescaleDB's background jobs",
            "Run the ALTER ROLE ... LOGIN statement in the finding (as a superuser or a role with CREATEROLE): "
            "TimescaleDB runs a hypertable's policy jobs as its owner, and only for a role that may log in.",
        ),
        Code(
            "PF060",
            BLOCKING,
            "Lock table too small for an offline conversion",
            "Raise max_locks_per_transaction to the figure named (ALTER SYSTEM, then restart the server), or set "
            "online = true for the table in plan.toml: the online conversion creates and indexes chunks in batches "
            "of transactions.",
        ),
        Code(
            "PF061",
            BLOCKING,
            "Lock table too small for the converted database",
            "Raise max_locks_per_transaction to the figure named (ALTER SYSTEM, then restart the server): a read of a "
            "whole hypertable, and pg_dump, lock every chunk and its indexes in one transaction (TimescaleDB's own "
            "requirement), or choose a longer chunk_interval in plan.toml.",
        ),
        Code(
            "PF062",
            BLOCKING,
            "Too few background workers for TimescaleDB",
            "Raise timescaledb.max_background_workers and max_worker_processes to the figures named (ALTER SYSTEM, "
            "then restart the server): each TimescaleDB database runs a scheduler, each job a worker.",
        ),
        Code(
            "PF063",
            ADVISORY,
            "History of a table to convert unknown to the pre-flight",
            "Run ANALYZE on the table (or create an index on its time column) so the pre-flight can count the chunks "
            "the conversion creates, then run the pre-flight again.",
        ),
        Code(
            "PF065",
            BLOCKING,
            "Not enough free disk in the server's data directory (or WAL directory)",
            "Free room on that filesystem (or grow it) until it has the room named: the conversion holds a second copy "
            "of each table while it runs, a restore a copy of the database, pg_wal the WAL until a checkpoint.",
        ),
        Code(
            "PF066",
            BLOCKING,
            "The room in the server's data directory cannot be measured from here",
            "Run the pre-flight on the database server (as root or its postgres user) or its container's host, or "
            "measure the free room yourself (df -h on the data directory) and give it with --server-free-disk=<GiB>.",
        ),
        Code(
            "PF067",
            BLOCKING,
            "A replication slot cannot bear the WAL the run writes",
            "Raise max_slot_wal_keep_size (or make room for the WAL the slot keeps), make sure the replica is "
            "connected and keeping up, or drop a slot no replica uses (pg_drop_replication_slot).",
        ),
        Code(
            "PF068",
            BLOCKING,
            "The rehearsal ran out of a server resource",
            "Give the server the resource named (free disk in the directory named, raise the setting named and "
            "restart): the statements are not at fault, and the run would meet the same shortage.",
        ),
        Code(
            "PF069",
            ADVISORY,
            "A replica without a replication slot may be cut off by the run's WAL",
            "Give the replica a physical replication slot (primary_slot_name), or raise wal_keep_size to the WAL the "
            "run writes, or be ready to rebuild the replica from a base backup.",
        ),
        Code(
            "PF070",
            BLOCKING,
            "A table to convert is in a publication",
            "Take the table out of the publication before the window (the statement is in the message) and "
            "resynchronize its subscribers afterwards: a hypertable's rows live in chunks, which the publication "
            "does not carry.",
        ),
        Code(
            "PF071",
            BLOCKING,
            "A logical replication slot reads this database",
            "Stop the slot's consumer (a subscription, or a CDC tool such as Debezium) for the window and drop the "
            "slot (SELECT pg_drop_replication_slot(...)); recreate it afterwards and take a new initial snapshot.",
            "for a pgoutput slot when no publication holds a table to convert: its subscriptions do not receive them "
            "(keep its consumer running so the slot does not hold back the WAL the run writes)",
        ),
        Code(
            "PF080",
            ADVISORY,
            "Background job failing before the window",
            "Fix the cause the finding names (for 'failed to start': raise max_worker_processes and "
            "timescaledb.max_background_workers, then restart); the post-flight fails on a job whose latest run "
            "failed.",
        ),
        Code(
            "PF081",
            BLOCKING,
            "Migration plan not valid",
            "Fix every key named in plan.toml (file, line and key are given); the run refuses an invalid plan before "
            "any test runs.",
        ),
        Code(
            "PF075",
            ADVISORY,
            "Storage per month projected over the plan's target",
            "Change plan.toml before the window: a shorter compress_after (or a drop_after) for the table named, as "
            "the message works out, or a max_storage_gb_per_month in [benchmarks] that the site can accept. The "
            "post-flight's storage benchmark measures the same figure after the migration.",
        ),
    )
}

TABLE_HEADER = ("| code | severity | what it means | how to fix it |", "|---|---|---|---|")


def table_lines() -> list[str]:
    """The README's table of codes, as markdown lines."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    return [
        *TABLE_HEADER,
        *(f"| `{c.code}` | {cell(c.severity_text())} | {cell(c.title)} | {cell(c.hint)} |" for c in CODES.values()),
    ]


def readme_table(text: str) -> list[str]:
    """The table of codes as a README holds it (from its header row to the first line that is not a row)."""
    lines = text.splitlines()
    if TABLE_HEADER[0] not in lines:
        return []
    start = lines.index(TABLE_HEADER[0])
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def with_table(text: str) -> str:
    """``text`` (a README) with its table of codes replaced by the registry's."""
    old = readme_table(text)
    if not old:
        raise ValueError(f"no table of codes (a line {TABLE_HEADER[0]!r}) to replace")
    return text.replace("\n".join(old), "\n".join(table_lines()), 1)


def render(readme_name: str | None) -> int:
    """Print the table, or rewrite it in the README named (``tsmigrate codes [README]``)."""
    if not readme_name:
        print("\n".join(table_lines()))
        return 0
    readme = Path(readme_name)
    try:
        readme.write_text(with_table(readme.read_text()))
    except (OSError, ValueError) as exc:
        print(f"{readme}: {exc}", file=sys.stderr)
        return 1
    print(f"{readme}: table of {len(CODES)} finding codes written")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m tsmigrate.codes [README]``, as ``tsmigrate codes [README]``: the table, or the README rewritten."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0].startswith("-")):
        print("usage: python -m tsmigrate.codes [README]  (or: tsmigrate codes [README])", file=sys.stderr)
        return 2
    return render(args[0] if args else None)


if __name__ == "__main__":
    sys.exit(main())
