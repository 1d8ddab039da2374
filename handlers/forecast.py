"""Lambda entry point `handlers.forecast.handler`: Forecast demand, project stock, emit one inventory event per product x warehouse."""

from __future__ import annotations

from typing import Any

from handlers.app import handle
from handlers.runtime.declarations import FORECAST as DECLARED

__all__ = ["handler", "DECLARED"]


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return handle(DECLARED.name, event, context)
