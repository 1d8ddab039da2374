"""Feed objects as a shop would write them (docs/feeds.md): NDJSON or CSV, gzip optional, in hourly
partitions by arrival."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from datetime import datetime, timezone
from typing import Any

from handlers.model.events import format_epoch
from handlers.storage.base import Store
from handlers.storage.file import FileStore


def line(
    line_id: str, moment: datetime | float, product: str = "P-1", warehouse: str = "W-A", quantity: int = 1, **more: Any
) -> dict[str, Any]:
    when = moment if isinstance(moment, datetime) else datetime.fromtimestamp(moment, timezone.utc)
    return {"line_id": line_id, "time": when.isoformat(), "product_id": product, "warehouse_id": warehouse, "quantity": quantity, **more}


def ndjson(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in lines).encode()


def csv_bytes(lines: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    fields = list(dict.fromkeys(name for row in lines for name in row))
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(lines)
    return out.getvalue().encode()


def partition(moment: datetime | float) -> str:
    epoch = moment.timestamp() if isinstance(moment, datetime) else moment
    return format_epoch(epoch // 3600 * 3600)[:13].replace("-", "/").replace("T", "/") + "/"


def put(store: Store, arrived: datetime | float, name: str, data: bytes, *, zipped: bool = False) -> str:
    """Write one object into the partition of the hour it arrived in; its key. A file's modification
    time is its arrival (what its tag is made of: runs of the same feed in two directories read alike)."""
    key = partition(arrived) + name
    store.put_once(key, gzip.compress(data, mtime=0) if zipped else data)
    if isinstance(store, FileStore):
        epoch = arrived.timestamp() if isinstance(arrived, datetime) else arrived
        os.utime(store.root / key, (epoch, epoch))
    return key
