"""Replay the schedule in business time as fast as the handlers run, then summarise."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from handlers.catalog import Catalog
from handlers.errors import InputError
from handlers.events import format_epoch, scheduled_event
from handlers.runtime import Runtime, invoke, load_state
from handlers.state import State

from .schedule import Schedule

__all__ = ["simulate", "SimulationResult", "series_table", "DEFAULT_START"]

DEFAULT_START = "2026-01-05T00:00:00Z"  # a Monday; a fixed default makes every replay identical


@dataclass(frozen=True)
class SimulationResult:
    start: float
    end: float
    invocations: dict[str, int]
    wall_seconds: float
    before: State | None
    after: State


def simulate(runtime: Runtime, *, start: datetime | None, days: float, schedule: Schedule,
             progress: Callable[[int, int], None] | None = None) -> SimulationResult:
    """Invoke every handler at its scheduled business times in (start, start + days].

    With ``start=None`` the replay continues from the store's clock (or DEFAULT_START when the
    store is empty). ``progress(done, total)`` is called after every invocation.
    """
    before, _ = load_state(runtime.store, runtime.catalog)
    if start is None:
        begin = before.orders_through if before is not None else _parse_default()
    else:
        begin = start.timestamp()
        if before is not None and begin < before.orders_through:
            raise InputError(f"--start: {format_epoch(begin)} is before the store's clock "
                             f"({format_epoch(before.orders_through)}); omit --start to continue")
    begin = math.floor(begin / 60) * 60
    end = begin + round(days * 86400 / 60) * 60
    total = sum(schedule.count(int(begin), int(end)).values())
    counts = dict.fromkeys(schedule.intervals, 0)
    done = 0
    started = time.perf_counter()
    for minute_end in range(int(begin) + 60, int(end) + 1, 60):
        for name in schedule.due(minute_end):
            moment = datetime.fromtimestamp(minute_end, timezone.utc)
            invoke(name, scheduled_event(moment, name.replace("_", "-"), event_id=f"sim-{name}-{minute_end}"),
                   runtime)
            counts[name] += 1
            done += 1
            if progress is not None:
                progress(done, total)
    after, _ = load_state(runtime.store, runtime.catalog)
    assert after is not None
    return SimulationResult(begin, end, counts, time.perf_counter() - started, before, after)


def _parse_default() -> float:
    return datetime.fromisoformat(DEFAULT_START.replace("Z", "+00:00")).timestamp()


def series_table(result: SimulationResult, catalog: Catalog) -> list[dict[str, Any]]:
    """Per product x warehouse over the replay: sold, lost, fill rate, reorders, end inventory."""
    after, before = result.after, result.before
    rows = []

    def delta(name: str) -> np.ndarray:
        now = getattr(after, name)
        return now - getattr(before, name) if before is not None else now

    sold, lost, reorders = delta("shipped"), delta("lost_sales"), delta("reorders")
    demand = sold + lost
    fill = np.where(demand > 0, sold / np.maximum(demand, 1), 1.0)
    for i in range(after.num_series):
        rows.append({"product_id": catalog.series_product_ids[i], "warehouse_id": catalog.series_warehouse_ids[i],
                     "units_sold": int(sold[i]), "lost_sales": int(lost[i]), "fill_rate": float(fill[i]),
                     "reorders": int(reorders[i]), "end_inventory": int(after.on_hand[i])})
    return rows
