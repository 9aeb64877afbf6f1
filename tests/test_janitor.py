"""The janitor: databases a step makes for itself (a restore's copy, a rehearsal's scratch copy) are dropped
when the step fails, refused when the name is taken, and named when they cannot be dropped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

import psycopg
import pytest
from psycopg import sql

from tsmigrate.janitor import DatabaseExists, NewDatabase, ScratchDatabase, freeze, thaw
from tsmigrate.rehearsal import claim_scratch_name, drop_stale_scratch_copies, scratch_name


def _databases(server, pattern: str) -> list[str]:
    with psycopg.connect(server.conninfo(), autocommit=True) as admin:
        return [
            r[0]
            for r in admin.execute(
                "SELECT datname FROM pg_database WHERE datname ~ %s ORDER BY 1", (pattern,)
            ).fetchall()
        ]


@pytest.fixture
def connect_admin(local_server):
    return partial(psycopg.connect, local_server.conninfo(), autocommit=True)


def test_new_database_is_made_as_asked_and_dropped_at_the_end(local_server, connect_admin):
    with NewDatabase(connect_admin, "janitor_made", encoding="UTF8", collate="C", ctype="C") as name:
        with psycopg.connect(local_server.conninfo(name)) as conn:
            assert conn.execute(
                "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database "
                "WHERE datname = current_database()"
            ).fetchone() == ("UTF8", "C", "C")
    assert _databases(local_server, "^janitor_made$") == []


def test_new_database_has_the_owner_asked_for(local_server, connect_admin):
    with connect_admin() as admin:
        admin.execute("DROP ROLE IF EXISTS janitor_owner")
        admin.execute("CREATE ROLE janitor_owner")
    try:
        with NewDatabase(connect_admin, "janitor_owned", owner="janitor_owner") as name, connect_admin() as admin:
            assert admin.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (name,)
            ).fetchone() == ("janitor_owner",)
    finally:
        with connect_admin() as admin:
            admin.execute("DROP ROLE janitor_owner")


def test_kept_database_outlives_the_block(local_server, connect_admin):
    with NewDatabase(connect_admin, "janitor_kept", keep=True):
        pass
    try:
        assert _databases(local_server, "^janitor_kept$") == ["janitor_kept"]
    finally:
        with connect_admin() as admin:
            admin.execute("DROP DATABASE janitor_kept")


@pytest.mark.parametrize("keep", [False, True])
def test_a_failed_block_drops_its_database_even_with_a_session_on_it(local_server, connect_admin, keep):
    """keep=True keeps a database only when the block succeeds (a restore's copy that took the name)."""
    with pytest.raises(KeyboardInterrupt), NewDatabase(connect_admin, "janitor_failed", keep=keep) as name:
        session = psycopg.connect(local_server.conninfo(name))
        raise KeyboardInterrupt("SIGTERM")
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")  # the drop ended it
    session.close()
    assert _databases(local_server, "^janitor_failed$") == []


def test_a_database_of_that_name_is_refused_not_dropped(local_server, connect_admin):
    with ScratchDatabase(local_server.conninfo(), "janitor_theirs") as theirs:
        with psycopg.connect(local_server.conninfo(theirs), autocommit=True) as conn:
            conn.execute("CREATE TABLE precious AS SELECT 42 AS answer")
        with pytest.raises(DatabaseExists, match="janitor_theirs exists already; it is not this run's"):
            with NewDatabase(connect_admin, theirs):
                pytest.fail("the block must not run")
        with psycopg.connect(local_server.conninfo(theirs)) as conn:
            assert conn.execute("SELECT answer FROM precious").fetchone() == (42,)


def test_a_drop_that_cannot_happen_names_what_is_left_and_keeps_the_error(local_server):
    """A real fault: the database the janitor connects through stops taking connections inside the block (as
    when the server goes away), so the drop after the failure cannot run."""
    with ScratchDatabase(local_server.conninfo(), "janitor_admin") as admin_db:
        connect_admin = partial(psycopg.connect, local_server.conninfo(admin_db), autocommit=True)
        try:
            with pytest.raises(ValueError, match="the step failed") as failure:
                with NewDatabase(connect_admin, "janitor_orphan"):
                    with psycopg.connect(local_server.conninfo(), autocommit=True) as other:
                        freeze(other, admin_db)
                    raise ValueError("the step failed")
            note = "\n".join(getattr(failure.value, "__notes__", []))
            assert "database janitor_orphan was left behind" in note and 'DROP DATABASE "janitor_orphan"' in note
            assert _databases(local_server, "^janitor_orphan$") == ["janitor_orphan"]
        finally:
            with psycopg.connect(local_server.conninfo(), autocommit=True) as other:
                thaw(other, admin_db)
                other.execute("DROP DATABASE IF EXISTS janitor_orphan")


def test_scratch_copies_killed_rehearsals_left_are_dropped_and_no_others(local_server, connect_admin):
    """A copy whose rehearsal is running (its session holds the copy's lock) stays, however young or old; one
    whose session is gone is dropped at once, so a rerun right after a kill cleans up."""
    now = datetime.now(UTC)
    left = scratch_name("janitor_site", now)
    running = scratch_name("janitor_site", now - timedelta(hours=3))
    other_site = scratch_name("janitor_other", now)
    not_ours = "janitor_site_rehearsal_notes"
    names = [left, running, other_site, not_ours]
    with connect_admin() as admin:
        for name in names:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with connect_admin() as rehearsal_session, connect_admin() as admin:
            claim_scratch_name(rehearsal_session, running)
            assert drop_stale_scratch_copies(admin, "janitor_site") == [left]
        assert _databases(local_server, "^janitor_") == sorted(set(names) - {left})
        with connect_admin() as admin:  # the running rehearsal's session ended without dropping its copy: a kill
            assert drop_stale_scratch_copies(admin, "janitor_site") == [running]
    finally:
        with connect_admin() as admin:
            for name in names:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def test_a_long_target_name_is_cut_not_the_stamp_of_its_scratch_copies():
    long_name = "factory_telemetry_" + "x" * 60
    name = scratch_name(long_name, datetime(2026, 12, 1, 16, 5, 9, tzinfo=UTC))
    assert len(name.encode()) <= 63 and name.endswith("_rehearsal_20261201160509"), name
