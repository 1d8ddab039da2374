"""How far business time may move in one step: the guard that keeps a store's clock unpoisonable.

A store's clock is its *order clock*: the end of the last business minute its order ticks
simulated (``State.orders_through``). A tick may lead that clock by at most its handler's *maximum
lead* (``--max-tick-lead`` / ``STOCKPULSE_MAX_TICK_LEAD``, default
``order_tick=7d,restock=6h,forecast=6h,alert=6h``); a tick further ahead is refused with an
``InputError`` naming ``event.time`` (and the handler's next tick) and nothing is written. One
mistaken future date can therefore hold a handler's ticks back by at most its lead, never forever.

Every lead is measured against the order clock alone, never against the ticks other handlers (or
the same one) applied: a forecast that ran ahead does not let the next forecast, or an alert that
reads it, go further, and an alert or restock ahead does not move how far an order tick may lead.
Only order ticks move the order clock, by simulating minutes up to their own tick time, at most
``--max-catch-up-minutes`` of them per tick — so no accepted tick of any handler, in any order,
lies beyond the order clock by more than that handler's lead.

A long gap (up to the order-tick lead) is caught up a bounded piece at a time: one order tick
simulates at most ``--max-catch-up-minutes`` business minutes (default 1440), records its tick as
applied (a redelivery is still "already applied") and leaves the rest to the next ticks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from handlers.errors import InputError
from handlers.model.events import format_epoch
from handlers.model.outcome import DEFAULT_CATCH_UP_MINUTES
from handlers.model.state import HANDLERS, State
from handlers.runtime.declarations import DECLARATIONS

__all__ = [
    "Limits",
    "DEFAULT_MAX_LEAD",
    "DEFAULT_CATCH_UP_MINUTES",
    "parse_max_lead",
    "format_max_lead",
    "store_clock",
    "next_tick",
    "check_lead",
]

#: each handler's declared maximum lead (handlers/runtime/declarations.py), seconds
DEFAULT_MAX_LEAD: dict[str, float] = {name: declared.max_lead_seconds for name, declared in DECLARATIONS.items()}

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Limits:
    """How far a tick may lead the store's clock (per handler, seconds), and how many business minutes
    one order tick catches up at most (the core's ``inputs.catch_up_minutes``)."""

    max_lead: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MAX_LEAD))
    catch_up_minutes: int = DEFAULT_CATCH_UP_MINUTES


def _seconds(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text, re.ASCII)  # only ASCII digits are numbers
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


def store_clock(state: State) -> float:
    """The order clock: the end of the last business minute the store's order ticks simulated (epoch
    seconds) — what every handler's lead is measured against."""
    return state.orders_through


def next_tick(handler: str, state: State) -> float:
    """The handler's next scheduled tick (its declared interval) after its last applied one, or after
    the order clock when it has applied none since."""
    every = DECLARATIONS[handler].every_seconds
    last = state.applied[handler]
    after = last if math.isfinite(last) and last >= state.orders_through - every else state.orders_through
    return (math.floor(after / every) + 1) * every


def check_lead(handler: str, tick_epoch: float, state: State, limits: Limits, field_name: str = "event.time") -> None:
    """Refuse a tick further ahead of the store's order clock than ``handler``'s maximum lead."""
    clock = store_clock(state)
    lead = tick_epoch - clock
    allowed = limits.max_lead[handler]
    if lead > allowed:
        upcoming = next_tick(handler, state)
        hint = (
            f"the store's next {handler} is {format_epoch(upcoming)}"
            if upcoming - clock <= allowed
            else f"{handler} waits for the order ticks: it accepts ticks up to {format_epoch(clock + allowed)}"
        )
        raise InputError(
            f"{field_name}: {format_epoch(tick_epoch)} is {_human(lead)} ahead of the store's clock "
            f"({format_epoch(clock)}, its order ticks' last minute); {handler} accepts at most "
            f"{_human(allowed)} (--max-tick-lead / STOCKPULSE_MAX_TICK_LEAD) — {hint}; replay the gap "
            f"with `simulate --days {math.ceil(lead / 86400)}`, or fix the event's time"
        )


def _human(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min"
