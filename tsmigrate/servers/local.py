"""A throwaway PostgreSQL cluster on this machine: initdb + pg_ctl in a temporary directory.

PostgreSQL refuses to run as root, so when we are root the cluster's files belong to an
unprivileged user (``postgres`` by default) and its programs run as that user, in a
directory under the system temp dir that the user can reach.
"""

from __future__ import annotations

import logging
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ..timescale import installed_timescaledb
from . import ServerInfo, ServerStartError, wait_until_ready

log = logging.getLogger(__name__)

# Durability is worthless on a throwaway cluster; speed is not.
THROWAWAY_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "60",
    "timescaledb.telemetry_level": "off",
    # Room for what the pre-flight counts (PF062): this database's scheduler, a copy's, MS5.0's ten policy jobs,
    # and a few more databases of a test; max_worker_processes: those, max_parallel_workers (8) and the launcher.
    "timescaledb.max_background_workers": "16",
    "max_worker_processes": "32",
}


def pg_bindir() -> Path:
    """The directory of initdb/pg_ctl: $TSMIGRATE_PG_BINDIR, else the PostgreSQL that pg_config names."""
    override = os.environ.get("TSMIGRATE_PG_BINDIR")
    if override:
        if not (Path(override) / "initdb").exists():
            raise ServerStartError(f"TSMIGRATE_PG_BINDIR={override} has no initdb")
        return Path(override)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and (Path(out.stdout.strip()) / "initdb").exists():
            return Path(out.stdout.strip())
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    raise ServerStartError(
        "PostgreSQL server programs (initdb, pg_ctl) not found: install postgresql-15 or put its bin directory on PATH"
    )


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """Context manager: ``with LocalCluster() as server: ...`` gives a :class:`ServerInfo`."""

    def __init__(
        self,
        *,
        run_as: str | None = None,
        timescaledb: bool | None = None,
        ready_timeout: float = 60.0,
        settings: dict[str, str] | None = None,
        parent_dir: str | None = None,
        port_attempts: int = 3,
        bindir: Path | None = None,
        standby_of: LocalCluster | None = None,
        wal_dir: Path | None = None,
    ):
        self.run_as = run_as if run_as is not None else ("postgres" if os.geteuid() == 0 else None)
        self.timescaledb = timescaledb
        self.ready_timeout = ready_timeout
        self.settings = {**THROWAWAY_SETTINGS, **(settings or {})}
        self.parent_dir = parent_dir
        self.port_attempts = port_attempts
        self.base: Path | None = None
        self.info: ServerInfo | None = None
        self._bindir = Path(bindir) if bindir is not None else pg_bindir()
        # A streaming replica of that (running) cluster, made with pg_basebackup: a real standby.
        self.standby_of = standby_of
        # pg_wal elsewhere (initdb --waldir: pg_wal becomes a link there), as sites put it on a disk of its own.
        self.wal_dir = Path(wal_dir) if wal_dir is not None else None

    # -- paths -------------------------------------------------------------------------
    @property
    def base_dir(self) -> Path:
        """The cluster's own directory, made when it starts."""
        if self.base is None:
            raise ServerStartError("the local cluster has no directory before it starts")
        return self.base

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "socket"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgresql.log"

    def _log_tail(self, lines: int = 15) -> str:
        try:
            tail = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return f"(no server log at {self.log_file})"
        return f"last lines of the server log {self.log_file}:\n" + "\n".join("  " + line for line in tail)

    # -- process helpers -------------------------------------------------------------------
    def _run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        kwargs: dict = {}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        if self.run_as:
            user = pwd.getpwnam(self.run_as)
            kwargs.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
            env["HOME"] = str(self.base)
        result = subprocess.run(
            args, capture_output=True, text=True, env=env, cwd=self.base, timeout=timeout, check=False, **kwargs
        )
        if check and result.returncode != 0:
            raise ServerStartError(
                f"{Path(args[0]).name} failed (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-1500:]}"
            )
        return result

    def _make_base(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="tsmigrate-cluster-", dir=self.parent_dir))
        self.socket_dir.mkdir()
        if self.run_as:
            user = pwd.getpwnam(self.run_as)
            for path in (self.base, self.socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
            # The parent must let the unprivileged user through (tempfile's default is 0700 for us).
            if not os.access(self.base.parent, os.X_OK):
                raise ServerStartError(
                    f"{self.base.parent} is not reachable by user {self.run_as}; choose another parent directory"
                )

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> ServerInfo:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> ServerInfo:
        self._make_base()
        password = self._base_backup() if self.standby_of is not None else self._initdb()

        settings = dict(self.settings)
        pg_config = self._bindir / "pg_config"
        ts = installed_timescaledb(str(pg_config) if pg_config.exists() else None)
        want_ts = self.timescaledb if self.timescaledb is not None else ts is not None
        if want_ts:
            if ts is None:
                raise ServerStartError(
                    "TimescaleDB is not installed for this PostgreSQL: run `make setup` "
                    "(scripts/install-timescaledb.sh) first"
                )
            settings["shared_preload_libraries"] = "timescaledb"
        else:
            settings = {k: v for k, v in settings.items() if not k.startswith("timescaledb.")}
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# tsmigrate throwaway cluster\n")
            conf.write(f"listen_addresses = '127.0.0.1'\nunix_socket_directories = '{self.socket_dir}'\n")
            for key, value in settings.items():
                conf.write(f"{key} = '{value}'\n")

        last_error: ServerStartError | None = None
        for _ in range(self.port_attempts):
            port = free_port()
            # -W: we wait ourselves, with a deadline and a useful message.
            self._run(
                str(self._bindir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-W",
                "-o",
                f"-p {port}",
                "start",
            )
            info = ServerInfo("local", "127.0.0.1", port, "postgres", password)
            try:
                version = wait_until_ready(
                    info.conninfo(),
                    self.ready_timeout,
                    alive=self._not_failed,
                    describe=f"local PostgreSQL in {self.base} on port {port}",
                    log_tail=self._log_tail,
                )
            except ServerStartError as exc:
                last_error = exc
                if "already in use" not in self._log_tail(5):
                    raise
                # Another process took the port between our probe and the bind: try another.
                self._run(
                    str(self._bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "stop", check=False
                )
                self.log_file.unlink(missing_ok=True)
                continue
            self.info = ServerInfo("local", "127.0.0.1", port, "postgres", password, version)
            log.info("started local PostgreSQL %s on 127.0.0.1:%d in %s", version, port, self.base)
            return self.info
        raise last_error or ServerStartError("could not start the local cluster")

    def _initdb(self) -> str:
        """A new data directory; returns the password of its superuser."""
        password = secrets.token_urlsafe(18)
        pwfile = self.base_dir / "pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        if self.run_as:
            user = pwd.getpwnam(self.run_as)
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        self._run(
            str(self._bindir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
            *([f"--waldir={self.wal_dir}"] if self.wal_dir is not None else []),
        )
        pwfile.unlink()
        return password

    def _base_backup(self) -> str:
        """The primary's data directory, copied through its replication protocol and set to follow it
        (standby.signal, primary_conninfo); returns the superuser's password, the primary's."""
        primary = self.standby_of
        if primary is None or primary.info is None or primary.base is None:
            raise ServerStartError("the primary of a standby must be running first")
        self._run(
            str(self._bindir / "pg_basebackup"),
            "-D",
            str(self.data_dir),
            "-h",
            str(primary.socket_dir),
            "-p",
            str(primary.info.port),
            "-U",
            "postgres",
            "-R",
            "-X",
            "stream",
            "--no-sync",
        )
        return primary.info.password

    def _not_failed(self) -> bool:
        # The postmaster writes FATAL/PANIC to its log when it gives up (port taken, bad setting).
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return True
        # Our own early probes log "FATAL: the database system is starting up": that is not a failure.
        fatal = [
            line
            for line in text.splitlines()
            if ("FATAL:" in line or "PANIC:" in line) and "database system is starting up" not in line
        ]
        return not fatal

    def _running(self) -> bool:
        if self.base is None or not (self.data_dir / "postmaster.pid").exists():
            return False
        return self._run(str(self._bindir / "pg_ctl"), "-D", str(self.data_dir), "status", check=False).returncode == 0

    def stop(self) -> None:
        """Stop the server (if it runs) and remove its directory. Safe to call twice."""
        if self.base is None:
            return
        try:
            self._await_pid_file_of_a_starting_server()
            if (self.data_dir / "postmaster.pid").exists():
                result = self._run(
                    str(self._bindir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    "30",
                    "stop",
                    check=False,
                )
                if result.returncode != 0 and self._running():
                    log.warning("could not stop the cluster in %s: %s", self.base, result.stderr.strip())
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
            log.info("removed throwaway cluster %s", self.base)
            self.base = None
            self.info = None

    def _await_pid_file_of_a_starting_server(self, within: float = 10.0) -> None:
        """A postmaster still starting (pg_ctl -W returned at once) writes its pid file a moment later: wait for
        it, so that the server is stopped and not left running in a directory being removed."""
        deadline = time.monotonic() + within
        while not (self.data_dir / "postmaster.pid").exists() and time.monotonic() < deadline:
            if not any(str(self.data_dir) in _cmdline(p) for p in Path("/proc").glob("[0-9]*")):
                return
            time.sleep(0.05)

    def __enter__(self) -> ServerInfo:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
