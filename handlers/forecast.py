"""Lambda entry point `handlers.forecast.handler`: Forecast demand, project stock, emit one inventory event per product x warehouse."""

from __future__ import annotations

from typing import Any

from .app import handle


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return handle("forecast", event, context)
