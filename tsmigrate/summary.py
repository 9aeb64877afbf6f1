"""What a run concluded, gathered as it goes, and the verdict it comes to; tsmigrate.report.words puts it in
the operator's words (the terminal's last lines, the report's banner)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from .findings import Finding


class Phase(StrEnum):
    """A suite of the run, by its directory under suites/ and its marker."""

    PREFLIGHT = "preflight"
    EXECUTE = "execute"
    POSTFLIGHT = "postflight"


class RunKind(StrEnum):
    """Which suites a run holds (its reports are named after it); NONE for a pytest run that is not the suites
    (the project's own tests). A str enum: the record and report names keep the words."""

    NONE = ""
    PREFLIGHT = "preflight"
    EXECUTE = "execute"
    POSTFLIGHT = "postflight"
    PREFLIGHT_EXECUTE = "preflight+execute"
    PREFLIGHT_POSTFLIGHT = "preflight+postflight"
    EXECUTE_POSTFLIGHT = "execute+postflight"
    FULL = "full"

    @classmethod
    def of(cls, phases: Iterable[str]) -> RunKind:
        held = {Phase(p) for p in phases}
        if held == set(Phase):
            return cls.FULL
        return cls("+".join(p.value for p in Phase if p in held))

    @property
    def phases(self) -> tuple[Phase, ...]:
        if self is RunKind.FULL:
            return tuple(Phase)
        return tuple(Phase(p) for p in self.value.split("+") if p)

    def holds(self, phase: str) -> bool:
        return Phase(phase) in self.phases


class StepStatus(StrEnum):
    """A step's outcome in this run (the record's steps[].status)."""

    APPLIED = "applied"
    ALREADY_APPLIED = "already applied"
    FAILED = "failed"
    SKIPPED = "skipped"


class Verdict(StrEnum):
    GO = "GO"
    NO_GO = "NO-GO"
    SUCCESS = "SUCCESS"
    RESTORED = "RESTORED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    PASSED = "PASSED"
    BELOW_TARGET = "BELOW TARGET"


# A run whose every check of the data and structure passed but a benchmark missed its target from the plan
# (pytest's own statuses are 0 to 5); fixtures/benchmarks.py sets it.
BELOW_TARGET_EXIT = 6

# The exit statuses other than 0 (passed) and 1 (tests failed), in the operator's words.
EXIT_MEANINGS = {
    2: "the run was interrupted (Ctrl-C, a collection error, or a check stopped it)",
    3: "an internal error stopped the run (see the terminal output)",
    4: "the command line or the migration plan is not valid (see the terminal output)",
    5: "no checks were collected: nothing was verified",
    BELOW_TARGET_EXIT: "every check of the data and structure passed, but a benchmark missed its target from the plan",
}
STOP_EXITS = (2, 3, 4, 5)  # the statuses of a run cut short


VERDICTS = tuple(v.value for v in Verdict)
GOOD_VERDICTS = (Verdict.GO, Verdict.SUCCESS, Verdict.PASSED)  # the only verdicts of a run that exits 0


@dataclass
class RunSummary:
    """Changed only through its own methods (tests/test_wiring.py holds every other module to that): what each
    part of the run records is named here, once."""

    target: str = ""
    kind: RunKind = RunKind.NONE
    findings: list[Finding] = field(default_factory=list)
    preflight_failures: list[str] = field(default_factory=list)  # test ids of failed pre-flight checks
    failed_tests: list[str] = field(default_factory=list)  # every failed test id, any suite
    judged_checks: set[str] = field(default_factory=set)  # checks whose failure is told by findings
    steps: list[dict] = field(default_factory=list)
    backup: dict | None = None
    restore: str | None = None  # the restore outcome, in words
    restored_identical: bool | None = None  # the restored copy was proven identical to the backup
    restore_complete: bool | None = None  # ... and no row committed after the backup was left behind
    # what others wrote or deleted after the backup, and what the restore carried over of it, in words
    carried_over: str | None = None
    execute_failed: str | None = None
    cause: dict | None = None  # the resource the failure ran out of (tsmigrate.causes.Cause)
    benchmarks: list[dict] = field(default_factory=list)
    # schema.table -> TableFingerprint.to_dict() after the run (post-flight); the "before" ones: the backup's manifest
    fingerprints_after: dict[str, dict] = field(default_factory=dict)
    stopped: str | None = None  # why the run ended early (refused, unreachable), in words
    exit_code: int | None = None  # pytest's exit status, once the session finished
    policy_schedule: list[str] = field(default_factory=list)  # policy jobs scheduled by the post-flight, first runs
    verdict_inputs: dict | None = None  # what a GO depended on (versions, hashes)
    # benchmarks that missed their target (test, name, problem, remedy): a failed check, but not of the data
    below_target: list[dict] = field(default_factory=list)
    # The role's and database's settings the run's sessions override (tsmigrate.session.Override.to_dict())
    session_overrides: list[dict] = field(default_factory=list)
    # The window as the rehearsal estimated it (preflight.window.estimate_window), and once execute ran, what was
    # measured beside it ("measured", "comparison")
    estimate: dict | None = None
    # What the server went through during execute and post-flight (tsmigrate.timeline.Sampler.to_dict()), with the
    # steps as bands (label, started_at, finished_at)
    timeline: dict | None = None

    def record_estimate(self, estimate: dict) -> None:
        """The rehearsal's estimate of the window (the GO banner says it)."""
        self.estimate = dict(estimate)

    def record_timeline(self, series: dict, bands: list[dict]) -> None:
        """The sampler's series and the bands drawn on it; with an estimate, what was measured beside it."""
        from .preflight.window import compare, measured_window

        self.timeline = {**series, "bands": bands}
        if self.estimate is not None and self.steps:
            phases = [b for b in bands if b.get("kind") == "phase"]
            measured = measured_window(self.steps, self.timeline, phases)
            self.estimate = {**self.estimate, "measured": measured, "comparison": compare(self.estimate, measured)}

    def __post_init__(self) -> None:
        self.kind = RunKind(self.kind)

    # -- what the parts of the run record --------------------------------------------------------------------
    def name_target(self, description: str) -> None:
        """The target in words, for the verdict line: the first part of the run that knows it names it."""
        self.target = self.target or description

    def stop(self, reason: str) -> None:
        """The run ended, or will end, before its end (refused, unreachable, interrupted, a partial gate)."""
        self.stopped = reason

    def add_finding(self, found: Finding) -> int:
        """Record a finding; its index, for replace_finding."""
        self.findings.append(found)
        return len(self.findings) - 1

    def add_findings(self, found: Iterable[Finding]) -> None:
        self.findings.extend(found)

    def replace_finding(self, index: int, found: Finding) -> None:
        self.findings[index] = found

    def judge_check(self, nodeid: str) -> None:
        """This check's failure is told by a finding (the verdict does not list it apart)."""
        self.judged_checks.add(nodeid)

    def test_failed(self, nodeid: str, preflight: bool) -> None:
        """A test failed (any phase of it); a pre-flight check's failure is a NO-GO."""
        self.failed_tests.append(nodeid)
        if preflight:
            self.preflight_failures.append(nodeid)

    def record_verdict_inputs(self, inputs: dict) -> None:
        self.verdict_inputs = inputs

    def record_session_overrides(self, overrides: list[dict]) -> None:
        self.session_overrides = overrides

    def record_benchmark(self, figure: dict) -> None:
        self.benchmarks.append(figure)

    def record_fingerprints_after(self, fingerprints: dict[str, dict]) -> None:
        self.fingerprints_after.update(fingerprints)

    def record_policy_schedule(self, schedule: list[str]) -> None:
        self.policy_schedule = schedule

    def use_baseline(self, path: str, manifest_sha256: str) -> None:
        """A post-flight on its own compares with this backup; a run that took its own keeps that one."""
        if self.backup is None:
            self.backup = {"path": path, "manifest_sha256": manifest_sha256}

    def end_execute(
        self,
        *,
        steps: list[dict],
        backup: dict | None,
        stopped: str | None,
        failed_step: str | None,
        cause: dict | None,
        restore_complete: bool | None,
        restore: str | None,
        carried_over: str | None = None,
    ) -> None:
        """What the execute phase left (fixtures/run.py's end_run, once): its steps, its backup, how it failed
        and what the restore made of the database."""
        self.steps = steps
        if backup is not None:
            self.backup = backup
        if stopped:
            self.stopped = stopped
        if failed_step is not None:
            self.execute_failed = failed_step
            self.cause = cause
            if restore_complete is not None:
                # restore_backup returns only a copy proven identical to the backup; with what others did since
                # carried over, nothing of theirs is undone unless the outcome says so.
                self.restored_identical = restore_complete
                self.restore_complete = restore_complete
                self.carried_over = carried_over
        self.restore = restore

    def finish(self, exit_code: int) -> None:
        """pytest's exit status, once the session finished: part of the verdict (a run cut short is no GO)."""
        self.exit_code = exit_code

    # -- what it concludes -----------------------------------------------------------------------------------
    @property
    def restored(self) -> bool:
        """The database was restored from the run's backup: what stands is the backup (and what was carried over
        into it), not the steps of this run."""
        return self.restore_complete is not None

    @property
    def rolled_back(self) -> list[str]:
        """The steps this run applied that the restore took away with it (labels); none without a restore."""
        if not self.restored:
            return []
        return [s["label"] for s in self.steps if s["status"] == StepStatus.APPLIED]

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.blocking]

    @property
    def advisories(self) -> list[Finding]:
        return [f for f in self.findings if not f.blocking]

    @property
    def go(self) -> bool:
        return not self.blocking and not self.preflight_failures

    @property
    def stop_reason(self) -> str | None:
        """Why the run could not conclude, or None; an exit status of 2 to 5 means it was cut short."""
        if self.stopped:
            return self.stopped
        return EXIT_MEANINGS.get(self.exit_code) if self.exit_code in STOP_EXITS else None

    def miss_target(self, test: str, name: str, problem: str, remedy: str = "") -> None:
        """Record that a benchmark missed its target: its test fails, as a performance target, not as data."""
        self.below_target.append({"test": test, "name": name, "problem": problem, "remedy": remedy})

    @property
    def data_failures(self) -> list[str]:
        """Failed tests (ids) other than the benchmarks below target: the checks of the data and structure, the
        steps and the pre-flight. Each miss excuses one failure of its test, no more."""
        excused = [b["test"] for b in self.below_target]
        failures = []
        for test in self.failed_tests:
            if test in excused:
                excused.remove(test)
            else:
                failures.append(test)
        return failures

    def holds(self, suite: str) -> bool:
        """Whether this run holds ``suite`` (preflight, execute or postflight); a full run holds them all."""
        return RunKind(self.kind).holds(suite)

    def verdict(self) -> Verdict:
        """GO / NO-GO for a pre-flight; SUCCESS / RESTORED / FAILED once execute ran; PASSED / FAILED for a
        post-flight on its own; BELOW TARGET for either when every check of the data and structure passed but a
        benchmark missed its target; STOPPED when cut short."""
        kind = RunKind(self.kind)
        if self.execute_failed and not self.stop_reason:
            return Verdict.RESTORED if self.restore_complete else Verdict.FAILED
        if self.stop_reason:
            # A gate that could not finish is a NO-GO; any other run that stopped must not read as a success.
            return Verdict.NO_GO if kind is RunKind.PREFLIGHT else Verdict.STOPPED
        if self.steps or kind is RunKind.POSTFLIGHT:
            if self.data_failures:
                return Verdict.FAILED
            if self.below_target:
                return Verdict.BELOW_TARGET
            return Verdict.SUCCESS if self.steps else Verdict.PASSED
        if not self.go:
            return Verdict.NO_GO
        return Verdict.GO if not self.failed_tests else Verdict.FAILED
