"""The CI workflow files (.github/workflows): actionlint passes them, and they run what the code pins."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from fixtures.servers import TEST_DSN_ENV
from tsmigrate.servers.docker import TIMESCALEDB_IMAGE

PROJECT = Path(__file__).resolve().parents[1]
WORKFLOWS = PROJECT / ".github" / "workflows"
PG_MAJOR = re.fullmatch(r"timescale/timescaledb:[\d.]+-pg(\d+)", TIMESCALEDB_IMAGE).group(1)


def installed(name: str) -> str:
    """A program of the test dependencies (pyproject's `test` extra): beside this Python, else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        pytest.fail(
            f"{name} is not installed: `make setup` installs the test dependencies (pip install -e '.[test]')",
            pytrace=False,
        )
    return found


def actionlint(*files: Path) -> subprocess.CompletedProcess:
    # shellcheck named explicitly, so that the run: scripts are checked wherever the tests run.
    return subprocess.run(
        [installed("actionlint"), "-no-color", f"-shellcheck={installed('shellcheck')}", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def only_job(flow: dict) -> dict:
    (job,) = flow["jobs"].values()
    return job


def test_the_workflow_files_pass_actionlint():
    files = sorted(WORKFLOWS.glob("*.y*ml"))
    assert {f.name for f in files} >= {"tests.yml", "migration-gate.yml"}
    result = actionlint(*files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_fails_a_broken_workflow_and_says_where(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(
        textwrap.dedent("""\
        name: broken
        on: pull_request
        jobs:
          gate:
            run-on: ubuntu-24.04
            steps:
              - run: echo ${{ github.evnt_name }}
              - run: |
                  files=$(ls reports)
                  rm $files
    """)
    )
    result = actionlint(broken)
    assert result.returncode == 1, result.stdout + result.stderr
    found = {
        (int(line), rule)
        for line, rule in re.findall(r"broken\.yml:(\d+):\d+: .*\[([\w-]+)\]$", result.stdout, re.MULTILINE)
    }
    assert {(4, "syntax-check"), (5, "syntax-check"), (7, "expression"), (10, "shellcheck")} <= found, result.stdout


@pytest.mark.parametrize("name", ["tests.yml", "migration-gate.yml"])
def test_each_workflow_runs_the_image_and_client_programs_the_code_pins(name):
    job = only_job(workflow(name))
    images = [service["image"] for service in job.get("services", {}).values()]
    assert images == [TIMESCALEDB_IMAGE], (
        f"{name} runs {images}; the code pins {TIMESCALEDB_IMAGE} (tsmigrate/servers/docker.py): change both together"
    )
    scripts = "\n".join(step.get("run", "") for step in job["steps"])
    assert f"postgresql-client-{PG_MAJOR}" in scripts.split(), f"{name} must install the server's client programs"
    assert job["env"]["TSMIGRATE_PG_BINDIR"] == f"/usr/lib/postgresql/{PG_MAJOR}/bin"


def test_the_tests_workflow_gives_the_tests_its_service_container():
    job = only_job(workflow("tests.yml"))
    (service,) = job["services"].values()
    dsn = conninfo_to_dict(job["env"][TEST_DSN_ENV])
    assert (dsn["host"], dsn["user"], dsn["password"]) == ("localhost", "postgres", service["env"]["POSTGRES_PASSWORD"])
    assert f"{dsn['port']}:5432" in service["ports"]
    assert any(re.fullmatch(r"python -m pytest tests\b.*", step.get("run", "")) for step in job["steps"])


def test_the_gate_runs_on_migration_changes_and_stops_at_a_no_go():
    flow = workflow("migration-gate.yml")
    triggers = flow[True]  # YAML 1.1 reads the key `on` as true
    assert triggers["pull_request"]["paths"] == ["migrations/**"]
    runs = [step.get("run", "") for step in only_job(flow)["steps"]]
    preflight = runs.index('python -m pytest suites/preflight --dsn "$MS5_DSN" --server-free-disk "$RUNNER_FREE_GIB"')
    assert runs.index('python -m pytest suites --dsn "$MS5_DSN" --server-free-disk "$RUNNER_FREE_GIB"') > preflight
    assert any(run.startswith('echo "RUNNER_FREE_GIB=') for run in runs[:preflight])


def makefile_lint_commands() -> list[str]:
    """The commands of the Makefile's `lint` target, as a shell on PATH would run them."""
    makefile = (PROJECT / "Makefile").read_text()
    linted = re.search(r"^LINTED := (.+)$", makefile, re.MULTILINE).group(1)
    recipe = re.search(r"^lint: .*\n((?:\t.*\n)+)", makefile, re.MULTILINE).group(1)
    return [
        line.strip().removeprefix("@").replace("$(VENV)/bin/", "").replace("$(LINTED)", linted)
        for line in recipe.splitlines()
    ]


def test_make_test_runs_the_lint_and_the_tests_workflow_runs_the_same_before_the_tests():
    """`make test` runs `make lint` (ruff and mypy) first; the workflow runs pytest itself, so it runs the lint's
    commands itself too, before the tests."""
    makefile = (PROJECT / "Makefile").read_text()
    assert re.search(r"^test: .*\blint\b", makefile, re.MULTILINE), "make test must run the lint"
    commands = makefile_lint_commands()
    assert [c.split()[:2] for c in commands] == [["ruff", "check"], ["ruff", "format"], ["mypy"]]
    runs = [step.get("run", "") for step in only_job(workflow("tests.yml"))["steps"]]
    lint_step = next(i for i, run in enumerate(runs) if "ruff check" in run)
    tests_step = next(i for i, run in enumerate(runs) if re.fullmatch(r"python -m pytest tests\b.*", run))
    assert runs[lint_step].split("\n")[:-1] == commands and lint_step < tests_step
