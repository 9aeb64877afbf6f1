"""The operator's words for what a run concluded: the terminal's closing lines, the report's title, the
banner's headline and what to do next.

One module words the verdict, so the terminal and the HTML banner tell the same story in the same terms
(which verdict it is, RunSummary.verdict() decides). Everything here speaks to the DBA who runs the
migration: tables, files, lines, steps and what to do next, never internals.
"""

from __future__ import annotations

from ..findings import Finding
from ..summary import RunKind, RunSummary, StepStatus, Verdict

KIND_WORDS = {
    "preflight": "pre-flight",
    "execute": "migration",
    "postflight": "post-flight",
    "full": "full migration run",
}


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def run_title(kind: str, target: str) -> str:
    return f"MS5.0 to TimescaleDB: {KIND_WORDS.get(kind, kind or 'run')} on {target or 'no target'}"


def kind_words(kind: str) -> str:
    return KIND_WORDS.get(kind, kind)


def finding_place(f: Finding) -> str:
    """Where a finding points, as the verdict names it: file:line, else the table."""
    return f.location() or f.table or ""


def finding_where(f: Finding) -> str:
    """Where a finding points, in full (the findings table's column): file:line and the table."""
    where = f.location()
    if f.table and f.table not in where:
        where = f"{where} ({f.table})" if where else f.table
    return where


def _unjudged_checks(summary: RunSummary) -> list[str]:
    """Failed pre-flight checks whose failure no finding tells."""
    return [n for n in summary.preflight_failures if n not in summary.judged_checks]


def unexplained_failures(summary: RunSummary) -> list[str]:
    """Failed checks and steps whose failure no finding tells (test ids): the verdict names each. A benchmark
    below its target is told by its own line (below_target_lines)."""
    return _unjudged_checks(summary) + [n for n in summary.data_failures if n not in summary.preflight_failures]


def verdict_words(summary: RunSummary) -> str:
    """The verdict as the last line and the banner say it: BELOW TARGET is the success it is, with its misses."""
    verdict = summary.verdict()
    if verdict != Verdict.BELOW_TARGET:
        return verdict
    done = Verdict.SUCCESS if summary.steps else Verdict.PASSED
    return f"{done}, {_plural(len(summary.below_target), 'benchmark')} below target"


def below_target_lines(summary: RunSummary) -> list[str]:
    """Each benchmark that missed its target, in one line: its figure beside the plan's limit."""
    return [b["problem"].strip().splitlines()[0] for b in summary.below_target]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _bytes(n: float | None) -> str:
    if n is None:
        return "unknown"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def estimate_line(summary: RunSummary) -> str | None:
    """The window the rehearsal estimated, in one sentence (the GO banner and the terminal say it)."""
    e = summary.estimate
    if not e:
        return None
    out = "the fence keeps it out throughout" if e.get("fenced") else "its tables are locked"
    return (
        f"Estimated window: the execute phase about {_duration(e['execute_seconds'])} (backup "
        f"{_duration(e['backup_seconds'])}), the application kept out about {_duration(e['application_out_seconds'])} "
        f"({out}); room needed on the server {_bytes(e.get('disk_bytes'))}, WAL written about "
        f"{_bytes(e.get('wal_bytes'))}. From the rehearsal; stated within {e.get('stated_factor', 3):g}x."
    )


def step_counts(summary: RunSummary) -> tuple[int, int]:
    """(applied, already applied) steps of this run."""
    return (
        sum(1 for s in summary.steps if s["status"] == StepStatus.APPLIED),
        sum(1 for s in summary.steps if s["status"] == StepStatus.ALREADY_APPLIED),
    )


def headline(summary: RunSummary) -> str:
    """One sentence under the verdict: what happened, in the operator's words."""
    verdict = summary.verdict()
    applied, already = step_counts(summary)
    checks = _unjudged_checks(summary)
    if verdict == Verdict.GO:
        n = len(summary.advisories)
        return "Nothing blocks the migration" + (
            f" ({_plural(n, 'advisory', 'advisories')} to read below)." if n else "."
        )
    if verdict == Verdict.NO_GO:
        if summary.stop_reason:
            return f"Do not migrate: the pre-flight could not finish ({summary.stop_reason}). Nothing was changed."
        parts = [_plural(len(summary.blocking), "blocking finding")]
        if checks:
            parts.append(_plural(len(checks), "failed check"))
        return f"Do not migrate yet: {' and '.join(parts)}. Nothing was changed."
    if verdict == Verdict.SUCCESS:
        return (
            f"The migration is done: {_plural(applied, 'step')} applied"
            f"{f', {already} already applied before' if already else ''}; every check passed."
        )
    if verdict == Verdict.PASSED:
        return "Every post-flight check passed: the migrated database is complete and meets its benchmarks."
    if verdict == Verdict.BELOW_TARGET:
        names = ", ".join(b["name"] for b in summary.below_target)
        done = (
            f"The migration is done: {_plural(applied, 'step')} applied"
            f"{f', {already} already applied before' if already else ''}; every check of the data and structure"
            if summary.steps
            else "Every post-flight check of the data and structure"
        )
        return (
            f"{done} passed{' and the policy jobs are scheduled' if summary.policy_schedule else ''}. "
            f"{_plural(len(summary.below_target), 'benchmark')} below the plan's target: {names}."
        )
    if verdict == Verdict.RESTORED:
        return (
            f"{summary.execute_failed} failed; the database was restored, proven identical to the backup "
            "taken before the run, and nothing others wrote or deleted since was undone."
        )
    if verdict == Verdict.STOPPED:
        changed = f" {summary.restore}" if summary.restore else "" if applied else " Nothing was changed."
        return f"The run stopped before its end: {summary.stop_reason}.{changed}"
    if summary.execute_failed:
        return f"{summary.execute_failed} failed and the database is NOT proven to be as it was before the run."
    return f"{_plural(len(summary.failed_tests), 'check')} failed (listed below)."


def next_steps(summary: RunSummary) -> list[str]:
    """What to do now, in order; `commands` in backticks."""
    verdict = summary.verdict()
    backup = summary.backup["path"] if summary.backup else None
    if verdict == Verdict.GO:
        steps = [
            "Run the migration in the maintenance window with the same target: "
            "`pytest suites --dsn ...` (it takes and verifies a backup before its first change)."
        ]
        if summary.advisories:
            steps.append("Read the advisories in the findings table: they do not block, but say what to expect.")
        return steps
    if verdict == Verdict.NO_GO:
        if summary.stop_reason:
            return ["Fix what stopped the pre-flight (above), then run it again: `pytest suites/preflight`."]
        return [
            "Fix each blocking finding where it points (file and line, or table); the fix is written under it.",
            "Run the pre-flight again (`pytest suites/preflight`) until it says GO. Nothing was changed.",
        ]
    if verdict == Verdict.SUCCESS or (verdict == Verdict.BELOW_TARGET and summary.steps):
        steps = ["Start the application and check its dashboards and data entry."]
        kept = [
            step["details"]["online"]["legacy_table"]
            for step in summary.steps or []
            if step.get("status") == StepStatus.APPLIED and (step.get("details") or {}).get("online")
        ]
        for legacy in kept:  # converted online: the legacy table stays beside the hypertable until dropped
            schema, name = legacy.rsplit(".", 1)
            table = name.removesuffix("_legacy")
            steps.append(
                f"{legacy} (the table before its online conversion) is kept: undo the conversion in seconds "
                f"with `python -m tsmigrate.online swap-back {table} --schema {schema} --dsn ...`; once the "
                f"site is content, free its space with `python -m tsmigrate.online drop-legacy {table} "
                f"--schema {schema} --dsn ...`."
            )
        steps += _below_target_steps(summary)
        if backup:
            steps.append(
                f"Keep the backup {backup} until the site has signed off; later runs prune old backups "
                "(keep_days and keep_count in plan.toml)."
            )
        steps.append("Hand this report and its JSON record to whoever signs off the change.")
        return steps
    if verdict == Verdict.PASSED:
        return ["Hand this report and its JSON record to whoever signs off the change."]
    if verdict == Verdict.BELOW_TARGET:
        return [*_below_target_steps(summary), "Hand this report and its JSON record to whoever signs off the change."]
    if verdict == Verdict.RESTORED:
        steps = [
            _cause_step(summary)
            or f"Fix {summary.execute_failed}: its error (file, line, statement) is in the results below; "
            "put the fix in the file only if it was never applied anywhere, else in a new file.",
            "The database is as it was before the run, with what others wrote or deleted since carried over "
            "(as said above): the application may be started again.",
        ]
        if "kept as" in (summary.restore or ""):
            steps.append("The failed database was kept for inspection under the name given above; drop it when done.")
        steps.append("Run the pre-flight, then the migration again.")
        return steps
    if verdict == Verdict.STOPPED:
        if summary.execute_failed and not summary.restore_complete:
            return [
                "Do not start the application before reading the state of the database above: it says what "
                "was applied, whether it was restored, and what to run next."
            ]
        return ["Fix what stopped the run (above), then run it again."]
    if summary.execute_failed:
        steps = ["Do not start the application: the database is not proven to be as it was."]
        if cause_step := _cause_step(summary):
            steps.append(cause_step)
        if backup:
            steps.append(
                f"Restore by hand from {backup} (README: Backups and restore), or fix the failed step and run again."
            )
        return steps
    return ["Read the failed checks in the results below; each says what is wrong and where."]


def _cause_step(summary: RunSummary) -> str | None:
    """What to do when the failure was a server resource running out (not the statement): its fix."""
    cause = summary.cause
    if not cause:
        return None
    return (
        f"{summary.execute_failed} failed for want of a server resource ({cause['kind']}: {cause['what']}): "
        f"{cause['fix']} The statements are not at fault."
    )


def _below_target_steps(summary: RunSummary) -> list[str]:
    """Every check of the data passed; each performance target missed, with its remedy, and how to measure again
    (none when no target was missed)."""
    if not summary.below_target:
        return []
    steps = [
        f"{b['name'].capitalize()} missed the plan's target. {b['remedy'] or 'See its figure beside the limit.'}"
        for b in summary.below_target
    ]
    if summary.policy_schedule:
        steps.append(
            "The compression and retention jobs are scheduled (listed above): a storage figure comes down "
            "as their first runs compress the older chunks."
        )
    steps.append(
        "Measure again with `pytest suites/postflight --dsn ...` (it changes nothing). A changed plan.toml "
        "reaches the database through `pytest suites --dsn ...`: it reruns the conversion of each table whose "
        "plan changed, which replaces its policies. Whoever signs off decides whether the plan or the target "
        "changes."
    )
    return steps


def restored_words(summary: RunSummary) -> str:
    """What a restored database now is: the backup of which time, the steps of this run that went with the
    restore, and what others wrote or deleted since, carried over or not. Never 'N steps applied': none stands."""
    taken = (summary.backup or {}).get("taken_at")
    rolled = summary.rolled_back
    words = f"back to the backup taken {taken or 'before the run'}; " + (
        f"rolled back with it: {', '.join(rolled)}" if rolled else "no step of this run had stood"
    )
    return words + (f"; {summary.carried_over}" if summary.carried_over else "")


def terminal_lines(summary: RunSummary) -> list[str]:
    """The verdict as the run's last lines: the verdict and target first, then what the operator must know."""
    verdict = summary.verdict()
    failed = [f"  FAILED {name}" for name in unexplained_failures(summary)]
    # One line for the jobs the post-flight scheduled (each is in the report and the record): the verdict's lines
    # stay the last ones printed.
    scheduled = (
        [
            f"  scheduled {_plural(len(summary.policy_schedule), 'policy job', 'policy jobs')} the conversion "
            "had paused (their first runs: see the report)"
        ]
        if summary.policy_schedule
        else []
    )
    if verdict in (Verdict.GO, Verdict.NO_GO):
        lines = [f"{verdict}: {summary.target}"]
        if summary.stop_reason:
            lines.append(f"  stopped: {summary.stop_reason}")
        for f in summary.blocking:
            lines.append(f"  BLOCKING {f.code} {finding_place(f)}: {f.text}")
            if f.hint:
                lines.append(f"      fix: {f.hint}")
        lines += failed
        if summary.advisories:
            lines.append(f"  {_plural(len(summary.advisories), 'advisory', 'advisories')} (see the report)")
        estimate = estimate_line(summary) if verdict == Verdict.GO else None
        if estimate:
            lines.append(f"  {estimate}")
        return lines
    below = [f"  BELOW TARGET {line}" for line in below_target_lines(summary)]
    if (
        not summary.steps
        and summary.kind == RunKind.POSTFLIGHT
        and verdict in (Verdict.PASSED, Verdict.FAILED, Verdict.BELOW_TARGET)
    ):
        return [f"{verdict_words(summary)}: {summary.target}: post-flight checks", *failed, *below, *scheduled]
    applied, already = step_counts(summary)
    if summary.restored:
        lines = [f"{verdict_words(summary)}: {summary.target}: {restored_words(summary)}"]
    else:
        lines = [f"{verdict_words(summary)}: {summary.target}: {applied} steps applied, {already} already applied"]
    if verdict == Verdict.STOPPED:
        lines.append(f"  stopped: {summary.stop_reason}")
    if summary.execute_failed:
        lines.append(f"  failed step: {summary.execute_failed}")
    lines += failed + below + scheduled
    if summary.backup and summary.backup.get("pinned"):
        lines.append(f"  backup {summary.backup['path']} is kept until you remove it: {summary.backup['pinned']}")
    if summary.restore:
        lines.append(f"  {summary.restore}")
    return lines
