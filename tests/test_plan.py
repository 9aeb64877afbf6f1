"""Plan parsing and validation: every bad plan is refused with file, key and problem."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsmigrate.plan import PlanError, load_plan, parse_interval, parse_plan

PROJECT = Path(__file__).resolve().parents[1]


def minimal(**table) -> dict:
    spec = {"time_column": "ts", "chunk_interval": "1 hour", **table}
    return {"hypertables": {"metric_hist": spec}}


def test_ms5_plan_matches_the_schema_facts():
    plan = load_plan(PROJECT / "migrations")
    by_table = {h.table: h for h in plan.hypertables}
    assert set(by_table) == {
        "metric_hist",
        "oee_calculations",
        "energy_consumption",
        "production_kpis",
        "production_context_history",
    }
    mh = by_table["metric_hist"]
    assert (mh.time_column, str(mh.chunk_interval), mh.compress_segment_by) == ("ts", "1 hour", ("metric_def_id",))
    assert (str(mh.compress_after), str(mh.drop_after)) == ("7 days", "90 days")
    assert by_table["oee_calculations"].compress_segment_by == ("line_id", "equipment_code")
    assert str(by_table["energy_consumption"].compress_after) == "14 days"
    assert str(by_table["production_context_history"].drop_after) == "730 days"
    # Nullable time columns in production need a stated rule, never a silent drop.
    assert by_table["production_kpis"].null_time.kind != "refuse"
    assert plan.benchmarks.min_insert_rows_per_second == 1000
    assert plan.benchmarks.min_compression_percent == 70
    assert plan.backup.keep_days == 7


def test_no_plan_file_means_none(tmp_path):
    assert load_plan(tmp_path) is None


@pytest.mark.parametrize(
    "data, key, words",
    [
        (minimal(chunk_interval="soon"), "hypertables.metric_hist.chunk_interval", "not a positive interval"),
        (minimal(chunk_interval="0 days"), "hypertables.metric_hist.chunk_interval", "not a positive interval"),
        (
            {"hypertables": {"metric_hist": {"chunk_interval": "1 day"}}},
            "hypertables.metric_hist.time_column",
            "missing",
        ),
        (minimal(time_column="ts; drop table x"), "hypertables.metric_hist.time_column", "not a plain SQL identifier"),
        (minimal(compress_segment_by=["ts"]), "hypertables.metric_hist.compress_segment_by", "cannot be a segment-by"),
        (minimal(compress_order_by=["ts sideways"]), "hypertables.metric_hist.compress_order_by", "column [ASC|DESC]"),
        (
            minimal(compress_after="30 days", drop_after="7 days"),
            "hypertables.metric_hist.drop_after",
            "must be longer",
        ),
        (minimal(null_time="guess"), "hypertables.metric_hist.null_time", "unknown rule"),
        (minimal(null_time="from_column:"), "hypertables.metric_hist.null_time", "needs an argument"),
        (
            minimal(null_time="constant:yesterday"),
            "hypertables.metric_hist.null_time",
            "needs a timestamp with its UTC offset",
        ),
        (minimal(null_time="constant:2020-01-01 00:00"), "hypertables.metric_hist.null_time", "with its UTC offset"),
        (minimal(colour="red"), "hypertables.metric_hist.colour", "unknown key"),
        ({"benchmarks": {"min_compression_percent": 170}}, "benchmarks.min_compression_percent", "cannot exceed 100"),
        ({"benchmarks": {"max_dashboard_query_ms": "fast"}}, "benchmarks.max_dashboard_query_ms", "expected a number"),
        ({"plan": {"allow_apache_edition": "yes"}}, "plan.allow_apache_edition", "true or false"),
        ({"plan": {"jobs": 0}}, "plan.jobs", "at least 1"),
        ({"plan": {"jobs": "many"}}, "plan.jobs", "whole number of connections"),
        ({"hypertable": {}}, "hypertable", "unknown key"),
        ({"plan": {"sample_seconds": 0}}, "plan.sample_seconds", "expected a number >= 0.1"),
        ({"plan": {"replica_lag_warn_mb": -5}}, "plan.replica_lag_warn_mb", "expected a number >= 0"),
    ],
)
def test_invalid_plans_name_key_and_problem(tmp_path, data, key, words):
    with pytest.raises(PlanError) as raised:
        parse_plan(data, tmp_path / "plan.toml")
    assert raised.value.key == key
    assert words in raised.value.problem
    assert str(tmp_path / "plan.toml") in str(raised.value)


def test_jobs_default_to_the_server_and_a_plan_can_set_them(tmp_path):
    assert parse_plan(minimal(), tmp_path / "plan.toml").jobs is None  # the server's cores (convert/connections.py)
    assert parse_plan({**minimal(), "plan": {"jobs": 3}}, tmp_path / "plan.toml").jobs == 3


def test_toml_syntax_error_names_file_and_line(tmp_path):
    (tmp_path / "plan.toml").write_text('[plan]\nschema = "x"\n\n[hypertables.t\n')
    with pytest.raises(PlanError) as raised:
        load_plan(tmp_path)
    assert "plan.toml" in str(raised.value) and "line 4" in str(raised.value)


UNITS = ["second", "minute", "hour", "day", "week", "month", "year"]


@given(st.integers(min_value=1, max_value=10_000), st.sampled_from(UNITS), st.booleans(), st.booleans())
def test_interval_round_trip(count, unit, plural, upper):
    text = f"{count} {unit}{'s' if plural else ''}"
    text = text.upper() if upper else text
    interval = parse_interval(text, "plan.toml", "k")
    assert interval.text == text
    assert interval.seconds > 0
    assert parse_interval(f"{count + 1} {unit}", "p", "k").seconds > interval.seconds


@given(st.text(max_size=30))
def test_arbitrary_interval_text_is_accepted_or_refused_cleanly(text):
    try:
        interval = parse_interval(text, "plan.toml", "k")
    except PlanError as exc:
        assert exc.key == "k"
    else:
        assert interval.seconds > 0


identifiers = st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True)


@given(
    st.dictionaries(
        identifiers, st.tuples(identifiers, st.sampled_from(["1 hour", "1 day", "7 days"])), min_size=1, max_size=5
    )
)
def test_generated_plans_round_trip_through_toml(tables):
    lines = []
    for table, (column, interval) in tables.items():
        lines += [f"[hypertables.{table}]", f'time_column = "{column}"', f'chunk_interval = "{interval}"', ""]
    plan = parse_plan(tomllib.loads("\n".join(lines)))
    assert {h.table: (h.time_column, str(h.chunk_interval)) for h in plan.hypertables} == tables


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=10,
    )
)
def test_arbitrary_hypertable_specs_never_crash(spec):
    try:
        parse_plan({"hypertables": {"metric_hist": spec}})
    except PlanError as exc:
        assert exc.key.startswith("hypertables.metric_hist")


def test_compression_order_items_are_parsed_once_with_postgresqls_defaults():
    from tsmigrate.plan import OrderItem

    assert OrderItem.parse("ts DESC") == OrderItem("ts", False, True)
    assert OrderItem.parse("ts") == OrderItem("ts", True, False)
    assert OrderItem.parse(" ts  asc  nulls first ") == OrderItem("ts", True, True)
    assert OrderItem.parse("ts DESC NULLS LAST").as_sql() == '"ts" DESC NULLS LAST'
    assert OrderItem.parse("User").as_sql() == '"User" ASC NULLS LAST'
    assert OrderItem.parse("ts; DROP TABLE x") is None and OrderItem.parse("ts DESC, id") is None
    plan = parse_plan(
        {
            "hypertables": {
                "m": {
                    "time_column": "ts",
                    "chunk_interval": "1 day",
                    "compress_order_by": ["ts DESC", "id NULLS FIRST"],
                }
            }
        }
    )
    assert plan.hypertables[0].order_items == (OrderItem("ts", False, True), OrderItem("id", True, True))


def test_every_problem_of_a_plan_is_told_at_once_with_its_line(tmp_path):
    (tmp_path / "plan.toml").write_text(
        "[plan]\n"
        'colour = "blue"\n'  # line 2: unknown key
        "\n"
        "[hypertables.metric_hist]\n"
        'time_column = "ts"\n'
        'chunk_interval = "often"\n'  # line 6: not an interval
        'compress_after = "7 days"\n'
        'drop_after = "1 day"\n'  # line 8: shorter than compress_after
        "\n"
        "[hypertables.oee_calculations]\n"  # line 10: time_column missing
        'chunk_interval = "1 day"\n'
        "shade = 3\n"  # line 12: unknown key
        "\n"
        "[benchmarks]\n"
        "min_compression_percent = 120\n"
    )  # line 15: over 100
    with pytest.raises(PlanError) as raised:
        load_plan(tmp_path)
    told = {(p.key, p.line) for p in raised.value.problems}
    assert told == {
        ("plan.colour", 2),
        ("hypertables.metric_hist.chunk_interval", 6),
        ("hypertables.metric_hist.drop_after", 8),
        ("hypertables.oee_calculations.time_column", 10),
        ("hypertables.oee_calculations.shade", 12),
        ("benchmarks.min_compression_percent", 15),
    }, told
    text = str(raised.value)
    assert (
        text.startswith("6 problems:")
        and f"{tmp_path / 'plan.toml'}:6: [hypertables.metric_hist.chunk_interval]" in text
    )
    assert all(p.path == str(tmp_path / "plan.toml") and p.problem for p in raised.value.problems)


def test_a_plan_with_one_problem_reads_as_before(tmp_path):
    (tmp_path / "plan.toml").write_text('[hypertables.metric_hist]\ntime_column = "ts"\nchunk_interval = "often"\n')
    with pytest.raises(PlanError) as raised:
        load_plan(tmp_path)
    assert str(raised.value).startswith(f"{tmp_path / 'plan.toml'}:3: [hypertables.metric_hist.chunk_interval] ")
    assert (raised.value.key, raised.value.problems[0].line) == ("hypertables.metric_hist.chunk_interval", 3)
