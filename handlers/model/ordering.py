"""The pure cores of the order-tick and restock handlers: (state, tick, catalog, inputs) -> Outcome.

No clock, no environment, no I/O: business time comes from the tick and random draws from
(seed, series, minute), so every run is reproducible. Every per-series step is a numpy operation.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import numpy as np

from handlers.model import feeding
from handlers.model.catalog import Catalog
from handlers.model.demand import demand_block, minute_rates
from handlers.model.events import Tick
from handlers.model.history import DayHistory, order_window
from handlers.model.logs import event, series_events
from handlers.model.outcome import Inputs, Outcome
from handlers.model.purchasing import order_ids, receive_due
from handlers.model.state import RATE_DECAY, State

__all__ = ["order_tick", "restock", "RATE_DECAY"]

_CHUNK_MINUTES = 240  # catch-up ticks are simulated in chunks to bound memory


def order_tick(state: State, tick: Tick, catalog: Catalog, inputs: Inputs = Inputs()) -> Outcome:
    """Simulate the orders of the business minutes since the last tick, fulfil them from stock — or,
    with a shop's feed (``inputs.feed``), apply its lines instead (handlers/model/feeding.py).

    At most ``inputs.catch_up_minutes`` minutes per tick: a longer gap is caught up by the next ticks
    (``summary["behind_minutes"]`` says how many minutes are left). Unmet simulated demand is lost
    (never backordered): on-hand never goes below zero. The history records demand (sold + lost), or
    with ``inputs.censor_lost_sales`` only what sold, as a shop would see it.
    """
    if inputs.feed is not None:
        return feeding.feed_tick(state, tick, catalog, inputs)
    due = math.floor(tick.epoch / 60) * 60
    _, end = order_window(state, tick.epoch, inputs.catch_up_minutes)
    minute_ends = np.arange(state.orders_through + 60, end + 1, 60, dtype=float)
    on_hand = state.on_hand.copy()
    shipped, lost = state.shipped.copy(), state.lost_sales.copy()
    rate, rate_minute = state.order_rate.copy(), state.rate_minute.copy()
    history = DayHistory(state, inputs.recover_day)
    events: list[dict[str, Any]] = []
    units = {"shipped": 0, "lost": 0}
    for chunk in range(0, len(minute_ends), _CHUNK_MINUTES):
        ends = minute_ends[chunk : chunk + _CHUNK_MINUTES]
        drawn = demand_block(catalog, ends, minute_rates(catalog, ends))
        for j, minute_end in enumerate(ends):
            demand = drawn[j]
            out_of_stock = on_hand <= 0
            filled = np.minimum(demand, on_hand)
            missed = demand - filled
            on_hand -= filled
            shipped += filled
            lost += missed
            sold = np.flatnonzero(filled)  # the rate of the others decays lazily (State.order_rate_now)
            minute = int(minute_end // 60)
            rate[sold] = rate[sold] * RATE_DECAY ** (minute - rate_minute[sold]) + filled[sold] * (1 - RATE_DECAY)
            rate_minute[sold] = minute
            history.add(float(minute_end) - 60, filled if inputs.censor_lost_sales else demand, out_of_stock)
            moment = datetime.fromtimestamp(float(minute_end), timezone.utc)
            events += series_events(
                "order", "order_tick", moment, catalog, np.flatnonzero(filled), {"quantity": filled, "remaining_inventory": on_hand}
            )
            events += series_events(
                "lost_sale",
                "order_tick",
                moment,
                catalog,
                np.flatnonzero(missed),
                {"lost_quantity": missed, "remaining_inventory": on_hand},
            )
            units["shipped"] += int(filled.sum())
            units["lost"] += int(missed.sum())
    new_state = state.replace(
        on_hand=on_hand,
        shipped=shipped,
        lost_sales=lost,
        order_rate=rate,
        rate_minute=rate_minute,
        orders_through=max(state.orders_through, float(end)),
        **history.changes(),
    )
    summary = {
        "minutes": len(minute_ends),
        "units_shipped": units["shipped"],
        "units_lost": units["lost"],
        "behind_minutes": max(0, round((due - end) / 60)),
    }
    return Outcome(new_state, events, summary)


def restock(state: State, tick: Tick, catalog: Catalog, inputs: Inputs = Inputs()) -> Outcome:
    """Receive every open purchase order due by the tick time."""
    changes, got = receive_due(state, tick.epoch)
    products, warehouses = catalog.series_product_ids, catalog.series_warehouse_ids
    ids = order_ids(catalog, got["series"], got["number"])
    events = [
        event(
            "restock",
            "restock",
            tick.time,
            f"{products[i]}:{warehouses[i]}:{n}",
            product_id=products[i],
            warehouse_id=warehouses[i],
            restocked_quantity=q,
            new_inventory=after,
            purchase_order_id=po,
            backorder_filled=filled,
        )
        for i, n, q, after, po, filled in zip(
            got["series"].tolist(),
            got["number"].tolist(),
            got["quantity"].tolist(),
            got["new_inventory"].tolist(),
            ids,
            got["backorder_filled"].tolist(),
        )
    ]
    return Outcome(
        state.replace(**changes), events, {"purchase_orders_received": len(events), "units_received": int(got["quantity"].sum())}
    )
