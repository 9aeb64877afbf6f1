"""The online conversion on a real server, while an application inserts, updates and deletes rows.

Every test builds a legacy-shaped table (bigserial key without the time column, a foreign key, a generated
column, NULL time values, a secondary index, grants down to a column, comments, row security, a trigger, a
view on a view, a materialized view with an index), converts it with :func:`convert_online` while threads
write to it through their own sessions, and checks the database: the rows (against what the threads
committed and a copy taken before), and everything the application sees moving with the table's name.
Faults are real: the run's sessions are ended by ``pg_terminate_backend`` at a chosen phase.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
import uuid

import psycopg
import pytest
from psycopg import sql

from tsmigrate.backup import take_backup
from tsmigrate.baseline import Baseline
from tsmigrate.convert import ConversionError
from tsmigrate.convert.online import chooses_online, conversion_state, convert_online, drop_legacy, swap_back, verify
from tsmigrate.convert.online import swap as swap_module
from tsmigrate.convert.online.capture import catch_up_round
from tsmigrate.convert.online.state import Names
from tsmigrate.db import insertable_columns, is_hypertable
from tsmigrate.fingerprint import user_tables
from tsmigrate.integrity.objects import missing_objects
from tsmigrate.janitor import ScratchDatabase
from tsmigrate.plan import parse_plan
from tsmigrate.target import Target

ROWS = 40_000
FILL = "2026-01-01 00:00+00"  # the plan's constant for the rows without a time value


def plan_entry(**spec):
    return parse_plan(
        {
            "hypertables": {
                "readings": {
                    "time_column": "ts",
                    "chunk_interval": "1 day",
                    "keep_unique": ["id"],
                    "null_time": f"constant:{FILL}",
                    **spec,
                }
            }
        }
    ).hypertables[0]


@pytest.fixture
def reader_role(local_server):
    name = f"online_reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(local_server.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))
    yield name
    with psycopg.connect(local_server.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.fixture
def subject(local_server, reader_role):
    """(conninfo, autocommit connection) of a database with the legacy-shaped table ``readings``."""
    with ScratchDatabase(local_server.conninfo(), f"online_{uuid.uuid4().hex[:8]}") as name:
        conninfo = local_server.conninfo(name)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION timescaledb")
            conn.execute(
                sql.SQL("""
                CREATE TABLE devices (id int PRIMARY KEY);
                INSERT INTO devices SELECT generate_series(1, 20);
                CREATE TABLE readings (
                    id bigserial PRIMARY KEY,
                    device int NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
                    ts timestamptz,
                    v double precision,
                    note text,
                    doubled double precision GENERATED ALWAYS AS (v * 2) STORED);
                CREATE INDEX readings_device_ts ON readings (device, ts DESC);
                COMMENT ON TABLE readings IS 'one row per sample';
                COMMENT ON COLUMN readings.v IS 'the value';
                GRANT SELECT, INSERT ON readings TO {reader};
                GRANT UPDATE (note) ON readings TO {reader};
                CREATE TABLE insert_log (id bigint);
                CREATE FUNCTION log_insert() RETURNS trigger LANGUAGE plpgsql AS
                    $$ BEGIN INSERT INTO insert_log VALUES (NEW.id); RETURN NEW; END $$;
                CREATE TRIGGER readings_insert AFTER INSERT ON readings FOR EACH ROW EXECUTE FUNCTION log_insert();
                ALTER TABLE readings ENABLE ROW LEVEL SECURITY;
                CREATE POLICY readers_see_all ON readings FOR SELECT TO {reader} USING (true);
                CREATE VIEW recent AS SELECT id, ts, v FROM readings;
                CREATE VIEW recent_count AS SELECT count(*) AS n FROM recent;
                GRANT SELECT ON recent TO {reader};
                CREATE MATERIALIZED VIEW per_device AS SELECT device, count(*) AS n FROM readings GROUP BY device;
                CREATE UNIQUE INDEX per_device_device ON per_device (device);
                """).format(reader=sql.Identifier(reader_role))
            )
            conn.execute(
                "INSERT INTO readings (device, ts, v, note) SELECT 1 + i %% 20, "
                "CASE WHEN i %% 997 = 0 THEN NULL "
                "ELSE timestamptz '2026-01-01' + i * interval '10 seconds' END, "
                "i, 'legacy' FROM generate_series(1, %s) i",
                (ROWS,),
            )
            conn.execute("TRUNCATE insert_log")
            conn.execute("VACUUM ANALYZE readings")
            # What the rows held before anything ran: the truth for every row the application leaves alone.
            conn.execute(
                "CREATE TABLE before_rows AS SELECT id, device, coalesce(ts, %s::timestamptz) AS ts, v, note "
                "FROM readings",
                (FILL,),
            )
            yield conninfo, conn


class Application(threading.Thread):
    """Inserts, updates and deletes rows through its own session until stopped; remembers what committed."""

    def __init__(self, conninfo: str):
        super().__init__(daemon=True, name="application")
        self.conninfo = conninfo
        self.stopping = threading.Event()
        self.inserted: dict[int, float] = {}
        self.updated: dict[int, float] = {}
        self.deleted: set[int] = set()
        self.errors: list[str] = []
        self.longest_wait = 0.0

    def run(self) -> None:
        rng = random.Random(7)
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            while not self.stopping.is_set():
                value = rng.random()
                started = time.monotonic()
                try:
                    new_id = conn.execute(
                        "INSERT INTO readings (device, ts, v, note) VALUES (%s, now(), %s, 'app') RETURNING id",
                        (rng.randint(1, 20), value),
                    ).fetchone()[0]
                    self.inserted[new_id] = value
                    target = rng.randint(1, ROWS)
                    if target % 2:
                        if conn.execute("UPDATE readings SET v = %s WHERE id = %s", (-value, target)).rowcount:
                            self.updated[target] = -value
                            self.deleted.discard(target)
                    elif conn.execute("DELETE FROM readings WHERE id = %s", (target,)).rowcount:
                        self.deleted.add(target)
                        self.updated.pop(target, None)
                except psycopg.Error as exc:
                    self.errors.append(str(exc).splitlines()[0])
                self.longest_wait = max(self.longest_wait, time.monotonic() - started)
                time.sleep(0.005)

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)


@pytest.fixture
def application(subject):
    apps: list[Application] = []

    def start() -> Application:
        app = Application(subject[0])
        apps.append(app)
        app.start()
        deadline = time.monotonic() + 10
        while not app.inserted and time.monotonic() < deadline:
            time.sleep(0.01)
        return app

    yield start
    for app in apps:
        app.stop()


def assert_no_row_lost(conn: psycopg.Connection, app: Application) -> None:
    """Every row is as the application last committed it, or as it was before when the application left it alone."""
    touched = sorted(set(app.updated) | app.deleted)
    differing = conn.execute(
        """
        SELECT count(*) FROM (
            (SELECT id, device, ts, v, note FROM before_rows WHERE id <> ALL(%(touched)s)
             EXCEPT ALL SELECT id, device, ts, v, note FROM readings WHERE id <= %(top)s AND id <> ALL(%(touched)s))
            UNION ALL
            (SELECT id, device, ts, v, note FROM readings WHERE id <= %(top)s AND id <> ALL(%(touched)s)
             EXCEPT ALL SELECT id, device, ts, v, note FROM before_rows WHERE id <> ALL(%(touched)s))) d""",
        {"touched": touched, "top": ROWS},
    ).fetchone()[0]
    assert differing == 0, f"{differing} rows the application left alone differ from before"
    have = dict(
        conn.execute(
            "SELECT id, v FROM readings WHERE id = ANY(%s)",
            (sorted(set(app.inserted) | set(app.updated) | app.deleted),),
        ).fetchall()
    )
    missing = [i for i in app.inserted if i not in have and i not in app.deleted]
    assert not missing, f"{len(missing)} inserted rows are missing: {missing[:10]}"
    assert [i for i in app.deleted if i in have] == [], "deleted rows came back"
    wrong = [i for i, v in app.updated.items() if have.get(i) != v]
    assert not wrong, f"updates lost for ids {wrong[:10]}"
    assert conn.execute("SELECT count(*) FROM readings WHERE ts IS NULL").fetchone()[0] == 0


def convert(subject, *, own=None, **options):
    conninfo, conn = subject
    return convert_online(
        lambda: psycopg.connect(conninfo, autocommit=True),
        conn,
        "public",
        plan_entry(),
        has_compression=False,
        own_xids=set() if own is None else own,
        batch_rows=2_000,
        **options,
    )


def convert_killed_in(subject, server, phase: str) -> None:
    """Start the online conversion and end its session in ``phase``, as a killed run or a lost connection would."""

    def kill(at: str, session: psycopg.Connection) -> None:
        if at == phase:
            with psycopg.connect(server.conninfo(), autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (session.info.backend_pid,))

    with pytest.raises(psycopg.OperationalError):
        convert(subject, on_phase=kill)


def test_the_table_is_swapped_in_with_every_row_and_everything_the_application_sees(subject, application, reader_role):
    _conninfo, conn = subject
    app = application()
    result = convert(subject)
    more = len(app.inserted)
    deadline = time.monotonic() + 10
    while len(app.inserted) < more + 20 and time.monotonic() < deadline:  # it keeps writing after the swap
        time.sleep(0.01)
    app.stop()

    assert app.errors == []
    assert is_hypertable(conn, "public", "readings") and not is_hypertable(conn, "public", "readings_legacy")
    report = result.online
    assert report["legacy_table"] == "public.readings_legacy" and report["swap_attempts"] >= 1
    assert report["copied"] >= ROWS - len(app.deleted) - 1 and report["replayed"] > 0
    assert result.nulls_filled == ROWS // 997
    assert conversion_state(conn, "public", "readings")["state"] == "swapped"
    assert_no_row_lost(conn, app)
    assert verify(conn, "public", "readings")[1] == []

    # Keys with the time column (the keep_unique id leads it: no index of its own); the secondary index under its name.
    pk = conn.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'readings'::regclass AND contype = 'p'"
    ).fetchone()[0]
    assert pk == "PRIMARY KEY (id, ts)"
    indexes = {
        r[0]
        for r in conn.execute("SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'readings'::regclass")
    }
    assert indexes == {"readings_pkey", "readings_device_ts"}
    assert (
        conn.execute(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'readings'::regclass AND contype = 'f'"
        ).fetchone()[0]
        == 1
    )
    # The sequence belongs to the hypertable: it outlives the legacy table, and ids go on from it.
    assert conn.execute("SELECT pg_get_serial_sequence('readings', 'id')").fetchone()[0] == "public.readings_id_seq"
    # Grants (table and column), comments, row security, the trigger, the views.
    assert conn.execute(
        "SELECT has_table_privilege(%s, 'readings', 'INSERT'), "
        "has_column_privilege(%s, 'readings', 'note', 'UPDATE'), "
        "has_column_privilege(%s, 'readings', 'v', 'UPDATE')",
        (reader_role, reader_role, reader_role),
    ).fetchone() == (True, True, False)
    assert conn.execute(
        "SELECT obj_description('readings'::regclass, 'pg_class'), col_description('readings'::regclass, 4)"
    ).fetchone() == ("one row per sample", "the value")
    assert conn.execute("SELECT relrowsecurity FROM pg_class WHERE oid = 'readings'::regclass").fetchone()[0]
    assert conn.execute("SELECT policyname FROM pg_policies WHERE tablename = 'readings'").fetchall() == [
        ("readers_see_all",)
    ]
    logged = conn.execute("SELECT count(*) FROM insert_log").fetchone()[0]
    assert logged == len(app.inserted), "copying and replaying rows must not fire the application's triggers"
    new_id = conn.execute("INSERT INTO readings (device, ts, v) VALUES (1, now(), 1) RETURNING id").fetchone()[0]
    assert new_id > max(app.inserted)
    assert conn.execute("SELECT count(*) FROM insert_log WHERE id = %s", (new_id,)).fetchone()[0] == 1
    assert (
        conn.execute("SELECT n FROM recent_count").fetchone()[0]
        == conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    )
    assert conn.execute("SELECT has_table_privilege(%s, 'recent', 'SELECT')", (reader_role,)).fetchone()[0]
    assert conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname = 'per_device_device'").fetchone()[0] == 1
    conn.execute("REFRESH MATERIALIZED VIEW per_device")
    assert (
        conn.execute("SELECT sum(n) FROM per_device").fetchone()[0]
        == conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    )

    dropped = drop_legacy(conn, "public", "readings")
    assert dropped == "public.readings_legacy"
    assert conn.execute(
        "SELECT to_regclass('readings_legacy'), to_regclass('tsmigrate.readings_changes')"
    ).fetchone() == (None, None)
    assert conn.execute("INSERT INTO readings (device, ts, v) VALUES (1, now(), 1) RETURNING id").fetchone()[0] > new_id


@pytest.mark.parametrize(
    "phase", ["capturing", "copying", "replayed before the keys", "caught up", "locked", "swapping"]
)
def test_a_session_killed_in_any_phase_leaves_the_legacy_table_whole_and_a_rerun_finishes(
    subject, application, local_server, phase
):
    conninfo, _conn = subject
    app = application()

    convert_killed_in(subject, local_server, phase)
    with psycopg.connect(conninfo, autocommit=True) as fresh:
        assert not is_hypertable(fresh, "public", "readings"), "the swap must not have happened"
        assert conversion_state(fresh, "public", "readings")["state"] == "building"
        result = convert((conninfo, fresh))
        app.stop()
        assert result.online["legacy_table"] == "public.readings_legacy"
        assert is_hypertable(fresh, "public", "readings")
        assert app.errors == []
        assert_no_row_lost(fresh, app)
        assert fresh.execute("SELECT count(*) FROM tsmigrate.online_conversions").fetchone()[0] == 1
        # Plain indexes are named before the swap's lock; a swap that did not happen gives the names back.
        assert {
            r[0]
            for r in fresh.execute(
                "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'readings'::regclass"
            )
        } == {"readings_pkey", "readings_device_ts"}


def test_what_a_killed_online_conversion_left_is_not_counted_as_user_data(subject, local_server, tmp_path):
    """Found by the kill sweep with --writer --online: the rerun's backup (taken before its first change) held the
    half-built hypertable and the capture trigger, the rerun dropped them, and its post-flight called both lost.
    Fingerprints and the backup's inventory leave the tool's own objects out."""
    conninfo, _conn = subject

    convert_killed_in(subject, local_server, "copying")
    with psycopg.connect(conninfo, autocommit=True) as fresh:
        assert fresh.execute(
            "SELECT to_regclass('readings_tsm_new') IS NOT NULL, count(*) FROM pg_trigger "
            "WHERE tgrelid = 'readings'::regclass AND tgname LIKE 'tsmigrate_capture%'"
        ).fetchone() == (True, 2), "what the killed conversion left is there"
        assert ("public", "readings_tsm_new") not in user_tables(fresh) and ("public", "readings") in user_tables(fresh)
    backup = take_backup(Target(conninfo, "test"), tmp_path / "backups")
    assert "public.readings_tsm_new" not in backup.fingerprints and "public.readings" in backup.fingerprints
    baseline = Baseline(backup, "the test's backup")
    listed = [o.describe() for o in baseline.objects()]
    assert listed and not [o for o in listed if "tsmigrate" in o or "_tsm_new" in o], listed
    with psycopg.connect(conninfo, autocommit=True) as fresh:
        convert((conninfo, fresh))  # the rerun: drops what was left, converts
        assert missing_objects(fresh, baseline) == []
        assert set(backup.fingerprints) <= {f"{s}.{t}" for s, t in user_tables(fresh)}
    baseline.close()


def test_a_swap_that_cannot_get_its_lock_says_who_holds_it_and_changes_nothing(subject, local_server):
    conninfo, conn = subject
    with psycopg.connect(conninfo) as holder:  # an open transaction that read the table
        holder.execute("SELECT count(*) FROM readings").fetchone()
        pid = holder.info.backend_pid
        with pytest.raises(ConversionError) as failure:
            convert(subject, lock_timeout_ms=100, swap_attempts=3)
    message = str(failure.value)
    assert "swapping in the hypertable: could not get its lock in 3 tries of 100 ms" in message
    assert f"pid {pid}" in message and "the legacy table is unchanged" in message
    assert not is_hypertable(conn, "public", "readings")
    assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == ROWS
    assert {
        r[0]
        for r in conn.execute("SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'readings'::regclass")
    } == {"readings_pkey", "readings_device_ts"}, "the legacy table's index names are as they were"
    assert convert(subject).online["swap_attempts"] == 1  # the next attempt starts again and swaps


def test_swap_back_returns_the_legacy_table_with_what_the_application_wrote_since(subject, application):
    _conninfo, conn = subject
    convert(subject)
    app = application()
    time.sleep(0.5)
    app.stop()
    replayed = swap_back(conn, "public", "readings")
    assert replayed > 0
    assert not is_hypertable(conn, "public", "readings")
    assert conn.execute(
        "SELECT to_regclass('readings_legacy'), to_regclass('readings_tsm_new'), "
        "to_regclass('tsmigrate.readings_changes')"
    ).fetchone() == (None, None, None)
    assert conversion_state(conn, "public", "readings") is None
    assert_no_row_lost(conn, app)
    assert (
        conn.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'readings_pkey'").fetchone()[
            0
        ]
        == "PRIMARY KEY (id)"
    )
    assert conn.execute("SELECT pg_get_serial_sequence('readings', 'id')").fetchone()[0] == "public.readings_id_seq"
    assert (
        conn.execute("SELECT n FROM recent_count").fetchone()[0]
        == conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    )
    assert {
        r[0]
        for r in conn.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'readings'::regclass AND NOT tgisinternal")
    } == {"readings_insert"}


def test_the_plan_or_the_tables_size_chooses_the_online_path(subject):
    _, conn = subject
    assert chooses_online(conn, "public", plan_entry(), above_rows=ROWS - 1)
    assert not chooses_online(conn, "public", plan_entry(), above_rows=ROWS + 1)
    assert chooses_online(conn, "public", plan_entry(online=True), above_rows=10 * ROWS)
    assert not chooses_online(conn, "public", plan_entry(online=False), above_rows=0)
    assert not chooses_online(
        conn,
        "public",
        parse_plan(
            {"hypertables": {"nothing_here": {"time_column": "ts", "chunk_interval": "1 day", "online": True}}}
        ).hypertables[0],
        above_rows=0,
    )


def test_a_table_without_a_primary_key_is_refused_before_anything_is_made(subject):
    _, conn = subject
    conn.execute("ALTER TABLE readings DROP CONSTRAINT readings_pkey")
    with pytest.raises(ConversionError, match=r"an online conversion needs a primary key.*online = false"):
        convert(subject)
    assert conn.execute(
        "SELECT to_regclass('readings_tsm_new'), to_regclass('tsmigrate.readings_changes')"
    ).fetchone() == (None, None)


def test_with_compression_policies_wait_for_the_postflight_and_swap_back_reads_compressed_chunks(
    community_server, subject, application
):
    """Community edition: the hypertable is compressed while the legacy table is kept; the application's changes
    to compressed rows are still captured, and swap back brings them to the legacy table."""
    conninfo, conn = subject
    entry = plan_entry(
        compress_segment_by=["device"], compress_order_by=["ts DESC"], compress_after="7 days", drop_after="3650 days"
    )
    with pytest.raises(ConversionError, match="TimescaleDB cannot compress a table with row security"):
        convert_online(
            lambda: psycopg.connect(conninfo, autocommit=True),
            conn,
            "public",
            entry,
            has_compression=True,
            own_xids=set(),
        )
    assert conn.execute(
        "SELECT to_regclass('readings_tsm_new'), to_regclass('tsmigrate.readings_changes')"
    ).fetchone() == (None, None), "refused before anything was made"
    conn.execute("ALTER TABLE readings DISABLE ROW LEVEL SECURITY")
    result = convert_online(
        lambda: psycopg.connect(conninfo, autocommit=True),
        conn,
        "public",
        entry,
        has_compression=True,
        own_xids=set(),
        batch_rows=2_000,
    )
    assert "paused until the post-flight passes" in result.compression
    jobs = conn.execute(
        "SELECT j.job_id, j.scheduled FROM timescaledb_information.jobs j "
        "JOIN tsmigrate.paused_jobs p USING (job_id) WHERE j.hypertable_name = 'readings'"
    ).fetchall()
    assert len(jobs) == 2 and not any(scheduled for _, scheduled in jobs)
    compressed = conn.execute("SELECT count(compress_chunk(c)) FROM show_chunks('readings') c").fetchone()[0]
    assert compressed > 0
    app = application()  # updates and deletes land in compressed chunks now
    time.sleep(1)
    app.stop()
    assert app.errors == [] and (app.updated or app.deleted)
    assert swap_back(conn, "public", "readings") > 0
    assert not is_hypertable(conn, "public", "readings")
    assert_no_row_lost(conn, app)


def test_the_command_line_verifies_then_drops_the_legacy_table(subject):
    conninfo, conn = subject
    convert(subject)

    def online(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "tsmigrate.online", *args, "--dsn", conninfo, "--schema", "public"],
            capture_output=True,
            text=True,
            timeout=120,
        )

    status = online("status")
    assert status.returncode == 0 and "legacy table kept as public.readings_legacy" in status.stdout
    checked = online("verify", "readings")
    assert checked.returncode == 0, checked.stderr
    assert f"{ROWS} rows compared with the legacy table, 0 differ" in checked.stdout
    missing = online("swap-back", "no_such_table")
    assert missing.returncode == 2 and "no online conversion of this table" in missing.stderr
    assert online("drop-legacy", "readings").returncode == 0
    assert conn.execute("SELECT to_regclass('readings_legacy')").fetchone()[0] is None
    assert is_hypertable(conn, "public", "readings")


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_an_identity_column_goes_on_from_where_it_was(local_server, mode):
    """Identity columns get a sequence of their own in the new table: it must continue the legacy one's, or the
    next insert would reuse an id."""
    from tsmigrate.convert import convert_table

    with (
        ScratchDatabase(local_server.conninfo(), f"identity_{uuid.uuid4().hex[:8]}") as name,
        psycopg.connect(local_server.conninfo(name), autocommit=True) as conn,
    ):
        conn.execute("CREATE EXTENSION timescaledb")
        conn.execute(
            "CREATE TABLE readings (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, ts timestamptz NOT NULL, v int)"
        )
        conn.execute(
            "INSERT INTO readings (ts, v) SELECT timestamptz '2026-01-01' + i * interval '1 minute', i "
            "FROM generate_series(1, 5000) i"
        )
        conn.execute("DELETE FROM readings WHERE id > 4990")  # the sequence is ahead of the highest id
        entry = plan_entry(null_time="refuse")
        if mode == "online":
            convert_online(
                lambda: psycopg.connect(local_server.conninfo(name), autocommit=True),
                conn,
                "public",
                entry,
                has_compression=False,
                own_xids=set(),
                batch_rows=1_000,
            )
        else:
            with conn.transaction():
                convert_table(conn, "public", entry, has_compression=False, batch_rows=1_000)
        assert is_hypertable(conn, "public", "readings")
        assert (
            conn.execute(
                "SELECT attidentity FROM pg_attribute WHERE attrelid = 'readings'::regclass AND attname = 'id'"
            ).fetchone()[0]
            == "a"
        )
        assert conn.execute("INSERT INTO readings (ts, v) VALUES (now(), 0) RETURNING id").fetchone()[0] == 5001
        assert conn.execute("SELECT count(*), max(id) FROM readings WHERE id <= 5000").fetchone() == (4990, 4990)
        if mode == "online":
            swap_back(conn, "public", "readings")
            assert conn.execute("INSERT INTO readings (ts, v) VALUES (now(), 0) RETURNING id").fetchone()[0] == 5002


def test_an_offline_conversion_after_an_online_attempt_died_drops_what_it_left(subject, local_server):
    """The plan changed to online = false after an online attempt was killed mid-copy."""
    from tsmigrate.convert import convert_table

    _conninfo, conn = subject

    convert_killed_in(subject, local_server, "copying")
    assert conversion_state(conn, "public", "readings")["state"] == "building"
    with conn.transaction():
        result = convert_table(conn, "public", plan_entry(online=False), has_compression=False)
    assert is_hypertable(conn, "public", "readings") and result.rows == ROWS
    assert conversion_state(conn, "public", "readings") is None
    assert conn.execute(
        "SELECT to_regclass('readings_tsm_new'), to_regclass('tsmigrate.readings_changes'), "
        "(SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'tsmigrate%')"
    ).fetchone() == (None, None, 0)
    assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == ROWS


def test_after_the_swap_inserts_are_not_captured_and_swap_back_still_brings_every_change(subject):
    """The capture back skips inserts above the watermark (a WHEN clause: no function call per row); swap back takes
    them by range. Inserts at or below it, into a chunk made after the swap, updates and deletes all come back."""
    _conninfo, conn = subject
    convert(subject)
    inserted = [
        conn.execute(
            "INSERT INTO readings (device, ts, v, note) VALUES (1 + %s %% 20, now(), %s, 'after') RETURNING id",
            (i, i),
        ).fetchone()[0]
        for i in range(200)
    ]
    assert conn.execute("SELECT count(*) FROM tsmigrate.readings_changes WHERE phase = 1").fetchone()[0] == 0, (
        "inserts above the watermark cost the application a capture"
    )
    state = conversion_state(conn, "public", "readings")
    assert state["watermark_column"] == "id" and int(state["watermark"]) == ROWS
    future = conn.execute(  # a chunk the hypertable makes after the swap: the capture back is on it too
        "INSERT INTO readings (device, ts, v, note) VALUES (2, '2031-01-01', 7, 'future') RETURNING id"
    ).fetchone()[0]
    conn.execute("UPDATE readings SET v = -1 WHERE id = ANY(%s)", ([inserted[0], future, 10],))
    conn.execute("DELETE FROM readings WHERE id = ANY(%s)", ([inserted[1], 12],))
    conn.execute("INSERT INTO readings (id, device, ts, v, note) VALUES (12, 3, now(), 12, 'reused')")
    assert verify(conn, "public", "readings")[1] == []
    hypertable_rows = conn.execute("SELECT id, device, ts, v, note FROM readings ORDER BY id").fetchall()

    swap_back(conn, "public", "readings")
    assert not is_hypertable(conn, "public", "readings")
    assert conn.execute("SELECT id, device, ts, v, note FROM readings ORDER BY id").fetchall() == hypertable_rows
    assert conn.execute("SELECT v, note FROM readings WHERE id = 12").fetchone() == (12, "reused")
    assert conn.execute("SELECT count(*) FROM readings WHERE id = ANY(%s)", ([inserted[1]],)).fetchone()[0] == 0


def test_the_swap_replays_only_a_handful_of_keys_under_its_lock(subject):
    """Changes that arrive after the catch-up are replayed in rounds before the lock, not under it; the report says
    how long the lock was held (until the commit that released it) and where that time went."""
    conninfo, conn = subject

    def change_many(phase: str, _session: psycopg.Connection) -> None:
        if phase == "caught up":
            with psycopg.connect(conninfo, autocommit=True) as app:
                app.execute("UPDATE readings SET note = 'late' WHERE id <= 1500")

    result = convert(subject, on_phase=change_many)
    report = result.online
    assert report["swap_replayed"] <= 100, report
    assert 0 < report["swap_seconds"] < 5
    assert report["swap_steps_ms"].keys() >= {"catch_up", "rename", "commit"}
    assert dict(  # named before the lock, with the legacy table's plain index set aside
        conn.execute(
            "SELECT indexrelid::regclass::text, indrelid::regclass::text FROM pg_index "
            "WHERE indrelid IN ('readings'::regclass, 'readings_legacy'::regclass)"
        ).fetchall()
    ) == {
        "readings_pkey": "readings",
        "readings_device_ts": "readings",
        "readings_pkey_legacy": "readings_legacy",
        "readings_device_ts_legacy": "readings_legacy",
    }
    assert conn.execute("SELECT count(*) FROM readings WHERE note = 'late'").fetchone()[0] == 1500
    assert verify(conn, "public", "readings")[1] == []


def test_on_few_chunks_the_keys_are_built_after_a_copy_that_met_updated_rows_twice(subject, application):
    """Few chunks: the copy runs on a hypertable without keys, as a plain INSERT. A row updated after its block range
    was copied, its new version in a later range, is copied twice; the replay of every change logged by the end of
    the copy leaves each key once before the keys are built (without it the primary key cannot be built)."""
    conninfo, conn = subject
    names = Names("public", "readings")
    app = application()
    indexes_during_copy: list[int] = []
    copied_first: list[bool] = []

    def update_behind_the_copy(phase: str, session: psycopg.Connection) -> None:
        if phase != "copying":
            return
        indexes_during_copy.append(
            session.execute(
                "SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass", (f"public.{names.new}",)
            ).fetchone()[0]
        )
        if copied_first:
            return
        copied_first.append(True)
        # The first block range is in the hypertable; these rows' new versions go to the end of the heap (its pages
        # are full), a range copied later. The truth table follows (the application touches v, not note).
        with psycopg.connect(conninfo, autocommit=True) as other:
            for table in ("readings", "before_rows"):
                other.execute(sql.SQL("UPDATE {} SET note = 'met twice' WHERE id <= 500").format(sql.Identifier(table)))
                other.execute(
                    sql.SQL(
                        "UPDATE {} SET ts = ts + interval '1 hour', note = 'moved' WHERE id BETWEEN 501 AND 600"
                    ).format(sql.Identifier(table))
                )

    result = convert(subject, workers=1, on_phase=update_behind_the_copy)
    app.stop()

    assert result.online["keys_after_copy"] is True
    assert {"hypertable beside", "replay before the keys", "keys after the copy"} <= result.phases.keys()
    assert "hypertable beside, its keys" not in result.phases
    assert len(indexes_during_copy) > 10 and set(indexes_during_copy) == {0}, "no index while the rows are copied"
    assert result.online["copied"] > ROWS + 300, "the updated rows must have been met twice by the copy"
    assert app.errors == []
    assert_no_row_lost(conn, app)
    total, distinct = conn.execute("SELECT count(*), count(DISTINCT id) FROM readings").fetchone()
    assert total == distinct, "a key held twice"
    assert conn.execute(  # every one the application did not delete
        "SELECT count(*) FILTER (WHERE note IN ('met twice', 'moved')), 600 - count(*) FROM readings WHERE id <= 600"
    ).fetchone() == (600 - len({i for i in app.deleted if i <= 600}), len({i for i in app.deleted if i <= 600}))
    assert verify(conn, "public", "readings")[1] == []
    pk = conn.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'readings'::regclass AND contype = 'p'"
    ).fetchone()[0]
    assert pk == "PRIMARY KEY (id, ts)"


@pytest.mark.parametrize("chunk_interval", ["2 hours", "15 minutes"], ids=["56 chunks", "445 chunks"])
def test_the_replay_under_the_swaps_lock_touches_only_the_chunks_its_changes_fall_in(subject, chunk_interval):
    """The changes replayed under the lock name their time values, so the planner leaves out (and does not lock)
    every other chunk: the relations the swap transaction holds do not grow with the number of chunks."""
    conninfo, conn = subject
    chunks_locked: list[int] = []

    def change_then_count(phase: str, session: psycopg.Connection) -> None:
        if phase == "locked":  # in the swap's transaction: replayed under its lock, nowhere before
            session.execute("UPDATE readings SET v = -1 WHERE id IN (10, 20000)")
            session.execute("UPDATE readings SET ts = ts + interval '3 hours', note = 'moved' WHERE id = 30000")
            session.execute("DELETE FROM readings WHERE id = 35000")
            session.execute("INSERT INTO readings (id, device, ts, v) VALUES (99999, 1, '2026-01-03 12:00+00', 7)")
        elif phase == "swapping":
            with psycopg.connect(conninfo, autocommit=True) as observer:
                chunks_locked.append(
                    observer.execute(
                        "SELECT count(DISTINCT l.relation) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                        "WHERE l.pid = %s AND c.relkind = 'r' "
                        "AND c.relnamespace = '_timescaledb_internal'::regnamespace",
                        (session.info.backend_pid,),
                    ).fetchone()[0]
                )

    result = convert_online(
        lambda: psycopg.connect(conninfo, autocommit=True),
        conn,
        "public",
        plan_entry(chunk_interval=chunk_interval),
        has_compression=False,
        own_xids=set(),
        batch_rows=2_000,
        on_phase=change_then_count,
    )
    assert result.chunks >= 50
    # 56 chunks: the keys are built once the rows are in; 445: a primary key added then would cost more (its time
    # grows with the square of the chunks) than one kept up to date by the copy, so they come first.
    assert result.online["keys_after_copy"] is (result.chunks < 100)
    assert ("hypertable beside, its keys" in result.phases) is (result.chunks >= 100)
    assert result.online["swap_replayed"] == 5
    # Five keys in at most six chunks (the moved row's old and new); not the table's 56 or 445.
    assert 0 < chunks_locked[0] <= 6, (chunks_locked, result.chunks)
    assert conn.execute("SELECT v FROM readings WHERE id IN (10, 20000)").fetchall() == [(-1.0,), (-1.0,)]
    assert conn.execute("SELECT count(*) FROM readings WHERE id = 30000").fetchone()[0] == 1
    assert conn.execute("SELECT note FROM readings WHERE id = 30000").fetchone()[0] == "moved"
    assert conn.execute("SELECT count(*) FROM readings WHERE id = 35000").fetchone()[0] == 0
    assert conn.execute("SELECT v FROM readings WHERE id = 99999").fetchone()[0] == 7
    assert verify(conn, "public", "readings")[1] == []


def test_a_truncate_during_the_conversion_is_refused_and_nothing_is_swapped(subject):
    conninfo, conn = subject

    def truncate(phase: str, _session: psycopg.Connection) -> None:
        if phase == "caught up":
            with psycopg.connect(conninfo, autocommit=True) as app:
                app.execute("TRUNCATE readings CASCADE")
                app.execute("INSERT INTO readings (device, ts, v) VALUES (1, now(), 1)")

    with pytest.raises(ConversionError, match="was truncated during its online conversion; nothing is swapped"):
        convert(subject, on_phase=truncate)
    assert not is_hypertable(conn, "public", "readings")
    assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 1


def test_without_a_sequence_fed_key_the_watermark_is_the_time_column(subject):
    """A key the application sets itself: the time column is the watermark; a late row (below it) is captured, rows
    of now are not, and swap back brings both."""
    _conninfo, conn = subject
    conn.execute("ALTER TABLE readings ALTER COLUMN id DROP DEFAULT")
    convert(subject)
    state = conversion_state(conn, "public", "readings")
    assert state["watermark_column"] == "ts"
    conn.execute(
        "INSERT INTO readings (id, device, ts, v, note) SELECT 100000 + i, 1, now(), i, 'now' "
        "FROM generate_series(1, 50) i"
    )
    conn.execute("INSERT INTO readings (id, device, ts, v, note) VALUES (200000, 2, '2026-01-02', 1, 'late')")
    assert conn.execute("SELECT array_agg(id) FROM tsmigrate.readings_changes WHERE phase = 1").fetchone()[0] == [
        200000
    ]
    assert verify(conn, "public", "readings")[1] == []
    hypertable_rows = conn.execute("SELECT id, device, ts, v, note FROM readings ORDER BY id").fetchall()
    swap_back(conn, "public", "readings")
    assert conn.execute("SELECT id, device, ts, v, note FROM readings ORDER BY id").fetchall() == hypertable_rows


def test_a_change_committed_after_a_later_numbered_one_is_still_replayed(subject):
    """Change ids are taken when a row is written, not when it commits: a session that wrote first and commits last
    (its ids below those a catch-up round already replayed) still has its insert, update and delete in the
    hypertable the application uses after the swap."""
    conninfo, conn = subject
    straggler = psycopg.connect(conninfo)  # a transaction left open across a catch-up round
    try:

        def write_out_of_order(phase: str, _session: psycopg.Connection) -> None:
            if phase == "copying" and straggler.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                straggler.execute("UPDATE readings SET v = -10, note = 'straggler' WHERE id = 10")
                straggler.execute("DELETE FROM readings WHERE id = 11")
                straggler.execute("INSERT INTO readings (id, device, ts, v) VALUES (99998, 1, '2026-01-02', 8)")
                with psycopg.connect(conninfo, autocommit=True) as other:  # later ids, committed first
                    other.execute("UPDATE readings SET v = -20, note = 'other' WHERE id = 20")
            elif phase == "caught up":  # a catch-up round has run since both wrote
                straggler.commit()

        convert(subject, on_phase=write_out_of_order)
    finally:
        straggler.close()
    assert is_hypertable(conn, "public", "readings")
    assert conn.execute("SELECT v, note FROM readings WHERE id IN (10, 20) ORDER BY id").fetchall() == [
        (-10.0, "straggler"),
        (-20.0, "other"),
    ]
    assert conn.execute("SELECT count(*) FROM readings WHERE id = 11").fetchone()[0] == 0
    assert conn.execute("SELECT v FROM readings WHERE id = 99998").fetchone()[0] == 8
    columns = "id, device, ts, v, note, doubled"
    differing = conn.execute(
        f"SELECT count(*) FROM ((SELECT {columns} FROM readings EXCEPT ALL SELECT {columns} FROM readings_legacy) "
        f"UNION ALL (SELECT {columns} FROM readings_legacy EXCEPT ALL SELECT {columns} FROM readings)) d"
    ).fetchone()[0]
    assert differing == 0


def test_a_change_committed_while_a_round_runs_stays_in_the_log_for_the_next(subject):
    """A round deletes from the change log what it replayed, and nothing else: a change with an id inside the
    round's range that commits while the round runs (here the round waits on a row lock after reading the log)
    is left for the next round, and reaches the hypertable."""
    conninfo, conn = subject
    names = Names("public", "readings")
    left_in_log: list[int] = []
    round_errors: list[psycopg.Error] = []

    def straggle_through_a_round(phase: str, _session: psycopg.Connection) -> None:
        if phase != "caught up":
            return
        with (
            psycopg.connect(conninfo, autocommit=True) as other,
            psycopg.connect(conninfo) as straggler,
            psycopg.connect(conninfo) as blocker,
            psycopg.connect(conninfo, autocommit=True) as rounds,
        ):
            other.execute("UPDATE readings SET v = -30 WHERE id = 30")
            straggler.execute("UPDATE readings SET v = -10, note = 'straggler' WHERE id = 10")
            other.execute("UPDATE readings SET v = -20 WHERE id = 20")
            blocker.execute(
                sql.SQL("SELECT 1 FROM {} WHERE id = 20 FOR UPDATE").format(sql.Identifier(names.new))
            )  # the round's replay waits here, its snapshot taken, the straggler not in it
            columns = insertable_columns(conn, "public", "readings")

            def catch_up() -> None:
                try:
                    catch_up_round(rounds, names, plan_entry(), ["id"], columns, limit=100_000, own_xids=set())
                except psycopg.Error as e:
                    round_errors.append(e)

            catching_up = threading.Thread(target=catch_up)
            catching_up.start()
            for _ in range(200):
                if conn.execute(
                    "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
                    (rounds.info.backend_pid,),
                ).fetchone()[0]:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("the catch-up round never waited on the row lock")
            straggler.commit()
            blocker.commit()
            catching_up.join(timeout=60)
            left_in_log.extend(
                r[0]
                for r in conn.execute(
                    sql.SQL("SELECT id FROM {} WHERE phase = 0 ORDER BY id").format(names.changes)
                ).fetchall()
            )

    convert(subject, on_phase=straggle_through_a_round)
    assert round_errors == []
    assert left_in_log == [10], "the round must leave exactly the straggler's change (and delete 20's and 30's)"
    assert conn.execute("SELECT id, v FROM readings WHERE id IN (10, 20, 30) ORDER BY id").fetchall() == [
        (10, -10.0),
        (20, -20.0),
        (30, -30.0),
    ]
    assert verify(conn, "public", "readings")[1] == []


JOIN = swap_module.differing_rows  # the row-by-row comparison itself, whatever a test's spy puts in its place


@pytest.fixture
def joins(monkeypatch):
    """The tables verify joined row by row (a spy on the real comparison, to tell which path answered)."""
    calls: list[str] = []

    def counted(conn: psycopg.Connection, schema: str, table: str, state: dict) -> tuple[int, list[str]]:
        calls.append(f"{schema}.{table}")
        return JOIN(conn, schema, table, state)

    monkeypatch.setattr(swap_module, "differing_rows", counted)
    return calls


def both_ways(conn: psycopg.Connection) -> tuple[bool, tuple[int, list[str]]]:
    """(the hash sums of both sides agree, what the row-by-row join says): each path alone."""
    state = conversion_state(conn, "public", "readings")
    legacy, new = swap_module.hash_sums(conn, "public", "readings", state)
    compared, differing = JOIN(conn, "public", "readings", state)
    return legacy == new, (compared, sorted(differing))


def behind_the_capture(conn: psycopg.Connection, statement: str) -> None:
    """A change no trigger sees (replication's role): the difference a faulty copy or replay would leave."""
    conn.execute("SET session_replication_role = replica")
    try:
        conn.execute(statement)
    finally:
        conn.execute("RESET session_replication_role")


def test_verify_answers_by_one_hash_pass_when_the_tables_match(subject, joins):
    """Equal tables: the counts and sums of row hashes agree and verify answers from them, without the join. What
    changed since the swap stays out on both sides: the keys in the change log, the inserts above the watermark."""
    _conninfo, conn = subject
    convert(subject)
    assert joins == [], "the conversion's own verify joined the tables"
    assert verify(conn, "public", "readings") == (ROWS, [])
    state = conversion_state(conn, "public", "readings")
    legacy, new = swap_module.hash_sums(conn, "public", "readings", state)
    assert legacy == new and legacy[0] == ROWS

    conn.execute("INSERT INTO readings (device, ts, v, note) SELECT 1, now(), i, 'after' FROM generate_series(1, 30) i")
    conn.execute("UPDATE readings SET v = -1 WHERE id IN (10, 11)")
    conn.execute("DELETE FROM readings WHERE id = 12")
    assert verify(conn, "public", "readings") == (ROWS - 3, [])
    legacy, new = swap_module.hash_sums(conn, "public", "readings", state)
    assert legacy == new and legacy[0] == ROWS - 3
    assert joins == [], "equal tables are answered by the hash sums"
    assert both_ways(conn) == (True, (ROWS - 3, []))


def test_verify_names_a_row_that_differs_or_is_missing_on_either_side(subject, joins):
    """Differences made behind the capture triggers, one at a time: each breaks the hash sums (a changed value
    keeps the counts equal: only the sum sees it), and the join names every key that differs."""
    _conninfo, conn = subject
    convert(subject)
    behind_the_capture(conn, "UPDATE readings SET note = 'drift' WHERE id = 123")
    assert both_ways(conn) == (False, (ROWS, ["(123)"]))
    assert verify(conn, "public", "readings") == (ROWS, ["(123)"])
    assert joins == ["public.readings"]

    behind_the_capture(conn, "DELETE FROM readings WHERE id = 200")
    behind_the_capture(conn, "DELETE FROM readings_legacy WHERE id = 300")
    assert both_ways(conn) == (False, (ROWS, ["(123)", "(200)", "(300)"]))
    compared, differing = verify(conn, "public", "readings")
    assert (compared, sorted(differing)) == (ROWS, ["(123)", "(200)", "(300)"])


def test_verify_pins_the_settings_row_text_depends_on(subject):
    """Under the session's extra_float_digits = 0 two doubles a last bit apart print alike: verify takes its row
    text under the fingerprints' settings, where every double prints exactly."""
    _conninfo, conn = subject
    convert(subject)
    behind_the_capture(conn, "UPDATE readings SET v = v + 1e-13 WHERE id = 400")
    conn.execute("SET extra_float_digits = 0")
    try:
        assert both_ways(conn) == (True, (ROWS, [])), "the session's own settings hide it"
        assert verify(conn, "public", "readings") == (ROWS, ["(400)"])
    finally:
        conn.execute("RESET extra_float_digits")


def test_verify_compares_the_rows_above_the_watermark_the_legacy_table_has(subject, joins):
    """The time column as the watermark: legacy rows dated after the swap are above it on both sides and compared;
    a hypertable row above it without a legacy row is an insert since the swap, left out."""
    _conninfo, conn = subject
    conn.execute("ALTER TABLE readings ALTER COLUMN id DROP DEFAULT")
    conn.execute(
        "INSERT INTO readings (id, device, ts, v, note) SELECT 100000 + i, 1, "
        "timestamptz '2031-01-01' + i * interval '1 hour', i, 'future' FROM generate_series(1, 5) i"
    )
    convert(subject)
    assert conversion_state(conn, "public", "readings")["watermark_column"] == "ts"
    conn.execute("INSERT INTO readings (id, device, ts, v, note) VALUES (200000, 1, now(), 1, 'now')")
    assert verify(conn, "public", "readings") == (ROWS + 5, [])
    assert joins == []
    assert both_ways(conn) == (True, (ROWS + 5, []))

    behind_the_capture(conn, "UPDATE readings SET note = 'drift' WHERE id = 100003")
    assert both_ways(conn) == (False, (ROWS + 5, ["(100003)"]))
    assert verify(conn, "public", "readings") == (ROWS + 5, ["(100003)"])
