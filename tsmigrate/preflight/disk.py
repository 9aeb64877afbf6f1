"""Pre-flight checks of the room the run needs on the server: its data directory, its WAL directory, and the WAL
its replicas and replication slots must keep.

What the run needs in the server's data directory (``DiskNeed``):

- a second copy of each table while it converts, with its indexes (``pg_total_relation_size``): the offline
  conversion holds the old table and the new hypertable until its commit frees the old one, so the largest
  such table counts; a table converted online keeps its legacy copy until ``drop-legacy``, so each counts;
- a restore after a failure: a whole copy of the database (the failed one is kept beside it), which does not
  run at the same time as a conversion's copy: the larger of the two counts;
- the WAL written before a checkpoint frees it (where pg_wal is on the same filesystem; else checked there).

The WAL rule: the run writes about its tables and indexes once more (a restore: the database once). The server
keeps WAL until a checkpoint, which starts when max_wal_size is written: so up to max_wal_size (or wal_keep_size,
if larger) stays in pg_wal, never more than what is written. With archive_mode on, segments stay until archived,
and the archiver may lag: then all of it counts. Replication slots keep WAL for their replica: ``replicas``
checks those against max_slot_wal_keep_size and the room.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psycopg

from ..backup import room_needed
from ..convert.online import chooses_online
from ..db import is_hypertable, one
from ..findings import Finding
from ..plan import Plan
from ..serverfiles import Room, ServerFiles, locate
from .checks import finding

# A hypertable's chunks with their indexes (one set per chunk, the time column added to keys, a keep_unique index
# where no key leads with its column) take more room than the one table did. Measured on MS5.0's demo-scale tables
# (convert_table, then hypertable_size against pg_total_relation_size): 1.05x to 1.17x for daily chunks, 1.42x for
# metric_hist's one-hour chunks (a table of a few pages more, a fixed cost per chunk).
CHUNKED_OVERHEAD = 1.5


def size(n: float) -> str:
    """Bytes as a person reads them: MiB below a GiB, GiB above."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


@dataclass(frozen=True)
class DiskNeed:
    largest_offline: tuple[str, int] | None  # (table, bytes) of the largest table converted in one transaction
    online: list[tuple[str, int]]  # (table, bytes) of each table converted online (copy kept)
    database: int  # the database's size: what a restore copies
    wal_written: int  # WAL the run writes
    wal_kept: int  # of which pg_wal holds before a checkpoint frees it
    wal_rule: str  # why that much, in words

    @property
    def copies(self) -> int:
        largest = self.largest_offline[1] if self.largest_offline else 0
        online = sum(b for _, b in self.online)
        return int(online * CHUNKED_OVERHEAD) + max(int(largest * CHUNKED_OVERHEAD), self.database)

    def data_words(self) -> str:
        parts = []
        if self.largest_offline:
            parts.append(
                f"a second copy of {self.largest_offline[0]} with its indexes while it converts "
                f"({size(self.largest_offline[1] * CHUNKED_OVERHEAD)})"
            )
        for table, n in self.online:
            parts.append(f"the legacy copy of {table}, kept after its online conversion ({size(n * CHUNKED_OVERHEAD)})")
        parts.append(f"or a restore's copy of the database after a failure ({size(self.database)}), whichever is more")
        return "; ".join(parts)


def _settings(conn: psycopg.Connection, *names: str) -> dict[str, str]:
    return dict(conn.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(names),)).fetchall())


def _bytes_setting(conn: psycopg.Connection, name: str) -> int | None:
    """A size setting in bytes; None for -1 (no limit) or when it does not exist."""
    row = conn.execute("SELECT setting::bigint, unit FROM pg_settings WHERE name = %s", (name,)).fetchone()
    if row is None or row[0] < 0:
        return None
    units = {"B": 1, "kB": 1024, "8kB": 8192, "MB": 2**20, "16MB": 16 * 2**20, "GB": 2**30}
    return row[0] * units.get(row[1] or "B", 1)


def disk_need(conn: psycopg.Connection, plan: Plan) -> DiskNeed:
    """What the plan's conversions need on the server, from the live tables' sizes."""
    largest, online = None, []
    for h in plan.hypertables:
        n = one(
            conn,
            """SELECT pg_total_relation_size(c.oid) FROM pg_class c JOIN pg_namespace s
                           ON s.oid = c.relnamespace WHERE s.nspname = %s AND c.relname = %s AND c.relkind = 'r'""",
            (plan.schema, h.table),
        )
        if n is None or is_hypertable(conn, plan.schema, h.table):
            continue  # made by a migration file (empty then), or converted already
        name = f"{plan.schema}.{h.table}"
        if chooses_online(conn, plan.schema, h, plan.online_above_rows):
            online.append((name, n))
        elif largest is None or n > largest[1]:
            largest = (name, n)
    database = one(conn, "SELECT pg_database_size(current_database())")
    tables = (largest[1] if largest else 0) + sum(n for _, n in online)
    # The conversions write their tables once more; a restore after a failure writes the database once.
    written = max(int(tables * CHUNKED_OVERHEAD), database)
    s = _settings(conn, "archive_mode")
    max_wal, keep = _bytes_setting(conn, "max_wal_size") or 0, _bytes_setting(conn, "wal_keep_size") or 0
    if s.get("archive_mode", "off") != "off":
        kept, rule = written, "archive_mode is on: segments stay until archived, so all of it counts"
    else:
        cap = max(max_wal, keep)
        kept = min(written, cap)
        rule = (
            f"up to max_wal_size ({size(max_wal)})"
            + (f" or wal_keep_size ({size(keep)})" if keep > max_wal else "")
            + " stays until a checkpoint frees it"
        )
    return DiskNeed(largest, online, database, written, kept, rule)


def data_directory_room(
    conn: psycopg.Connection,
    plan: Plan | None,
    operator_free_gib: float | None = None,
    files: ServerFiles | None = None,
    backups_dir: Path | None = None,
) -> list[Finding]:
    """Room in the server's data directory (and its WAL directory) for the run: measured where it can be seen
    from here, else as the operator states it (``--server-free-disk``), else a blocking finding saying what to
    confirm. A ``backups_dir`` on the same filesystem takes its backup's share of the room too."""
    if plan is None:
        return []
    need = disk_need(conn, plan)
    files = files or locate(conn)
    wal_words = f"WAL the run writes before a checkpoint frees it ({size(need.wal_kept)}: {need.wal_rule})"
    data_room, wal_room = files.data_room, files.wal_room
    if data_room is None:  # not measured
        total = need.copies + need.wal_kept
        if operator_free_gib is None:
            where = files.data_directory or "the server's data directory (SHOW data_directory as a superuser)"
            return [
                finding(
                    "PF066",
                    f"the room in {where} cannot be measured from here: {files.why_not}. The run "
                    f"needs about {size(total)} free there: {need.data_words()}; and {wal_words}. "
                    f"Measure it on the server (df -h {where}) and confirm it with "
                    f"--server-free-disk=<GiB free> (ini: server_free_disk)",
                    path=files.data_directory,
                )
            ]
        free = int(operator_free_gib * 2**30)
        if free < total:
            return [
                finding(
                    "PF065",
                    f"{size(free)} free in the server's data directory (as --server-free-disk says); "
                    f"the run needs about {size(total)} there: {need.data_words()}; and {wal_words}",
                    path=files.data_directory or "--server-free-disk",
                )
            ]
        return []
    found = []
    wal_apart = wal_room is not None
    backup = room_needed(need.database)
    backup_in = _same_filesystem(backups_dir, files)  # the room (data or WAL) the backup shares, if any
    backup_words = f"; and the backup in {backups_dir} ({size(backup)}), on the same filesystem"
    data_needed = need.copies + (0 if wal_apart else need.wal_kept) + (backup if backup_in is data_room else 0)
    if data_room.free < data_needed:
        found.append(
            _short(
                data_room,
                data_needed,
                "data directory",
                need.data_words()
                + ("" if wal_apart else f"; and {wal_words}")
                + (backup_words if backup_in is data_room else ""),
            )
        )
    wal_needed = need.wal_kept + (backup if wal_apart and backup_in is wal_room else 0)
    if wal_room is not None and wal_room.free < wal_needed:
        found.append(
            _short(
                wal_room,
                wal_needed,
                "WAL directory (pg_wal links there)",
                wal_words + (backup_words if backup_in is wal_room else ""),
            )
        )
    return found


def _same_filesystem(backups_dir: Path | None, files: ServerFiles) -> Room | None:
    """The server's room (data or WAL directory) that ``backups_dir`` shares a filesystem with, on this machine."""
    if backups_dir is None or files.data_room is None or files.data_room.where != "this machine":
        return None
    probe = Path(backups_dir)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    device = str(os.stat(probe).st_dev)
    for room in (files.data_room, files.wal_room):
        if room is not None and room.device == device:
            return room
    return None


def _short(room: Room, needed: int, what: str, why: str) -> Finding:
    return finding(
        "PF065",
        f"{size(room.free)} free in {room.path}, the server's {what} (on {room.where}); the "
        f"run needs about {size(needed)} there: {why}. Free at least {size(needed - room.free)}",
        path=room.path,
    )


def replicas(conn: psycopg.Connection, plan: Plan | None, files: ServerFiles | None = None) -> list[Finding]:
    """The WAL the run writes against what each physical replication slot and each replica can bear.

    A slot limited by max_slot_wal_keep_size is invalidated (its replica cut off, to be rebuilt from a base backup)
    when more WAL than its safe_wal_size is written while its replica lags; a slot without a limit keeps all the
    run's WAL until its replica reads it, which must then fit in the WAL directory. A replica without a slot is cut
    off when it falls further behind than the server keeps (max(wal_keep_size, max_wal_size)).
    """
    if plan is None:
        return []
    need = disk_need(conn, plan)
    written = need.wal_written
    found = []
    slots = conn.execute("""SELECT slot_name, active, safe_wal_size,
                                   pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint
                              FROM pg_replication_slots WHERE slot_type = 'physical' AND wal_status <> 'lost'
                             ORDER BY slot_name""").fetchall()
    files = files if files is not None else locate(conn) if slots else None
    for name, active, safe, retained in slots:
        state = "in use by a replica" if active else "no replica is reading it"
        retained = retained or 0
        if safe is not None and written > safe:
            found.append(
                finding(
                    "PF067",
                    f"replication slot {name} ({state}, {size(retained)} behind) may keep only "
                    f"{size(safe)} more WAL (max_slot_wal_keep_size); the run writes about "
                    f"{size(written)}: unless its replica keeps up, the slot is invalidated "
                    "and the replica must be rebuilt",
                )
            )
        elif safe is None and files is not None and files.data_room is not None:  # measured
            room = files.wal_room or files.data_room
            spare = room.free - (need.wal_kept if files.wal_room else need.copies + need.wal_kept)
            if written > spare:
                found.append(
                    finding(
                        "PF067",
                        f"replication slot {name} ({state}, {size(retained)} behind) keeps "
                        f"every WAL segment its replica has not read (max_slot_wal_keep_size = "
                        f"-1); the run writes about {size(written)}, {room.path} has "
                        f"{size(max(spare, 0))} to spare beside what the run needs there: if "
                        "the replica does not keep up, the disk fills and the server stops",
                        path=room.path,
                    )
                )
    keep = max(_bytes_setting(conn, "max_wal_size") or 0, _bytes_setting(conn, "wal_keep_size") or 0)
    for _pid, who, addr, state, lag in conn.execute(
        """SELECT r.pid, coalesce(nullif(r.application_name, ''), 'replica'), r.client_addr::text, r.state,
                      pg_wal_lsn_diff(pg_current_wal_lsn(), coalesce(r.replay_lsn, r.flush_lsn, r.sent_lsn))::bigint
                 FROM pg_stat_replication r
                WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.active_pid = r.pid)"""
    ).fetchall():
        lag = lag or 0
        if lag + written > keep:
            found.append(
                finding(
                    "PF069",
                    f"replica {who} ({addr or 'local socket'}, {state}, {size(lag)} behind) has "
                    f"no replication slot; the run writes about {size(written)} and the server "
                    f"keeps {size(keep)} (max(wal_keep_size, max_wal_size)): if the replica "
                    "falls that far behind during the run, it is cut off and must be rebuilt",
                )
            )
    return found
