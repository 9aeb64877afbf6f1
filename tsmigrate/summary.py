"""What a run concluded, gathered as it goes, for the closing banner and the reports."""

from __future__ import annotations

from dataclasses import dataclass, field

from .findings import Finding


@dataclass
class RunSummary:
    target: str = ""
    kind: str = ""                                   # preflight, execute, postflight or full
    findings: list[Finding] = field(default_factory=list)
    preflight_failures: list[str] = field(default_factory=list)   # test ids of failed pre-flight checks
    failed_tests: list[str] = field(default_factory=list)         # every failed test id, any suite
    steps: list[dict] = field(default_factory=list)
    backup: dict | None = None
    restore: str | None = None                        # the restore outcome, in words
    restored_identical: bool | None = None
    execute_failed: str | None = None
    benchmarks: list[dict] = field(default_factory=list)
    verdict_inputs: dict | None = None                # what a GO depended on (versions, hashes)

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.blocking]

    @property
    def advisories(self) -> list[Finding]:
        return [f for f in self.findings if not f.blocking]

    @property
    def go(self) -> bool:
        return not self.blocking and not self.preflight_failures

    def verdict(self) -> str:
        """GO / NO-GO for a pre-flight; SUCCESS / RESTORED / FAILED once execute ran."""
        if self.execute_failed:
            return "RESTORED" if self.restored_identical else "FAILED"
        if self.steps:
            return "SUCCESS" if not self.failed_tests else "FAILED"
        if not self.go:
            return "NO-GO"
        return "GO" if not self.failed_tests else "FAILED"

    def banner_lines(self) -> list[str]:
        verdict = self.verdict()
        lines = []
        if verdict in ("GO", "NO-GO"):
            lines.append(f"{verdict}: {self.target}")
            for f in self.blocking:
                lines.append(f"  BLOCKING {f.code} {f.location() or f.table or ''}: {f.message}")
                if f.hint:
                    lines.append(f"      fix: {f.hint}")
            for name in self.preflight_failures:
                if not any(name.endswith(f.code) for f in self.blocking):
                    lines.append(f"  FAILED check {name}")
            if self.advisories:
                lines.append(f"  {len(self.advisories)} advisories (see the report)")
        else:
            applied = sum(1 for s in self.steps if s["status"] == "applied")
            already = sum(1 for s in self.steps if s["status"] == "already applied")
            lines.append(f"{verdict}: {self.target}: {applied} steps applied, {already} already applied")
            if self.execute_failed:
                lines.append(f"  failed step: {self.execute_failed}")
            for name in self.failed_tests:
                lines.append(f"  FAILED {name}")
            if self.restore:
                lines.append(f"  {self.restore}")
        return lines
