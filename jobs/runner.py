"""``run``: the handlers on APScheduler 3.x in real time, with business time ``speed`` x faster.

Business time ``b`` and wall time ``w`` are tied by ``b = b0 + (w - w0) * speed``. Each handler
is one interval job whose wall-clock fire times are the moments business time crosses a multiple
of its interval (the same ticks EventBridge ``rate(...)`` rules and ``simulate`` produce).

Every tick is delivered, each as its own invocation, in business-time order (within one minute in
RUN_ORDER, as ``simulate``): a job that fires delivers every tick of every handler that is due by
now and not yet delivered, oldest first, and keeps delivering while business time runs ahead of it.
When the scheduler falls behind — business time faster than the handlers, APScheduler 3.x folding
the late runs of a job into one (``coalesce``) or skipping a run while the last is busy
(``max_instances=1``) — the next run catches up tick by tick; the report counts the ticks delivered
after their handler's next tick was already due (``late``). At the stop (``--for``, Ctrl-C,
SIGTERM) the ticks due by then are delivered before the run ends, so a run of business span
``(b0, b1]`` makes ``floor(b1 / i) - floor(b0 / i)`` invocations of a handler every ``i`` seconds,
however fast; a second Ctrl-C stops at once (the next run continues from the store's clock). A tick
that fails is printed as it happens, counted in ``errors`` (exit code 1), and not retried.
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

from apscheduler.events import EVENT_JOB_ERROR, JobEvent, JobExecutionEvent
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
    late: Counter[str] = field(default_factory=Counter)  # ticks delivered after their handler's next tick was due

    def as_dict(self) -> dict[str, Any]:
        return {
            "business_start": format_epoch(self.business_start),
            "business_end": format_epoch(self.business_end),
            "invocations": dict(self.invocations),
            "applied": dict(self.applied),
            "errors": list(self.errors),
            "late": dict(self.late),
        }


class _Deliveries:
    """The ticks a run owes, delivered one at a time in business-time order (within one minute in
    RUN_ORDER) by whichever thread asks: an APScheduler job when it fires, the main thread at the stop."""

    def __init__(
        self, runtime: Runtime, schedule: Schedule, clock: BusinessClock, report: RunReport, wall_clock: Callable[[], float]
    ) -> None:
        self.runtime, self.schedule, self.clock, self.report, self.wall_clock = runtime, schedule, clock, report, wall_clock
        self.next = {name: (math.floor(clock.business_start / every) + 1) * every for name, every in schedule.intervals.items()}
        self.horizon = math.inf  # no tick after it is delivered (set at the stop; read without the lock)
        self.delivered = -math.inf  # the latest tick delivered
        self._lock = threading.Lock()  # one delivery at a time, so ticks go in order

    def _first(self) -> tuple[int, str]:
        moment, _, name = min((moment, RUN_ORDER.index(name), name) for name, moment in self.next.items())
        return moment, name

    def owed(self, until: float) -> int:
        """Ticks due at or before ``until`` not delivered yet."""
        return sum(max(0, math.floor(until / every) - (self.next[name] // every) + 1) for name, every in self.schedule.intervals.items())

    def deliver(self, until: Callable[[], float]) -> None:
        """Deliver every tick due by ``until()`` (read again after each tick: a thread that is behind
        keeps catching up) and by the horizon."""
        with self._lock:
            while True:
                moment, name = self._first()
                if moment > min(until(), self.horizon):
                    return
                self._invoke(name, moment)
                self.next[name] = moment + self.schedule.intervals[name]
                self.delivered = max(self.delivered, moment)

    def _invoke(self, name: str, moment: int) -> None:
        every, report = self.schedule.intervals[name], self.report
        event = scheduled_event(datetime.fromtimestamp(moment, timezone.utc), name.replace("_", "-"))
        try:
            results = invoke_all(name, event, self.runtime)  # every shard in turn
        except Exception as exc:  # noqa: BLE001 - reported, and the run goes on to the next tick
            message = f"{name} failed: {type(exc).__name__}: {exc} (tick {format_epoch(moment)})"
            report.errors.append(message)
            print(f"stockpulse run: error: {message}", file=sys.stderr, flush=True)
            return
        for result in results:
            report.invocations[name] += 1
            report.applied[name] += result.get("status") == "applied"
            log.info("%s %s%s: %s", name, result["time"], f" shard {result['shard']}" if "shard" in result else "", result.get("status"))
        if self.wall_clock() > self.clock.wall_at(moment + every):
            report.late[name] += 1


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
            raise InputError(f"--start: before the store's clock ({format_epoch(state.orders_through)}); omit --start to continue from it")
    return requested


def run_scheduler(
    runtime: Runtime,
    schedule: Schedule,
    *,
    speed: float = 1.0,
    duration: float | None = None,
    business_start: float | None = None,
    stop: threading.Event | None = None,
    wall_clock: Callable[[], float] = time.time,
    on_status: Callable[[RunReport], None] | None = None,
    status_every: float = 30.0,
) -> RunReport:
    """Run until ``stop`` is set, SIGINT/SIGTERM (main thread only) or ``duration`` wall seconds."""
    stop = stop or threading.Event()
    wall0 = wall_clock()
    clock = BusinessClock(_start(runtime, wall0, business_start), wall0, speed)
    report = RunReport(business_start=clock.business_start)
    if business_start is None:  # continuing: first the ticks a previous run lost
        state, _ = load_state(runtime.store, runtime.catalog)
        for moment, name in missed_ticks(state, clock.business_start, schedule):
            event = scheduled_event(datetime.fromtimestamp(moment, timezone.utc), name.replace("_", "-"))
            for result in invoke_all(name, event, runtime):
                report.invocations[name] += 1
                report.applied[name] += result.get("status") == "applied"
    deliveries = _Deliveries(runtime, schedule, clock, report, wall_clock)

    def now() -> float:  # fire times are exact to the millisecond: a run a hair early still takes its tick
        return clock.now(wall_clock()) + _EPSILON_WALL * speed

    def on_error(event: JobEvent) -> None:  # outside a delivery: a tick's own failure is reported by it
        assert isinstance(event, JobExecutionEvent)
        message = f"{event.job_id} failed: {type(event.exception).__name__}: {event.exception}"
        report.errors.append(message)
        print(f"stockpulse run: error: {message}", file=sys.stderr, flush=True)

    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(len(RUN_ORDER))}, timezone=timezone.utc)
    scheduler.add_listener(on_error, EVENT_JOB_ERROR)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # a late or skipped run is caught up by the next
    for name in RUN_ORDER:
        interval = schedule.intervals[name]
        wall_interval = interval / speed
        trigger = IntervalTrigger(
            seconds=wall_interval,
            timezone=timezone.utc,
            start_date=datetime.fromtimestamp(clock.wall_at(deliveries.next[name]), timezone.utc),
        )
        scheduler.add_job(
            deliveries.deliver,
            trigger,
            args=[now],
            id=name,
            name=name,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=max(30, math.ceil(2 * wall_interval)),
        )

    previous = _install_signal_handlers(stop)
    deadline = wall0 + duration if duration is not None else math.inf
    scheduler.start()
    try:
        next_status = wall0 + status_every
        while not stop.is_set():
            wall = wall_clock()
            if wall >= deadline:
                break
            stop.wait(min(0.05, max(0.0, deadline - wall)))
            if on_status is not None and wall_clock() >= next_status:
                next_status += status_every
                on_status(report)
        deliveries.horizon = clock.now(min(wall_clock(), deadline))  # the stop: no tick after it
        _restore_signal_handlers(previous)  # from here a second Ctrl-C stops at once
        previous = {}
        owed = deliveries.owed(deliveries.horizon)
        if owed > len(RUN_ORDER):
            print(
                f"stockpulse run: delivering the {owed:,} ticks due by the stop (the scheduler fell behind; Ctrl-C again to stop now)",
                file=sys.stderr,
                flush=True,
            )
        scheduler.shutdown(wait=True)  # a job that is catching up delivers up to the horizon
        deliveries.horizon = report.business_end = max(deliveries.horizon, deliveries.delivered)
        deliveries.deliver(lambda: deliveries.horizon)  # what no job fired for before the stop
    except KeyboardInterrupt:
        deliveries.horizon = -math.inf  # the job in flight finishes its invocation, then stops
        if scheduler.running:
            scheduler.shutdown(wait=True)
        raise
    finally:
        _restore_signal_handlers(previous)
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
    late = sum(report.late.values())
    behind = (
        f"; {late:,} ticks delivered late (the scheduler fell behind business time: "
        f"{', '.join(f'{name} {report.late[name]:,}' for name in RUN_ORDER if report.late[name])})"
        if late
        else ""
    )
    return (
        f"business time {format_epoch(report.business_start)} .. {format_epoch(report.business_end)} "
        f"at {speed:g}x: {counts}{behind}; errors {len(report.errors)}"
    )
