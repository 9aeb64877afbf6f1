"""What a run concluded, gathered as it goes, and the verdict it comes to; tsmigrate.report.words puts it in
the operator's words (the terminal's last lines, the report's banner)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .findings import Finding

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


VERDICTS = ("GO", "NO-GO", "SUCCESS", "RESTORED", "FAILED", "STOPPED", "PASSED", "BELOW TARGET")
GOOD_VERDICTS = ("GO", "SUCCESS", "PASSED")  # the only verdicts of a run that exits 0


@dataclass
class RunSummary:
    target: str = ""
    kind: str = ""  # preflight, execute, postflight or full
    findings: list[Finding] = field(default_factory=list)
    preflight_failures: list[str] = field(default_factory=list)  # test ids of failed pre-flight checks
    failed_tests: list[str] = field(default_factory=list)  # every failed test id, any suite
    judged_checks: set[str] = field(default_factory=set)  # checks whose failure is told by findings
    steps: list[dict] = field(default_factory=list)
    backup: dict | None = None
    restore: str | None = None  # the restore outcome, in words
    restored_identical: bool | None = None  # the restored copy was proven identical to the backup
    restore_complete: bool | None = None  # ... and no row committed after the backup was left behind
    execute_failed: str | None = None
    cause: dict | None = None  # the resource the failure ran out of (tsmigrate.causes.Cause)
    benchmarks: list[dict] = field(default_factory=list)
    # schema.table -> TableFingerprint.to_dict() after the run (post-flight); the "before" ones are in the backup manifest
    fingerprints_after: dict[str, dict] = field(default_factory=dict)
    stopped: str | None = None  # why the run ended early (refused, unreachable), in words
    exit_code: int | None = None  # pytest's exit status, once the session finished
    policy_schedule: list[str] = field(default_factory=list)  # policy jobs scheduled by the post-flight, first runs
    verdict_inputs: dict | None = None  # what a GO depended on (versions, hashes)
    # benchmarks that missed their target (test, name, problem, remedy): a failed check, but not of the data
    below_target: list[dict] = field(default_factory=list)
    # The role's and database's settings the run's sessions override (tsmigrate.session.Override.to_dict())
    session_overrides: list[dict] = field(default_factory=list)
    # The window as the rehearsal estimated it (tsmigrate.window.estimate_window), and once execute ran, what was
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
        from .window import compare, measured_window

        self.timeline = {**series, "bands": bands}
        if self.estimate is not None and self.steps:
            phases = [b for b in bands if b.get("kind") == "phase"]
            measured = measured_window(self.steps, self.timeline, phases)
            self.estimate = {**self.estimate, "measured": measured, "comparison": compare(self.estimate, measured)}

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
        return self.kind == "full" or suite in self.kind.split("+")

    def verdict(self) -> str:
        """GO / NO-GO for a pre-flight; SUCCESS / RESTORED / FAILED once execute ran; PASSED / FAILED for a
        post-flight on its own; BELOW TARGET for either when every check of the data and structure passed but a
        benchmark missed its target; STOPPED when cut short."""
        if self.execute_failed and not self.stop_reason:
            return "RESTORED" if self.restore_complete else "FAILED"
        if self.stop_reason:
            # A gate that could not finish is a NO-GO; any other run that stopped must not read as a success.
            return "NO-GO" if self.kind == "preflight" else "STOPPED"
        if self.steps or self.kind == "postflight":
            if self.data_failures:
                return "FAILED"
            if self.below_target:
                return "BELOW TARGET"
            return "SUCCESS" if self.steps else "PASSED"
        if not self.go:
            return "NO-GO"
        return "GO" if not self.failed_tests else "FAILED"
