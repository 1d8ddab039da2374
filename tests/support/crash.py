"""Crashes between storage calls: a store that dies before its n-th call, a busy catalog whose short
schedule holds every kind of event, and the snapshot a crashed-then-retried run must equal."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from handlers.model.catalog import parse_catalog
from handlers.storage.file import FileStore
from tests.support.ticks import START

# Fast dynamics so a short window holds every kind of event: stock runs low within minutes,
# purchase orders arrive 6 minutes after they are placed.
BUSY_CATALOG = parse_catalog(
    """
seed: 11
products:
  - {id: FAST, base_demand_per_day: 2000, lead_time_hours: 0.1, pack_size: 5}
  - {id: SLOW, base_demand_per_day: 300, lead_time_hours: 0.1, pack_size: 5}
warehouses: [{id: W1, timezone: Europe/Berlin}, {id: W2, timezone: America/Chicago}]
initial_stock: 8
""",
    source="busy.yaml",
)


def busy_ticks(minutes: int = 24) -> list[tuple[str, object]]:
    ticks = []
    for m in range(1, minutes + 1):
        moment = START.replace(hour=12) + timedelta(minutes=m)
        if m % 4 == 0:
            ticks.append(("restock", moment))
        ticks.append(("order_tick", moment))
        if m % 6 == 0:
            ticks += [("forecast", moment), ("alert", moment)]
    return ticks


class Crash(BaseException):
    """The process dies (not an Exception: nothing may catch it)."""


class CrashingStore:
    """Delegates to a store and dies just before its ``crash_at``-th call; counts the calls by
    operation (``operations``)."""

    def __init__(self, inner, crash_at: int) -> None:
        self.inner, self.crash_at, self.calls = inner, crash_at, 0
        self.url = inner.url
        self.operations: Counter[str] = Counter()

    def __getattr__(self, name):
        method = getattr(self.inner, name)

        def call(*args, **kwargs):
            self.calls += 1
            self.operations[name] += 1
            if self.calls == self.crash_at:
                raise Crash(f"crash before call {self.calls}: {name}")
            return method(*args, **kwargs)

        return call


def snapshot(store: FileStore) -> tuple[list[bytes | None], dict[str, bytes], dict[str, bytes]]:
    """The state's parts (hot and forecast by their newest version, history objects, the hot part's
    base and deltas, the forecast's statistics, the feed journals) and every log object."""
    parts = [store.read(key) for key in ("state/state.bin", "state/forecast.bin")]
    history = {k: store.get(k) for prefix in ("state/history/", "state/pool/", "state/hot/", "state/feed/") for k in store.list(prefix)}
    return [p.data if p else None for p in parts], history, {k: store.get(k) for k in store.list("logs/")}


class Crashes:
    """One crash point shared by several stores (the state's and a feed's): the process dies before
    the ``crash_at``-th storage call of any of them."""

    def __init__(self, crash_at: int) -> None:
        self.crash_at, self.calls = crash_at, 0

    def wrap(self, inner: Any) -> Any:
        return _SharedCrashing(inner, self)


class _SharedCrashing:
    def __init__(self, inner: Any, crashes: Crashes) -> None:
        self.inner, self.crashes, self.url = inner, crashes, inner.url

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.crashes.calls += 1
            if self.crashes.calls == self.crashes.crash_at:
                raise Crash(f"crash before call {self.crashes.calls}: {name}")
            return method(*args, **kwargs)

        return call
