"""One migration run against a target: lock, ledger, backup, ordered steps, restore on failure.

Plain Python: the execute suite drives it one step per test, and a script could too.

    with MigrationRun(target, migrations_dir, plan, backups_dir) as run:   # lock, ledger, checks; no change yet
        for step in run.steps:
            run.apply(step)        # the first change fences the application and takes the backup
    # leaving the block closes the run: after a failure (or Ctrl-C) one restore, with rows others wrote carried
    # over; the fence is lifted whatever happened; run.state() says where things stand

The execute suite opens and closes it from its fixture and hooks instead (``open()``, ``close()``), because
a pytest session's end is not one block.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from . import fence, ledger
from .backup import Backup, BackupError, pin_backup, prune_backups, take_backup
from .causes import Cause, classify, tail
from .convert import ConversionError, ConversionResult, convert, plan_sha256
from .convert.connections import conversion_jobs
from .convert.online import online_tables
from .convert.policies import retention_drops
from .db import one
from .errors import first_line
from .fence import Fence, FenceError
from .janitor import DatabaseStateError
from .late_writes import CarryReport, RunsOwnRowChanges, carry_over
from .migrations import MigrationError, MigrationFile, StepResult, apply_file, discover
from .plan import HypertablePlan, Plan
from .restore import RestoreOutcome, restore_backup
from .serverfiles import ServerFiles, locate
from .summary import StepStatus
from .target import Target, TargetError
from .timescale import server_timescaledb

log = logging.getLogger(__name__)


class RunRefused(RuntimeError):
    """The run must not change anything; the message says why and what to do."""


@dataclass(frozen=True)
class Step:
    """A migration file or the conversion of one planned table."""

    id: str  # ledger key: the file's version (a repeatable file: its name), or convert:<table>
    label: str  # what a person reads: the file name or "convert metric_hist"
    migration: MigrationFile | None = None
    hypertable: HypertablePlan | None = None

    @property
    def kind(self) -> str:
        return "migration" if self.migration else "conversion"

    @property
    def conversion(self) -> HypertablePlan:
        """The planned table a conversion step converts (a step is a migration file or a conversion)."""
        if self.hypertable is None:
            raise ValueError(f"{self.label} is a migration file, not a conversion")
        return self.hypertable

    @property
    def sha256(self) -> str:
        return self.migration.sha256 if self.migration else plan_sha256(self.conversion)

    @property
    def reruns_when_changed(self) -> bool:
        """A conversion runs again when its plan changed, a repeatable file when its content did."""
        return self.migration is None or self.migration.repeatable

    def done(self, entry: ledger.LedgerEntry | None) -> bool:
        return ledger.is_done(entry, self.sha256, reruns_when_changed=self.reruns_when_changed)


def plan_steps(migrations_dir: Path, plan: Plan | None) -> list[Step]:
    """Every step in order: migration files by version (repeatable files last), then one conversion per
    planned table."""
    files, _ = discover(migrations_dir)
    steps = [Step(f.step_id, f.label, migration=f) for f in files]
    if plan is not None:
        steps += [
            Step(f"convert:{h.table}", f"convert {plan.schema}.{h.table}", hypertable=h) for h in plan.hypertables
        ]
    return steps


@dataclass
class StepOutcome:
    step: str
    label: str
    status: StepStatus
    seconds: float = 0.0
    details: dict = field(default_factory=dict)
    finished_at: float = field(default_factory=time.time)  # seconds since the epoch: the timeline's bands

    def to_dict(self) -> dict:
        return {
            "step": self.step,
            "label": self.label,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "started_at": round(self.finished_at - self.seconds, 3),
            "finished_at": round(self.finished_at, 3),
            "details": self.details,
        }


# A run that dies is noticed by the server within two seconds: its transaction, locks and lock-holding
# session go with it, and the next run does not wait behind a backend whose client is gone.
RUN_SESSION_OPTIONS = "-c client_connection_check_interval=2000"


class RunStopped(RuntimeError):
    """The run stopped before changing anything (e.g. the backup could not be taken)."""


class StepFailed(RuntimeError):
    """A step failed; the message says what, where and (for a statement) the server's word."""


class MigrationRun:
    def __init__(
        self,
        target: Target,
        migrations_dir: Path,
        plan: Plan | None,
        backups_dir: Path,
        *,
        resolve_interrupted: bool = False,
        lock_wait: float = 5.0,
    ):
        self.target = target
        self.plan = plan
        self.schema = plan.schema if plan else "public"
        self.steps = plan_steps(migrations_dir, plan)
        self.backups_dir = Path(backups_dir)
        self.resolve_interrupted = resolve_interrupted
        self.lock_wait = lock_wait
        # The run's own session (lock, ledger, fence) and the one its steps run on: open from open() to close().
        self._control: psycopg.Connection | None = None
        self._work: psycopg.Connection | None = None
        self.backup: Backup | None = None
        self.backup_pinned: str | None = None  # why the backup is kept from pruning
        self.outcomes: list[StepOutcome] = []
        # Migration files this run applied, or began outside a transaction: what they did to rows is the run's own.
        self.files_run: list[MigrationFile] = []
        self.failed: StepOutcome | None = None
        self.stopped: str | None = None  # why the run stopped before any change
        self.restore_outcome: RestoreOutcome | None = None
        self.interrupted: list[ledger.LedgerEntry] = []
        self.restore_error: str | None = None
        self.fence: Fence | None = None
        self.fence_left: list[str] = []  # roles still fenced after the run (could not be lifted)
        self.stale_fences: list = []  # fences of a dead run lifted at open
        self.own_xids: set[int] = set()  # transactions of this run's steps (not the application's rows)
        self.closed = False
        self._conversion_rate: float | None = None  # rows/s of the last large conversion, for estimates
        self.server_files = ServerFiles(None)  # where the server's data directory, WAL and log are (at open)
        self._log_start = 0  # the server log's size at open: later lines are this run's
        self._settings: dict[str, str] = {}  # settings a cause's fix names (max_locks_per_transaction)
        self.cause: Cause | None = None  # what the failure ran out of (disk, locks, ...), when known
        self.restore_cause: Cause | None = None  # ... and the restore's
        # (what, started, finished) in seconds since the epoch: the fence and backup, the restore (the timeline's bands)
        self.phases: list[tuple[str, float, float]] = []

    @property
    def control(self) -> psycopg.Connection:
        if self._control is None:
            raise RuntimeError("the run's control session is used before open() or after close()")
        return self._control

    @property
    def work(self) -> psycopg.Connection:
        if self._work is None:
            raise RuntimeError("the run's work session is used before open() or after close()")
        return self._work

    # -- opening: nothing changes here except the ledger's own bookkeeping ---------------------------
    def _connect(self, **kwargs) -> psycopg.Connection:
        return self.target.connect(options=RUN_SESSION_OPTIONS, **kwargs)

    def __enter__(self) -> MigrationRun:
        self.open()
        return self

    def __exit__(self, kind, exc, traceback) -> None:
        if kind is not None and issubclass(kind, KeyboardInterrupt):
            self.close(interrupted="interrupted (Ctrl-C or SIGTERM)")
        else:
            self.close()

    def open(self) -> None:
        self._control = self._connect(application_name=f"tsmigrate run ({ledger.who()})")
        try:
            ledger.acquire_lock(self.control, wait=self.lock_wait)
        except ledger.LockHeld as exc:
            self.control.close()
            raise RunRefused(str(exc)) from None
        applied = ledger.applied(self.control)
        changed = [
            s
            for s in self.steps
            if s.migration and not s.reruns_when_changed and s.id in applied and applied[s.id].sha256 != s.sha256
        ]
        if changed:
            names = ", ".join(f"{s.label} (applied {applied[s.id].finished_at:%Y-%m-%d})" for s in changed)
            self.close()
            raise RunRefused(
                f"applied migrations changed since they ran: {names}. An applied file must not be "
                "edited: restore its original content and put the change in a new file."
            )
        if ledger.ledger_exists(self.control):
            try:
                self.interrupted = ledger.resolve_interrupted(self.control, force=self.resolve_interrupted)
            except ledger.LedgerError as exc:
                self.close()
                raise RunRefused(str(exc)) from None
            for e in self.interrupted:
                log.warning(
                    "step %s (%s) was interrupted by %s at %s; PostgreSQL rolled it back, it runs again",
                    e.step,
                    e.name,
                    e.applied_by,
                    e.started_at,
                )
        self.stale_fences = fence.lift_stale(self.control, self.control.info.dbname)
        for f in self.stale_fences:
            log.warning(
                "role %s was left fenced (NOLOGIN) by a run that died (backend pid %s, %s): lifted",
                f.role,
                f.run_pid,
                f.fenced_at,
            )
        self._know_the_server()
        self._work = self._connect()

    def _know_the_server(self) -> None:
        """Where the server's files and log are, read now: once the server has stopped, nothing can be asked."""
        try:
            self.server_files = locate(self.control)
            self._settings = dict(
                self.control.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN ('max_locks_per_transaction', "
                    "'max_worker_processes', 'max_connections')"
                ).fetchall()
            )
        except Exception as exc:  # best effort: a cause is then named without its directory
            log.info("could not tell where the server keeps its files (%s)", first_line(exc))
        log_file = self.server_files.log_file
        try:
            self._log_start = Path(log_file).stat().st_size if log_file else 0
        except OSError:
            self._log_start = 0

    def _server_log_since_open(self) -> str | None:
        log_file = self.server_files.log_file
        text = tail(log_file)
        if log_file is None or text is None:
            return None
        try:
            with open(log_file, "rb") as f:
                f.seek(self._log_start)
                return f.read()[-65536:].decode(errors="replace")
        except OSError:
            return text

    def classify(self, exc: BaseException | str) -> Cause | None:
        """The resource a failure ran out of (tsmigrate.causes), with the server's directories and log."""
        lost = isinstance(exc, psycopg.OperationalError) or "connect" in str(exc).lower()
        return classify(
            exc,
            data_directory=self.server_files.data_directory,
            wal_directory=self.server_files.wal_directory,
            settings=self._settings,
            server_log=self._server_log_since_open() if lost else None,
        )

    def applied_entry(self, step: Step) -> ledger.LedgerEntry | None:
        try:
            return ledger.applied(self.control).get(step.id)
        except psycopg.Error as exc:
            raise StepFailed(f"{step.label}: the run's session was lost ({first_line(exc)})") from None

    def pending(self) -> list[Step]:
        done = ledger.applied(self.control)
        return [s for s in self.steps if not s.done(done.get(s.id))]

    # -- the fence and the backup, before the first change ---------------------------------------------
    def ensure_backup(self) -> Backup:
        """Fence the application, then back up; the first change waits for both. Raises RunStopped."""
        if self.backup is not None:
            return self.backup
        if self.stopped:
            raise RunStopped(self.stopped)
        try:
            online = online_tables(self.work, self.plan) if self.plan else []
            if online and self.plan and self.plan.fence_application and self.fence is None:
                log.info(
                    "the application is not fenced: %s convert online (its writes wait for the swap's lock, "
                    "milliseconds; a restore carries over what it writes after the backup)",
                    ", ".join(online),
                )
            started = time.time()
            if self.plan and self.plan.fence_application and self.fence is None and not online:
                self.fence = Fence(self.control, self.plan.application_roles)
                self.fence.raise_()
            self.backup = take_backup(self.target, self.backups_dir, key=self.plan.backup.key() if self.plan else None)
            self.phases.append(("fence and backup" if self.fence else "backup", started, time.time()))
        except (BackupError, FenceError, TargetError, psycopg.Error) as exc:
            self.stopped = (
                f"the backup could not be taken, nothing was changed: {first_line(exc)}"
                if not isinstance(exc, FenceError)
                else f"the application could not be fenced, nothing was changed: {exc}"
            )
            raise RunStopped(self.stopped) from None
        backup = self.backup
        if self.plan:
            self._pin_if_retention_drops(self.plan, backup)
            removed = prune_backups(
                self.backups_dir,
                backup.manifest["database"],
                keep_days=self.plan.backup.keep_days,
                keep_count=self.plan.backup.keep_count,
                keep=backup.path,
            )
            for p in removed:
                log.info("removed old backup %s", p)
        return backup

    def _pin_if_retention_drops(self, plan: Plan, backup: Backup) -> None:
        """Rows the first retention run will drop live on only in this backup: it is never pruned."""
        if not self._has_compression():
            return
        drops = []
        for h in plan.hypertables:
            exists = one(self.work, "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))", (self.schema, h.table))
            if h.drop_after is None or exists is None:  # a table a migration file creates holds no history yet
                continue
            count, oldest, newest = retention_drops(self.work, self.schema, h)
            if count:
                drops.append(
                    f"{self.schema}.{h.table}: {count} rows with {h.time_column} from {oldest} to {newest} "
                    f"(older than drop_after {h.drop_after})"
                )
        if drops:
            self.backup_pinned = (
                "The retention policies' first run drops rows that only this backup keeps: " + "; ".join(drops)
            )
            log.warning(
                "%s. Backup %s is kept until you remove it (%s).",
                self.backup_pinned,
                backup.path,
                pin_backup(backup, self.backup_pinned),
            )

    # -- steps ---------------------------------------------------------------------------------------
    def apply(self, step: Step) -> StepOutcome:
        """Apply one step, or report it already applied. Raises StepFailed or RunStopped; Ctrl-C passes through
        (marked as this step's failure)."""
        if self.failed is not None:
            raise StepFailed(f"not run: {self.failed.label} failed before it")
        try:
            entry = self.applied_entry(step)
        except StepFailed as exc:
            self.mark_failed(step.id, step.label, {"message": str(exc)})
            raise
        if entry is not None and step.done(entry):
            outcome = StepOutcome(
                step.id,
                step.label,
                StepStatus.ALREADY_APPLIED,
                details={"applied_at": f"{entry.finished_at:%Y-%m-%d %H:%M:%S %Z}", "by": entry.applied_by},
            )
            self.outcomes.append(outcome)
            return outcome
        self.ensure_backup()
        started = time.monotonic()
        details: dict = {}
        attempt: int | None = None

        def finish(conn: psycopg.Connection, result: StepResult | ConversionResult | None = None) -> None:
            if result is not None:
                details.update(result.to_dict())
            self.own_xids.add(int(one(conn, "SELECT pg_current_xact_id()::text")))
            assert attempt is not None  # the ledger's row is started before the step runs
            ledger.record_finish(conn, attempt, "applied", details)

        try:
            ledger.ensure_ledger(self.control)
            transactional = step.migration.transactional if step.migration else True
            attempt = ledger.record_start(self.control, step.id, step.kind, step.label, step.sha256, transactional)
            if step.migration:
                if not step.migration.transactional:
                    self.files_run.append(step.migration)  # part of it may stand even if it fails
                apply_file(self.work, step.migration, on_success=finish)
                if step.migration.transactional:
                    self.files_run.append(step.migration)
            else:
                assert self.plan is not None  # conversion steps come from the plan
                conversion = convert(
                    self._connect,
                    self.work,
                    self.schema,
                    step.conversion,
                    has_compression=self._has_compression(),
                    own_xids=self.own_xids,
                    online_above_rows=self.plan.online_above_rows,
                    on_converted=finish,
                    rows_per_second=self._conversion_rate,
                    jobs=conversion_jobs(self.work, self.plan.jobs),
                )
                if conversion.online is None and conversion.rows > 10_000:
                    self._conversion_rate = conversion.rows_per_second
                details.update(conversion.to_dict())
        except BaseException as exc:
            error = self._failure(step, exc, started)
            self._record_failure(attempt, error)
            if isinstance(exc, Exception):
                raise StepFailed(
                    str(exc) if isinstance(exc, (MigrationError, ConversionError)) else error["message"]
                ) from None
            raise
        outcome = StepOutcome(step.id, step.label, StepStatus.APPLIED, time.monotonic() - started, details)
        self.outcomes.append(outcome)
        return outcome

    def _failure(self, step: Step, exc: BaseException, started: float) -> dict:
        if isinstance(exc, MigrationError):
            error = exc.to_dict()
        elif isinstance(exc, psycopg.OperationalError) and (
            self._work is None or self._work.closed or self._work.broken
        ):
            error = {
                "message": f"{step.label}: the connection to the server was lost ({first_line(exc)}); "
                "PostgreSQL rolls back the step's open transaction"
            }
        elif isinstance(exc, KeyboardInterrupt):
            error = {"message": f"{step.label}: interrupted (Ctrl-C or SIGTERM); its transaction was rolled back"}
        else:
            error = {
                "message": str(exc)
                if isinstance(exc, (ConversionError, StepFailed))
                else f"{step.label}: {first_line(exc)}"
            }
        cause = self.classify(exc) if isinstance(exc, Exception) else None
        if cause is not None:
            error["cause"] = cause.to_dict()
            error["message"] += f". {cause.words()}"
            if self.cause is None:
                self.cause = cause
        self.mark_failed(step.id, step.label, error, time.monotonic() - started)
        return error

    def _record_failure(self, attempt: int | None, error: dict) -> None:
        """Best effort: the connections may be gone (that may be the failure). The ledger's 'started' row then
        stays, and the crash rule handles it at the next run."""
        try:
            if (
                self._work is not None
                and not self._work.closed
                and self._work.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
            ):
                self._work.rollback()
            if attempt is not None:
                ledger.record_finish(self.control, attempt, "failed", error)
        except (psycopg.Error, KeyboardInterrupt) as exc:
            log.warning(
                "could not record the failure in the ledger (%s); the crash rule applies at the next run",
                first_line(exc),
            )

    def mark_failed(self, step_id: str, label: str, error: dict, seconds: float = 0.0) -> None:
        """The run's one failure (the first wins): later steps do not run, and close() restores."""
        if self.failed is None:
            self.failed = StepOutcome(step_id, label, StepStatus.FAILED, seconds, error)
            self.outcomes.append(self.failed)

    def _has_compression(self) -> bool:
        return server_timescaledb(self.work).has_compression

    @property
    def applied_here(self) -> list[str]:
        return [o.label for o in self.outcomes if o.status is StepStatus.APPLIED]

    # -- closing -------------------------------------------------------------------------------------
    def close(
        self, *, restore: bool = True, keep_failed: bool = True, interrupted: str | None = None
    ) -> RestoreOutcome | None:
        """Release everything; after a failure, restore the backup once and prove it (unless told not to);
        lift the fence whatever happened. Calling it again does nothing."""
        if self.closed:
            return self.restore_outcome
        self.closed = True
        if interrupted and self.failed is None and self.backup is not None:
            self.mark_failed("interrupted", "the run", {"message": f"the run was {interrupted}"})
        for conn in (self._work, self._control):
            if conn is not None and not conn.closed:
                try:
                    if conn is self._control:
                        ledger.release_lock(conn)
                    conn.close()
                except psycopg.Error:
                    pass  # a lost session released its lock already
        self._work = self._control = None
        try:
            if self.failed and restore and self.backup is not None:
                self._restore(self.backup, keep_failed)
        finally:
            self._lift_fence()
        return self.restore_outcome

    def _restore(self, backup: Backup, keep_failed: bool) -> None:
        log.info("the run failed: restoring %s from %s (one attempt)", self.target.describe(), backup.path)
        tables = [(schema, table) for schema, _, table in (k.partition(".") for k in backup.fingerprints)]
        snapshot: str | None = backup.manifest.get("snapshot")

        runs_own = RunsOwnRowChanges.of_files([f.sql for f in self.files_run])

        def carry(failed: Target, restored: Target) -> CarryReport:
            assert snapshot is not None  # the restore is given carry only with a snapshot
            return carry_over(failed, restored, snapshot, self.own_xids, tables, runs_own)

        started = time.time()
        try:
            self.restore_outcome = restore_backup(
                self.target, backup, keep_failed=keep_failed, carry=carry if snapshot else None
            )
        except (BackupError, DatabaseStateError, TargetError, psycopg.Error, KeyboardInterrupt) as exc:
            # The database stays as the failure left it (a restore never swaps in an unproven copy).
            self.restore_error = first_line(exc) if not isinstance(exc, KeyboardInterrupt) else "interrupted"
            # e.g. the restore's copy that could not be dropped because the server went away, and how to drop it
            self.restore_error += "".join(f"; {note}" for note in getattr(exc, "__notes__", ()))
            if not isinstance(exc, KeyboardInterrupt):
                self.restore_cause = self.classify(exc)
            log.error("the restore failed: %s", self.restore_error)
        else:
            log.info(self.restore_outcome.summary())
        finally:
            self.phases.append(("restore", started, time.time()))

    def _lift_fence(self) -> None:
        if self.fence is None or not self.fence.fenced:
            return
        roles = [f.role for f in self.fence.fenced]
        # mid-restore the target's name may be gone
        for dbname in [name for name in (self.target.dbname, "postgres") if name is not None]:
            try:
                with self.target.with_dbname(dbname).connect() as conn:
                    self.fence.lift_(conn)
                return
            except (TargetError, psycopg.Error) as exc:
                reason = first_line(exc)
        self.fence_left = roles
        log.error(
            "the fence could not be lifted (%s): %s cannot log in. The next run or pre-flight lifts it, "
            "or run ALTER ROLE ... LOGIN yourself",
            reason,
            ", ".join(roles),
        )

    def state(self) -> str:
        """Where the database stands after the run, and what to do next, in words (for the last line)."""
        target = self.target.describe()
        fence_note = (
            f" Roles {', '.join(self.fence_left)} are still fenced (NOLOGIN): the next run or pre-flight "
            "lifts that, or ALTER ROLE <role> LOGIN."
            if self.fence_left
            else ""
        )
        if self.stopped:
            return f"STOPPED: {self.stopped}.{fence_note}"
        if not self.failed:
            return fence_note.strip()
        cause_note = self._cause_note()
        if self.restore_outcome is not None:
            return self.restore_outcome.summary() + "." + cause_note + fence_note
        done = ", ".join(self.applied_here) or "none"
        where = (
            f"The database {target} is as the failure left it: applied by this run: {done}; "
            f"{self.failed.label} did not complete (a transactional step is rolled back by PostgreSQL)."
        )
        if self.backup is None:
            return f"NOT RESTORED: no backup was taken before the failure.{cause_note} {where}{fence_note}"
        how = (
            f" Next: fix the cause, then run `pytest suites` again: it continues from the ledger. Or go back to "
            f"before the run: restore {self.backup.path} (README: Backups and restore)."
        )
        if self.restore_error is not None:
            return f"RESTORE FAILED: {self.restore_error}.{cause_note} {where}{how}{fence_note}"
        return f"NOT RESTORED (--no-restore):{cause_note} {where}{how}{fence_note}"

    def _cause_note(self) -> str:
        """Why the step (and the restore) failed, when a resource ran out: which, and what to do."""
        note = ""
        if self.cause is not None:
            note += f" {self.failed.label if self.failed else 'the run'} failed: {self.cause.words()}"
        if self.restore_cause is not None and self.restore_cause != self.cause:
            note += f" The restore failed too: {self.restore_cause.words()}"
        return note
