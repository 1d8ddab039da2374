"""``run``: the handlers on APScheduler 3.x in real time, with business time ``speed`` x faster.

Business time ``b`` and wall time ``w`` are tied by ``b = b0 + (w - w0) * speed``. Each handler
is one interval job whose wall-clock fire times are the moments business time crosses a multiple
of its interval (the same ticks EventBridge ``rate(...)`` rules and ``simulate`` produce); each
run invokes the handler with the business time of the latest boundary passed. ``coalesce`` folds
missed runs into one (order_tick catches up every elapsed minute anyway), ``max_instances=1``
keeps one run per handler at a time, and a late run still runs within ``misfire_grace_time``
(two intervals, at least 30 s). Job errors are printed as they happen and make the exit code 1.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from handlers.errors import InputError
from handlers.model.events import format_epoch, scheduled_event
from handlers.runtime.clock import check_lead
from handlers.runtime.invoke import Runtime, invoke_all, load_state

from .schedule import RUN_ORDER, Schedule
from .simulate import missed_ticks

__all__ = ["BusinessClock", "RunReport", "run_scheduler", "describe_run"]

log = logging.getLogger("stockpulse.run")
_EPSILON_WALL = 0.002  # fire times are exact to the millisecond; absorb float error


@dataclass(frozen=True)
class BusinessClock:
    business_start: float  # epoch seconds
    wall_start: float
    speed: float

    def now(self, wall: float) -> float:
        return self.business_start + (wall - self.wall_start) * self.speed

    def wall_at(self, business: float) -> float:
        return self.wall_start + (business - self.business_start) / self.speed


@dataclass
class RunReport:
    business_start: float
    business_end: float = math.nan
    invocations: Counter[str] = field(default_factory=Counter)
    applied: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    missed: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"business_start": format_epoch(self.business_start), "business_end": format_epoch(self.business_end),
                "invocations": dict(self.invocations), "applied": dict(self.applied),
                "errors": list(self.errors), "missed": dict(self.missed)}


def _start(runtime: Runtime, wall: float, requested: float | None) -> float:
    """The business start: ``requested``, else the store's clock (continue), else now.

    Refuses a start further ahead of the store's clock than the order tick's maximum lead
    (handlers/model/bounds.py) or behind it (nothing would apply)."""
    state, _ = load_state(runtime.store, runtime.catalog)
    if requested is None:
        return state.orders_through if state is not None else math.floor(wall / 60) * 60
    if state is not None:
        check_lead("order_tick", requested, state, runtime.limits, "--start")
        if requested < state.orders_through:
            raise InputError(f"--start: before the store's clock ({format_epoch(state.orders_through)}); "
                             "omit --start to continue from it")
    return requested


def run_scheduler(runtime: Runtime, schedule: Schedule, *, speed: float = 1.0, duration: float | None = None,
                  business_start: float | None = None, stop: threading.Event | None = None,
                  wall_clock: Callable[[], float] = time.time,
                  on_status: Callable[[RunReport], None] | None = None, status_every: float = 30.0) -> RunReport:
    """Run until ``stop`` is set, SIGINT/SIGTERM (main thread only) or ``duration`` wall seconds."""
    stop = stop or threading.Event()
    wall0 = wall_clock()
    clock = BusinessClock(_start(runtime, wall0, business_start), wall0, speed)
    report = RunReport(business_start=clock.business_start)
    lock = threading.Lock()
    if business_start is None:  # continuing: first the ticks a previous run lost
        state, _ = load_state(runtime.store, runtime.catalog)
        for moment, name in missed_ticks(state, clock.business_start, schedule):
            event = scheduled_event(datetime.fromtimestamp(moment, timezone.utc), name.replace("_", "-"))
            for result in invoke_all(name, event, runtime):
                report.invocations[name] += 1
                report.applied[name] += result.get("status") == "applied"

    def tick(name: str) -> None:
        interval = schedule.intervals[name]
        business = math.floor((clock.now(wall_clock()) + _EPSILON_WALL * speed) / interval) * interval
        moment = datetime.fromtimestamp(business, timezone.utc)
        for result in invoke_all(name, scheduled_event(moment, name.replace("_", "-")), runtime):  # each shard
            with lock:
                report.invocations[name] += 1
                if result.get("status") == "applied":
                    report.applied[name] += 1
            log.info("%s %s%s: %s", name, result["time"], f" shard {result['shard']}" if "shard" in result else "",
                     result.get("status"))

    def on_event(event: JobEvent) -> None:
        with lock:
            if event.code in (EVENT_JOB_MISSED, EVENT_JOB_MAX_INSTANCES):
                # a run still busy or too late: coalesced into the next one (order_tick catches up)
                report.missed[event.job_id] += 1
                return
            assert isinstance(event, JobExecutionEvent)
            message = f"{event.job_id} failed: {type(event.exception).__name__}: {event.exception}"
            report.errors.append(message)
        print(f"stockpulse run: error: {message}", file=sys.stderr, flush=True)

    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(len(RUN_ORDER))}, timezone=timezone.utc)
    scheduler.add_listener(on_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # skips are counted in the report instead
    for name in RUN_ORDER:
        interval = schedule.intervals[name]
        first = (math.floor(clock.business_start / interval) + 1) * interval
        wall_interval = interval / speed
        trigger = IntervalTrigger(seconds=wall_interval, timezone=timezone.utc,
                                  start_date=datetime.fromtimestamp(clock.wall_at(first), timezone.utc))
        scheduler.add_job(tick, trigger, args=[name], id=name, name=name, coalesce=True, max_instances=1,
                          misfire_grace_time=max(30, math.ceil(2 * wall_interval)))

    previous = _install_signal_handlers(stop)
    deadline = wall0 + duration if duration is not None else math.inf
    scheduler.start()
    try:
        next_status = wall0 + status_every
        while not stop.is_set():
            now = wall_clock()
            if now >= deadline:
                break
            stop.wait(min(0.05, max(0.0, deadline - now)))
            if on_status is not None and wall_clock() >= next_status:
                next_status += status_every
                on_status(report)
    finally:
        scheduler.shutdown(wait=True)  # lets running invocations finish: none is cut in half
        _restore_signal_handlers(previous)
    report.business_end = clock.now(min(wall_clock(), deadline))
    return report


def _install_signal_handlers(stop: threading.Event) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, lambda *_: stop.set())
    return previous


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def describe_run(report: RunReport, speed: float) -> str:
    counts = ", ".join(f"{name} {report.invocations.get(name, 0)}" for name in RUN_ORDER)
    return (f"business time {format_epoch(report.business_start)} .. {format_epoch(report.business_end)} "
            f"at {speed:g}x: {counts}; errors {len(report.errors)}")
