"""What a handler module declares about itself: its name, its core, its schedule, its metrics.

Each handler module (``handlers/order_tick.py`` ...) holds one :class:`Declaration`; the registry
(``handlers.HANDLERS``, ``handlers.runtime.CORES``), the CLI schedule (``jobs.schedule``) and the
ownership of metrics (``handlers.metrics.METRICS``) are derived from them. The core is named as
``"module:function"`` and imported on first use, so importing a handler module stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any

__all__ = ["Declaration"]


@dataclass(frozen=True)
class Declaration:
    name: str  # the handler's name: log objects, metric group, state counters, function name
    core: str  # "module:function", the pure core: (state, tick, catalog[, policy]) -> Outcome
    every_seconds: int  # default schedule (EventBridge rate), business seconds
    metrics: tuple[str, ...]  # the metrics its group owns (besides every handler's operations metrics)
    takes_policy: bool = True  # whether the core takes the reorder policy as its 4th argument
    pools: bool = False  # whether the core fits pooled parameters over every shard (handlers/pool.py): it
    #   takes ``pooled=`` (the shards' statistics of the day before) and publishes its own
    summary: str = ""

    def load_core(self) -> Any:
        module, _, function = self.core.partition(":")
        return getattr(import_module(module), function)
