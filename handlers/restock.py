"""Lambda entry point `handlers.restock.handler`: Receive the purchase orders due by the tick time."""

from __future__ import annotations

from typing import Any

from .declaration import Declaration

DECLARED = Declaration(
    name="restock",
    core="handlers.core:restock",
    every_seconds=300,
    takes_policy=False,
    metrics=(
        "received_units_total",
        "received_units_by_warehouse_total",
    ),
    summary="Receive the purchase orders due by the tick time.",
)


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    from .app import handle  # imported on the first call: the package's registry imports this module

    return handle(DECLARED.name, event, context)
