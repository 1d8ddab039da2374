"""A shop's feeds as the order tick reads them: new objects found without listing the feed's history,
every line applied exactly once.

**Where the shop puts its objects.** Each feed (``orders``, ``receipts``, ``counts``) is a location
URL (``file://DIR`` or ``s3://BUCKET/PREFIX``; ``--orders`` / ``STOCKPULSE_ORDERS_URL`` …) under
which objects land in hourly partitions named by their *arrival* (UTC):
``YYYY/MM/DD/HH/<any name>`` — e.g. ``2026/01/05/09/export-0930.ndjson.gz``. A tick lists only the
partitions from :attr:`Feeds.partition_hours` hours before the minutes it applies to the hour after
them, so what a tick reads and lists follows the new objects, never the feed's age (a tick that
catches up a long gap lists the partitions of the gap). An object is read again only when it changed (its size or
tag) or still holds lines due after the ticks so far.

**Exactly once** (docs/feeds.md). Every line has the shop's own ``line_id``. The ticks' *journals*
— write-once objects ``state/feed/<tick>-journal-<sha>.bin`` that a hot commit references, written
before it like the hot part's deltas — remember, for :attr:`Feeds.partition_hours` hours after a
tick's minutes: the 128-bit key of each line id it applied (or refused as too late), each object it read (its
tag, how far its lines are applied, whether it was damaged), and how on hand moved (for counts that
arrive late). So the same object delivered twice, re-uploaded under another key, or a line repeated
in another object changes nothing: it is counted as a duplicate. What bounds that memory is the
lateness horizon: a line more than :attr:`Feeds.max_lateness` seconds older than the minutes
already applied is refused as too late (counted and logged), so no line id needs to be remembered
longer than the journals keep them.

**What a line can be.** Applied at its minute; *late* (its minute was already applied: applied now,
counted late); pending (due after this tick: read again by a later tick); *too late*, a duplicate, a
*bad* line (malformed, with the object key and line number), *not in the catalog* (refused once, by
the shard the product id hashes to — the other shards ignore it), or in a *damaged* object (named in
one line, skipped, counted once, retried only when the object changes). Nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from handlers.errors import StorageError
from handlers.model import feed as lines_of
from handlers.model.catalog import Catalog
from handlers.model.feed import COUNT, Batch
from handlers.model.history import order_window
from handlers.model.state import State, pack, unpack
from handlers.runtime.layout import check_digest
from handlers.runtime.shards import shard_of
from handlers.storage.base import Listed, Store

__all__ = [
    "Feeds",
    "JournalMissing",
    "Prepared",
    "prepare",
    "write_journal",
    "prune_journals",
    "JOURNAL_PREFIX",
    "partitions",
    "DEFAULT_MAX_LATENESS",
    "MAX_LOGGED_PER_OBJECT",
]

log = logging.getLogger("stockpulse")

JOURNAL_PREFIX = "state/feed/"
DEFAULT_MAX_LATENESS = 3600.0  # seconds a line may arrive after the minutes before it were applied
MAX_LOGGED_PER_OBJECT = 100  # refused lines of one object logged one by one; the rest in one event
_READERS = 8  # objects read at once (a network store)
_STATUS_DONE, _STATUS_PENDING, _STATUS_DAMAGED = "done", "pending", "damaged"


@dataclass(frozen=True)
class Feeds:
    """The feeds a deployment reads: kind -> its store; and the lateness horizon."""

    stores: Mapping[str, Store]
    max_lateness: float = DEFAULT_MAX_LATENESS

    @property
    def partition_hours(self) -> int:
        """Hours of partitions a tick lists before its minutes (and journals are kept): the lateness
        horizon and one more."""
        return math.ceil(self.max_lateness / 3600) + 1

    def first_hour(self, start: float) -> int:
        """The first partition hour a tick whose minutes start after ``start`` lists."""
        return int(start // 3600) - self.partition_hours

    def keep_from(self, start: float) -> float:
        """Journals of windows ending before this are no longer needed by a tick starting after ``start``:
        none of their objects is listed again, and none of their lines is younger than the horizon."""
        return (self.first_hour(start) - 1) * 3600.0


def partitions(first_hour: int, last_hour: int) -> list[str]:
    """The partitions ``YYYY/MM/DD/HH/`` of the hours ``first_hour`` .. ``last_hour`` (hour numbers since 1970)."""
    return [datetime.fromtimestamp(h * 3600, timezone.utc).strftime("%Y/%m/%d/%H/") for h in range(first_hour, last_hour + 1)]


# -- what the journals remember --------------------------------------------------------------------


@dataclass(frozen=True)
class _Journal:
    key: str
    written: float  # the tick's business time
    hi: np.ndarray  # [n] uint64: line id keys (high half), sorted
    lo: np.ndarray  # [n] uint64
    objects: dict[tuple[str, str], tuple[str, float, str]]  # (feed, key) -> (tag, applied through, status)
    moves: tuple[np.ndarray, np.ndarray, np.ndarray]  # (series, business time, on-hand change)


class JournalMissing(StorageError):
    """A journal the state read references is gone: pruned by newer commits (read the state again), or
    lost (damage: the message says what to do)."""


_journals: dict[tuple[str, str], _Journal] = {}  # (store url, key) -> what this process read of it
_MAX_CACHED = 512


def _read_journal(store: Store, key: str, written: float) -> _Journal:
    cached = _journals.get((store.url, key))
    if cached is not None:
        return cached
    try:
        data = store.get(key)
    except StorageError:
        if store.exists(key):
            raise
        raise JournalMissing(
            f"{key}: a feed journal referenced by state/state.bin is missing from {store.url} — "
            "restore it from a backup, or start a new --store"
        ) from None
    check_digest(key, data)  # content-addressed: another journal's bytes under this name are damage
    header, arrays, _ = unpack(data, key=key)
    objects = {(feed, name): (tag, float(through), status) for feed, name, tag, through, status in header["objects"]}
    found = _Journal(key, written, arrays["hi"], arrays["lo"], objects, (arrays["move_series"], arrays["move_time"], arrays["move_delta"]))
    if len(_journals) >= _MAX_CACHED:
        _journals.pop(next(iter(_journals)))
    _journals[(store.url, key)] = found
    return found


def _journals_of(store: Store, state: State) -> list[_Journal]:
    refs = [(str(key), float(written)) for key, written in state.feed_journals]
    missing = [(key, written) for key, written in refs if (store.url, key) not in _journals]
    if len(missing) > 2:  # a cold process: read them at once
        with ThreadPoolExecutor(_READERS) as pool:
            list(pool.map(lambda ref: _read_journal(store, *ref), missing))
    return [_read_journal(store, key, written) for key, written in refs]


@dataclass
class _Seen:
    hi: np.ndarray  # sorted
    lo: np.ndarray
    objects: dict[tuple[str, str], tuple[str, float, str]]
    moves: tuple[np.ndarray, np.ndarray, np.ndarray]

    def has(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """[n] bool: which of these keys a journal holds (exact: the low halves are compared too)."""
        if not len(self.hi) or not len(hi):
            return np.zeros(len(hi), dtype=bool)
        at = np.searchsorted(self.hi, hi)
        found = np.zeros(len(hi), dtype=bool)
        for shift in range(4):  # equal high halves of different ids: vanishingly rare, but checked
            where = np.minimum(at + shift, len(self.hi) - 1)
            found |= (self.hi[where] == hi) & (self.lo[where] == lo)
        return found


def _seen(journals: list[_Journal]) -> _Seen:
    objects: dict[tuple[str, str], tuple[str, float, str]] = {}
    for journal in sorted(journals, key=lambda j: j.written):
        objects.update(journal.objects)  # the latest record of an object wins
    if not journals:
        none = np.zeros(0, dtype=np.int64)
        return _Seen(np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.uint64), objects, (none, none, none))
    hi = np.concatenate([j.hi for j in journals])
    lo = np.concatenate([j.lo for j in journals])
    order = np.argsort(hi, kind="stable")
    moves = tuple(np.concatenate([j.moves[k] for j in journals]) for k in range(3))
    return _Seen(hi[order], lo[order], objects, moves)  # type: ignore[arg-type]


# -- one tick's lines --------------------------------------------------------------------------------


@dataclass
class Prepared:
    """What a tick applies (``batch``, for the core) and what its journal will remember."""

    batch: Batch
    objects: dict[tuple[str, str], tuple[str, float, str]] = field(default_factory=dict)
    keys: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.uint64))  # ids to remember

    @property
    def empty(self) -> bool:
        return not self.objects and not len(self.keys)


def _catalog_maps(catalog: Catalog) -> tuple[dict[str, int], dict[str, int]]:
    cached = catalog.__dict__.get("_feed_maps")
    if cached is None:
        cached = ({p.id: i for i, p in enumerate(catalog.products)}, {w.id: i for i, w in enumerate(catalog.warehouses)})
        catalog.__dict__["_feed_maps"] = cached
    return cached


def _read(store: Store, listed: Listed) -> tuple[Listed, bytes | None, str | None]:
    if listed.size > lines_of.MAX_OBJECT_BYTES:
        return listed, None, f"larger than {lines_of.MAX_OBJECT_BYTES // 2**20} MiB"
    try:
        return listed, store.get(listed.key), None
    except StorageError as exc:
        if not store.exists(listed.key):  # deleted between the listing and the read: not there
            return listed, None, "gone"
        raise exc


def prepare(
    feeds: Feeds,
    store: Store,
    state: State,
    tick_epoch: float,
    catalog: Catalog,
    *,
    catch_up_minutes: int,
    shard: tuple[int, int] | None = None,
) -> Prepared:
    """The feed lines an order tick at ``tick_epoch`` applies, in the order it applies them, and what
    its journal remembers. ``store``: the shard's (its journals); ``shard``: (k, N) when sharded."""
    seen = _seen(_journals_of(store, state))
    start, end = order_window(state, tick_epoch, catch_up_minutes)
    too_old = start - feeds.max_lateness
    products, warehouses = _catalog_maps(catalog)
    width = len(catalog.warehouses)
    counters: dict[str, dict[str, int]] = {}
    rejected: list[dict[str, Any]] = []
    columns: dict[str, list[Any]] = {
        name: [] for name in ("series", "time", "kind", "quantity", "line_id", "late", "key_hi", "key_lo", "order")
    }
    remembered: list[np.ndarray] = []
    objects: dict[tuple[str, str], tuple[str, float, str]] = {}

    def count(kind: str, outcome: str, n: int = 1) -> None:
        target = counters.setdefault(kind, {})
        target[outcome] = target.get(outcome, 0) + n

    batch_hi: set[tuple[int, int]] = set()
    sequence = 0
    for kind, feed_store in sorted(feeds.stores.items()):
        last_hour = min(int(end // 3600) + 1, int(tick_epoch // 3600))
        listed = [found for prefix in partitions(feeds.first_hour(start), last_hour) for found in feed_store.scan(prefix)]
        wanted = []
        for found in listed:
            record = seen.objects.get((kind, found.key))
            if record is None or record[0] != found.tag or record[2] == _STATUS_PENDING:
                wanted.append((found, record if record is not None and record[0] == found.tag else None))
        if not wanted:
            continue
        with ThreadPoolExecutor(min(_READERS, len(wanted))) as pool:
            read = list(pool.map(lambda item, source=feed_store: _read(source, item[0]), wanted))
        for (found, record), (_, data, problem) in zip(wanted, read):
            if problem == "gone":
                continue
            parsed = lines_of.parse_object(data, kind) if data is not None else None
            damaged = problem or (parsed.damaged if parsed is not None else None)
            if damaged is not None:
                objects[(kind, found.key)] = (found.tag, -math.inf, _STATUS_DAMAGED)
                count(kind, "objects_damaged")
                rejected.append(
                    {
                        "feed": kind,
                        "key": found.key,
                        "line": 0,
                        "reason": f"damaged object: {damaged}",
                        "line_id": None,
                        "outcome": "objects_damaged",
                    }
                )
                log.warning("%s feed: %s: damaged object skipped (%s); it is read again when it changes", kind, found.key, damaged)
                continue
            assert parsed is not None
            through = record[1] if record is not None else -math.inf  # a pending object: lines up to here are done
            logged = 0

            def refuse(outcome: str, line: int, reason: str, line_id: str | None = None, kind: str = kind, key: str = found.key) -> None:
                nonlocal logged
                count(kind, outcome)
                if logged < MAX_LOGGED_PER_OBJECT:
                    rejected.append({"feed": kind, "key": key, "line": line, "reason": reason, "line_id": line_id, "outcome": outcome})
                logged += 1

            if record is None:  # bad lines are counted once per version of the object
                for number, reason in parsed.bad:
                    refuse("bad", number, reason)
            lines = parsed.lines
            keys = lines_of.id_keys(kind, lines.line_id) if len(lines) else np.zeros((0, 2), dtype=np.uint64)
            known = seen.has(keys[:, 0], keys[:, 1]) if len(lines) else np.zeros(0, dtype=bool)
            pending = False
            for j in range(len(lines)):
                moment = int(lines.time[j])
                if moment <= through:
                    continue  # handled when this object was read before
                if -(-moment // 60) * 60 > end:
                    pending = True  # due after this tick's minutes
                    continue
                product, warehouse = lines.product_id[j], lines.warehouse_id[j]
                p = products.get(product)
                if p is None or warehouse not in warehouses:
                    mine = shard is None or shard_of(product, shard[1]) == shard[0]
                    if mine:  # refused once: by the shard the product id hashes to
                        what = f"product_id {product!r}" if p is None else f"warehouse_id {warehouse!r}"
                        refuse("not_in_catalog", int(lines.number[j]), f"{what} is not in the catalog", lines.line_id[j])
                    continue
                pair = (int(keys[j, 0]), int(keys[j, 1]))
                if known[j] or pair in batch_hi:
                    refuse("duplicate", int(lines.number[j]), "line_id applied before", lines.line_id[j])
                    continue
                batch_hi.add(pair)
                remembered.append(keys[j])
                if moment < too_old:
                    refuse(
                        "too_late",
                        int(lines.number[j]),
                        f"time {datetime.fromtimestamp(moment, timezone.utc):%Y-%m-%dT%H:%M:%SZ} is more than "
                        f"{feeds.max_lateness / 60:g} min before the minutes already applied",
                        lines.line_id[j],
                    )
                    continue
                late = moment <= start
                count(kind, "applied")
                if late:
                    count(kind, "late")
                columns["series"].append(p * width + warehouses[warehouse])
                columns["time"].append(moment)
                columns["kind"].append(int(lines.kind[j]))
                columns["quantity"].append(int(lines.quantity[j]))
                columns["line_id"].append(lines.line_id[j])
                columns["late"].append(late)
                columns["order"].append(sequence)
                sequence += 1
            if logged > MAX_LOGGED_PER_OBJECT:
                rejected.append(
                    {
                        "feed": kind,
                        "key": found.key,
                        "line": -1,
                        "outcome": "summary",
                        "line_id": None,
                        "reason": f"{logged - MAX_LOGGED_PER_OBJECT} more refused lines not logged one by one",
                    }
                )
            objects[(kind, found.key)] = (found.tag, float(end), _STATUS_PENDING if pending else _STATUS_DONE)
    time = np.array(columns["time"], dtype=np.int64)
    order = np.lexsort((np.array(columns["order"], dtype=np.int64), time)) if len(time) else np.zeros(0, dtype=np.int64)
    series = np.array(columns["series"], dtype=np.int64)[order]
    kinds = np.array(columns["kind"], dtype=np.int8)[order]
    moved = np.zeros(len(order), dtype=np.int64)
    late_lines = np.array(columns["late"], dtype=bool)[order]
    for j in np.flatnonzero((kinds == COUNT) & late_lines).tolist():  # a late count: what moved since its time
        moved[j] = int(seen.moves[2][(seen.moves[0] == series[j]) & (seen.moves[1] > time[order][j])].sum())
    batch = Batch(
        series,
        time[order],
        kinds,
        np.array(columns["quantity"], dtype=np.int64)[order],
        [columns["line_id"][k] for k in order.tolist()],
        late_lines,
        moved,
        counters,
        rejected,
    )
    keys_array = np.array(remembered, dtype=np.uint64).reshape(-1, 2)
    return Prepared(batch, objects, keys_array)


def moves_of(before: State, after: State, batch: Batch | None, tick_epoch: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How on hand moved, per series, in one commit: one entry per series that moved, at the time of its
    latest feed line (a purchase-order receipt: the tick's time) — what a late count subtracts."""
    change = after.on_hand - before.on_hand
    moved = np.flatnonzero(change)
    if not len(moved):
        none = np.zeros(0, dtype=np.int64)
        return none, none.copy(), none.copy()
    latest = np.full(before.num_series, int(tick_epoch), dtype=np.int64)
    if batch is not None and len(batch):
        latest[:] = -1
        np.maximum.at(latest, batch.series, batch.time)
        latest = np.where(latest < 0, int(tick_epoch), latest)
    return moved.astype(np.int64), latest[moved], change[moved].astype(np.int64)


def write_journal(store: Store, prepared: Prepared, moves: tuple[np.ndarray, np.ndarray, np.ndarray], window_end: float) -> str | None:
    """Write the tick's journal (write-once, before the commit that references it), named by the end of
    the minutes the tick applied; its key, or None when there is nothing to remember."""
    if prepared.empty and not len(moves[0]):
        return None
    order = np.argsort(prepared.keys[:, 0], kind="stable")
    header = {
        "schema": 1,
        "objects": [
            [feed, key, tag, through if math.isfinite(through) else -1e300, status]
            for (feed, key), (tag, through, status) in sorted(prepared.objects.items())
        ],
    }
    data = pack(
        header,
        {
            "hi": prepared.keys[order, 0].copy(),
            "lo": prepared.keys[order, 1].copy(),
            "move_series": moves[0],
            "move_time": moves[1],
            "move_delta": moves[2],
        },
        level=1,
    )
    key = f"{JOURNAL_PREFIX}{max(int(window_end), 0):011d}-journal-{hashlib.sha256(data).hexdigest()[:24]}.bin"
    store.put_once(key, data)
    return key


def referenced(state: State, window: tuple[float, float], new_key: str | None, feeds: Feeds) -> list[list[Any]]:
    """The journals the state after a tick over ``window`` = (start, end] references: those a later
    tick may still need (:meth:`Feeds.keep_from`), and the tick's own."""
    keep_from = feeds.keep_from(window[1])
    refs = [[str(key), float(written)] for key, written in state.feed_journals if float(written) >= keep_from]
    if new_key is not None:
        refs.append([new_key, float(window[1])])
    return refs


def prune_journals(store: Store, state: State) -> int:
    """Delete the journals the committed ``state`` no longer references and that are older than every
    journal it does and than its order clock (best effort, after the commit): a journal a concurrent tick
    that loaded this state writes before its compare-and-swap is stamped with that tick's window end, at
    or after this order clock, so it is never deleted — also when the state references no journal at
    all (a quiet hour). Never a referenced one."""
    kept = {str(key) for key, _ in state.feed_journals}
    oldest = min([float(written) for _, written in state.feed_journals] + [float(state.orders_through)])
    deleted = 0
    for key in list(store.list(JOURNAL_PREFIX)):
        stamp = key[len(JOURNAL_PREFIX) :].split("-", 1)[0]
        if key in kept or not stamp.isdigit() or int(stamp) >= oldest:
            continue
        store.delete(key)
        deleted += 1
    return deleted
