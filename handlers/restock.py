"""Lambda entry point `handlers.restock.handler`: Receive the purchase orders due by the tick time."""

from __future__ import annotations

from typing import Any

from handlers.app import handle
from handlers.runtime.declarations import RESTOCK as DECLARED

__all__ = ["handler", "DECLARED"]


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return handle(DECLARED.name, event, context)
