"""Where the server keeps its files, seen from where the tool runs: its data directory, WAL directory and log.

The server names its data directory (the ``data_directory`` setting: superusers and members of
pg_read_all_settings may read it). That path means something here only when it is this server's own files on
this machine (the same system identifier in ``global/pg_control``, else the same port in ``postmaster.pid``), or
inside a Docker container of the local engine that publishes the server's port. Otherwise the room there cannot
be measured from here, and :attr:`ServerFiles.why_not` says why.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import psycopg

from .db import one

log = logging.getLogger(__name__)

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", ""}


@dataclass(frozen=True)
class Room:
    """Free and total bytes of the filesystem that holds ``path``, and where it was measured."""

    path: str
    free: int
    total: int
    device: str  # tells filesystems apart (st_dev here, the df source in a container)
    where: str  # "this machine" or "container <name>"


@dataclass(frozen=True)
class ServerFiles:
    data_directory: str | None  # the server's setting; None when the role may not read it
    wal_directory: str | None = None  # pg_wal, resolved when it is a link to another place
    log_file: str | None = None  # the server's log, when readable from here
    data_room: Room | None = None  # measured room in the data directory's filesystem
    wal_room: Room | None = None  # ... and in the WAL directory's, when that is another filesystem
    why_not: str = ""  # why the room could not be measured

    @property
    def measured(self) -> bool:
        return self.data_room is not None


def _setting(conn: psycopg.Connection, name: str) -> str | None:
    # pg_settings hides superuser-only settings from roles that may not read them (no error, no row).
    return one(conn, "SELECT setting FROM pg_settings WHERE name = %s", (name,))


def locate(conn: psycopg.Connection) -> ServerFiles:
    """Where the server's files are and how much room they have, as far as can be seen from here."""
    data_directory = _setting(conn, "data_directory")
    if data_directory is None:
        return ServerFiles(
            None,
            why_not=f"role {one(conn, 'SELECT current_user')} may not read the server's "
            "data_directory setting (superuser or pg_read_all_settings)",
        )
    here = _on_this_machine(conn, Path(data_directory))
    if here is True:
        return _local_files(conn, Path(data_directory))
    in_container = _in_docker_container(conn, data_directory)
    if in_container is not None:
        return in_container
    return ServerFiles(data_directory, why_not=here or f"{data_directory} is not on this machine")


def _system_identifier(conn: psycopg.Connection) -> int | None:
    try:
        return one(conn, "SELECT system_identifier FROM pg_control_system()")
    except psycopg.Error:
        return None


def _on_this_machine(conn: psycopg.Connection, data_directory: Path) -> bool | str:
    """True when ``data_directory`` here holds this server's files; else why not (a sentence)."""
    host = conn.info.host or ""
    if not (host.startswith("/") or host in LOCAL_HOSTS):
        return f"the server runs on {host}, not on this machine"
    if not data_directory.is_dir():
        return f"no directory {data_directory} on this machine (the server runs elsewhere, or in a container)"
    try:
        with open(data_directory / "global" / "pg_control", "rb") as f:
            identifier = struct.unpack("<Q", f.read(8))[0]
        if identifier == _system_identifier(conn):
            return True
        return f"{data_directory} on this machine belongs to another server (another system identifier)"
    except OSError:
        pass
    try:
        lines = (data_directory / "postmaster.pid").read_text().splitlines()
        if len(lines) > 3 and lines[3].strip() == str(_setting(conn, "port")):
            return True
        return f"{data_directory} on this machine belongs to another server (another port in postmaster.pid)"
    except OSError:
        return (
            f"the files of {data_directory} cannot be read by user {_user()} to tell that they are this server's "
            "(run the pre-flight as root or as the server's own user)"
        )


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid())


def _room_here(path: Path) -> Room:
    usage = shutil.disk_usage(path)
    return Room(str(path), usage.free, usage.total, str(os.stat(path).st_dev), "this machine")


def _local_files(conn: psycopg.Connection, data_directory: Path) -> ServerFiles:
    wal = data_directory / "pg_wal"
    wal_directory = Path(os.path.realpath(wal)) if wal.is_symlink() else wal
    data_room = _room_here(data_directory)
    wal_room = None
    try:
        if os.stat(wal_directory).st_dev != os.stat(data_directory).st_dev:
            wal_room = _room_here(wal_directory)
    except OSError:
        pass
    return ServerFiles(str(data_directory), str(wal_directory), _log_file(conn, data_directory), data_room, wal_room)


def _log_file(conn: psycopg.Connection, data_directory: Path) -> str | None:
    """The server's log: the logging collector's current file, else where the postmaster's stderr goes (pg_ctl -l,
    a service manager's file)."""
    try:
        current = one(conn, "SELECT pg_current_logfile()")
    except psycopg.Error:
        current = None
    if current:
        path = Path(current) if Path(current).is_absolute() else data_directory / current
        return str(path)
    try:
        pid = int((data_directory / "postmaster.pid").read_text().splitlines()[0])
        target = os.readlink(f"/proc/{pid}/fd/2")
    except (OSError, ValueError, IndexError):
        return None
    return target if Path(target).is_file() else None


# -- a server in a Docker container of the local engine ----------------------------------------------------


def _in_docker_container(conn: psycopg.Connection, data_directory: str) -> ServerFiles | None:
    """The room in the data directory of the container that publishes the server's port here, measured with df
    inside it; None when no such container is found (or no engine answers)."""
    host = conn.info.host or ""
    if not (host in LOCAL_HOSTS or host.startswith("/")):
        return None
    try:
        import docker

        client = docker.from_env(timeout=5)
    except Exception:  # no SDK, no socket, no permission: no container can be seen from here
        return None
    try:
        port = str(conn.info.port)
        for container in client.containers.list():
            published = [b.get("HostPort") for binds in (container.ports or {}).values() for b in (binds or [])]
            if port not in published:
                continue
            data_room = _room_in(container, data_directory)
            if data_room is None:
                return None
            code, out = container.exec_run(["readlink", "-f", f"{data_directory}/pg_wal"])
            wal_directory = out.decode().strip() if code == 0 else f"{data_directory}/pg_wal"
            wal_room = _room_in(container, wal_directory)
            if wal_room is not None and wal_room.device == data_room.device:
                wal_room = None
            return ServerFiles(data_directory, wal_directory, None, data_room, wal_room)
        return None
    except Exception as exc:  # the engine went away mid-way: not measured
        log.info("could not measure the room in a container: %s", exc)
        return None
    finally:
        client.close()


def _room_in(container, path: str) -> Room | None:
    code, out = container.exec_run(["df", "-P", "-k", path])
    lines = out.decode(errors="replace").strip().splitlines()
    if code != 0 or len(lines) < 2:
        return None
    source, total, _used, free = lines[-1].split()[:4]
    return Room(path, int(free) * 1024, int(total) * 1024, source, f"container {container.name}")
