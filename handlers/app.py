"""The Lambda adapter: settings from the environment, clients built once per process (on first
use, never at import time), then :func:`handlers.runtime.invoke`."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from .compiled import load_compiled
from .deadline import Deadline
from .runtime import Runtime, catch_up_cores, invoke
from .settings import Settings
from .storage import open_store

__all__ = ["build_runtime", "handle"]

_cached: Runtime | None = None
_lock = threading.Lock()


def build_runtime(settings: Settings) -> Runtime:
    from .metrics import publisher  # prometheus_client only when a runtime is built

    store = open_store(settings.store_url)
    return Runtime(store=store, catalog=load_compiled(settings.catalog_path, store), policy=settings.policy,
                   limits=settings.limits, cores=catch_up_cores(settings.max_catch_up_minutes),
                   publish=publisher(settings, store=store),
                   # the network's calls are bounded per invocation; a file:// store's are local
                   budget_seconds=None if settings.store_url.startswith("file:") else settings.invocation_budget_seconds,
                   num_shards=settings.num_shards)


def _runtime(environ: Mapping[str, str]) -> Runtime:
    global _cached
    with _lock:
        if _cached is None:
            _cached = build_runtime(Settings.from_env(environ))
        return _cached


def handle(name: str, event: Any, context: Any = None, *, environ: Mapping[str, str] | None = None) -> dict:
    """Run handler ``name`` for one EventBridge event; with a Lambda ``context`` the invocation
    ends its storage calls and metrics push within the function's remaining time."""
    return invoke(name, event, _runtime(os.environ if environ is None else environ),
                  deadline=Deadline.from_context(context))
