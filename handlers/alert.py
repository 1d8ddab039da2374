"""Lambda entry point `handlers.alert.handler`: Raise reorder alerts and place purchase orders where the reorder policy says so."""

from __future__ import annotations

from typing import Any

from .declaration import Declaration

DECLARED = Declaration(
    name="alert",
    core="handlers.planning:alert",
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


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    from .app import handle  # imported on the first call: the package's registry imports this module

    return handle(DECLARED.name, event, context)
