"""Replay the schedule in business time as fast as the handlers run, then summarise."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from handlers.errors import InputError
from handlers.model.bounds import LATEST
from handlers.model.catalog import Catalog
from handlers.model.events import format_epoch, scheduled_event
from handlers.model.state import State
from handlers.runtime.clock import check_lead
from handlers.runtime.invoke import Runtime, invoke_all, load_state

from .schedule import RUN_ORDER, Schedule

__all__ = ["simulate", "SimulationResult", "series_table", "DEFAULT_START", "resume_points", "missed_ticks"]

DEFAULT_START = "2026-01-05T00:00:00Z"  # a Monday; a fixed default makes every replay identical


@dataclass(frozen=True)
class SimulationResult:
    start: float
    end: float
    invocations: dict[str, int]
    wall_seconds: float
    before: State | None
    after: State


def simulate(
    runtime: Runtime, *, start: datetime | None, days: float, schedule: Schedule, progress: Callable[[int, int], None] | None = None
) -> SimulationResult:
    """Invoke every handler at its scheduled business times in (start, start + days].

    Each handler picks up after its own last applied tick, so repeating the command of an
    interrupted replay finishes it exactly as an uninterrupted one would have. With
    ``start=None`` the replay continues from the store's order clock (or DEFAULT_START when the
    store is empty), and a handler whose tick of the last interval was lost (the process died
    between two handlers of one minute) runs it first. ``progress(done, total)`` is called after
    every invocation.
    """
    before, _ = load_state(runtime.store, runtime.catalog)
    if start is None:
        begin = before.orders_through if before is not None else _parse_default()
    else:
        begin = start.timestamp()
        if before is not None:
            check_lead("order_tick", begin, before, runtime.limits, "--start")
    begin = math.floor(begin / 60) * 60
    end = begin + round(days * 86400 / 60) * 60
    if end > LATEST.timestamp():
        raise InputError(f"--days: the replay would end at {format_epoch(end)}, after the last supported business time ({LATEST.date()})")
    after_tick = resume_points(before, begin, schedule, continuing=start is None)
    total = int(sum(end // every - after_tick[name] // every for name, every in schedule.intervals.items()))
    counts = dict.fromkeys(schedule.intervals, 0)
    done = 0
    started = time.perf_counter()
    first = int(min(after_tick.values()) // 60 * 60)
    for minute_end in range(first + 60, int(end) + 1, 60):
        for name in schedule.due(minute_end):
            if minute_end <= after_tick[name]:
                continue  # applied before: by the interrupted run this one resumes
            moment = datetime.fromtimestamp(minute_end, timezone.utc)
            invoke_all(
                name, scheduled_event(moment, name.replace("_", "-"), event_id=f"sim-{name}-{minute_end}"), runtime
            )  # every shard in turn when the catalog is sharded
            counts[name] += 1
            done += 1
            if progress is not None:
                progress(done, total)
    after, _ = load_state(runtime.store, runtime.catalog)
    assert after is not None
    return SimulationResult(begin, end, counts, time.perf_counter() - started, before, after)


def resume_points(state: State | None, begin: float, schedule: Schedule, *, continuing: bool) -> dict[str, float]:
    """Per handler, the business time after which its ticks run: its own last applied tick or
    ``begin``, whichever is later. Continuing the store's clock (``begin`` is the order clock), a
    handler may also run the one tick of its last interval it missed, if the store existed then."""
    points = {}
    for name, every in schedule.intervals.items():
        applied = state.applied[name] if state is not None else -math.inf
        floor = max(begin - every, state.created_at - 60) if continuing and state is not None else begin
        points[name] = max(applied, floor)
    return points


def missed_ticks(state: State | None, begin: float, schedule: Schedule) -> list[tuple[int, str]]:
    """(business time, handler) of the ticks at or before ``begin`` that continuing the store's
    clock must run first (lost when a run died between two handlers of one minute), in run order."""
    points = resume_points(state, begin, schedule, continuing=True)
    due = []
    for name, every in schedule.intervals.items():
        moment = int(begin // every * every)
        if moment > points[name]:
            due.append((moment, RUN_ORDER.index(name), name))
    return [(moment, name) for moment, _, name in sorted(due)]


def _parse_default() -> float:
    return datetime.fromisoformat(DEFAULT_START.replace("Z", "+00:00")).timestamp()


def series_table(result: SimulationResult, catalog: Catalog) -> list[dict[str, Any]]:
    """Per product x warehouse over the replay: sold, lost, fill rate, reorders, end inventory."""
    after, before = result.after, result.before
    rows = []

    def delta(name: str) -> np.ndarray:
        now = getattr(after, name)
        return np.asarray(now - getattr(before, name) if before is not None else now)

    sold, lost, reorders = delta("shipped"), delta("lost_sales"), delta("reorders")
    demand = sold + lost
    fill = np.where(demand > 0, sold / np.maximum(demand, 1), 1.0)
    for i in range(after.num_series):
        rows.append(
            {
                "product_id": catalog.series_product_ids[i],
                "warehouse_id": catalog.series_warehouse_ids[i],
                "units_sold": int(sold[i]),
                "lost_sales": int(lost[i]),
                "fill_rate": float(fill[i]),
                "reorders": int(reorders[i]),
                "end_inventory": int(after.on_hand[i]),
            }
        )
    return rows
