"""The plugin's options: the same setting through the command line and through pytest.ini."""

from __future__ import annotations

import pytest

PROBE = """
import json
from tsmigrate.plugin import options_of

def test_options(request):
    o = options_of(request.config)
    print("OPTIONS", json.dumps({"dsn": o.dsn, "server": o.server, "demo_scale": o.demo_scale,
        "migrations": str(o.migrations), "restore": o.restore, "keep_failed": o.keep_failed,
        "rehearse": o.rehearse, "ready_timeout": o.ready_timeout}))
"""


def options_from(pytester: pytest.Pytester, *args: str) -> dict:
    import json

    pytester.makeconftest("pytest_plugins = ('tsmigrate.plugin',)")
    pytester.makepyfile(test_probe=PROBE)
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=1)
    line = next(out for out in result.outlines if "OPTIONS " in out)
    return json.loads(line.split("OPTIONS ", 1)[1].rstrip("."))


def test_defaults(pytester):
    o = options_from(pytester)
    assert o["dsn"] is None and o["server"] == "auto" and o["demo_scale"] == "demo"
    assert o["restore"] and o["keep_failed"] and o["rehearse"] and o["ready_timeout"] == 60.0
    assert o["migrations"] == str(pytester.path / "migrations")


def test_command_line(pytester):
    o = options_from(
        pytester,
        "--dsn",
        "host=db dbname=x",
        "--server",
        "local",
        "--demo-scale",
        "tiny",
        "--no-restore",
        "--drop-failed",
        "--no-rehearse",
        "--ready-timeout",
        "5",
        "--migrations",
        "elsewhere",
    )
    assert o == {
        "dsn": "host=db dbname=x",
        "server": "local",
        "demo_scale": "tiny",
        "migrations": str(pytester.path / "elsewhere"),
        "restore": False,
        "keep_failed": False,
        "rehearse": False,
        "ready_timeout": 5.0,
    }


def test_ini_file(pytester):
    pytester.makeini("""
        [pytest]
        dsn = host=db dbname=x
        server = local
        demo_scale = tiny
        no_restore = true
        drop_failed = true
        no_rehearse = true
        ready_timeout = 5
        migrations = elsewhere
    """)
    o = options_from(pytester)
    assert o == {
        "dsn": "host=db dbname=x",
        "server": "local",
        "demo_scale": "tiny",
        "migrations": str(pytester.path / "elsewhere"),
        "restore": False,
        "keep_failed": False,
        "rehearse": False,
        "ready_timeout": 5.0,
    }


def test_command_line_wins_over_ini(pytester):
    pytester.makeini("[pytest]\nserver = docker\n")
    assert options_from(pytester, "--server", "local")["server"] == "local"


def test_bad_timeout_is_a_usage_error(pytester):
    pytester.makeconftest("pytest_plugins = ('tsmigrate.plugin',)")
    pytester.makepyfile(test_probe="def test_x(): pass")
    result = pytester.runpytest_subprocess("--ready-timeout", "soon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--ready-timeout must be a number of seconds*"])


@pytest.mark.parametrize("option", ["--write-sample=abc", "--server-free-disk=-3"])
def test_a_bad_option_of_the_suites_is_one_error_line_without_a_traceback(run_suite, option):
    """The suites' own wiring (reports, redaction) must not turn a refused option into a traceback."""
    result = run_suite("suites/preflight", "--dsn", "postgresql://nobody@127.0.0.1:1/factory_telemetry", option)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stderr[-2000:]
    assert f"ERROR: --{option[2:].split('=')[0]} must be a number" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-2000:]


def test_the_plan_is_read_once_per_session(pytester):
    """Every part of a run sees the plan the session started with: an edit during the run changes nothing
    (the verdict's inputs, which hash the file, are what notices it)."""
    pytester.makeconftest("pytest_plugins = ('tsmigrate.plugin',)")
    plan_file = pytester.path / "migrations" / "plan.toml"
    plan_file.parent.mkdir()
    plan_file.write_text('[plan]\nschema = "first"\n')
    config = pytester.parseconfigure("--migrations", str(plan_file.parent))
    from tsmigrate.plugin import plan_of

    first = plan_of(config)
    plan_file.write_text('[plan]\nschema = "edited"\n')
    assert plan_of(config) is first and first.schema == "first"


def test_an_invalid_plan_is_the_same_error_each_time_it_is_asked_for(pytester):
    from tsmigrate.plan import PlanError
    from tsmigrate.plugin import plan_of

    pytester.makeconftest("pytest_plugins = ('tsmigrate.plugin',)")
    (pytester.path / "migrations").mkdir()
    (pytester.path / "migrations" / "plan.toml").write_text("[plan\n")
    config = pytester.parseconfigure("--migrations", str(pytester.path / "migrations"))
    with pytest.raises(PlanError) as first:
        plan_of(config)
    (pytester.path / "migrations" / "plan.toml").write_text('[plan]\nschema = "fixed"\n')
    with pytest.raises(PlanError) as again:
        plan_of(config)
    assert again.value is first.value
