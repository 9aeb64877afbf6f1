"""One migration run against a target: lock, ledger, backup, ordered steps, restore on failure.

Plain Python: the execute suite drives it one step per test, and a script could too.

    run = MigrationRun(target, migrations_dir, plan, backups_dir)
    run.open()                     # lock, ledger, checks of applied files; no change yet
    for step in run.steps: run.apply(step)   # the first change takes the backup first
    run.close(failed=..., restore=True)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from . import ledger
from .backup import Backup, BackupError, RestoreOutcome, prune_backups, restore_backup, take_backup
from .config import HypertablePlan, Plan
from .conversion import ConversionError, ConversionResult, convert_table, plan_sha256
from .janitor import DatabaseInUse
from .migrations import MigrationError, MigrationFile, StepResult, apply_file, discover
from .target import Target
from .timescale import server_timescaledb

log = logging.getLogger(__name__)


class RunRefused(RuntimeError):
    """The run must not change anything; the message says why and what to do."""


@dataclass(frozen=True)
class Step:
    """A migration file or the conversion of one planned table."""

    id: str                       # ledger key: the file's version, or convert:<table>
    label: str                    # what a person reads: the file name or "convert metric_hist"
    migration: MigrationFile | None = None
    hypertable: HypertablePlan | None = None

    @property
    def kind(self) -> str:
        return "migration" if self.migration else "conversion"

    @property
    def sha256(self) -> str:
        return self.migration.sha256 if self.migration else plan_sha256(self.hypertable)


def plan_steps(migrations_dir: Path, plan: Plan | None) -> list[Step]:
    """Every step in order: migration files by version, then one conversion per planned table."""
    files, _ = discover(migrations_dir)
    steps = [Step(f.version, f.label, migration=f) for f in files]
    if plan is not None:
        steps += [Step(f"convert:{h.table}", f"convert {plan.schema}.{h.table}", hypertable=h) for h in plan.hypertables]
    return steps


@dataclass
class StepOutcome:
    step: str
    label: str
    status: str                   # applied, already applied, failed, skipped
    seconds: float = 0.0
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"step": self.step, "label": self.label, "status": self.status,
                "seconds": round(self.seconds, 3), "details": self.details}


class MigrationRun:
    def __init__(self, target: Target, migrations_dir: Path, plan: Plan | None, backups_dir: Path, *,
                 resolve_interrupted: bool = False):
        self.target = target
        self.plan = plan
        self.schema = plan.schema if plan else "public"
        self.steps = plan_steps(migrations_dir, plan)
        self.backups_dir = Path(backups_dir)
        self.resolve_interrupted = resolve_interrupted
        self.control: psycopg.Connection | None = None
        self.work: psycopg.Connection | None = None
        self.backup: Backup | None = None
        self.outcomes: list[StepOutcome] = []
        self.failed: StepOutcome | None = None
        self.restore_outcome: RestoreOutcome | None = None
        self.interrupted: list[ledger.LedgerEntry] = []
        self.restore_error: str | None = None
        self._conversion_rate: float | None = None  # rows/s of the last large conversion, for estimates

    # -- opening: nothing changes here except the ledger's own bookkeeping ---------------------------
    def open(self) -> None:
        self.control = self.target.connect(application_name=f"tsmigrate run ({ledger.who()})")
        try:
            ledger.acquire_lock(self.control)
        except ledger.LockHeld as exc:
            self.control.close()
            raise RunRefused(str(exc)) from None
        applied = ledger.applied(self.control)
        changed = [s for s in self.steps if s.migration and s.id in applied and applied[s.id].sha256 != s.sha256]
        if changed:
            names = ", ".join(f"{s.label} (applied {applied[s.id].finished_at:%Y-%m-%d})" for s in changed)
            self.close()
            raise RunRefused(f"applied migrations changed since they ran: {names}. An applied file must not be "
                             "edited: restore its original content and put the change in a new file.")
        if ledger.ledger_exists(self.control):
            try:
                self.interrupted = ledger.resolve_interrupted(self.control, force=self.resolve_interrupted)
            except ledger.LedgerError as exc:
                self.close()
                raise RunRefused(str(exc)) from None
            for e in self.interrupted:
                log.warning("step %s (%s) was interrupted by %s at %s; PostgreSQL rolled it back, it runs again",
                            e.step, e.name, e.applied_by, e.started_at)
        self.work = self.target.connect()

    def applied_entry(self, step: Step) -> ledger.LedgerEntry | None:
        return ledger.applied(self.control).get(step.id)

    def pending(self) -> list[Step]:
        done = ledger.applied(self.control)
        return [s for s in self.steps if s.id not in done]

    # -- the backup, taken before the first change -------------------------------------------------------
    def ensure_backup(self) -> Backup:
        if self.backup is None:
            self.backup = take_backup(self.target, self.backups_dir)
            if self.plan:
                removed = prune_backups(self.backups_dir, self.backup.manifest["database"],
                                        keep_days=self.plan.backup.keep_days, keep_count=self.plan.backup.keep_count,
                                        keep=self.backup.path)
                for p in removed:
                    log.info("removed old backup %s", p)
        return self.backup

    # -- steps ---------------------------------------------------------------------------------------
    def apply(self, step: Step) -> StepOutcome:
        """Apply one step, or report it already applied. Raises MigrationError/ConversionError."""
        entry = self.applied_entry(step)
        if entry is not None and (step.migration or entry.sha256 == step.sha256):
            outcome = StepOutcome(step.id, step.label, "already applied",
                                  details={"applied_at": f"{entry.finished_at:%Y-%m-%d %H:%M:%S %Z}", "by": entry.applied_by})
            self.outcomes.append(outcome)
            return outcome
        self.ensure_backup()
        ledger.ensure_ledger(self.control)
        transactional = step.migration.transactional if step.migration else True
        attempt = ledger.record_start(self.control, step.id, step.kind, step.label, step.sha256, transactional)
        started = time.monotonic()
        details: dict = {}

        def finish(conn: psycopg.Connection, result: StepResult | None = None) -> None:
            if result is not None:
                details.update(result.to_dict())
            ledger.record_finish(conn, attempt, "applied", details)

        try:
            if step.migration:
                apply_file(self.work, step.migration, on_success=finish)
            else:
                with self.work.transaction():
                    conversion: ConversionResult = convert_table(
                        self.work, self.schema, step.hypertable, has_compression=self._has_compression(),
                        rows_per_second=self._conversion_rate)
                    if conversion.rows > 10_000:
                        self._conversion_rate = conversion.rows_per_second
                    details.update(conversion.to_dict())
                    finish(self.work)
        except (MigrationError, ConversionError, psycopg.Error) as exc:
            error = exc.to_dict() if isinstance(exc, MigrationError) else {"message": str(exc)}
            if self.work.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                self.work.rollback()
            ledger.record_finish(self.control, attempt, "failed", error)
            self.failed = StepOutcome(step.id, step.label, "failed", time.monotonic() - started, error)
            self.outcomes.append(self.failed)
            raise
        outcome = StepOutcome(step.id, step.label, "applied", time.monotonic() - started, details)
        self.outcomes.append(outcome)
        return outcome

    def _has_compression(self) -> bool:
        return server_timescaledb(self.work).has_compression

    # -- closing -------------------------------------------------------------------------------------
    def close(self, *, restore: bool = True, keep_failed: bool = True) -> RestoreOutcome | None:
        """Release everything; after a failed step, restore the backup and prove it (unless told not to)."""
        for conn in (self.work, self.control):
            if conn is not None and not conn.closed:
                if conn is self.control:
                    ledger.release_lock(conn)
                conn.close()
        self.work = self.control = None
        if self.failed and restore and self.backup is not None:
            log.info("a step failed: restoring %s from %s", self.target.describe(), self.backup.path)
            try:
                self.restore_outcome = restore_backup(self.target, self.backup, keep_failed=keep_failed)
            except (BackupError, DatabaseInUse, psycopg.Error) as exc:
                # The database stays as the failure left it (a restore never swaps in an unproven copy).
                self.restore_error = str(exc)
                log.error("the restore failed: %s", exc)
            else:
                log.info(self.restore_outcome.summary())
        return self.restore_outcome

