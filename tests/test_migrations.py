"""Migration files: discovery, version order, checksums, statements and their lines."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from tsmigrate.migrations import MigrationFile, discover, split_statements, version_gaps


def write(directory, name, text="SELECT 1;\n"):
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_files_are_ordered_by_number_not_by_text(tmp_path):
    for name in ("10_later.sql", "9_earlier.sql", "100_last.sql", "001_first.sql"):
        write(tmp_path, name)
    files, problems = discover(tmp_path)
    assert [f.label for f in files] == ["001_first.sql", "9_earlier.sql", "10_later.sql", "100_last.sql"]
    assert problems == []


def test_naming_problems_and_duplicate_versions_are_reported(tmp_path):
    write(tmp_path, "001_a.sql")
    write(tmp_path, "001_b.sql")
    write(tmp_path, "add_index.sql")
    _files, problems = discover(tmp_path)
    by_file = {p.path.name: p.problem for p in problems}
    assert "version 001 is also used by 001_a.sql" in by_file["001_b.sql"]
    assert "<version>_<name>.sql" in by_file["add_index.sql"]


def test_gaps_between_versions(tmp_path):
    for name in ("001_a.sql", "002_b.sql", "005_c.sql"):
        write(tmp_path, name)
    files, _ = discover(tmp_path)
    assert version_gaps(files) == [(2, 5)]


def test_checksum_is_sha256_of_the_content_and_changes_with_one_byte(tmp_path):
    path = write(tmp_path, "001_a.sql", "CREATE TABLE t (id int);\n")
    (first,), _ = discover(tmp_path)
    assert first.sha256 == hashlib.sha256(b"CREATE TABLE t (id int);\n").hexdigest()
    path.write_text("CREATE TABLE t (id int); \n")
    (second,), _ = discover(tmp_path)
    assert second.sha256 != first.sha256


def test_no_transaction_marker(tmp_path):
    write(tmp_path, "001_a.sql", "-- tsmigrate:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (c);\n")
    write(tmp_path, "002_b.sql", "-- an ordinary file\nCREATE INDEX i ON t (c);\n")
    files, _ = discover(tmp_path)
    assert [f.transactional for f in files] == [False, True]


def test_statements_carry_the_line_they_start_on():
    text = (
        "-- header\n/* block\n comment */\nCREATE TABLE a (id int);\n\n"
        "DO $$ BEGIN\n  PERFORM 1;\nEND $$;\n-- ünïcødé comment\nSELECT 'ä';\n"
    )
    statements = split_statements(text)
    assert [(s.line, s.sql.split()[0]) for s in statements] == [(4, "CREATE"), (6, "DO"), (10, "SELECT")]
    assert statements[1].sql.endswith("END $$")


def test_unparsable_file_is_one_statement_for_the_server_to_judge():
    statements = split_statements("SELEC 1;\nSELECT 2;\n")
    assert len(statements) == 1 and statements[0].line == 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(["", "-- note", "/* x */", "   "]), max_size=8),
    st.lists(st.integers(min_value=0, max_value=999), min_size=1, max_size=5),
)
def test_prefix_lines_shift_statement_lines(prefix, numbers):
    body = "\n".join(f"SELECT {n};" for n in numbers) + "\n"
    base = [s.line for s in split_statements(body)]
    shifted = [s.line for s in split_statements("\n".join(prefix) + ("\n" if prefix else "") + body)]
    assert shifted == [line + len(prefix) for line in base]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**6), unique=True, min_size=1, max_size=12))
def test_discovery_orders_any_set_of_versions(tmp_path_factory, versions):
    directory = tmp_path_factory.mktemp("m")
    for v in versions:
        write(directory, f"{v:03d}_step.sql")
    files, problems = discover(directory)
    assert [int(f.version) for f in files] == sorted(versions)
    assert problems == []


def test_migration_file_label_and_sort_key(tmp_path):
    f = MigrationFile("007", "plc", tmp_path / "007_plc.sql", "SELECT 1;")
    assert f.label == "007_plc.sql" and f.sort_key == (0, (7,), "plc") and f.step_id == "007"


def test_heartbeat_logs_while_work_runs_and_stops_after(caplog):
    import logging
    import threading
    import time

    from tsmigrate.progress import heartbeat

    log = logging.getLogger("tsmigrate.test")
    with caplog.at_level(logging.INFO, logger="tsmigrate.test"):
        with heartbeat(log, "moving rows", every=0.05, expected_seconds=10):
            deadline = time.monotonic() + 10
            while len(caplog.records) < 2:  # it beats again and again while the work runs
                assert time.monotonic() < deadline, "no second heartbeat within 10 s"
                time.sleep(0.01)
        assert not [t for t in threading.enumerate() if t.name == "heartbeat: moving rows"], "it stops with the work"
    assert caplog.records[0].getMessage().startswith("moving rows: ") and "s left" in caplog.records[0].getMessage()
