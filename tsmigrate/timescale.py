"""TimescaleDB: which edition is installed or running, and what it can do.

The apache edition (what Debian builds) has hypertables but no native compression,
compression/retention policies or continuous aggregates; the community edition
(license 'timescale') has them all.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from .db import one, timescaledb_version

# Adding a PRIMARY KEY to a hypertable that has chunks costs time that grows with the square of their number
# (TimescaleDB 2.19.3 and 2.28.3 alike; a UNIQUE constraint or an index grows with the number). Measured on this
# project's bench server in one transaction: 0.1 s at 100 chunks, 1.1 s at 400, 10.5 s at 800, 124 s at 1,600 on
# 2.19.3; 3.9 s at 800 and 30 s at 1,600 on 2.28.3. Seconds per chunk squared, from the 2.19.3 figures (the higher).
PRIMARY_KEY_S_PER_CHUNK_SQUARED = 1.6e-5


def primary_key_seconds(chunks: int) -> float:
    """About how long adding a primary key to a hypertable of ``chunks`` chunks takes, the table locked."""
    return chunks * chunks * PRIMARY_KEY_S_PER_CHUNK_SQUARED


APACHE = "apache"
COMMUNITY = "community"
APACHE_LACKS = "native compression, compression and retention policies, continuous aggregates"


@dataclass(frozen=True)
class InstalledTimescale:
    version: str
    edition: str  # apache or community


def installed_timescaledb(pg_config: str | None = None) -> InstalledTimescale | None:
    """The TimescaleDB files installed for the local PostgreSQL (or $TSMIGRATE_PG_BINDIR's), or None."""
    override = os.environ.get("TSMIGRATE_PG_BINDIR")
    if pg_config is None and override and (Path(override) / "pg_config").exists():
        pg_config = str(Path(override) / "pg_config")
    pg_config = pg_config or shutil.which("pg_config")
    if not pg_config:
        return None

    def ask(flag: str) -> Path:
        return Path(subprocess.run([pg_config, flag], capture_output=True, text=True, check=True).stdout.strip())

    control = ask("--sharedir") / "extension" / "timescaledb.control"
    libdir = ask("--pkglibdir")
    if not control.exists() or not (libdir / "timescaledb.so").exists():
        return None
    match = re.search(r"default_version\s*=\s*'([^']+)'", control.read_text())
    version = match.group(1) if match else "unknown"
    edition = COMMUNITY if list(libdir.glob("timescaledb-tsl-*.so")) else APACHE
    return InstalledTimescale(version, edition)


@dataclass(frozen=True)
class ServerTimescale:
    """What a running server offers: available/installed versions, preload and edition."""

    available_version: str | None
    installed_version: str | None  # in the connected database
    preloaded: bool
    license: str | None  # 'apache' or 'timescale' once loaded

    @property
    def edition(self) -> str | None:
        if self.license is None:
            return None
        return APACHE if self.license == "apache" else COMMUNITY

    @property
    def has_compression(self) -> bool:
        return self.edition == COMMUNITY


def preload_libraries(conn: psycopg.Connection) -> str | None:
    """shared_preload_libraries, or None when the role may not read it (neither superuser nor pg_read_all_settings)."""
    return one(
        conn,
        """SELECT CASE WHEN pg_has_role(current_user, 'pg_read_all_settings', 'USAGE')
                                       THEN current_setting('shared_preload_libraries') END""",
    )


def server_timescaledb(conn: psycopg.Connection) -> ServerTimescale:
    available = conn.execute(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    installed = timescaledb_version(conn)
    preload = preload_libraries(conn)
    license_row = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
    if available and not installed and not (license_row and license_row[0]):
        # In a database without the extension the versioned library is not loaded, so the license
        # setting is unknown; loading it (superusers may, even read-only) makes it readable.
        try:
            with conn.transaction():
                conn.execute(sql.SQL("LOAD {}").format(sql.Literal(f"timescaledb-{available[0]}")))
            license_row = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
        except psycopg.Error:
            pass  # not allowed: the edition stays unknown
    return ServerTimescale(
        available_version=available[0] if available else None,
        installed_version=installed,
        preloaded=(
            "timescaledb" in [p.strip() for p in preload.split(",")]
            if preload is not None
            # Only the preloaded library defines this setting: a role that may not read the list sees it.
            else one(conn, "SELECT current_setting('timescaledb.max_background_workers', true) IS NOT NULL")
        ),
        license=license_row[0] or None if license_row else None,
    )
