"""Pre-flight: logical replication of the tables to convert (publications, logical replication slots)."""

from __future__ import annotations

import pytest

from tsmigrate.preflight import replication

pytestmark = [pytest.mark.order(1), pytest.mark.preflight]


def test_no_publication_or_logical_slot_reads_the_tables_to_convert(readonly_conn, migrations_dir, plan, gate):
    gate(replication.logical_replication(readonly_conn, migrations_dir, plan))
