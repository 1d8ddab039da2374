"""Where the state lives: a few objects, so that no invocation pays for what it did not change.

``state/state.bin`` (compare-and-swap) — the **hot** part: clocks, open purchase orders, the
  per-handler counters of ``order_tick``, ``restock`` and ``alert``, their outbox, the key of the
  history object, and the keys of the hot part's per-series arrays:
``state/hot/<stamp>-{base,delta}-<sha>.bin`` (write-once, content-addressed) — the stock ledger,
  the order rate, today's demand by hour and the other per-series arrays of the hot part: a base,
  then one delta per commit with the elements that changed (a new base every ``MAX_CHAIN`` deltas).
``state/history/<day>-<sha256>.bin`` (write-once, content-addressed) — the **history**: complete days
  of demand and the hour-of-day profile ([S, 112] and [S, 24]); a new object only when a day
  closes (once a business day), referenced by the hot part's commit that closed it.
``state/forecast.bin`` (compare-and-swap) — the **forecast** part: the last forecast, the forecast
  scores, and the ``forecast`` handler's own counters and outbox. Only ``forecast`` writes it, so a
  slow forecast never races the order ticks for one ETag.

Each invocation still has a single commit point (handlers/runtime/invoke.py, step 5): ``forecast``
commits by compare-and-swap of ``state/forecast.bin``, every other handler by compare-and-swap of
``state/state.bin``. A history object, a base or a delta is written (write-once) *before* the hot
commit that references it: a crash in between
leaves an unreferenced object, which the retry writes again under the same key (same content);
readers only follow references of committed hot states. Unreferenced history objects are garbage:
the order tick that closes a day deletes all but the newest two (``prune_history``).

Each invocation reads only the parts it uses: ``order_tick`` and ``restock`` never read
``state/forecast.bin`` (40 MB at 100,000 series; its fields are :data:`FORECAST_NOT_LOADED`), and
the history only when their core needs it (:data:`NOT_LOADED`). What their metrics need of the
forecast — the demand per day of its first day, for days of cover — is carried in the hot part as
``cover_daily_demand``, copied by every hot commit that has the forecast part at hand (``alert``).
The forecast part's outbox is therefore written out by the invocations that read it: ``forecast``
and ``alert`` (handlers/runtime/invoke.py step 2).

A schema-1 ``state/state.bin`` (the whole state in one object, before this layout) still loads; the
next hot commit writes it in this layout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from handlers.errors import ConfigError, ConflictError, StorageError
from handlers.model.catalog import Catalog
from handlers.model.state import HANDLERS, SCHEMA, STATE_KEY, State, initial_state, pack, unpack
from handlers.runtime.declarations import Part, parts_of
from handlers.storage.base import Store

log = logging.getLogger("stockpulse")

__all__ = [
    "Loaded",
    "Committed",
    "Moved",
    "check_digest",
    "load",
    "with_history",
    "fresh",
    "commit",
    "prune_history",
    "prune_hot",
    "FORECAST_KEY",
    "HISTORY_PREFIX",
    "HOT_SCHEMA",
    "NOT_LOADED",
    "FORECAST_NOT_LOADED",
    "is_loaded",
    "forecast_daily_demand",
]

FORECAST_KEY = "state/forecast.bin"
HISTORY_PREFIX = "state/history/"
HOT_SCHEMA = 3  # 2: the hot part's per-series arrays inline; 3: a base and a chain of deltas (still read: 2)
HOT_PREFIX = "state/hot/"
MAX_CHAIN = 16  # deltas after a base before a hot commit writes a new base
_LOAD_ATTEMPTS = 25  # reads of a hot part that newer commits replaced before its objects were read
_PARALLEL_READS, _READERS = 3, 8  # from this many objects to read, read them in parallel
_SMALL_CHAIN_BYTES = 1 << 16  # a chain this small is never worth a new base before MAX_CHAIN
#: the history object's arrays; ``censor_live``: what the censored-demand recovery keeps per series
#: (handlers/forecasting/censored.py LiveState; zero columns for a store whose demand is never censored)
HISTORY_FIELDS = ("daily_demand", "hour_profile", "censor_live")
FORECAST_FIELDS = (
    "forecast_at",
    "forecast_mean",
    "forecast_std",
    "hour_share",
    "forecast_exposed",
    "score_day",
    "score_forecast",
    "score_forecast_std",
    "score_abs_error",
    "score_actual",
    "score_days",
    "score_paired_abs_error",
    "score_naive_abs_error",
)
_FORECAST_SCALARS = ("forecast_at", "score_day")
_FORECAST_ARRAYS = tuple(name for name in FORECAST_FIELDS if name not in _FORECAST_SCALARS)
#: Counters kept per handler; each part stores those of the handlers that commit to it.
PER_HANDLER = ("applied", "latency_buckets", "latency_sum", "invocations", "push_failures", "conflicts")
_ROWS = ("latency_buckets", "latency_sum", "invocations", "push_failures")  # arrays indexed by HANDLERS
#: zlib level per part, measured at 100k series (docs/storage.md "Codecs"): the forecast's floats shrink
#: 16 % at level 1 for 0.8 s (0 = stored); the hot part 6x at 0.16 s; the history 5x, once a day
LEVEL = {"hot": 1, "forecast": 0, "history": 1}


class _NotLoaded:
    """Stands for a part an invocation does not read; any use of it fails loudly."""

    def __init__(self, part: str) -> None:
        self._part = part

    def __getattr__(self, name: str) -> Any:
        raise StorageError(f"{self._part} was not loaded for this invocation (handlers/runtime/layout.py)")

    def __repr__(self) -> str:
        return f"<{self._part} not loaded>"


NOT_LOADED: Any = _NotLoaded("the demand history")
FORECAST_NOT_LOADED: Any = _NotLoaded("the forecast part (state/forecast.bin)")


def is_loaded(value: Any) -> bool:
    """False for a field of a part this invocation did not read."""
    return not isinstance(value, _NotLoaded)


def forecast_daily_demand(state: State) -> np.ndarray:
    """[S] the last forecast's demand for its first day (NaN before the first forecast): from the
    forecast part when it was read, else the hot part's copy (``cover_daily_demand``)."""
    if not is_loaded(state.forecast_mean):
        return state.cover_daily_demand
    if not math.isfinite(state.forecast_at) or state.forecast_mean.shape[1] == 0:
        return np.full(state.num_series, np.nan, dtype=np.float32)
    return state.forecast_mean[:, 0]


@dataclass(frozen=True)
class Loaded:
    """The merged state and what a commit needs: each part's ETag, outbox and the history reference."""

    state: State
    etags: dict[str, str | None]  # part -> ETag (None: the object does not exist yet)
    outboxes: dict[str, tuple[tuple[str, bytes], ...]]
    history_ref: str | None
    history: tuple[Any, Any]  # the arrays as loaded (identity tells whether a commit changed them)
    legacy: bool = False  # loaded from a schema-1 object: the first hot commit also writes the forecast part
    base: str | None = None  # the hot part's base object (None: none yet, the next hot commit writes one)
    chain: tuple[tuple[str, int], ...] = ()  # its deltas since the base, oldest first: (key, bytes)
    base_bytes: int = 0


@dataclass(frozen=True)
class Committed:
    """What a commit references: the history object and the hot part's base and its chain of deltas
    (hot commits)."""

    history: str | None = None
    base: str | None = None
    chain: tuple[str, ...] = ()


def _scalars(values: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


def _split_handlers(state: State, handlers: tuple[str, ...]) -> dict[str, Any]:
    rows = {name: getattr(state, name) for name in _ROWS}
    return {
        "handlers": {
            h: {
                "applied": None if math.isinf(state.applied[h]) else state.applied[h],
                "conflicts": state.conflicts[h],
                **{name: rows[name][HANDLERS.index(h)].tolist() for name in _ROWS},
            }
            for h in handlers
        }
    }


def _merge_handlers(header: dict[str, Any], arrays: dict[str, Any], per: dict[str, dict[str, Any]], blank: State) -> None:
    """Put each handler's stored counters (``per``) into the merged scalars and arrays."""
    applied = dict(header.get("applied") or blank.applied)
    conflicts = {**blank.conflicts, **(header.get("conflicts") or {})}
    rows = {name: np.array(arrays.get(name, getattr(blank, name))) for name in _ROWS}
    for h, doc in per.items():
        applied[h] = -math.inf if doc["applied"] is None else doc["applied"]
        conflicts[h] = doc["conflicts"]
        for name in _ROWS:
            rows[name][HANDLERS.index(h)] = doc[name]
    header.update(applied=applied, conflicts=conflicts)
    arrays.update(rows)


def _history(store: Store, ref: str, etag: str) -> dict[str, np.ndarray]:
    return unpack(_read_referenced(store, ref, etag), key=ref)[1]


def _absent(name: str, state: State) -> np.ndarray:
    """A history array an older history object does not hold (``censor_live``: none kept yet)."""
    if name != "censor_live":
        raise StorageError(f"history object: no {name!r}")
    return np.zeros((state.num_series, 0))


def with_history(store: Store, loaded: Loaded) -> Loaded:
    """``loaded`` with its history read (a no-op when it is already there). ``Moved`` when the
    history object is gone because newer commits replaced it (read the hot part again); a
    ``StorageError`` naming it when the newest hot part references it and it is missing."""
    if loaded.history_ref is None or loaded.history[0] is not NOT_LOADED:
        return loaded
    try:
        arrays = _history(store, loaded.history_ref, str(loaded.etags["hot"]))
    except _Missing as exc:
        raise _vanished(store, exc) from exc
    state = loaded.state.replace(**{name: arrays[name] if name in arrays else _absent(name, loaded.state) for name in HISTORY_FIELDS})
    return dataclasses.replace(loaded, state=state, history=tuple(getattr(state, name) for name in HISTORY_FIELDS))


def load(store: Store, catalog: Catalog | None, *, at: float, history: bool = True, forecast: bool = True) -> Loaded | None:
    """Read the parts and merge them into one :class:`State` (:func:`_load`). An object the hot part
    references that is gone was pruned after newer commits: the hot part is read again. Only when
    the newest hot part references a missing object is that damage, an error naming the object."""
    for _ in range(_LOAD_ATTEMPTS):
        try:
            return _load(store, catalog, at=at, history=history, forecast=forecast)
        except _Missing as exc:
            failure = _vanished(store, exc)
            if not isinstance(failure, Moved):
                raise failure from exc
            log.info("%s was pruned meanwhile; reading the hot part again", exc.key)
    raise StorageError(f"{STATE_KEY}: changed {_LOAD_ATTEMPTS} times while the objects it references were read from {store.url}; try again")


def _load(store: Store, catalog: Catalog | None, *, at: float, history: bool = True, forecast: bool = True) -> Loaded | None:
    """Read the parts (hot; the forecast unless ``forecast=False``; the history unless
    ``history=False``) and merge them into one :class:`State`; ``None`` when the store has no state.
    A missing forecast part is a fresh one. Without the forecast part its fields are
    :data:`FORECAST_NOT_LOADED`, its outbox is not in ``state.outbox``, and the ``forecast``
    handler's counters are those of a handler that never ran (``applied`` -inf)."""
    hot = store.read(STATE_KEY)
    if hot is None:
        if next(iter(store.list("logs/")), None) is not None:
            raise StorageError(
                f"{STATE_KEY}: missing from {store.url}, but logs/ holds log objects — the state "
                "was deleted. Restore it from a backup, or start a new --store; refusing to start "
                "fresh over old logs"
            )
        return None
    header, values, hot_outbox = unpack(hot.data, key=STATE_KEY)
    fingerprint = header.get("catalog_fingerprint")
    if catalog is not None and fingerprint != catalog.fingerprint:
        raise ConfigError(
            f"--catalog: {store.url} was started with another catalog "
            f"({fingerprint}); this one ({catalog.source}) is "
            f"{catalog.fingerprint} — use the same catalog or a new --store"
        )
    ref, base, base_bytes = None, None, 0
    chain: tuple[tuple[str, int], ...] = ()
    header_schema = header.get("schema")
    if header_schema == SCHEMA:  # the whole state in one object (before this layout)
        legacy = State.from_fields({k: v for k, v in header.items() if k != "schema"}, values, hot_outbox)
        scalars = {
            f.name: getattr(legacy, f.name)
            for f in dataclasses.fields(State)
            if not isinstance(getattr(legacy, f.name), np.ndarray) and f.name != "outbox"
        }
        values = {**{k: v for k, v in vars(legacy).items() if isinstance(v, np.ndarray)}}
        header = _scalars(scalars)
        per_hot: dict[str, Any] = {}
    elif header_schema in (2, HOT_SCHEMA):
        per_hot = header.pop("handlers")
        ref = header.pop("history")
        if header_schema == HOT_SCHEMA:
            base, base_bytes = header.pop("base"), header.pop("base_bytes")
            chain = tuple((str(key), int(size)) for key, size in header.pop("chain"))
            values.update(_series(store, base, chain, hot.etag))
        if history:
            values.update(_history(store, ref, hot.etag))
    else:
        raise StorageError(
            f"{STATE_KEY}: state schema {header.get('schema')!r}, this stockpulse reads {SCHEMA}, 2 and {HOT_SCHEMA}; use a new --store"
        )
    header.pop("schema", None)
    forecast_read = forecast or header_schema == SCHEMA  # moving a schema-1 state needs to know whether it exists
    forecast_part = store.read(FORECAST_KEY) if forecast_read else None
    forecast_outbox: tuple[tuple[str, bytes], ...] = ()
    per_forecast: dict[str, Any] = {}
    blank = _blank(0, at)  # the counters of handlers not stored yet (per handler, not per series)
    if not forecast_read:
        header.update(dict.fromkeys(_FORECAST_SCALARS, FORECAST_NOT_LOADED))
        values.update(dict.fromkeys(_FORECAST_ARRAYS, FORECAST_NOT_LOADED))
    elif forecast_part is not None:
        fheader, farrays, forecast_outbox = unpack(forecast_part.data, key=FORECAST_KEY)
        per_forecast = fheader.pop("handlers")
        header.update({k: fheader[k] for k in FORECAST_FIELDS if k in fheader})
        values.update(farrays)
    elif header.get("forecast_at", "absent") == "absent":  # no forecast part yet: a fresh one
        fresh_forecast = _blank(int(values["on_hand"].shape[0]), at)
        header.update(_scalars({k: getattr(fresh_forecast, k) for k in _FORECAST_SCALARS}))
        values.update({k: getattr(fresh_forecast, k) for k in _FORECAST_ARRAYS})
    _merge_handlers(header, values, {**per_hot, **per_forecast}, blank)
    if "daily_demand" in values:  # a history object from before censor_live: none kept yet
        values.setdefault("censor_live", np.zeros((int(values["on_hand"].shape[0]), 0)))
    loaded_history = tuple(values.get(name, NOT_LOADED) for name in HISTORY_FIELDS)
    values.update(zip(HISTORY_FIELDS, loaded_history))
    arrays = {k: v for k, v in values.items()}
    scalars = {k: v for k, v in header.items() if k not in arrays}
    state = State.from_fields(scalars, arrays, hot_outbox + forecast_outbox)
    return Loaded(
        state,
        {"hot": hot.etag, "forecast": None if forecast_part is None else forecast_part.etag},
        {"hot": hot_outbox, "forecast": forecast_outbox},
        ref,
        loaded_history,
        legacy=header_schema == SCHEMA and forecast_part is None,
        base=base,
        chain=chain,
        base_bytes=base_bytes,
    )


def _blank(series: int, at: float) -> State:
    """A fresh state of ``series`` series: the defaults of the parts and counters not stored yet."""
    stub = _SeriesOnly(np.zeros(series, dtype=np.int64))
    return initial_state(stub, at)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _SeriesOnly:
    """What :func:`initial_state` reads of a catalog, for a state whose catalog is not at hand."""

    initial_stock: np.ndarray
    fingerprint: str = ""

    @property
    def num_series(self) -> int:
        return int(self.initial_stock.shape[0])


def fresh(catalog: Catalog, at: float) -> Loaded:
    """What :func:`load` gives for an empty store: a fresh state at business time ``at``."""
    state = initial_state(catalog, at)
    return Loaded(
        state, {"hot": None, "forecast": None}, {"hot": (), "forecast": ()}, None, tuple(getattr(state, name) for name in HISTORY_FIELDS)
    )


def _encode(state: State, names: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    header: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for name in names:
        value = getattr(state, name)
        if isinstance(value, np.ndarray):
            arrays[name] = value
        else:
            header[name] = None if isinstance(value, float) and math.isnan(value) else value
    return header, arrays


_EXCLUDED_FROM_HOT = set(HISTORY_FIELDS) | set(FORECAST_FIELDS) | set(PER_HANDLER) | {"outbox"}
HOT_FIELDS = tuple(f.name for f in dataclasses.fields(State) if f.name not in _EXCLUDED_FROM_HOT)


def commit(store: Store, loaded: Loaded, state: State, part: Part, outbox: tuple[tuple[str, bytes], ...] | None = None) -> Committed:
    """Compare-and-swap ``part`` (``hot`` or ``forecast``) to ``state`` — the single commit point of
    an invocation. A hot commit whose history changed first writes the new history object (write-once).
    ``outbox``: the part's new outbox (default: the one it was loaded with). ``ConflictError`` when
    another writer committed the part first. Returns the history object a hot commit references
    and the hot part's base (both ``None`` for the forecast part). The hot part's per-series arrays
    go to a delta object (the elements that changed since the state it replaces) or, every
    ``MAX_CHAIN`` deltas, a new base object; both write-once, before the compare-and-swap."""
    outbox = loaded.outboxes[part] if outbox is None else outbox
    handlers = parts_of(part)
    if part == "forecast":
        if not is_loaded(state.forecast_mean):
            raise ValueError("the forecast part is committed only by an invocation that read it")
        header, arrays = _encode(state, FORECAST_FIELDS)
        header.update(schema=HOT_SCHEMA, catalog_fingerprint=state.catalog_fingerprint, **_split_handlers(state, handlers))
        store.write(FORECAST_KEY, pack(header, arrays, outbox, level=LEVEL["forecast"]), etag=loaded.etags["forecast"])
        return Committed()
    if loaded.legacy:  # moving a schema-1 state: its forecast part first (a crash in between loads the same)
        try:
            commit(store, loaded, state, "forecast", outbox=())
        except ConflictError:
            pass  # a forecast committed its own part meanwhile: that one is newer
    ref = loaded.history_ref
    if ref is None or any(getattr(state, name) is not before for name, before in zip(HISTORY_FIELDS, loaded.history)):
        data = pack({"schema": HOT_SCHEMA}, {name: getattr(state, name) for name in HISTORY_FIELDS}, level=LEVEL["history"])
        digest = hashlib.sha256(data).hexdigest()[:32]
        if ref is None or ref.rsplit("/", 1)[-1].removesuffix(".bin").rsplit("-", 1)[-1] != digest:  # else: the same bytes
            ref = f"{HISTORY_PREFIX}{max(state.history_day, 0):08d}-{digest}.bin"
            store.put_once(ref, data)
    if is_loaded(state.forecast_mean):  # the forecast part at hand: refresh the hot part's copy of what cover needs
        state = state.replace(cover_daily_demand=np.asarray(forecast_daily_demand(state), dtype=np.float32))
    header, arrays = _encode(state, HOT_FIELDS)
    series = {name: arrays.pop(name) for name in SERIES_FIELDS}
    base, chain, base_bytes = _write_series(store, loaded, series, _stamp(state, loaded))
    header.update(
        schema=HOT_SCHEMA,
        history=ref,
        base=base,
        chain=[list(link) for link in chain],
        base_bytes=base_bytes,
        **_split_handlers(state, handlers),
    )
    store.write(STATE_KEY, pack(header, arrays, outbox, level=LEVEL["hot"]), etag=loaded.etags["hot"])
    _remember(store, base, tuple(key for key, _ in chain), series)  # the next invocation here reads no object
    return Committed(history=ref, base=base, chain=tuple(key for key, _ in chain))


def prune_history(store: Store, keep: set[str], older_than: int) -> int:
    """Delete the history objects other than ``keep`` (the one the hot part now references and the
    one it referenced before: a reader that loaded the previous hot part still finds its history)
    whose day is before ``older_than`` (the day of the history the committing invocation had loaded):
    an object of a later day is a concurrent commit's, written before its compare-and-swap, and is
    never deleted, whatever ``keep`` says. Objects named before names carried their day (no day) are
    older than any. Called after a hot commit that wrote a new history object, once a business day; a
    crash or a failed delete leaves garbage the next day's prune removes. Returns how many were deleted."""
    deleted = 0
    for key in list(store.list(HISTORY_PREFIX)):
        day = _history_day(key)
        if key not in keep and key.endswith(".bin") and (day is None or day < older_than):
            store.delete(key)
            deleted += 1
    return deleted


def _history_day(key: str) -> int | None:
    """The day a history object's name carries (``state/history/<day>-<sha>.bin``), or None."""
    head = key[len(HISTORY_PREFIX) :].split("-", 1)[0] if key.startswith(HISTORY_PREFIX) else ""
    return int(head) if head.isdigit() and "-" in key[len(HISTORY_PREFIX) :] else None


# -- the hot part's per-series arrays: a base object and a chain of deltas ------------------------

#: The hot part's arrays with one row per series (the open purchase orders are rows of their own,
#: few, and stay inline in ``state/state.bin`` with the scalars and counters).
SERIES_FIELDS = tuple(
    name
    for name in HOT_FIELDS
    if name
    in {
        "initial",
        "on_hand",
        "received",
        "shipped",
        "lost_sales",
        "order_rate",
        "rate_minute",
        "today_hours",
        "po_count",
        "reorders",
        "cover_daily_demand",
        "backorder",
        "backordered",
        "returned",
        "adjusted",
        "today_oos",
    }
)
_MAX_CACHED = 4  # materialised generations kept per process (a warm function, a long `run`)
_materialised: dict[tuple[str, str], tuple[tuple[str, ...], dict[str, np.ndarray]]] = {}


def _stamp(state: State, loaded: Loaded) -> int:
    """The business time of a commit, which names the objects of the hot part so that a prune can
    tell generations apart: its newest applied tick, and never less than the stamp of any object
    of the hot part it replaces. The applied ticks alone could go backwards: a commit that read the
    forecast part counts the forecast's tick (up to its lead ahead of the order clock), the next
    commit of a handler that does not read it does not."""
    times = [t for t in state.applied.values() if math.isfinite(t)]
    before = [_key_stamp(key) for key in (loaded.base, *(key for key, _ in loaded.chain)) if key is not None]
    return int(max([*times, *(stamp for stamp in before if stamp is not None)], default=state.created_at))


def _object_key(kind: str, stamp: int, data: bytes) -> str:
    return f"{HOT_PREFIX}{max(stamp, 0):011d}-{kind}-{hashlib.sha256(data).hexdigest()[:24]}.bin"


def _key_stamp(key: str) -> int | None:
    name = key[len(HOT_PREFIX) :] if key.startswith(HOT_PREFIX) else ""
    head = name.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _same(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Element-wise: bit for bit the same value (NaN equals NaN; -0.0 is not 0.0)."""
    if old.dtype.kind in "fc":
        width = np.dtype(f"u{old.dtype.itemsize}")
        return np.asarray(old.reshape(-1).view(width) == new.reshape(-1).view(width))
    return np.asarray(old.reshape(-1) == new.reshape(-1))


def _delta(previous: State | None, series: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """Per array, the flat positions that changed since ``previous`` (as gaps) and their new values —
    or the whole array when its shape or type changed. ``None`` when a delta cannot be made."""
    if previous is None:
        return None
    out: dict[str, np.ndarray] = {}
    for name, new in series.items():
        old = getattr(previous, name)
        if not is_loaded(old):
            return None
        new = np.ascontiguousarray(new)
        if old.shape != new.shape or old.dtype != new.dtype:
            out[f"{name}:full"] = new
            continue
        where = np.flatnonzero(~_same(np.ascontiguousarray(old), new))
        if len(where):
            out[f"{name}:at"] = np.diff(where, prepend=0).astype(np.uint32 if new.size < 2**32 else np.int64)
            out[f"{name}:new"] = new.reshape(-1)[where]
    return out


def _apply(arrays: dict[str, np.ndarray], delta: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = dict(arrays)
    for entry, values in delta.items():
        name, _, kind = entry.partition(":")
        if kind == "full":
            out[name] = values
        elif kind == "at":
            where = np.cumsum(values.astype(np.int64))
            changed = np.array(out[name], copy=True)
            changed.reshape(-1)[where] = delta[f"{name}:new"]
            out[name] = changed
    return out


def _write_series(store: Store, loaded: Loaded, series: dict[str, np.ndarray], stamp: int) -> tuple[str, tuple[tuple[str, int], ...], int]:
    """Write the per-series arrays of a hot commit (write-once, before its compare-and-swap): a delta
    against the state the commit replaces, or a new base when there is none yet, the chain is
    ``MAX_CHAIN`` long, or its deltas add up to half the base (and 64 KiB). Returns (base, chain,
    base bytes)."""
    chained = (
        loaded.base is not None
        and len(loaded.chain) < MAX_CHAIN
        and sum(size for _, size in loaded.chain) < max(loaded.base_bytes // 2, _SMALL_CHAIN_BYTES)
    )
    delta = _delta(loaded.state, series) if chained else None
    if delta is None or loaded.base is None:
        data = pack({"schema": HOT_SCHEMA}, series, level=LEVEL["hot"])
        base = _object_key("base", stamp, data)
        store.put_once(base, data)
        return base, (), len(data)
    if not delta:  # nothing per series changed: the same chain
        return loaded.base, loaded.chain, loaded.base_bytes
    data = pack({"schema": HOT_SCHEMA}, delta, level=LEVEL["hot"])
    key = _object_key("delta", stamp, data)
    store.put_once(key, data)
    return loaded.base, (*loaded.chain, (key, len(data))), loaded.base_bytes


def forget() -> None:
    """Forget the hot objects this process materialised (what a new process knows)."""
    _materialised.clear()


def _remember(store: Store, base: str, chain: tuple[str, ...], series: dict[str, np.ndarray]) -> None:
    frozen = {}
    for name, array in series.items():
        array = np.asarray(array)
        if array.flags.writeable:
            array = array.copy()
            array.flags.writeable = False
        frozen[name] = array
    if len(_materialised) >= _MAX_CACHED and (store.url, base) not in _materialised:
        _materialised.pop(next(iter(_materialised)))
    _materialised[(store.url, base)] = (chain, frozen)


def _fetch(store: Store, key: str) -> bytes | None:
    """A write-once object's bytes; ``None`` when it does not exist (or is deleted while read)."""
    if not store.exists(key):
        return None
    try:
        return store.get(key)
    except StorageError:
        if store.exists(key):
            raise
        return None


def _read_referenced(store: Store, key: str, etag: str) -> bytes:
    """An object the hot part at ``etag`` references, checked against the SHA-256 its name carries;
    ``_Missing`` when it is gone, a ``StorageError`` naming it when its content is another's."""
    data = _fetch(store, key)
    if data is None:
        raise _Missing(key, etag)
    check_digest(key, data)
    return data


def check_digest(key: str, data: bytes) -> None:
    """Refuse content-addressed ``data`` whose SHA-256 does not begin with the hex digits that
    ``key``'s name ends with (``state/history/<day>-<sha>.bin``, ``state/hot/<stamp>-<kind>-<sha>.bin``):
    damage — another object's bytes under this name, or bytes changed in place."""
    stem = key.rsplit("/", 1)[-1].removesuffix(".bin")
    named = stem.rsplit("-", 1)[-1]
    if len(named) < 16 or any(c not in "0123456789abcdef" for c in named):
        raise StorageError(
            f"{key}: not the name of a content-addressed object (no SHA-256 in it) — the "
            f"reference in {STATE_KEY} is damaged; restore it from a backup, or start a new --store"
        )
    actual = hashlib.sha256(data).hexdigest()
    if not actual.startswith(named):
        raise StorageError(
            f"{key}: damaged — its content's SHA-256 begins {actual[: len(named)]}, not the {named} its "
            "name says; restore it from a backup, or start a new --store"
        )


def _read_object(store: Store, key: str, etag: str) -> dict[str, np.ndarray]:
    return unpack(_read_referenced(store, key, etag), key=key)[1]


class _Missing(StorageError):
    """An object the hot part at ``etag`` references is gone: pruned after newer commits, or lost."""

    def __init__(self, key: str, etag: str) -> None:
        super().__init__(f"{key}: missing")
        self.key, self.etag = key, etag


class Moved(StorageError):
    """The hot part changed while an invocation read the objects it references, and newer commits
    pruned one of them: read it again (handlers/runtime/invoke.py starts again from step 1)."""


def replaced_since(store: Store, etag: str | None) -> bool:
    """Whether ``state/state.bin`` is no longer the one read at ``etag`` (newer commits replaced it)."""
    current = store.read(STATE_KEY)
    return current is not None and current.etag != etag


def _vanished(store: Store, missing: _Missing) -> StorageError:
    """What a missing referenced object means: ``Moved`` when ``state/state.bin`` is no longer the
    one that referenced it; damage, named in one line, when the newest hot part references it."""
    if replaced_since(store, missing.etag):
        return Moved(f"{missing.key}: pruned after newer commits of {STATE_KEY}; read it again")
    return StorageError(
        f"{missing.key}: referenced by {STATE_KEY} but missing from {store.url} — restore it from a backup, or start a new --store"
    )


def _series(store: Store, base: str, chain: tuple[tuple[str, int], ...], etag: str) -> dict[str, np.ndarray]:
    """The hot part's per-series arrays: its base with its deltas applied (what this process already
    materialised of the same base is reused)."""
    keys = tuple(key for key, _ in chain)
    cached = _materialised.get((store.url, base))
    if cached is not None and keys[: len(cached[0])] == cached[0]:
        arrays, pending = cached[1], keys[len(cached[0]) :]
    else:
        arrays, pending = {}, (base, *keys)
    if len(pending) >= _PARALLEL_READS:  # a cold process on a network store: GET them at once
        with ThreadPoolExecutor(_READERS) as pool:
            objects = list(pool.map(lambda key: _read_object(store, key, etag), pending))
    else:
        objects = [_read_object(store, key, etag) for key in pending]
    for key, found in zip(pending, objects):
        arrays = found if key == base else _apply(arrays, found)
    _remember(store, base, keys, arrays)
    return dict(_materialised[(store.url, base)][1])


def prune_hot(store: Store, loaded: Loaded, committed: Committed) -> int:
    """After a hot commit that wrote a new base: delete the hot objects older than the base the
    invocation had loaded (the generation before it stays for readers of the previous hot part;
    a reader that still finds an object gone reads the hot part again). Whatever the names say, an
    object the new hot part or the one it replaced references is never deleted. Returns how many
    were deleted."""
    if committed.base is None or committed.base == loaded.base or loaded.base is None:
        return 0
    keep_from = _key_stamp(loaded.base)
    if keep_from is None:
        return 0
    keep = {committed.base, *committed.chain, loaded.base, *(key for key, _ in loaded.chain)}
    deleted = 0
    for key in list(store.list(HOT_PREFIX)):
        stamp = _key_stamp(key)
        if stamp is not None and stamp < keep_from and key not in keep:
            store.delete(key)
            deleted += 1
    return deleted
