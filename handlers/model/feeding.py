"""The order tick on a shop's own feed: its orders, returns, receipts and stock counts (pure).

The runtime (handlers/runtime/feeds.py) chooses the lines a tick applies — due by the tick, in this
shard, never applied before, not too late — and hands them over as a :class:`~handlers.model.feed.Batch`
in the order they apply. This core applies them minute by minute over the tick's business minutes,
as the simulator applies its draws:

- an **order** ships from stock; what stock cannot cover becomes a **backorder** (a real shop has
  sold it already): ``backorder`` grows, on hand never goes below zero;
- a **receipt** (goods that arrived outside stockpulse's purchase orders) and a **return** add stock,
  and ship the series' backorders first;
- a **count** sets on hand to what was counted *as of the count's time*: the count plus what moved
  since (a late count's ``moved_since``); the difference is an ``adjustment``.

The ledger holds for every series: ``on_hand == initial + received + returned + adjusted - shipped``.
The history records the orders as demand, and every minute that began with nothing on hand as a
minute out of stock (``today_oos``): while out of stock the storefront sells nothing, so demand is
censored there (handlers/forecasting/censored.py recovers it). A line whose minute an earlier tick
already simulated (*late*) is applied in this tick's first minute; its demand counts in its own hour
when that is still today, else in the hour it was applied.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import numpy as np

from handlers.model.catalog import Catalog
from handlers.model.events import Tick, format_epoch
from handlers.model.feed import COUNT, ORDER, RECEIPT, RETURN, Batch
from handlers.model.history import DayHistory, order_window
from handlers.model.logs import event, event_maker
from handlers.model.outcome import Inputs, Outcome
from handlers.model.state import RATE_DECAY, State

__all__ = ["feed_tick", "add_counters", "merge_counters"]

_KIND_NAMES = {ORDER: "order", RETURN: "return", RECEIPT: "receipt", COUNT: "adjustment"}


def add_counters(
    counters: dict[str, dict[str, float]], more: dict[str, dict[str, int]], newest: dict[str, float]
) -> dict[str, dict[str, float]]:
    """``counters`` (the state's, per feed and outcome) plus a tick's; ``newest``: per feed, the
    business time of the newest line the tick applied."""
    return merge_counters([counters, more, {feed: {"newest": moment} for feed, moment in newest.items()}])


def merge_counters(parts: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Feed counters added up: each outcome summed, ``newest`` the latest (a tick's to the state's; the
    shards' into the whole catalog's, handlers/runtime/shards.py)."""
    out: dict[str, dict[str, float]] = {}
    for counters in parts:
        for feed, values in counters.items():
            target = out.setdefault(feed, {})
            for name, value in values.items():
                target[name] = max(target.get(name, value), value) if name == "newest" else target.get(name, 0) + value
    return out


def feed_tick(state: State, tick: Tick, catalog: Catalog, inputs: Inputs) -> Outcome:
    batch: Batch = inputs.feed
    due = math.floor(tick.epoch / 60) * 60
    start, end = order_window(state, tick.epoch, inputs.catch_up_minutes)
    minute_ends = np.arange(start + 60, end + 1, 60, dtype=np.int64)
    first = int(minute_ends[0]) if len(minute_ends) else int(end)
    at = np.maximum(-(-batch.time // 60) * 60, first)  # the minute (its end) each line applies in
    if len(batch) and at.max() > end:
        raise ValueError("a feed line is due after the tick's last minute (the runtime chooses the lines)")
    arrays = {
        name: getattr(state, name).copy()
        for name in ("on_hand", "shipped", "received", "returned", "adjusted", "backorder", "backordered", "order_rate", "rate_minute")
    }
    on_hand, backorder = arrays["on_hand"], arrays["backorder"]
    history = DayHistory(state, inputs.recover_day)
    products, warehouses = catalog.series_product_ids, catalog.series_warehouse_ids
    events: list[dict[str, Any]] = []
    units = {"ordered": 0, "shipped": 0, "backordered": 0, "returned": 0, "received": 0, "adjusted": 0}
    newest: dict[str, float] = {}
    minutes = [int(m) for m in minute_ends] or ([first] if len(batch) else [])
    bounds = np.searchsorted(at, minutes, side="right")  # lines are in time order: `at` is sorted
    begin = 0
    zeros = np.zeros(state.num_series)
    # the lines as Python values, read once (the loop below is the per-line part of a tick)
    series_of, quantity_of, kind_of = batch.series.tolist(), batch.quantity.tolist(), batch.kind.tolist()
    time_of, late_of, moved_of = batch.time.tolist(), batch.late.tolist(), batch.moved_since.tolist()
    line_times: dict[int, str] = {}
    for minute_end, stop in zip(minutes, bounds.tolist()):
        moment_start = minute_end - 60
        # a minute this tick simulates counts out of stock when it begins with nothing on hand; with
        # no new minute (late lines only) the lines apply in the last minute, already counted
        history.add(float(moment_start), zeros, on_hand <= 0 if len(minute_ends) else None)
        when = datetime.fromtimestamp(minute_end, timezone.utc)
        make = event_maker("order_tick", when)
        demand_series: list[int] = []
        demand_units: list[int] = []
        demand_hours: list[float] = []
        for j in range(begin, stop):
            i, q, kind, line_time = series_of[j], quantity_of[j], kind_of[j], time_of[j]
            ident = f"{_KIND_NAMES[kind]}:{batch.line_id[j]}"
            if line_time not in line_times:
                line_times[line_time] = format_epoch(float(line_time))
            where = {
                "product_id": products[i],
                "warehouse_id": warehouses[i],
                "line_id": batch.line_id[j],
                "line_time": line_times[line_time],
                "late": bool(late_of[j]),
            }
            if kind == ORDER:
                filled = min(q, int(on_hand[i]))
                on_hand[i] -= filled
                arrays["shipped"][i] += filled
                short = q - filled
                backorder[i] += short
                arrays["backordered"][i] += short
                units["ordered"] += q
                units["shipped"] += filled
                units["backordered"] += short
                demand_series.append(i)
                demand_units.append(q)
                own_day = line_time // 86400 == history.day
                demand_hours.append(float(line_time) if own_day else float(moment_start))
                rate, minute = arrays["order_rate"], int(minute_end // 60)
                rate[i] = rate[i] * RATE_DECAY ** (minute - arrays["rate_minute"][i]) + q * (1 - RATE_DECAY)
                arrays["rate_minute"][i] = minute
                events.append(make("order", ident, **where, quantity=q, remaining_inventory=int(on_hand[i]), backordered=short))
                newest["orders"] = max(newest.get("orders", -math.inf), float(line_time))
            elif kind in (RECEIPT, RETURN):
                ship = min(q, int(backorder[i]))  # backorders ship first from what arrives
                backorder[i] -= ship
                arrays["shipped"][i] += ship
                on_hand[i] += q - ship
                arrays["received" if kind == RECEIPT else "returned"][i] += q
                units["received" if kind == RECEIPT else "returned"] += q
                units["shipped"] += ship
                fields = {"received_quantity": q} if kind == RECEIPT else {"quantity": q}
                events.append(make(_KIND_NAMES[kind], ident, **where, **fields, new_inventory=int(on_hand[i]), backorder_filled=ship))
                feed = "receipts" if kind == RECEIPT else "orders"
                newest[feed] = max(newest.get(feed, -math.inf), float(line_time))
            else:  # a count, as of its time: what was counted plus what moved since
                moved = moved_of[j]
                expected = int(on_hand[i]) - moved
                target = max(q + moved, 0)
                change = target - int(on_hand[i])
                on_hand[i] = target
                arrays["adjusted"][i] += change
                units["adjusted"] += change
                events.append(
                    make("adjustment", ident, **where, counted=q, expected=expected, difference=q - expected, new_inventory=target)
                )
                newest["counts"] = max(newest.get("counts", -math.inf), float(line_time))
        if demand_series:
            hours = np.array(demand_hours)
            for hour_moment in np.unique(hours).tolist():
                pick = hours == hour_moment
                history.add_lines(hour_moment, np.array(demand_series)[pick], np.array(demand_units, dtype=float)[pick])
        begin = stop
    for record in batch.rejected:
        events.append(
            event("feed_rejected", "order_tick", tick.time, f"{record['feed']}:{record['key']}:{record.get('line', 0)}", **record)
        )
    counters = add_counters(state.feed_counters, batch.counters, newest)
    new_state = state.replace(**arrays, orders_through=max(state.orders_through, float(end)), feed_counters=counters, **history.changes())
    applied = sum(values.get("applied", 0) for values in batch.counters.values())
    summary = {
        "minutes": len(minute_ends),
        "lines_applied": applied,
        "lines_late": sum(values.get("late", 0) for values in batch.counters.values()),
        "lines_refused": sum(
            count for values in batch.counters.values() for outcome, count in values.items() if outcome not in ("applied", "late")
        ),
        "units_ordered": units["ordered"],
        "units_shipped": units["shipped"],
        "units_backordered": units["backordered"],
        "units_received": units["received"],
        "units_returned": units["returned"],
        "units_adjusted": units["adjusted"],
        "behind_minutes": max(0, round((due - end) / 60)),
    }
    return Outcome(new_state, events, summary)
