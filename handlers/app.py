"""The Lambda adapter: settings from the environment, clients built once per process (on first
use, never at import time), then :func:`handlers.runtime.invoke`."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from handlers.model.events import parse_event
from handlers.runtime.catalogs import load_compiled
from handlers.runtime.feeds import Feeds
from handlers.runtime.invoke import Runtime, apply_tick
from handlers.runtime.settings import ENV, Settings
from handlers.runtime.shards import resolve
from handlers.storage.deadline import Deadline
from handlers.storage.location import open_store
from handlers.telemetry.publisher import publisher

__all__ = ["build_runtime", "handle"]

_cached: dict[int | None, Runtime] = {}  # per shard served by this process (one function serves every shard)
_lock = threading.Lock()
_MAX_CACHED = 8


def build_runtime(settings: Settings, *, shard: int | None = None) -> Runtime:
    """The runtime of these settings; with ``shard``, one bound to that shard, which reads only the
    shard's compiled sub-catalog (handlers/runtime/catalogs.py), not the whole catalog."""
    store = open_store(settings.store_url)
    part = None if shard is None or settings.num_shards == 1 else (shard, settings.num_shards)
    compiled: dict[str, bytes] = {}  # written by the first invocation whose checks pass, not here
    catalog = load_compiled(settings.catalog_path, store, shard=part, deferred=compiled)
    return Runtime(
        store=store,
        catalog=catalog,
        policy=settings.policy,
        limits=settings.limits,
        compiled=compiled,
        publish=publisher(settings, store=store),
        # the network's calls are bounded per invocation; a file:// store's are local
        budget_seconds=None if settings.store_url.startswith("file:") else settings.invocation_budget_seconds,
        num_shards=settings.num_shards,
        shard=None if part is None else shard,
        feeds=feeds_of(settings),
        censor_lost_sales=settings.censor_lost_sales,
    )


def feeds_of(settings: Settings) -> Feeds | None:
    """The shop's feeds the settings name (read-only stores), or None: demand is simulated."""
    urls = {kind: getattr(settings, f"{kind}_url") for kind in ("orders", "receipts", "counts")}
    stores = {kind: open_store(url, setting=ENV[f"{kind}_url"][1], must_exist=True) for kind, url in urls.items() if url}
    return Feeds(stores, max_lateness=settings.feed_max_lateness) if stores else None


def _runtime(settings: Settings, shard: int | None) -> Runtime:
    with _lock:
        if shard not in _cached:
            if len(_cached) >= _MAX_CACHED:
                _cached.pop(next(iter(_cached)))
            _cached[shard] = build_runtime(settings, shard=shard)
        return _cached[shard]


def handle(name: str, event: Any, context: Any = None, *, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run handler ``name`` for one EventBridge event; with a Lambda ``context`` the invocation
    ends its storage calls and metrics push within the function's remaining time. The event is
    parsed and its shard resolved once, before anything is loaded."""
    settings = Settings.from_env(os.environ if environ is None else environ)
    tick = parse_event(event)
    shard = resolve(tick.shard, tick.num_shards, settings.num_shards)
    return apply_tick(name, tick, shard, _runtime(settings, shard), deadline=Deadline.from_context(context))
