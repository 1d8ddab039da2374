"""The inventory state: every per-series quantity is a numpy array over the catalog's series.

A ``State`` is immutable: the core builds a new one with :func:`dataclasses.replace` and new
arrays (loaded arrays are read-only, so an accidental in-place update fails loudly). It also carries
the *outbox*: the log objects of the last committed invocation, so a crash between the state write
and the log write is repaired by the next invocation.

Where it is stored is not this module's business: ``handlers/runtime/layout.py`` splits it into
parts (the hot part with its base and deltas, the history, the forecast part), each written with
:func:`pack` (a JSON header and raw arrays, zlib-compressed). :meth:`State.to_bytes` is the
whole state as one object: schema 1, what stores held before that layout, still read.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from handlers.errors import StorageError
from handlers.model.catalog import Catalog

__all__ = [
    "FEED_OUTCOMES",
    "State",
    "initial_state",
    "pack",
    "unpack",
    "HANDLERS",
    "LATENCY_BUCKETS",
    "HISTORY_DAYS",
    "FORECAST_DAYS",
    "STATE_KEY",
    "SCHEMA",
    "EXPOSED",
]

#: The handlers, in the order of the state's per-handler counters (rows of ``latency_buckets`` ...):
#: part of the stored format. handlers/runtime/declarations.py describes each one.
HANDLERS: tuple[str, ...] = ("order_tick", "restock", "forecast", "alert")
SCHEMA = 1
_MAGIC = b"STOCKPULSE-STATE\x00"
STATE_KEY = "state/state.bin"
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)  # seconds; +Inf implicit
RATE_DECAY = math.exp(-1 / 60)  # per-minute decay of the order-rate EWMA (time constant 1 h)
HISTORY_DAYS = 112  # complete days of demand kept for the forecaster
FORECAST_DAYS = 8  # today + the next 7 days
#: The per-series values the forecast core exposes to its metrics (``Outcome.exposed``), in the
#: columns of ``State.forecast_exposed``: kept with the forecast so that any publish of the forecast's
#: group exposes what the last committed forecast computed (handlers/telemetry/metrics.py)
EXPOSED: tuple[str, ...] = ("stockout_hours", "stockout_probability", "forecast_7d_units", "reorder_point")

#: Arrays added after SCHEMA 1 was first written: name -> the value a state without it loads with.
_ADDED_ARRAYS: dict[str, Callable[[int], np.ndarray]] = {
    "score_forecast_std": lambda series: np.full(series, np.nan),
    "cover_daily_demand": lambda series: np.full(series, np.nan, dtype=np.float32),
    "forecast_exposed": lambda series: np.full((series, len(EXPOSED)), np.nan),
    **{name: lambda series: np.zeros(series, dtype=np.int64) for name in ("backorder", "backordered", "returned", "adjusted")},
    "today_oos": lambda series: np.zeros((series, 24), dtype=np.int16),
    "censor_live": lambda series: np.zeros((series, 0)),
}
#: Scalars added after SCHEMA 1 was first written: name -> the value a state without it loads with.
_ADDED_SCALARS: dict[str, Callable[[], Any]] = {"feed_counters": dict, "feed_journals": list}
#: What each feed's counters count (handlers/runtime/feeds.py; the metrics ``feed_lines_total{outcome}``).
FEED_OUTCOMES = ("applied", "late", "too_late", "duplicate", "bad", "not_in_catalog", "objects_damaged")


@dataclass(frozen=True)
class State:
    # -- identity and clocks (business time, epoch seconds) ---------------------------------
    catalog_fingerprint: str
    created_at: float
    orders_through: float  # end of the last simulated business minute
    applied: dict[str, float]  # handler -> business time of its last applied tick

    # -- the stock ledger: on_hand == initial + received - shipped, always -----------------
    initial: np.ndarray
    on_hand: np.ndarray
    received: np.ndarray
    shipped: np.ndarray
    lost_sales: np.ndarray
    order_rate: np.ndarray  # EWMA of shipped units per minute (time constant 60 min), as of ``rate_minute``
    #   (stored lazily: only a series that sells changes; :meth:`order_rate_now` decays it to ``orders_through``)
    rate_minute: np.ndarray  # [S] the business minute (epoch seconds // 60) each ``order_rate`` is as of

    # -- demand history (demand = shipped + lost), UTC days ---------------------------------
    history_day: int  # UTC day number of ``today_demand``
    daily_demand: np.ndarray  # [S, HISTORY_DAYS] complete days, oldest first; NaN before creation
    today_hours: np.ndarray  # [S, 24] today's demand so far by UTC hour
    hour_profile: np.ndarray  # [S, 24] demand by UTC hour of complete days, decayed daily
    # [S, 68] (or [S, 0]) what the censored-demand recovery keeps per series: decayed sums of sales and
    #   exposed demand (handlers/forecasting/censored.py LiveState); none until a day closes censored
    censor_live: np.ndarray

    # -- open purchase orders, one row each (handlers/model/purchasing.py) ------------------------
    po_series: np.ndarray  # [N] series index
    po_quantity: np.ndarray  # [N] units
    po_due: np.ndarray  # [N] epoch seconds
    po_placed: np.ndarray  # [N] epoch seconds
    po_number: np.ndarray  # [N] n-th order of its series (its id)
    po_count: np.ndarray  # [S] purchase orders placed so far
    reorders: np.ndarray  # [S] reorder alerts raised, cumulative

    # -- a shop's own feed (handlers/model/feeding.py): sold beyond on hand, returns, counts ---------
    #    the ledger: on_hand == initial + received + returned + adjusted - shipped, always
    backorder: np.ndarray  # [S] units sold but not shipped yet: shipped first from the next receipt
    backordered: np.ndarray  # [S] units that went to backorder, cumulative
    returned: np.ndarray  # [S] units returned by customers (stock back, not demand), cumulative
    adjusted: np.ndarray  # [S] net units stock counts corrected on hand by, cumulative
    today_oos: np.ndarray  # [S, 24] int16: minutes of today, by UTC hour, that began with nothing on hand

    # -- the last forecast ------------------------------------------------------------------
    forecast_at: float  # NaN before the first forecast
    forecast_mean: np.ndarray  # [S, FORECAST_DAYS] day 0 = the UTC day of forecast_at
    forecast_std: np.ndarray
    hour_share: np.ndarray  # [S, 24] share of a day's demand in each UTC hour
    # [S] float32: forecast_mean[:, 0] as of the last commit of the hot part that had the forecast part
    #   at hand (NaN before the first forecast): what the days of cover in the metrics of a handler
    #   that does not read the forecast part use (handlers/runtime/layout.py, handlers/telemetry/metrics.py)
    cover_daily_demand: np.ndarray
    # [S, len(EXPOSED)] what the last forecast's core exposed to its metrics, as it computed them (NaN
    #   before the first forecast, and where the core exposed NaN: no stockout within the horizon)
    forecast_exposed: np.ndarray

    # -- forecast quality, after the fact: each day's forecast (made at the day's first forecast
    #    run) against what happened, beside seasonal naive (the same weekday a week earlier) ----
    score_day: int  # UTC day whose forecast waits to be scored; -1 when none
    score_forecast: np.ndarray  # [S] that day's forecast
    score_forecast_std: np.ndarray  # [S] its standard deviation (NaN in states written before it)
    score_abs_error: np.ndarray  # [S] cumulative |forecast - actual|
    score_actual: np.ndarray  # [S] cumulative actual demand of the scored days
    score_days: np.ndarray  # [S] days scored
    score_paired_abs_error: np.ndarray  # [S] |forecast - actual| on days seasonal naive could forecast
    score_naive_abs_error: np.ndarray  # [S] |seasonal naive - actual| on those days

    # -- operations (cumulative, pushed as absolute values) ---------------------------------
    latency_buckets: np.ndarray  # [handlers, buckets + 1] cumulative counts (Prometheus "le")
    latency_sum: np.ndarray  # [handlers]
    invocations: np.ndarray  # [handlers] applied invocations
    push_failures: np.ndarray  # [handlers]
    #: feed -> outcome (FEED_OUTCOMES) -> lines (objects), cumulative; feed -> "newest": the business
    #: time of the newest line applied
    feed_counters: dict[str, dict[str, float]] = field(default_factory=dict)
    #: the feed journals this state references (handlers/runtime/feeds.py): [key, business time written]
    feed_journals: list[list[Any]] = field(default_factory=list)
    conflicts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(HANDLERS, 0))  # handler -> compare-
    #   and-swap writes it lost (and retried) before its commits, cumulative

    outbox: tuple[tuple[str, bytes], ...] = field(default=())

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                value.flags.writeable = False

    @property
    def num_series(self) -> int:
        return int(self.on_hand.shape[0])

    def order_rate_now(self) -> np.ndarray:
        """[S] the order-rate EWMA at ``orders_through`` (each series' stored rate decayed since its
        ``rate_minute``)."""
        age = np.maximum(self.orders_through // 60 - self.rate_minute, 0)
        return self.order_rate * RATE_DECAY**age

    def replace(self, **changes: Any) -> State:
        return dataclasses.replace(self, **changes)

    # -- (de)serialisation: the whole state as one object (schema 1; handlers/runtime/layout.py splits it) --
    def to_bytes(self) -> bytes:
        """One zlib-compressed blob: a JSON header (scalars, array layout) then the raw arrays."""
        header: dict[str, Any] = {"schema": SCHEMA}
        arrays: dict[str, np.ndarray] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                arrays[f.name] = value
            elif f.name != "outbox":
                header[f.name] = None if isinstance(value, float) and math.isnan(value) else value
        return pack(header, arrays, self.outbox)

    @classmethod
    def from_bytes(cls, data: bytes, *, key: str = STATE_KEY) -> State:
        header, values, outbox = unpack(data, key=key)
        if header.get("schema") != SCHEMA:
            raise StorageError(f"{key}: state schema {header.get('schema')!r}, this stockpulse reads {SCHEMA}; use a new --store")
        return cls.from_fields(header, values, outbox)

    @classmethod
    def from_fields(cls, header: dict[str, Any], values: dict[str, Any], outbox: tuple[tuple[str, bytes], ...]) -> State:
        """A state from its scalars (``header``, NaN stored as null) and arrays; fields added since
        the first objects were written get their defaults."""
        values = dict(values)
        for name, fill in _ADDED_ARRAYS.items():  # arrays newer than the object: filled in
            values.setdefault(name, fill(int(values["on_hand"].shape[0])))
        if "rate_minute" not in values:  # before rates were stored lazily: every rate is as of orders_through
            values["rate_minute"] = np.full(int(values["on_hand"].shape[0]), int(header["orders_through"] // 60), dtype=np.int64)
        for f in dataclasses.fields(cls):
            if f.name in _ADDED_SCALARS and f.name not in header:  # newer than the object
                values[f.name] = _ADDED_SCALARS[f.name]()
            elif f.name == "conflicts":  # newer than the first objects: zeros when absent
                values[f.name] = {**dict.fromkeys(HANDLERS, 0), **header.get(f.name, {})}
            elif f.name not in values and f.name != "outbox":
                value = header[f.name]
                values[f.name] = math.nan if value is None and f.type == "float" else value
        return cls(outbox=outbox, **values)


#: Narrower integer types an array is stored as when that is lossless (tried in this order).
_NARROW = (np.dtype("<u2"), np.dtype("<i4"))
_NARROW_MIN_BYTES = 1 << 16  # smaller arrays are stored as they are


def _narrowed(array: np.ndarray) -> np.ndarray | None:
    """``array`` as the first of :data:`_NARROW` that holds every value exactly (integer counts kept
    as float64, such as today's demand by hour, and int64 counters), or None. Stored narrow, an
    array costs a quarter of the compression work; it loads as its own dtype again."""
    if array.dtype.kind not in "fi" or array.nbytes < _NARROW_MIN_BYTES or array.itemsize <= 2:
        return None
    flat = array.reshape(-1)
    head = flat[:1024]
    if array.dtype.kind == "f" and not np.array_equal(head, np.trunc(head)):  # fractional: stop early
        return None
    low, high = flat.min(), flat.max()  # NaN in a float array: neither comparison holds
    for dtype in _NARROW:
        limits = np.iinfo(dtype)
        if dtype.itemsize < array.itemsize and limits.min <= low and high <= limits.max:
            narrow = array.astype(dtype)
            return narrow if array.dtype.kind == "i" or np.array_equal(narrow, array) else None
    return None


def pack(header: dict[str, Any], arrays: dict[str, np.ndarray], outbox: tuple[tuple[str, bytes], ...] = (), *, level: int = 1) -> bytes:
    """A JSON header, named raw arrays and the outbox's payloads in one blob, zlib at ``level``
    (0: stored, no compression work). An array whose values all fit a narrower integer type is
    stored as that type (its entry names both: ``[name, dtype, shape, offset, nbytes, stored dtype]``;
    a reader that does not know the sixth field fails on the size instead of misreading it)."""
    header = {**header, "arrays": [], "outbox": []}
    chunks: list[Any] = []
    offset = 0
    for name, value in arrays.items():
        array = np.ascontiguousarray(value)
        narrow = _narrowed(array)
        stored = array if narrow is None else narrow
        entry = [name, array.dtype.str, list(array.shape), offset, stored.nbytes]
        header["arrays"].append(entry if narrow is None else [*entry, narrow.dtype.str])
        chunks.append(stored.reshape(-1).view(np.uint8))  # its bytes, not a copy
        offset += stored.nbytes
    for key, payload in outbox:
        header["outbox"].append([key, offset, len(payload)])
        chunks.append(payload)
        offset += len(payload)
    head = json.dumps(header).encode()
    compressor = zlib.compressobj(level)
    out = [_MAGIC, compressor.compress(struct.pack("<I", len(head)) + head)]
    out += [compressor.compress(chunk) for chunk in chunks]  # no copy of the arrays into one buffer
    out.append(compressor.flush())
    return b"".join(out)


def unpack(data: bytes, *, key: str) -> tuple[dict[str, Any], dict[str, np.ndarray], tuple[tuple[str, bytes], ...]]:
    """The header, arrays (read-only views) and outbox of a blob :func:`pack` wrote."""
    try:
        if not data.startswith(_MAGIC):
            raise ValueError("magic")
        raw = zlib.decompress(memoryview(data)[len(_MAGIC) :])
        (size,) = struct.unpack_from("<I", raw)
        header = json.loads(raw[4 : 4 + size])
        body = memoryview(raw)[4 + size :]
    except (ValueError, zlib.error, struct.error) as exc:
        raise StorageError(f"{key}: not a stockpulse state object ({exc})") from exc
    arrays = {}
    for name, dtype, shape, start, length, *stored in header.pop("arrays"):
        array = np.frombuffer(body[start : start + length], dtype=np.dtype(stored[0] if stored else dtype)).reshape(shape)
        if stored:
            array = array.astype(dtype)
            array.flags.writeable = False
        arrays[name] = array
    outbox = tuple((k, bytes(body[start : start + length])) for k, start, length in header.pop("outbox"))
    return header, arrays, outbox


def initial_state(catalog: Catalog, created_at: float) -> State:
    """A fresh state at business time ``created_at``: initial stock, no history, no orders."""
    s = catalog.num_series
    zeros_i = np.zeros(s, dtype=np.int64)
    h = len(HANDLERS)
    start_minute = math.floor(created_at / 60) * 60
    return State(
        catalog_fingerprint=catalog.fingerprint,
        created_at=created_at,
        orders_through=start_minute - 60.0,
        applied={name: -math.inf for name in HANDLERS},
        initial=catalog.initial_stock.copy(),
        on_hand=catalog.initial_stock.copy(),
        received=zeros_i.copy(),
        shipped=zeros_i.copy(),
        lost_sales=zeros_i.copy(),
        order_rate=np.zeros(s),
        rate_minute=np.full(s, int((start_minute - 60) // 60), dtype=np.int64),
        history_day=int((start_minute - 60) // 86400),
        daily_demand=np.full((s, HISTORY_DAYS), np.nan),
        today_hours=np.zeros((s, 24)),
        hour_profile=np.zeros((s, 24)),
        censor_live=np.zeros((s, 0)),
        po_series=np.zeros(0, dtype=np.int64),
        po_quantity=np.zeros(0, dtype=np.int64),
        po_due=np.zeros(0),
        po_placed=np.zeros(0),
        po_number=np.zeros(0, dtype=np.int64),
        po_count=zeros_i.copy(),
        reorders=zeros_i.copy(),
        backorder=zeros_i.copy(),
        backordered=zeros_i.copy(),
        returned=zeros_i.copy(),
        adjusted=zeros_i.copy(),
        today_oos=np.zeros((s, 24), dtype=np.int16),
        forecast_at=math.nan,
        forecast_mean=np.zeros((s, FORECAST_DAYS)),
        forecast_std=np.zeros((s, FORECAST_DAYS)),
        hour_share=np.full((s, 24), 1 / 24),
        cover_daily_demand=np.full(s, np.nan, dtype=np.float32),
        forecast_exposed=np.full((s, len(EXPOSED)), np.nan),
        score_day=-1,
        score_forecast=np.zeros(s),
        score_forecast_std=np.zeros(s),
        score_abs_error=np.zeros(s),
        score_actual=np.zeros(s),
        score_days=zeros_i.copy(),
        score_paired_abs_error=np.zeros(s),
        score_naive_abs_error=np.zeros(s),
        latency_buckets=np.zeros((h, len(LATENCY_BUCKETS) + 1), dtype=np.int64),
        latency_sum=np.zeros(h),
        invocations=np.zeros(h, dtype=np.int64),
        push_failures=np.zeros(h, dtype=np.int64),
    )
