"""Sharding: one catalog split into ``num_shards`` sub-catalogs, each run as its own store.

A product's shard is a stable hash of its id (``blake2b-64(product_id) mod num_shards``), so every
warehouse of a product lands in the same shard, a product keeps its shard whatever else the catalog
holds, and every process computes the same split without asking anyone. A shard is an ordinary
sub-catalog (the products of the shard in catalog order, every warehouse, the same seed): the pure
core cannot tell it from a small shop, and since demand is drawn per series
(handlers/model/demand.py), a series sees the same demand sharded or not.

Where a shard keeps what (``k`` = the shard number; with ``num_shards = 1`` nothing changes):

- its state: ``shards/<k>/state/state.bin``, ``shards/<k>/state/forecast.bin``,
  ``shards/<k>/state/history/<day>-<sha>.bin`` — its own compare-and-swap objects, so shards never
  race each other; the idempotency key of an invocation is (handler, shard, time);
- its logs: under the same ``logs/<handler>/YYYY/MM/DD/HH/`` prefixes as an unsharded store (one
  Filebeat prefix reads them all), named ``<handler>-<stamp>-shard-<k>.ndjson.gz``;
- its metrics: the Pushgateway group ``/metrics/job/<handler>/shard/<k>``;
- the compiled catalog (``catalogs/``) is shared.

``state/shards.json`` records the split the store was started with; an invocation with another
``num_shards``, or a sharded one over an unsharded state, is refused: moving products between
shards would need their state moved too (start a new store to reshard). A store whose ``shards/``
hold states but whose manifest is gone is refused too (whatever the count asked): recording a new
split over them would make the real one refused ever after. The first sharded invocation of a
store records the split only once its other checks have passed (:func:`check_manifest` never
writes; :func:`record_manifest` does): a refused invocation writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np

from handlers.errors import ConfigError, InputError
from handlers.model.catalog import Catalog
from handlers.model.feeding import merge_counters
from handlers.model.state import STATE_KEY, State
from handlers.storage.base import Listed, Store, Versioned

__all__ = [
    "recorded",
    "forget_checks",
    "MAX_SHARDS",
    "MANIFEST_KEY",
    "Shard",
    "shard_of",
    "split",
    "shard",
    "ShardStore",
    "check_manifest",
    "record_manifest",
    "merge",
    "resolve",
]

#: EventBridge allows 300 rules per event bus and 5 targets per rule: 4 handlers x 256 shards fit in
#: 4 x 52 rules (jobs/deploy/plan.py).
MAX_SHARDS = 256
MANIFEST_KEY = "state/shards.json"
HASH = "blake2b-64(product_id) mod num_shards"
SHARDS_PREFIX = "shards/"


def shard_of(product_id: str, num_shards: int) -> int:
    """The shard of a product: stable across processes, platforms and catalog edits."""
    digest = hashlib.blake2b(product_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_shards


@dataclass(frozen=True)
class Shard:
    number: int
    count: int
    catalog: Catalog  # the sub-catalog: the shard's products in catalog order, every warehouse
    series: np.ndarray  # position of each of its series in the whole catalog's series

    @property
    def empty(self) -> bool:
        return not self.catalog.products


_splits: dict[tuple[str, int, int], tuple[Shard, ...]] = {}
_splits_lock = threading.Lock()


def split(catalog: Catalog, num_shards: int) -> tuple[Shard, ...]:
    """Every shard of ``catalog`` (computed once per catalog and count in a process)."""
    key = (catalog.fingerprint, id(catalog), num_shards)
    with _splits_lock:
        found = _splits.get(key)
    if found is not None:
        return found
    owners = np.array([shard_of(p.id, num_shards) for p in catalog.products], dtype=np.int64)
    width = len(catalog.warehouses)
    shards = []
    for k in range(num_shards):
        picked = np.flatnonzero(owners == k)
        sub = Catalog(
            tuple(catalog.products[p] for p in picked),
            catalog.warehouses,
            tuple(catalog.initial_stock_table[p] for p in picked),
            seed=catalog.seed,
            source=f"{catalog.source} (shard {k} of {num_shards})",
        )
        series = (picked[:, None] * width + np.arange(width)[None, :]).reshape(-1)
        shards.append(Shard(k, num_shards, sub, series))
    result = tuple(shards)
    with _splits_lock:
        if len(_splits) > 8:  # a process sees one catalog, or a few in tests
            _splits.clear()
        _splits[key] = result
    return result


def shard(catalog: Catalog, number: int, num_shards: int) -> Shard:
    return split(catalog, num_shards)[number]


def resolve(detail_shard: int | None, detail_count: int | None, num_shards: int) -> int | None:
    """The shard an event asks for, checked against the configured count; ``None`` = unsharded."""
    if detail_count is not None and detail_count != num_shards:
        raise InputError(
            f"event.detail.num_shards: {detail_count}, but this deployment has num_shards = {num_shards} (STOCKPULSE_NUM_SHARDS)"
        )
    if num_shards == 1:
        if detail_shard not in (None, 0):
            raise InputError(f"event.detail.shard: {detail_shard}, but the catalog is not sharded (num_shards = 1)")
        return None
    if detail_shard is None:
        raise InputError(
            f"event.detail.shard: missing; the catalog is split into {num_shards} shards and an "
            f"invocation handles one (0..{num_shards - 1})"
        )
    if not 0 <= detail_shard < num_shards:
        raise InputError(f"event.detail.shard: {detail_shard} is not a shard of {num_shards} (0..{num_shards - 1})")
    return detail_shard


def log_suffix(number: int) -> str:
    return f"-shard-{number}.ndjson.gz"


class ShardStore:
    """A store seen by one shard: ``state/`` keys live under ``shards/<k>/``; logs, metrics and
    compiled catalogs keep their keys (a shard's log objects carry the shard in their name)."""

    def __init__(self, base: Store, number: int) -> None:
        self.base, self.number = base, number
        self.url = f"{base.url} (shard {number})"
        self._prefix = f"{SHARDS_PREFIX}{number}/"

    def _key(self, key: str) -> str:
        return self._prefix + key if key.startswith("state/") else key

    def read(self, key: str) -> Versioned | None:
        return self.base.read(self._key(key))

    def write(self, key: str, data: bytes, *, etag: str | None) -> str:
        return self.base.write(self._key(key), data, etag=etag)

    def put_once(self, key: str, data: bytes, **kwargs: str) -> bool:
        return self.base.put_once(self._key(key), data, **kwargs)

    def exists(self, key: str) -> bool:
        return self.base.exists(self._key(key))

    def matches(self, key: str, data: bytes) -> bool | None:
        return self.base.matches(self._key(key), data)

    def replace(self, key: str, data: bytes, **kwargs: str) -> None:
        self.base.replace(self._key(key), data, **kwargs)

    def get(self, key: str) -> bytes:
        return self.base.get(self._key(key))

    def get_prefix(self, key: str, size: int) -> bytes | None:
        return self.base.get_prefix(self._key(key), size)

    def delete(self, key: str) -> None:
        self.base.delete(self._key(key))

    def scan(self, prefix: str) -> Iterator[Listed]:
        if prefix.startswith("state/"):
            cut = len(self._prefix)
            return (Listed(found.key[cut:], found.size, found.tag) for found in self.base.scan(self._key(prefix)))
        return self.base.scan(prefix)

    def list(self, prefix: str) -> Iterator[str]:
        if prefix.startswith("state/"):
            cut = len(self._prefix)
            return (key[cut:] for key in self.base.list(self._key(prefix)))
        if prefix.startswith("logs/"):  # this shard's log objects only
            suffix = log_suffix(self.number)
            return (key for key in self.base.list(prefix) if key.endswith(suffix))
        return self.base.list(prefix)


_checked: set[tuple[str, int]] = set()


def forget_checks() -> None:
    """Check every store's manifest again, as a new process would (:func:`check_manifest`)."""
    _checked.clear()


def recorded(store: Store) -> int:
    """The shard count the store was started with (1 when it records none)."""
    if not store.exists(MANIFEST_KEY):  # written once, never changed
        return 1
    try:
        return int(json.loads(store.get(MANIFEST_KEY))["num_shards"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f'{MANIFEST_KEY}: damaged in {store.url} (expected {{"num_shards": N}})') from exc


def check_manifest(store: Store, num_shards: int) -> bytes | None:
    """Refuse a store split another way, an unsharded state when sharding, or shard states without
    their manifest; never writes. Returns the manifest a first sharded invocation of the store must
    record (:func:`record_manifest`, once the invocation's other checks have passed), else ``None``.
    Checked once per store and count in a process."""
    if (store.url, num_shards) in _checked:
        return None
    count = recorded(store)  # 1 when the store records no split (unsharded, or empty)
    if count != num_shards and (count > 1 or num_shards == 1):
        raise ConfigError(
            f"--num-shards / STOCKPULSE_NUM_SHARDS: the store {store.url} is split into {count} "
            f"shards, got {num_shards}; resharding moves products between states — start a new "
            "--store"
        )
    if count == 1:  # no manifest: an unsharded store, or an empty one
        if num_shards > 1 and store.read(STATE_KEY) is not None:
            raise ConfigError(
                f"--num-shards / STOCKPULSE_NUM_SHARDS: the store {store.url} holds an unsharded "
                f"state, got {num_shards} shards; start a new --store to shard"
            )
        if next(iter(store.list(SHARDS_PREFIX)), None) is not None:
            raise ConfigError(
                f"{MANIFEST_KEY}: missing from {store.url}, but {SHARDS_PREFIX} holds the states of a "
                "sharded store — the manifest (its shard count) was deleted. Restore it from a backup, or "
                "start a new --store; refusing to record another split over them"
            )
        if num_shards > 1:
            return json.dumps({"num_shards": num_shards, "hash": HASH, "format": 1}).encode()
    _checked.add((store.url, num_shards))
    return None


def record_manifest(store: Store, num_shards: int, manifest: bytes) -> None:
    """Record the split :func:`check_manifest` returned (write-once): before the first write of the
    first sharded invocation of a store. Someone who recorded one first must have recorded the same."""
    if not store.put_once(MANIFEST_KEY, manifest, content_type="application/json"):
        _checked.discard((store.url, num_shards))
        check_manifest(store, num_shards)  # compare with theirs
    _checked.add((store.url, num_shards))


# -- the whole catalog's view of a sharded store (status, report, simulate's summary) ------------

_PURCHASE_ORDERS = ("po_series", "po_quantity", "po_due", "po_placed", "po_number")
_OPERATIONS = ("latency_buckets", "latency_sum", "invocations", "push_failures")  # summed over shards
_EARLIEST = ("created_at", "orders_through", "history_day", "score_day")  # the shard furthest behind


def merge(catalog: Catalog, parts: list[tuple[Shard, State]]) -> State:
    """One state over the whole catalog from the states of its shards: per-series arrays in catalog
    order, purchase orders renumbered to catalog series, operations counters summed, and clocks
    (``applied``, ``orders_through``, ``forecast_at``…) those of the shard furthest behind."""
    first = parts[0][1]
    values: dict[str, object] = {}
    for f in fields(State):
        name = f.name
        own = [getattr(state, name) for _, state in parts]
        if name == "catalog_fingerprint":
            values[name] = catalog.fingerprint
        elif name == "outbox":
            values[name] = ()
        elif name in ("applied",):
            values[name] = {h: min(s[h] for s in own) for h in first.applied}
        elif name == "conflicts":
            values[name] = {h: sum(s[h] for s in own) for h in first.conflicts}
        elif name == "feed_counters":  # summed over shards; the newest line is the newest of any shard
            values[name] = merge_counters(own)
        elif name == "feed_journals":  # each shard's own objects: no merged state is committed
            values[name] = []
        elif name in _EARLIEST:
            values[name] = min(own)
        elif name == "forecast_at":
            values[name] = math.nan if any(math.isnan(v) for v in own) else min(own)
        elif name in _OPERATIONS:
            values[name] = np.sum(own, axis=0)
        elif name == "po_series":
            values[name] = np.concatenate([shard.series[state.po_series] for shard, state in parts])
        elif name in _PURCHASE_ORDERS:
            values[name] = np.concatenate(own)
        elif name == "censor_live":  # none kept yet (0 columns) in a shard that has not closed a recovered day
            width = max(array.shape[1] for array in own)
            whole = np.zeros((catalog.num_series, width))
            for (shard, _), array in zip(parts, own):
                whole[shard.series, : array.shape[1]] = array
            values[name] = whole
        elif isinstance(own[0], np.ndarray):
            whole = np.empty((catalog.num_series, *own[0].shape[1:]), dtype=own[0].dtype)
            for (shard, _), array in zip(parts, own):
                whole[shard.series] = array
            values[name] = whole
        else:
            values[name] = own[0]
    return State(**values)  # type: ignore[arg-type]
