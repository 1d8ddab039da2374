"""stockpulse handlers: the deployable Lambda package.

One module per handler (``order_tick``, ``restock``, ``forecast``, ``alert``), each exposing
``handler(event, context) -> dict`` and declaring what it is (``DECLARED``: its core, default
schedule and metrics — handlers/declaration.py), over a pure core (``core``, ``planning``) and the
adapters it needs (``storage``, ``metrics``, ``settings``). The registry below is derived from
those declarations; the handler modules import nothing heavy until their first call.
"""

from . import alert, forecast, order_tick, restock
from .declaration import Declaration

__all__ = ["HANDLERS", "DECLARATIONS", "Declaration"]

#: handler name -> its module's declaration, in the order of the state's per-handler counters
DECLARATIONS: dict[str, Declaration] = {m.DECLARED.name: m.DECLARED for m in (order_tick, restock, forecast, alert)}
HANDLERS: tuple[str, ...] = tuple(DECLARATIONS)
