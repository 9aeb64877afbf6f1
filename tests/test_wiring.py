"""The pytest wiring, one concern per module (issue 21): read from the source with ast, so a hook or a write to
the run's summary that strays from its module fails here, naming where it is."""

from __future__ import annotations

import ast
import dataclasses
from collections import defaultdict
from pathlib import Path

import pytest

from tsmigrate.summary import Phase, RunKind, RunSummary, StepStatus, Verdict

PROJECT = Path(__file__).resolve().parent.parent
# What an operator's run loads: the plugin, the root conftest and the fixture modules.
OPERATOR_WIRING = [
    PROJECT / "tsmigrate" / "plugin.py",
    PROJECT / "conftest.py",
    *sorted((PROJECT / "fixtures").glob("*.py")),
]
# The hooks that ran in several modules, their order kept by comments: now each with its concern.
HOOK_HOMES = {
    "pytest_collection_modifyitems": {"fixtures/gate.py"},
    "pytest_runtest_makereport": {"fixtures/gate.py", "fixtures/run.py", "fixtures/reporting.py"},
    "pytest_sessionfinish": {"fixtures/gate.py", "fixtures/reporting.py"},
    "pytest_runtest_setup": {"fixtures/gate.py", "fixtures/reporting.py"},
    "pytest_runtest_teardown": set(),  # the execute phase ends with its fixture's scope (fixtures/run.py)
}
ORDERING = {"tryfirst", "trylast", "wrapper", "hookwrapper"}


def _rel(path: Path, root: Path = PROJECT) -> str:
    return path.relative_to(root).as_posix()


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _hooks(path: Path) -> dict[str, list[ast.FunctionDef]]:
    """pytest_* functions of a module, at its top level or in a class (a plugin object)."""
    found: dict[str, list[ast.FunctionDef]] = defaultdict(list)
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.FunctionDef) and node.name.startswith("pytest_"):
            found[node.name].append(node)
    return found


def _hookimpl_options(func: ast.FunctionDef) -> set[str]:
    options: set[str] = set()
    for decorator in func.decorator_list:
        if isinstance(decorator, ast.Call) and ast.unparse(decorator.func) == "pytest.hookimpl":
            options |= {k.arg for k in decorator.keywords if k.arg and ast.unparse(k.value) == "True"}
    return options


def test_each_of_the_spread_hooks_lives_with_its_concern():
    homes: dict[str, set[str]] = defaultdict(set)
    for path in OPERATOR_WIRING:
        for name in _hooks(path):
            homes[name].add(_rel(path))
    misplaced = {name: sorted(homes[name]) for name, allowed in HOOK_HOMES.items() if homes[name] != allowed}
    assert not misplaced, f"hooks outside their module (expected {HOOK_HOMES}): {misplaced}"


def test_a_hook_that_several_modules_implement_says_its_order_with_pytest_means():
    """tryfirst, trylast or a wrapper on every one of them (or none but one plain impl), not a comment."""
    unordered = []
    for name in HOOK_HOMES:
        impls = [(path, f) for path in OPERATOR_WIRING for f in _hooks(path).get(name, [])]
        plain = [f"{_rel(path)}:{f.lineno}" for path, f in impls if not _hookimpl_options(f) & ORDERING]
        if len(impls) > 1 and len(plain) > 1:
            unordered.append((name, plain))
    assert not unordered, f"several plain impls of one hook, their order left to registration: {unordered}"


def test_no_module_implements_a_hook_twice():
    twice = [
        (_rel(path), name, [f.lineno for f in funcs])
        for path in OPERATOR_WIRING
        for name, funcs in _hooks(path).items()
        if len(funcs) > 1
    ]
    assert not twice, twice


def _writes_to_summary_fields(path: Path, root: Path = PROJECT) -> list[str]:
    """Assignments to, or mutating calls on, a RunSummary field outside summary.py: `x.field = ...`,
    `x.field += ...`, `x.field[...] = ...`, `x.field.append(...)` and the like, for any x."""
    fields = {f.name for f in dataclasses.fields(RunSummary)}
    mutators = {"append", "extend", "add", "update", "insert", "remove", "pop", "clear", "setdefault", "discard"}
    found = []

    def field_of(node: ast.AST) -> str | None:
        while isinstance(node, ast.Subscript):
            node = node.value
        return node.attr if isinstance(node, ast.Attribute) and node.attr in fields else None

    for node in ast.walk(_tree(path)):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in mutators:
            targets = [node.func.value]
        for target in targets:
            for part in target.elts if isinstance(target, ast.Tuple) else [target]:
                name = field_of(part)
                # `self.summary.x` / `summary.x` / `summary_of(config).x`: a summary, by how the code names it
                if name and "summary" in ast.unparse(part).split(f".{name}")[0]:
                    found.append(f"{_rel(path, root)}:{node.lineno}: {ast.unparse(part)}")
    return found


def test_the_run_summary_is_changed_only_through_its_own_methods():
    """RunSummary's fields are assigned only inside tsmigrate/summary.py (an ast scan of the package, the
    fixtures, the suites, the tools and the root conftest)."""
    files = [
        path
        for folder in ("tsmigrate", "fixtures", "suites", "tsmigrate_tools")
        for path in sorted((PROJECT / folder).rglob("*.py"))
        if path != PROJECT / "tsmigrate" / "summary.py"
    ] + [PROJECT / "conftest.py"]
    writes = [w for path in files for w in _writes_to_summary_fields(path)]
    assert not writes, "the run's summary written outside its methods:\n" + "\n".join(writes)


def test_the_scan_sees_a_write_to_the_summary(tmp_path):
    """The scan above can fail: a suite file that writes a field is caught."""
    suite = tmp_path / "test_writes.py"
    suite.write_text(
        "def test_x(request):\n"
        "    summary = summary_of(request.config)\n"
        "    summary.policy_schedule = []\n"
        "    summary_of(request.config).benchmarks.append({})\n"
        "    summary.fingerprints_after['t'] = {}\n"
    )
    writes = _writes_to_summary_fields(suite, root=tmp_path)
    assert sorted(w.split(": ", 1)[1] for w in writes) == sorted(
        ["summary.policy_schedule", "summary_of(request.config).benchmarks", "summary.fingerprints_after['t']"]
    ), writes


def test_no_suite_file_reaches_into_the_summary():
    """No suites/ file writes the summary: it calls the summary's methods (record_*), if anything."""
    writes = [w for path in sorted((PROJECT / "suites").rglob("*.py")) for w in _writes_to_summary_fields(path)]
    assert not writes, writes


def test_the_execute_phase_ends_from_one_place():
    """end_run is called by the run's finalizer only (fixtures/run.py): no hook or other fixture ends the run."""
    calls = [
        f"{_rel(path)}:{node.lineno}"
        for folder in ("fixtures", "tsmigrate", "suites")
        for path in sorted((PROJECT / folder).rglob("*.py"))
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("end_run", "run.end_run")
    ]
    assert len(calls) == 1 and calls[0].startswith("fixtures/run.py:"), calls


def test_dead_names_are_gone():
    text = "\n".join(p.read_text(encoding="utf-8") for p in OPERATOR_WIRING)
    for name in ("PHASE_REPORTS_KEY", "item_failed", "def _plan(", "SUITES ="):
        assert name not in text, name


def test_an_operator_run_loads_no_test_only_plugin_nor_the_testbed():
    """pytester and tests/testbed are the project's tests' own: the root conftest and the fixture modules name
    neither (tests/conftest.py does)."""
    root = _tree(PROJECT / "conftest.py")
    plugins = next(
        ast.literal_eval(node.value)
        for node in root.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "pytest_plugins" for t in node.targets)
    )
    assert "pytester" not in plugins and all(p.startswith(("tsmigrate.", "fixtures.")) for p in plugins), plugins
    testbed_fixtures = {
        node.name
        for path in (PROJECT / "tests" / "testbed").glob("*.py")
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.FunctionDef)
    }
    for path in OPERATOR_WIRING:
        text = path.read_text(encoding="utf-8")
        named = {n for n in testbed_fixtures if f'"{n}"' in text or f"'{n}'" in text} - {"_server"}
        assert "testbed." not in text and not named, (_rel(path), named)


@pytest.mark.parametrize(
    "phases, kind",
    [
        (set(), RunKind.NONE),
        ({"preflight"}, RunKind.PREFLIGHT),
        ({"preflight", "execute"}, RunKind.PREFLIGHT_EXECUTE),
        ({"execute", "postflight"}, RunKind.EXECUTE_POSTFLIGHT),
        (set(Phase), RunKind.FULL),
    ],
)
def test_run_kinds_are_an_enum_that_keeps_the_record_s_words(phases, kind):
    assert RunKind.of(phases) is kind
    assert all(kind.holds(p) == (p in phases) for p in Phase)
    summary = RunSummary(kind=kind.value)  # a record's word makes the same kind
    assert summary.kind is kind and summary.holds(Phase.EXECUTE) == ("execute" in phases)


def test_statuses_and_verdicts_are_str_enums_with_the_record_s_words():
    assert [s.value for s in StepStatus] == ["applied", "already applied", "failed", "skipped"]
    assert StepStatus.ALREADY_APPLIED == "already applied" and f"{Verdict.NO_GO}" == "NO-GO"
    assert RunSummary(kind="preflight").verdict() == "GO"
