"""Pre-flight: the migration files (names, order, checksums against the ledger) and their lint."""

from __future__ import annotations

import pytest

from tsmigrate.preflight import files, hazards

pytestmark = [pytest.mark.order(1), pytest.mark.preflight]


def test_files_named_ordered_and_unchanged_since_applied(readonly_conn, migrations_dir, run_options, gate):
    gate(files.migration_files(readonly_conn, migrations_dir, resolve_interrupted=run_options.resolve_interrupted))


def test_lint_pending_files(readonly_conn, migrations_dir, plan, gate):
    gate(files.lint(readonly_conn, migrations_dir, plan))


def test_tables_to_convert_are_ready(readonly_conn, migrations_dir, plan, gate):
    gate(hazards.target_hazards(readonly_conn, migrations_dir, plan))
