"""How far business time may move in one step: the guard that keeps a store's clock unpoisonable.

A store's clock is the latest business time it has reached: the end of the last simulated order
minute, or the latest tick any handler applied. A tick may lead that clock by at most its
handler's *maximum lead* (``--max-tick-lead`` / ``STOCKPULSE_MAX_TICK_LEAD``, default
``order_tick=7d,restock=6h,forecast=6h,alert=6h``); a tick further ahead is refused with an
``InputError`` naming ``event.time`` and nothing is written. One mistaken future date can
therefore hold a handler's ticks back by at most its lead, never forever.

A long gap (up to the order-tick lead) is caught up a bounded piece at a time: one order tick
simulates at most ``--max-catch-up-minutes`` business minutes (default 1440), records its tick as
applied (a redelivery is still "already applied") and leaves the rest to the next ticks.

Business times are limited to 1971-01-01 .. 2199-12-31 (UTC): every date the handlers compute
from a tick (forecast days, purchase-order due times, local times) stays representable.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from . import HANDLERS
from .errors import InputError

if TYPE_CHECKING:
    from .state import State

__all__ = ["Limits", "EARLIEST", "LATEST", "DEFAULT_MAX_LEAD", "DEFAULT_CATCH_UP_MINUTES", "MAX_EVENT_BYTES",
           "MAX_EVENT_DEPTH", "MAX_CATALOG_BYTES", "MAX_CATALOG_SERIES", "MAX_SERIES", "CATALOG_MAXIMA", "MAX_BACKTEST_BYTES",
           "MAX_BACKTEST_LINE",
           "parse_max_lead", "format_max_lead", "store_clock", "check_time", "check_lead"]

EARLIEST = datetime(1971, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2199, 12, 31, tzinfo=timezone.utc)
DEFAULT_MAX_LEAD: dict[str, float] = {"order_tick": 7 * 86400.0, "restock": 6 * 3600.0,
                                      "forecast": 6 * 3600.0, "alert": 6 * 3600.0}
DEFAULT_CATCH_UP_MINUTES = 1440

# -- sizes and magnitudes a real shop never reaches; beyond them input is refused in one line ----
MAX_EVENT_BYTES = 256 * 1024  # EventBridge's own limit for one event
MAX_EVENT_DEPTH = 32  # nesting of JSON objects/arrays in an event file
MAX_CATALOG_BYTES = 64 * 1024 * 1024  # 100,000 product rows take about 8-10 MiB
MAX_CATALOG_SERIES = 2_000_000  # products x warehouses in one catalog (sharded beyond MAX_SERIES)
#: series one invocation handles: the whole catalog, or one shard (handlers/shards.py). The goals are set
#: at 100,000 (docs/performance.md); the headroom takes the hash split's imbalance (a 1M-series catalog
#: in 10 shards gives 98,360-101,420 series per shard) — the forecast peaks near 1.3 GB here
MAX_SERIES = 120_000
#: catalog field -> largest accepted value
CATALOG_MAXIMA: dict[str, float] = {"base_demand_per_day": 1e6, "lead_time_hours": 8760, "pack_size": 1e6,
                                    "trend_per_year": 1.0, "promo_probability_per_day": 1.0, "promo_lift": 100.0,
                                    "demand_factor": 1000.0, "initial_stock": 1e9, "seed": 2**63 - 1}
MAX_BACKTEST_BYTES = 2 * 1024**3  # a sales history file (uncompressed)
MAX_BACKTEST_LINE = 64 * 1024  # characters in one CSV line
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Limits:
    max_lead: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MAX_LEAD))  # seconds
    catch_up_minutes: int = DEFAULT_CATCH_UP_MINUTES


def _seconds(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if not match or not 0 < float(match.group(1)) * _UNITS[match.group(2)] <= 3660 * 86400:
        raise ValueError("must be durations like 7d or 6h (at most 3660d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_max_lead(text: str) -> dict[str, float]:
    """``7d`` (every handler) or ``HANDLER=DURATION,...`` (the others keep their defaults)."""
    leads = dict(DEFAULT_MAX_LEAD)
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.rpartition("=")
        if not sep:
            leads = dict.fromkeys(HANDLERS, _seconds(value))
        elif name.strip() in HANDLERS:
            leads[name.strip()] = _seconds(value)
        else:
            raise ValueError(f"must be DURATION or HANDLER=DURATION with HANDLER one of {', '.join(HANDLERS)}")
    return leads


def format_max_lead(leads: Mapping[str, float]) -> str:
    def human(seconds: float) -> str:
        for unit in ("d", "h", "m"):
            if seconds % _UNITS[unit] == 0:
                return f"{seconds / _UNITS[unit]:g}{unit}"
        return f"{seconds:g}s"
    return ",".join(f"{name}={human(leads[name])}" for name in HANDLERS)


def check_time(moment: datetime, field_name: str) -> datetime:
    """Refuse business times outside EARLIEST .. LATEST, naming ``field_name``."""
    if not EARLIEST <= moment <= LATEST:
        raise InputError(f"{field_name}: {moment.isoformat().replace('+00:00', 'Z')} is outside the supported "
                         f"business times {EARLIEST.date()} .. {LATEST.date()}")
    return moment


def store_clock(state: State) -> float:
    """The latest business time the store has reached (epoch seconds)."""
    applied = [t for t in state.applied.values() if math.isfinite(t)]
    return max([state.orders_through, *applied])


def check_lead(handler: str, tick_epoch: float, state: State, limits: Limits, field_name: str = "event.time") -> None:
    """Refuse a tick further ahead of the store's clock than ``handler``'s maximum lead."""
    clock = store_clock(state)
    lead = tick_epoch - clock
    allowed = limits.max_lead[handler]
    if lead > allowed:
        from .events import format_epoch

        raise InputError(f"{field_name}: {format_epoch(tick_epoch)} is {_human(lead)} ahead of the store's clock "
                         f"({format_epoch(clock)}); {handler} accepts at most {_human(allowed)} "
                         f"(--max-tick-lead / STOCKPULSE_MAX_TICK_LEAD) — replay the gap with "
                         f"`simulate --days {math.ceil(lead / 86400)}`, or fix the event's time")


def _human(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min"
