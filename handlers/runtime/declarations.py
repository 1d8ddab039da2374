"""Each handler described once: its name, its core, its schedule, its metrics.

The entry points (``handlers/order_tick.py`` ...) serve these declarations; the runtime's cores
(``handlers.runtime.invoke.CORES``), the CLI schedule (``jobs.schedule``) and the ownership of
metrics (``handlers.telemetry.metrics.METRICS``) are derived from them. The core is named as
``"module:function"`` and imported on first use, so importing a handler module stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any

from handlers.model.state import HANDLERS

__all__ = ["Declaration", "DECLARATIONS", "ORDER_TICK", "RESTOCK", "FORECAST", "ALERT"]


@dataclass(frozen=True)
class Declaration:
    name: str  # the handler's name: log objects, metric group, state counters, function name
    core: str  # "module:function", the pure core: (state, tick, catalog[, policy]) -> Outcome
    every_seconds: int  # default schedule (EventBridge rate), business seconds
    metrics: tuple[str, ...]  # the metrics its group owns (besides every handler's operations metrics)
    takes_policy: bool = True  # whether the core takes the reorder policy as its 4th argument
    pools: bool = False  # whether the core fits pooled parameters over every shard (handlers/runtime/pool.py): it
    #   takes ``pooled=`` (the shards' statistics of the day before) and publishes its own
    summary: str = ""

    def load_core(self) -> Any:
        module, _, function = self.core.partition(":")
        return getattr(import_module(module), function)


ORDER_TICK = Declaration(
    name="order_tick",
    core="handlers.model.ordering:order_tick",
    every_seconds=60,
    takes_policy=False,
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
    ),
    summary="Simulate the orders of the business minutes since the last tick and fulfil them from stock.",
)


RESTOCK = Declaration(
    name="restock",
    core="handlers.model.ordering:restock",
    every_seconds=300,
    takes_policy=False,
    metrics=(
        "received_units_total",
        "received_units_by_warehouse_total",
    ),
    summary="Receive the purchase orders due by the tick time.",
)


FORECAST = Declaration(
    name="forecast",
    core="handlers.forecasting.planning:forecast",
    every_seconds=3600,
    takes_policy=True,
    pools=True,
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
    core="handlers.forecasting.planning:alert",
    every_seconds=900,
    takes_policy=True,
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
