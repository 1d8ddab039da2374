"""Log events and log objects: gzip NDJSON, one object per invocation, write-once keys.

Every event has ``@timestamp`` (ISO-8601 UTC, business time), ``type``, ``handler`` and a
deterministic ``event_id`` (handler, type, series and time), so re-ingesting an object can't
duplicate documents. Keys are time-ordered so Filebeat lists them by prefix:
``logs/<handler>/YYYY/MM/DD/HH/<handler>-<YYYYMMDDTHHMMSSZ>[-shard-<k>].ndjson.gz``.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

import numpy as np

from handlers.model.catalog import Catalog
from handlers.model.events import format_time

__all__ = [
    "EVENT_FIELDS",
    "FEED_ONLY_FIELDS",
    "log_key",
    "encode_events",
    "decode_events",
    "series_events",
    "event",
    "event_maker",
    "stamp",
    "LOG_PREFIX",
    "CONTENT_TYPE",
]

LOG_PREFIX = "logs/"
CONTENT_TYPE = "application/x-ndjson"

#: The fields each event type carries (beyond @timestamp, type, handler, event_id). The first
#: four types and their first fields are the original system's contract; Kibana, Filebeat and the
#: tests read this table.
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "order": ("product_id", "warehouse_id", "quantity", "remaining_inventory", "line_id", "line_time", "late", "backordered"),
    "inventory": (
        "product_id",
        "warehouse_id",
        "inventory_units",
        "orders_per_hour",
        "predicted_stockout_hours",
        "low_stock_warning",
        "stockout_within_horizon",
        "stockout_probability",
        "inbound_units",
        "forecast_7d_units",
        "reorder_point",
    ),
    "reorder_alert": (
        "product_id",
        "warehouse_id",
        "current_inventory",
        "predicted_stockout_hours",
        "recommended_reorder_quantity",
        "reason",
        "reorder_point",
        "inventory_position",
        "service_level",
        "stockout_probability",
        "purchase_order_id",
        "expected_arrival",
    ),
    "restock": ("product_id", "warehouse_id", "restocked_quantity", "new_inventory", "purchase_order_id", "backorder_filled"),
    # a shop's feeds (handlers/model/feeding.py); an order from a feed carries its line_id and line_time
    "return": ("product_id", "warehouse_id", "quantity", "new_inventory", "backorder_filled", "line_id", "line_time", "late"),
    "receipt": ("product_id", "warehouse_id", "received_quantity", "new_inventory", "backorder_filled", "line_id", "line_time", "late"),
    "adjustment": ("product_id", "warehouse_id", "counted", "expected", "difference", "new_inventory", "line_id", "line_time", "late"),
    "feed_rejected": ("feed", "key", "line", "reason", "line_id", "outcome"),
    "lost_sale": ("product_id", "warehouse_id", "lost_quantity", "remaining_inventory"),
    "forecast_score": (
        "product_id",
        "warehouse_id",
        "day",
        "forecast_units",
        "forecast_std_units",
        "actual_units",
        "abs_error",
        "seasonal_naive_abs_error",
    ),
    "job_run": ("tick_id", "status", "events", "duration_ms", "conflicts", "shard", "pool"),
}


#: Fields an event carries only when it comes from a shop's feed (an ``order`` the simulator drew has none).
FEED_ONLY_FIELDS: dict[str, tuple[str, ...]] = {"order": ("line_id", "line_time", "late", "backordered")}


def stamp(moment: datetime) -> str:
    """Compact sortable UTC timestamp for keys and ids: 20261123T100500Z (with .ffffff if needed)."""
    moment = moment.astimezone(timezone.utc)
    text = moment.strftime("%Y%m%dT%H%M%S")
    return (text + f".{moment.microsecond:06d}" if moment.microsecond else text) + "Z"


def log_key(handler: str, moment: datetime, shard: int | None = None) -> str:
    """``logs/<handler>/YYYY/MM/DD/HH/<handler>-<stamp>[-shard-<k>].ndjson.gz``: time-ordered, and
    one prefix lists every shard's objects."""
    moment = moment.astimezone(timezone.utc)
    tail = "" if shard is None else f"-shard-{shard}"
    return f"{LOG_PREFIX}{handler}/{moment:%Y/%m/%d/%H}/{handler}-{stamp(moment)}{tail}.ndjson.gz"


_LOG_NAME = re.compile(r"(?P<handler>[a-z_]+)-(?P<stamp>\d{8}T\d{6}(?:\.\d{6})?Z)(?:-shard-(?P<shard>\d+))?\.ndjson\.gz")


def parse_log_key(key: str) -> tuple[str, float, int | None] | None:
    """(handler, tick epoch seconds, shard or None) of a key made by :func:`log_key`; None for any
    other key."""
    found = _LOG_NAME.fullmatch(key.rsplit("/", 1)[-1])
    if found is None:
        return None
    text = found["stamp"]
    moment = datetime.strptime(text, "%Y%m%dT%H%M%S.%fZ" if "." in text else "%Y%m%dT%H%M%SZ")
    shard = found["shard"]
    return found["handler"], moment.replace(tzinfo=timezone.utc).timestamp(), None if shard is None else int(shard)


def _plain(value: Any) -> Any:
    """numpy scalars -> JSON-safe Python values; NaN -> None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def event(kind: str, handler: str, moment: datetime, ident: str, **fields: Any) -> dict[str, Any]:
    return event_maker(handler, moment)(kind, ident, **fields)


def event_maker(handler: str, moment: datetime) -> Callable[..., dict[str, Any]]:
    """``event`` for the many events of one handler at one moment (a feed's lines of one minute): the
    moment's texts are formatted once. ``make(kind, ident, **fields)``."""
    at, mark = format_time(moment), stamp(moment)

    def make(kind: str, ident: str, **fields: Any) -> dict[str, Any]:
        doc = {"@timestamp": at, "type": kind, "handler": handler, "event_id": f"{handler}:{kind}:{ident}:{mark}"}
        doc.update({k: _plain(v) for k, v in fields.items()})
        return doc

    return make


def series_events(
    kind: str, handler: str, moment: datetime, catalog: Catalog, index: np.ndarray, columns: dict[str, np.ndarray]
) -> list[dict[str, Any]]:
    """One event per series in ``index``; ``columns`` are full-length arrays over the series."""
    picked = {name: np.asarray(values)[index].tolist() for name, values in columns.items()}
    products, warehouses = catalog.series_product_ids, catalog.series_warehouse_ids
    out = []
    for row, i in enumerate(index.tolist()):
        out.append(
            event(
                kind,
                handler,
                moment,
                f"{products[i]}:{warehouses[i]}",
                product_id=products[i],
                warehouse_id=warehouses[i],
                **{name: values[row] for name, values in picked.items()},
            )
        )
    return out


def encode_events(events: Iterable[dict[str, Any]]) -> bytes:
    """gzip NDJSON; byte-identical for identical events (gzip mtime fixed at 0)."""
    lines = "".join(json.dumps(e, separators=(",", ":"), allow_nan=False) + "\n" for e in events)
    return gzip.compress(lines.encode(), compresslevel=6, mtime=0)


def decode_events(data: bytes) -> Iterator[dict[str, Any]]:
    for line in gzip.decompress(data).decode().splitlines():
        if line:
            yield json.loads(line)
