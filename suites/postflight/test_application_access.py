"""Post-flight: the application role (plan.toml [plan] application_roles; MS5.0:
ms5_user_production) reads and writes the converted tables as before. Writes are rolled back."""

from __future__ import annotations

import pytest

from tsmigrate import access

pytestmark = [pytest.mark.order(3), pytest.mark.postflight]


@pytest.fixture
def existing_role(app_role, target_conn):
    if not access.role_exists(target_conn, app_role):
        pytest.fail(
            f"role {app_role}, named in plan.toml [plan] application_roles, does not exist on this server: "
            "create it (the migration that creates the roles) or fix the plan",
            pytrace=False,
        )
    return app_role


def test_application_role_reads_and_writes_converted_tables(existing_role, target_conn, plan, expect_none):
    if not access.can_act_as(target_conn, existing_role):
        # Not allowed to SET ROLE: ask PostgreSQL what the role may do instead of doing it.
        print(
            f"this session may not act as {existing_role}: its privileges are checked, not exercised "
            "(run the post-flight as a superuser or a member of the role to exercise them)"
        )
        expect_none(
            [
                p
                for h in plan.hypertables
                for p in access.table_privilege_problems(target_conn, existing_role, plan.schema, h.table)
            ]
        )
        return
    problems = []
    for h in plan.hypertables:
        outcome = access.exercise_table(target_conn, existing_role, plan.schema, h.table, h.time_column)
        problems += outcome.problems
        print(
            f"{outcome.table}: {existing_role} did {', '.join(outcome.done)} (rolled back)", *outcome.notes, sep="\n  "
        )
    expect_none(problems)


def test_application_role_keeps_its_privileges(existing_role, readonly_conn, baseline, expect_none):
    if not baseline.has_dump:
        pytest.skip(f"the {baseline.describe()} has no dump to read its grants from")
    grants = baseline.grants(existing_role)
    if not grants:
        pytest.skip(f"the {baseline.describe()} grants nothing to {existing_role}: nothing to compare")
    _checked, problems = access.lost_privileges(readonly_conn, existing_role, grants)
    expect_none(problems, f"compared with the grants in the {baseline.describe()}:")
