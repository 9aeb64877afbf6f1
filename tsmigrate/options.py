"""The run's options, read once from the command line and pytest.ini into one frozen value."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from .target import redact


@dataclass(frozen=True)
class RunOptions:
    dsn: str | None  # may hold a password: never print it (see target.redact)
    demo: bool  # work on a throwaway server seeded like an MS5.0 site
    server: str  # auto, local or docker: where throwaway servers come from
    demo_scale: str  # legacy builder scale for the demo (tiny, demo, site)
    migrations: Path  # the migration files and their plan.toml
    reports: Path  # where HTML/JSON/JUnit reports go
    backups: Path  # where backups are written
    ready_timeout: float  # seconds a throwaway server may take to accept connections
    restore: bool  # restore the backup when an execute step failed
    keep_failed: bool  # keep the failed database (renamed) after a restore
    rehearse: bool  # pre-flight applies pending migrations to a throwaway copy
    resolve_interrupted: bool  # accept non-transactional steps a killed run left half done
    baseline: Path | None = None
    write_sample: float = 2.0  # pre-flight: seconds to watch for rows being written by others
    server_free_disk: float | None = (
        None  # pre-flight: GiB free in the server's data directory, as the operator measured
    )

    def __repr__(self) -> str:
        """Every field, the DSN's password hidden: tracebacks (--showlocals) and assertion output print reprs."""
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["dsn"] = redact(self.dsn) if self.dsn else self.dsn
        return f"{type(self).__name__}(" + ", ".join(f"{name}={value!r}" for name, value in shown.items()) + ")"
