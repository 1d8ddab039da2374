"""Sizes, magnitudes and business times stockpulse accepts anywhere; beyond them input is refused
in one line naming the field.

Business times are limited to 1971-01-01 .. 2199-12-31 (UTC): every date the handlers compute
from a tick (forecast days, purchase-order due times, local times) stays representable. How far a
tick may lead a store's clock is handlers/runtime/clock.py.
"""

from __future__ import annotations

from datetime import datetime, timezone

from handlers.errors import InputError

__all__ = [
    "EARLIEST",
    "LATEST",
    "MAX_EVENT_BYTES",
    "MAX_EVENT_DEPTH",
    "MAX_CATALOG_BYTES",
    "MAX_CATALOG_SERIES",
    "MAX_SERIES",
    "CATALOG_MAXIMA",
    "MAX_BACKTEST_BYTES",
    "MAX_BACKTEST_LINE",
    "check_time",
]

EARLIEST = datetime(1971, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2199, 12, 31, tzinfo=timezone.utc)

# -- sizes and magnitudes a real shop never reaches; beyond them input is refused in one line ----
MAX_EVENT_BYTES = 256 * 1024  # EventBridge's own limit for one event
MAX_EVENT_DEPTH = 32  # nesting of JSON objects/arrays in an event file
MAX_CATALOG_BYTES = 64 * 1024 * 1024  # 100,000 product rows take about 8-10 MiB
MAX_CATALOG_SERIES = 2_000_000  # products x warehouses in one catalog (sharded beyond MAX_SERIES)
#: series one invocation handles: the whole catalog, or one shard (handlers/runtime/shards.py). The goals are set
#: at 100,000 (docs/performance.md); the headroom takes the hash split's imbalance (a 1M-series catalog
#: in 10 shards gives 98,360-101,420 series per shard) — the forecast peaks near 1.3 GB here
MAX_SERIES = 120_000
#: catalog field -> largest accepted value
CATALOG_MAXIMA: dict[str, float] = {
    "base_demand_per_day": 1e6,
    "lead_time_hours": 8760,
    "pack_size": 1e6,
    "trend_per_year": 1.0,
    "promo_probability_per_day": 1.0,
    "promo_lift": 100.0,
    "demand_factor": 1000.0,
    "initial_stock": 1e9,
    "seed": 2**63 - 1,
}
MAX_BACKTEST_BYTES = 2 * 1024**3  # a sales history file (uncompressed)
MAX_BACKTEST_LINE = 64 * 1024  # characters in one CSV line


def check_time(moment: datetime, field_name: str) -> datetime:
    """Refuse business times outside EARLIEST .. LATEST, naming ``field_name``."""
    if not EARLIEST <= moment <= LATEST:
        raise InputError(
            f"{field_name}: {moment.isoformat().replace('+00:00', 'Z')} is outside the supported "
            f"business times {EARLIEST.date()} .. {LATEST.date()}"
        )
    return moment
