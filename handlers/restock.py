"""Lambda entry point `handlers.restock.handler`: Receive the purchase orders due by the tick time."""

from __future__ import annotations

from typing import Any

from .app import handle


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return handle("restock", event, context)
