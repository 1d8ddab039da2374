"""The forecast's pooled parameters, fitted over the whole catalog however it is sharded.

The demand model pools: one regression, one variance model, one weekday profile over every series,
and one hour-of-day profile per warehouse (handlers/forecasting/model.py, handlers/forecasting/planning.py). A shard
sees only its own series, so fitting on what it sees would give another model than the unsharded
run's. Instead every ``forecast`` publishes the *statistics* of its series — exact integer sums
(``forecasting.Stats``), so the statistics of the shards add up to the unsharded run's bit for bit —
and fits the model from the sum of every shard's statistics of the day before:

1. at history day ``H`` (the UTC day being accumulated; complete days are ``< H``) read every
   shard's ``state/pool/<H-1>.json`` (a sharded store: ``shards/<k>/state/pool/<H-1>.json``) and add
   them up; a shard that has no state yet holds no series and is left out;
2. fit the parameters from that sum and forecast with them (``forecasting.pooled_forecast``);
3. publish this shard's statistics of day ``H``, computed under the same parameters, write-once
   (the first publication of a day stands), before the commit of the forecast; delete the shard's
   objects older than ``H-2`` (a shard a day behind still finds ``H-2``).

If a shard's statistics of ``H-1`` are missing (the first forecast of a store that already has
history, a shard that did not forecast that day, a damaged object), the shard fits on its own
series as an unsharded store would — the only case where a sharded forecast differs from the
unsharded one — and says so in its ``job_run`` event and result (``pool: own``). A shard that has
no history yet adds no stage to the sum (the others' stages stand).

The parameters lag the data by a day: each stage of the fit (profile → regression → variance →
tails) is fitted from statistics computed under the stage before as of the day before. A new
store's model therefore grows a stage a day over its first days; the regression's first statistics
are taken under a flat profile, so it comes with the profile (and the catalog's declared demand is
blended in over the first week anyway, handlers/forecasting/planning.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from handlers.errors import StorageError
from handlers.forecasting.pooled import Pool, max_bytes
from handlers.model.state import STATE_KEY
from handlers.storage.base import Store

__all__ = ["key", "gather", "publish", "PREFIX"]

log = logging.getLogger("stockpulse")

PREFIX = "state/pool/"
_READERS = 16  # parallel reads of the shards' objects (a network store)


def key(day: int) -> str:
    return f"{PREFIX}{day}.json"


def _keys(num_shards: int, day: int) -> list[str]:
    return [key(day)] if num_shards == 1 else [f"shards/{k}/{key(day)}" for k in range(num_shards)]


def gather(store: Store, num_shards: int, day: int, *, warehouses: Sequence[str]) -> Pool | None:
    """Every shard's statistics of ``day`` added up (``store``: the whole store, not a shard's;
    ``warehouses``: the catalog's); ``None`` when a shard that has a state has not published them
    (or they are damaged: not what this version writes, beyond what a real catalog can produce,
    or larger than the largest object it can write — never read beyond that)."""
    keys = _keys(num_shards, day)
    limit = max_bytes(warehouses)

    def read(name: str) -> Pool | None:
        data = store.get_prefix(name, limit + 1)
        if data is None:
            return None
        try:
            if len(data) > limit:
                raise ValueError(
                    f"{name}: damaged forecast statistics (more than the {limit} bytes the statistics of this catalog can take)"
                )
            return Pool.from_bytes(data, name, day, warehouses=warehouses)
        except ValueError as exc:
            log.warning("%s; the forecast fits on its own series", exc)
            return None

    if len(keys) == 1:
        parts = [read(keys[0])]
    else:
        with ThreadPoolExecutor(min(_READERS, len(keys))) as pool:
            parts = list(pool.map(read, keys))
    total: Pool | None = None
    for number, part in enumerate(parts):
        if part is None:
            if num_shards > 1 and store.read(f"shards/{number}/{STATE_KEY}") is None:
                continue  # a shard without products (or not started): no series to pool
            return None
        try:
            total = part if total is None else total + part
        except ValueError as exc:  # shapes that do not add up: another version of the model wrote one
            log.warning("%s: %s; the forecast fits on its own series", keys[number], exc)
            return None
    return total


def publish(store: Store, statistics: Pool | None) -> int:
    """Write a shard's statistics of their day once (``store``: the shard's; the first publication of
    a day stands); then delete its objects of the days before ``day - 2`` (best effort: a shard a
    day behind still finds the day before its own). Returns how many objects this call wrote."""
    if statistics is None or not store.put_once(key(statistics.day), statistics.to_bytes(), content_type="application/json"):
        return 0
    try:
        for old in list(store.list(PREFIX)):
            stem = old[len(PREFIX) :].split(".")[0]
            if stem.lstrip("-").isdigit() and int(stem) < statistics.day - 2:
                store.delete(old)
    except StorageError as exc:
        log.warning("old forecast statistics not deleted yet: %s", exc)
    return 1
