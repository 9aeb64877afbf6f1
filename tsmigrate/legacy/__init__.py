"""Build a database shaped like MS5.0 production today, with realistic data.

All 49 tables as plain PostgreSQL tables (bigserial primary keys that leave out the time
column, nullable time columns), the views, functions and roles, no timescaledb extension.
Data is generated server-side (generate_series), so millions of rows take seconds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import resources

import psycopg

from ..janitor import create_database

log = logging.getLogger(__name__)

LEGACY_DBNAME = "factory_telemetry"


@dataclass(frozen=True)
class LegacyScale:
    """How much history the builder writes. metric_hist rows = metrics x days x 86400 / interval."""

    lines: int = 3
    equipment_per_line: int = 4
    metrics_per_equipment: int = 5
    days: float = 2.0
    metric_interval_s: int = 60
    null_time_fraction: float = 0.01
    random_seed: float = 0.42
    end_time: datetime | None = None  # newest sample; default: now, to the minute

    @property
    def metric_hist_rows(self) -> int:
        metrics = self.lines * self.equipment_per_line * self.metrics_per_equipment
        return int(metrics * self.days * 86400 / self.metric_interval_s)

    def validate(self) -> None:
        for name in ("lines", "equipment_per_line", "metrics_per_equipment", "metric_interval_s"):
            if getattr(self, name) < 1:
                raise ValueError(f"legacy scale: {name} must be at least 1, got {getattr(self, name)}")
        if self.days <= 0:
            raise ValueError(f"legacy scale: days must be positive, got {self.days}")
        if not 0 <= self.null_time_fraction <= 1:
            raise ValueError(f"legacy scale: null_time_fraction must be within 0..1, got {self.null_time_fraction}")
        if not -1 <= self.random_seed <= 1:
            raise ValueError(f"legacy scale: random_seed must be within -1..1, got {self.random_seed}")


SCALES = {
    # A few seconds: what the project's tests use.
    "tiny": LegacyScale(lines=2, equipment_per_line=2, metrics_per_equipment=3, days=1, metric_interval_s=300),
    # The demo: a couple of days of a small site at one sample a minute (~170k metric rows).
    "demo": LegacyScale(),
    # A site at one sample a second for a day (~5M metric rows).
    "site": LegacyScale(days=1, metric_interval_s=1),
}


def _read(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def build_legacy_database(
    admin_conninfo: str,
    scale: LegacyScale = SCALES["demo"],
    *,
    dbname: str = LEGACY_DBNAME,
    replace_existing: bool = False,
) -> None:
    """Create ``dbname`` on the server of ``admin_conninfo`` and fill it like a production site.

    Refuses to touch an existing database unless ``replace_existing`` is given.
    """
    scale.validate()
    end_time = scale.end_time if scale.end_time is not None else datetime.now(UTC).replace(second=0, microsecond=0)
    scale = replace(scale, end_time=end_time)
    with psycopg.connect(admin_conninfo, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if exists and not replace_existing:
            raise ValueError(f"database {dbname!r} already exists; the legacy builder only creates new databases")
        create_database(admin, dbname)

    target = psycopg.conninfo.make_conninfo(admin_conninfo, dbname=dbname)
    started = time.monotonic()
    with psycopg.connect(target) as conn:  # one transaction: a failed build leaves an empty database
        conn.execute(_read("schema.sql"))
        settings = {
            "lines": scale.lines,
            "equipment_per_line": scale.equipment_per_line,
            "metrics_per_equipment": scale.metrics_per_equipment,
            "days": scale.days,
            "metric_interval_s": scale.metric_interval_s,
            "null_time_fraction": scale.null_time_fraction,
            "random_seed": scale.random_seed,
            "end_time": end_time.isoformat(),
        }
        for name, value in settings.items():
            conn.execute("SELECT set_config(%s, %s, true)", (f"ms5_seed.{name}", str(value)))
        conn.execute(_read("seed.sql"))
    log.info(
        "built legacy MS5.0 database %s (~%d metric_hist rows) in %.1f s",
        dbname,
        scale.metric_hist_rows,
        time.monotonic() - started,
    )
