"""Lambda entry point `handlers.alert.handler`: Raise reorder alerts and place purchase orders where the reorder policy says so."""

from __future__ import annotations

from typing import Any

from handlers.app import handle
from handlers.runtime.declarations import ALERT as DECLARED

__all__ = ["handler", "DECLARED"]


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return handle(DECLARED.name, event, context)
