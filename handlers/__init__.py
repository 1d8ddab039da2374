"""stockpulse handlers: the deployable Lambda package.

One module per handler (``order_tick``, ``restock``, ``forecast``, ``alert``), each exposing
``handler(event, context) -> dict``, over a pure core (``core``, ``planning``) and the adapters it
needs (``storage``, ``metrics``, ``settings``).
"""

__all__ = ["HANDLERS"]

HANDLERS = ("order_tick", "restock", "forecast", "alert")
