"""Pre-flight: every privilege the run will use, checked as the role that will run (docs/security.md)."""

from __future__ import annotations

import pytest

from tsmigrate.preflight import privileges

pytestmark = [pytest.mark.order(1), pytest.mark.preflight]


def test_role_may_read_the_settings_the_checks_read(readonly_conn, gate):
    gate(privileges.settings(readonly_conn))


def test_role_may_create_in_the_database(readonly_conn, migrations_dir, plan, gate):
    gate(privileges.database(readonly_conn, privileges.files_to_check(readonly_conn, migrations_dir), plan))


def test_role_may_create_in_the_schemas_the_steps_create_in(readonly_conn, migrations_dir, plan, gate):
    gate(privileges.schemas(readonly_conn, privileges.files_to_check(readonly_conn, migrations_dir), plan))


def test_role_owns_what_the_steps_alter(readonly_conn, migrations_dir, plan, gate):
    gate(privileges.ownership(readonly_conn, privileges.files_to_check(readonly_conn, migrations_dir), plan))


def test_role_may_make_and_swap_the_databases_of_rehearsal_and_restore(readonly_conn, migrations_dir, plan, gate):
    gate(
        privileges.databases(
            readonly_conn,
            privileges.has_pending_steps(readonly_conn, privileges.files_to_check(readonly_conn, migrations_dir), plan),
        )
    )


def test_role_may_end_the_application_sessions_the_fence_ends(readonly_conn, plan, gate):
    gate(privileges.fence_sessions(readonly_conn, plan))


def test_owners_of_planned_tables_may_run_their_policy_jobs(readonly_conn, plan, gate):
    gate(privileges.job_owners(readonly_conn, plan))
