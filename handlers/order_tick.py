"""Lambda entry point `handlers.order_tick.handler`: Simulate the orders of the business minutes since the
last tick and fulfil them from stock."""

from __future__ import annotations

from typing import Any

from handlers.app import handle
from handlers.runtime.declarations import ORDER_TICK as DECLARED

__all__ = ["handler", "DECLARED"]


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return handle(DECLARED.name, event, context)
