"""Lambda entry point `handlers.order_tick.handler`: Simulate the orders of the business minutes since the
last tick and fulfil them from stock."""

from __future__ import annotations

from typing import Any

from .declaration import Declaration

DECLARED = Declaration(
    name="order_tick",
    core="handlers.core:order_tick",
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


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    from .app import handle  # imported on the first call: the package's registry imports this module

    return handle(DECLARED.name, event, context)
