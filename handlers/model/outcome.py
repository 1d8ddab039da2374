"""What every core is: ``(state, tick, catalog, inputs) -> Outcome``, pure.

The four cores (``model/ordering.py``: order_tick, restock; ``forecasting/planning.py``: forecast,
alert) share this signature, so the runtime calls each one the same way, exactly as it is declared
(handlers/runtime/declarations.py). ``Inputs`` carries what a core needs besides the state, the
tick and the catalog; a core reads only its own fields of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from handlers.model.catalog import Catalog
from handlers.model.events import Tick
from handlers.model.policy import Policy
from handlers.model.state import State

__all__ = ["Core", "Inputs", "Outcome", "DEFAULT_CATCH_UP_MINUTES"]

DEFAULT_CATCH_UP_MINUTES = 1440  # business minutes one order tick simulates at most (--max-catch-up-minutes)


@dataclass(frozen=True)
class Inputs:
    """What a core gets besides the state, the tick and the catalog."""

    policy: Policy = Policy()  # the reorder policy (forecast, alert)
    catch_up_minutes: int = DEFAULT_CATCH_UP_MINUTES  # business minutes one order tick simulates at most
    pooled: Any = None  # forecast: every shard's statistics of the day before (forecasting.pooled.Pool), or None
    feed: Any = None  # order tick: the shop's feed lines due by this tick (model.feed.Batch); None: simulated demand
    censor_lost_sales: bool = False  # order tick, simulated demand: record sales, not demand (what a shop sees)
    #: order tick, when demand is censored (a feed's orders, or censor_lost_sales): how a closed day's demand
    #: is recovered from its sales and minutes out of stock (forecasting.censored.close_day_arrays)
    recover_day: Any = None


@dataclass(frozen=True)
class Outcome:
    """What a core returns: the new state, its log events, a summary for the invocation's result, the
    per-series values its metrics expose as computed, and the forecast's statistics of today
    (``forecasting.pooled.Pool``), which the runtime publishes before the commit."""

    state: State
    events: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exposed: dict[str, np.ndarray] = field(default_factory=dict)
    statistics: Any = None


#: A core, as the runtime calls it.
Core = Callable[[State, Tick, Catalog, Inputs], Outcome]
