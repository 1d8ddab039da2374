"""Each handler described once: everything that differs between the four handlers.

A :class:`Declaration` says what a handler *is*: its core as the runtime calls it, its default
schedule, the part of the state it commits and the parts it reads, when it needs the demand
history, how far its tick may lead the store's clock, whether it fits from every shard's
statistics, and the metrics its group owns. The runtime (handlers/runtime/invoke.py), the state's
layout (``layout.py``), the clock (``clock.py``), the metrics (handlers/telemetry/metrics.py), the
command line's schedule (``jobs/schedule.py``) and the deployment's roles (``jobs/deploy/plan.py``)
read these instead of asking for a handler by name. The entry points (``handlers/order_tick.py``
...) serve them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from handlers.forecasting import planning
from handlers.model import ordering
from handlers.model.events import Tick
from handlers.model.outcome import Core
from handlers.model.state import HANDLERS, State

__all__ = ["Declaration", "DECLARATIONS", "ORDER_TICK", "RESTOCK", "FORECAST", "ALERT", "Part", "parts_of"]

#: The state's compare-and-swap parts (handlers/runtime/layout.py): ``state/state.bin`` and
#: ``state/forecast.bin``.
Part = Literal["hot", "forecast"]
_DAY, _HOUR = 86400.0, 3600.0


def never(state: State, tick: Tick) -> bool:
    return False


def always(state: State, tick: Tick) -> bool:
    return True


def when_a_day_closes(state: State, tick: Tick) -> bool:
    """An order tick reads the history only when the minutes it simulates close a business day."""
    return (tick.epoch - 60) // 86400 > state.history_day


@dataclass(frozen=True)
class Declaration:
    name: str  # log objects, metric group, state counters, function name
    core: Core  # (state, tick, catalog, inputs) -> Outcome, as the runtime calls it
    every_seconds: int  # default schedule (EventBridge rate), business seconds
    owns: Part  # the part its commit swaps
    reads_forecast: bool  # whether its invocations read state/forecast.bin (else its fields are not loaded)
    reads_history: Callable[[State, Tick], bool]  # whether this tick's core needs the demand history
    max_lead_seconds: float  # default --max-tick-lead: how far its tick may lead the store's clock
    metrics: tuple[str, ...]  # the metrics its group owns (besides every handler's operations metrics)
    pools: bool = False  # gets every shard's statistics of the day before (inputs.pooled) and publishes its own
    reads_feeds: bool = False  # applies a shop's feed lines when feeds are configured (inputs.feed)
    keeps_exposed: bool = False  # its part keeps what its core exposes (State.forecast_exposed): any publish shows it
    summary: str = ""


ORDER_TICK = Declaration(
    name="order_tick",
    core=ordering.order_tick,
    every_seconds=60,
    owns="hot",
    reads_forecast=False,
    reads_history=when_a_day_closes,
    max_lead_seconds=7 * _DAY,
    reads_feeds=True,
    metrics=(
        "inventory_level_units",
        "orders_per_minute",
        "orders_total",
        "lost_sales_units_total",
        "inventory_units_by_product",
        "inventory_units_by_warehouse",
        "series_out_of_stock",
        "lost_sales_units_by_warehouse_total",
        "catalog_series",
        "feed_lines_total",
        "feed_lag_seconds",
        "feed_newest_line_timestamp_seconds",
        "backorder_units",
        "backorder_units_by_warehouse",
        "backordered_units_total",
        "returned_units_total",
        "stock_adjustment_units_total",
    ),
    summary="Simulate the orders of the business minutes since the last tick and fulfil them from stock.",
)
RESTOCK = Declaration(
    name="restock",
    core=ordering.restock,
    every_seconds=300,
    owns="hot",
    reads_forecast=False,
    reads_history=never,
    max_lead_seconds=6 * _HOUR,
    metrics=(
        "received_units_total",
        "received_units_by_warehouse_total",
    ),
    summary="Receive the purchase orders due by the tick time.",
)
FORECAST = Declaration(
    name="forecast",
    core=planning.forecast,
    every_seconds=3600,
    owns="forecast",
    reads_forecast=True,
    reads_history=always,
    max_lead_seconds=6 * _HOUR,
    pools=True,
    keeps_exposed=True,
    metrics=(
        "predicted_stockout_hours",
        "stockout_within_horizon",
        "stockout_probability",
        "demand_forecast_units",
        "reorder_point_units",
        "series_at_risk",
        "series_low_cover",
        "forecast_abs_error_units_total",
        "forecast_actual_units_total",
        "forecast_paired_abs_error_units_total",
        "forecast_seasonal_naive_abs_error_units_total",
        "forecast_wape",
        "forecast_skill_vs_seasonal_naive",
    ),
    summary="Forecast demand, project stock, emit one inventory event per product x warehouse.",
)
ALERT = Declaration(
    name="alert",
    core=planning.alert,
    every_seconds=900,
    owns="hot",
    reads_forecast=True,
    reads_history=never,
    max_lead_seconds=6 * _HOUR,
    metrics=(
        "reorder_events_total",
        "purchase_orders_open",
        "inbound_units",
        "purchase_orders_open_by_warehouse",
        "inbound_units_by_warehouse",
    ),
    summary="Raise reorder alerts and place purchase orders where the reorder policy says so.",
)

#: handler name -> its declaration, in the order of the state's per-handler counters
DECLARATIONS: dict[str, Declaration] = {d.name: d for d in (ORDER_TICK, RESTOCK, FORECAST, ALERT)}
assert tuple(DECLARATIONS) == HANDLERS, "the declarations follow the state's order of handlers"


def parts_of(part: Part) -> tuple[str, ...]:
    """The handlers that commit to ``part`` (whose counters that part stores), in state order."""
    return tuple(name for name, declared in DECLARATIONS.items() if declared.owns == part)
