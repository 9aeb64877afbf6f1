"""Post-flight integrity: the data as before the run, and every object of the schema usable.

The baseline is the backup taken before the migration (see fixtures/baseline.py); the checks
that need it skip, saying how to give one, when there is none.
"""

from __future__ import annotations

import pytest

from tsmigrate.convert.online import legacy_tables, verify
from tsmigrate.integrity import content, objects, structure
from tsmigrate.plugin import summary_of

pytestmark = [pytest.mark.order(3), pytest.mark.postflight]


@pytest.fixture(scope="module")
def table_differences(request, baseline, target_conn):
    """Every table of the baseline compared with today (over the columns it had before); the
    fingerprints go into the run's summary for the reports."""
    measured = content.fingerprints_as_before(target_conn, baseline.fingerprints, baseline.filled_after)
    summary_of(request.config).record_fingerprints_after({name: fp.to_dict() for name, fp in measured[0].items()})
    return content.content_differences(target_conn, baseline, measured)


def test_every_table_keeps_its_rows(table_differences, baseline, expect_none):
    for grown in (d for d in table_differences if d.kind == "grown"):
        print(grown.message)  # the application's rows written meanwhile: nothing of the backup is lost
    expect_none(
        [d.message for d in table_differences if d.kind in ("missing", "columns", "rows")],
        f"compared with the {baseline.describe()} (find where the rows went: the migration files, the "
        "application writing meanwhile; or restore the backup):",
    )


def test_every_table_keeps_its_content(table_differences, baseline, expect_none):
    """Tables whose row count is the same but whose rows changed (count differences: the test above)."""
    expect_none(
        [d.message for d in table_differences if d.kind == "content"],
        f"compared with the {baseline.describe()} (a migration changed values it should have kept: "
        "find it, or restore the backup):",
    )


def test_no_view_function_or_trigger_missing(readonly_conn, baseline, expect_none):
    if not baseline.has_dump:
        pytest.skip(f"the {baseline.describe()} has no dump to list its views and functions from")
    expect_none(objects.missing_objects(readonly_conn, baseline))


def test_no_constraint_left_not_valid(readonly_conn, expect_none):
    expect_none(structure.constraints_not_valid(readonly_conn))


def test_no_index_left_invalid(readonly_conn, expect_none):
    expect_none(structure.invalid_indexes(readonly_conn))


def test_foreign_keys_hold(readonly_conn, expect_none):
    expect_none(structure.foreign_key_orphans(readonly_conn))


def test_sequences_are_ahead_of_their_columns(readonly_conn, expect_none):
    expect_none(structure.sequences_behind(readonly_conn))


def test_every_view_answers(readonly_conn, expect_none):
    count, problems = objects.broken_views(readonly_conn)
    expect_none(problems, f"{len(problems)} of {count} views do not answer:")


def test_every_function_compiles(target, expect_none):
    # A connection of its own, closed afterwards: a function called may leave session state.
    with target.connect(
        options="-c default_transaction_read_only=on", application_name="tsmigrate post-flight"
    ) as conn:
        count, problems = objects.broken_functions(conn)
    expect_none(problems, f"{len(problems)} of {count} functions do not fit the schema:")


def test_extension_versions_as_expected(readonly_conn, request, expect_none):
    try:
        baseline = request.getfixturevalue("baseline")
    except pytest.skip.Exception:
        baseline = None  # without a baseline: versions only, not the extensions it had
    expect_none(objects.extension_problems(readonly_conn, baseline))


def test_online_conversions_match_their_legacy_tables(readonly_conn, expect_none):
    """A table converted online keeps its legacy table until drop-legacy: row by row, the hypertable holds what the
    legacy table held at the swap (the keys the application changed since then aside). Run here too, so a run
    killed between the swap and its own comparison is still proven."""
    kept = legacy_tables(readonly_conn)
    if not kept:
        pytest.skip("no table was converted online (or its legacy table was dropped already)")
    problems = []
    for schema, table, legacy in kept:
        compared, differing = verify(readonly_conn, schema, table)
        print(f"{schema}.{table}: {compared} rows compared with {schema}.{legacy}, {len(differing)} differ")
        if differing:
            problems.append(
                f"{schema}.{table} differs from its legacy table {schema}.{legacy} for keys "
                f"{', '.join(differing)}: undo with `python -m tsmigrate.online swap-back {table}`"
            )
    expect_none(problems)
