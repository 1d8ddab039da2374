"""Lambda entry point `handlers.order_tick.handler`: Simulate the orders of the business minutes since the last tick and fulfil them from stock."""

from __future__ import annotations

from typing import Any

from .app import handle


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return handle("order_tick", event, context)
