"""Ticks and the schedules of ticks the tests run: real EventBridge event shapes (tests/events/),
the test catalogs, and a runner for (handler, time) pairs."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from handlers.model.events import format_time
from handlers.runtime.invoke import Runtime, invoke

EVENTS = Path(__file__).resolve().parent.parent / "events"
START = datetime(2026, 1, 5, tzinfo=timezone.utc)  # a Monday

SMALL_CATALOG = """
seed: 7
products:
  - {id: P-1, base_demand_per_day: 240, lead_time_hours: 12, pack_size: 10}
  - {id: P-2, base_demand_per_day: 60, lead_time_hours: 30, pack_size: 25}
warehouses:
  - {id: W-A, timezone: America/New_York}
  - {id: W-B, timezone: Asia/Tokyo, demand_factor: 0.5}
initial_stock: 60
"""


def load_event(name: str = "scheduled_event", **overrides: Any) -> dict[str, Any]:
    """A real EventBridge event shape from tests/events/, with fields replaced."""
    event = json.loads((EVENTS / f"{name}.json").read_text())
    event.update(overrides)
    return copy.deepcopy(event)


def event_at(moment: datetime, **overrides: Any) -> dict[str, Any]:
    fields = {"time": format_time(moment), "id": f"test-{moment.timestamp():.0f}", **overrides}
    return load_event(**fields)


def zero_clock() -> float:
    """A clock that never moves: latencies are 0, so state bytes are reproducible."""
    return 0.0


Schedule = Iterable[tuple[str, datetime]]


def schedule(start: datetime, minutes: int, every: dict[str, int] | None = None) -> list[tuple[str, datetime]]:
    """(handler, time) pairs in run order for business minutes (start, start + minutes]."""
    every = every or {"order_tick": 1, "restock": 5, "forecast": 60, "alert": 15}
    order = ("restock", "order_tick", "forecast", "alert")
    ticks = []
    for m in range(1, minutes + 1):
        moment = start + timedelta(minutes=m)
        minute_number = int(moment.timestamp() // 60)
        ticks += [(name, moment) for name in order if minute_number % every[name] == 0]
    return ticks


def run(runtime: Runtime, ticks: Schedule, on_result: Callable[[dict], None] | None = None) -> None:
    for name, moment in ticks:
        result = invoke(name, event_at(moment), runtime)
        if on_result:
            on_result(result)
