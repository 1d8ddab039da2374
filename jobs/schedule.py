"""The schedule: how often each handler runs, in business time (EventBridge ``rate(...)``)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from handlers.errors import InputError
from handlers.model.numbers import shown
from handlers.model.state import HANDLERS
from handlers.runtime.declarations import DECLARATIONS

__all__ = ["Schedule", "DEFAULT_INTERVALS", "parse_duration", "RUN_ORDER"]

#: each handler module's declared schedule (handlers/<name>.py ``DECLARED.every_seconds``)
DEFAULT_INTERVALS: dict[str, int] = {name: declared.every_seconds for name, declared in DECLARATIONS.items()}
#: Within one business minute: receive stock first, then sell, then look ahead, then reorder.
RUN_ORDER: tuple[str, ...] = ("restock", "order_tick", "forecast", "alert")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, field: str) -> float:
    """``90s``, ``5m``, ``1h``, ``2d`` or a number of seconds; errors name ``field``."""
    match = re.fullmatch(r"\s*(\d{1,15}(?:\.\d{1,15})?)\s*([smhd]?)\s*", str(text), re.ASCII)  # ASCII digits only
    if not match or float(match.group(1)) <= 0:
        raise InputError(f"{field}: not a positive duration like 90s, 5m, 1h or 2d: {shown(text)}")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


@dataclass(frozen=True)
class Schedule:
    intervals: dict[str, int]  # handler -> seconds (whole minutes)

    @classmethod
    def parse(cls, overrides: Iterable[str] = (), field: str = "--every") -> Schedule:
        intervals = dict(DEFAULT_INTERVALS)
        for item in overrides:
            name, sep, value = item.partition("=")
            if not sep or name not in HANDLERS:
                raise InputError(f"{field}: expected HANDLER=DURATION with HANDLER one of {', '.join(HANDLERS)}, got {item!r}")
            seconds = parse_duration(value, f"{field} {name}")
            if seconds % 60:
                raise InputError(f"{field} {name}: must be whole minutes (EventBridge rates are), got {value!r}")
            intervals[name] = int(seconds)
        return cls(intervals)

    def due(self, minute_end: int) -> Iterator[str]:
        """Handlers that fire at business time ``minute_end`` (epoch seconds), in run order."""
        for name in RUN_ORDER:
            if minute_end % self.intervals[name] == 0:
                yield name

    def count(self, start: int, end: int) -> dict[str, int]:
        """Invocations of each handler at times in (start, end]."""
        return {name: end // every - start // every for name, every in self.intervals.items()}

    def describe(self) -> str:
        return ", ".join(f"{name} every {_human(self.intervals[name])}" for name in RUN_ORDER)


def _human(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
