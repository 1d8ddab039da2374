"""A shop's own feed lines, parsed: orders (and returns), receipts, stock counts (pure).

A feed object is NDJSON or CSV, gzip optional (detected by its magic bytes, as Filebeat does). One
line of it, as the shop writes it (``infra/feed/*.schema.json`` is the JSON Schema; docs/feeds.md
the format with examples):

=================  ====================================================================================
``line_id``        the shop's own id of the line, unique within its feed: 1-128 printable characters
``time``           when it happened, ISO 8601 with a UTC offset (``2026-01-05T09:30:00+01:00``, ``…Z``)
``product_id``     a product of the catalog
``warehouse_id``   a warehouse of the catalog
``quantity``       orders and receipts: units, a whole number 1 .. 1,000,000 (ASCII digits in CSV)
``type``           orders only, optional: ``order`` (the default) or ``return`` (stock back, not demand)
``on_hand``        counts only (instead of ``quantity``): the units counted, 0 .. 1,000,000,000
=================  ====================================================================================

:func:`parse_object` never raises on content: a line that breaks a rule is a *bad line* (its number
and the reason, for the log and the counters) and the rest of the object is kept; an object that
cannot be read at all — a truncated gzip, not UTF-8, larger than :data:`MAX_OBJECT_BYTES` once
unzipped, a CSV without the header — is *damaged*, with one reason. Which lines apply when, exactly
once, is the runtime's business (handlers/runtime/feeds.py).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from handlers.model.bounds import EARLIEST, LATEST

__all__ = [
    "KINDS",
    "ORDER",
    "RETURN",
    "RECEIPT",
    "COUNT",
    "Lines",
    "Parsed",
    "Batch",
    "parse_object",
    "id_keys",
    "MAX_OBJECT_BYTES",
    "MAX_LINE_CHARS",
    "MAX_LINES",
    "MAX_QUANTITY",
    "MAX_ON_HAND",
    "MAX_ID_CHARS",
]

KINDS = ("orders", "receipts", "counts")  # the three feeds
ORDER, RETURN, RECEIPT, COUNT = 0, 1, 2, 3  # what a line does (Lines.kind)
MAX_OBJECT_BYTES = 64 * 1024 * 1024  # one object, unzipped
MAX_LINE_CHARS = 4096
MAX_LINES = 1_000_000  # lines in one object
MAX_QUANTITY = 1_000_000  # units on one order, return or receipt line
MAX_ON_HAND = 1_000_000_000  # units one count may report (the catalog's initial-stock limit)
MAX_ID_CHARS = 128
_GZIP = b"\x1f\x8b"
_DIGITS = re.compile(r"[0-9]{1,10}")
_FIELDS = {
    "orders": ("line_id", "time", "product_id", "warehouse_id", "quantity"),
    "receipts": ("line_id", "time", "product_id", "warehouse_id", "quantity"),
    "counts": ("line_id", "time", "product_id", "warehouse_id", "on_hand"),
}
_OPTIONAL = {"orders": ("type",), "receipts": (), "counts": ()}
_EARLIEST, _LATEST = EARLIEST.timestamp(), LATEST.timestamp()


@dataclass(frozen=True)
class Lines:
    """The good lines of an object, as columns, in the object's order."""

    number: np.ndarray  # [n] int64: the line's number in the object (1-based; a CSV header is line 1)
    line_id: list[str]
    time: np.ndarray  # [n] int64 epoch seconds
    product_id: list[str]
    warehouse_id: list[str]
    quantity: np.ndarray  # [n] int64: units (counts: the units counted)
    kind: np.ndarray  # [n] int8: ORDER, RETURN, RECEIPT or COUNT

    def __len__(self) -> int:
        return int(self.number.shape[0])


@dataclass(frozen=True)
class Parsed:
    lines: Lines
    bad: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    damaged: str | None = None  # why the whole object could not be read (then no lines)


def _empty() -> Lines:
    none = np.zeros(0, dtype=np.int64)
    return Lines(none, [], none.copy(), [], [], none.copy(), np.zeros(0, dtype=np.int8))


def id_keys(kind: str, line_ids: list[str]) -> np.ndarray:
    """[n, 2] uint64: a 128-bit key of each line id within its feed (blake2b): what the runtime
    remembers of a line to apply it exactly once (two different ids collide with probability 2**-128)."""
    out = np.empty((len(line_ids), 2), dtype=np.uint64)
    prefix = kind.encode() + b"\x00"
    for i, text in enumerate(line_ids):
        digest = hashlib.blake2b(prefix + text.encode("utf-8"), digest_size=16).digest()
        out[i] = np.frombuffer(digest, dtype="<u8")
    return out


def _unzip(data: bytes) -> bytes:
    """The object's bytes, gunzipped when they start with gzip's magic; ValueError naming what is wrong."""
    if not data.startswith(_GZIP):
        if len(data) > MAX_OBJECT_BYTES:
            raise ValueError(f"larger than {MAX_OBJECT_BYTES // 2**20} MiB")
        return data
    out, rest = [], data
    size = 0
    while rest:  # one gzip member after the other, as gzip(1) writes them
        inflater = zlib.decompressobj(wbits=31)
        try:
            chunk = inflater.decompress(rest, MAX_OBJECT_BYTES - size + 1)
        except zlib.error as exc:
            raise ValueError(f"damaged gzip ({exc})") from exc
        size += len(chunk)
        if size > MAX_OBJECT_BYTES or inflater.unconsumed_tail:
            raise ValueError(f"larger than {MAX_OBJECT_BYTES // 2**20} MiB once unzipped")
        if not inflater.eof:
            raise ValueError("truncated gzip (the stream ends before its end marker)")
        out.append(chunk)
        rest = inflater.unused_data.lstrip(b"\x00")
    return b"".join(out)


def _time(value: Any) -> int:
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError("time: must be an ISO 8601 string with a UTC offset")
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "Zz" else text)
    except ValueError as exc:
        raise ValueError(f"time: not ISO 8601: {text[:40]!r}") from exc
    if moment.tzinfo is None:
        raise ValueError(f"time: {text[:40]!r} has no UTC offset (add Z or +HH:MM)")
    epoch = moment.timestamp()
    if not _EARLIEST <= epoch <= _LATEST:
        raise ValueError(f"time: {text[:40]!r} is outside the supported business times")
    return int(epoch)


def _text(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
        shown = repr(value)[:40]
        raise ValueError(f"{name}: must be 1-{limit} printable characters, got {shown}")
    return value


def _whole(value: Any, name: str, low: int, high: int, text: bool) -> int:
    """A whole number from JSON (an integer, never a bool, float or string) or CSV ``text`` (ASCII digits only)."""
    if text and isinstance(value, str):
        if not _DIGITS.fullmatch(value.strip()):
            raise ValueError(f"{name}: must be a whole number {low}..{high} in ASCII digits, got {value[:20]!r}")
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: must be a whole number {low}..{high}, got {str(value)[:20]!r}")
    if not low <= value <= high:
        raise ValueError(f"{name}: must be a whole number {low}..{high}, got {str(value)[:20]}")
    return value


def _row(kind: str, doc: dict[str, Any], text: bool) -> tuple[str, int, str, str, int, int]:
    unknown = sorted(set(doc) - set(_FIELDS[kind]) - set(_OPTIONAL[kind]))
    if unknown:
        raise ValueError(f"{str(unknown[0])[:40]!r}: unknown field (a {kind} line has {', '.join(_FIELDS[kind] + _OPTIONAL[kind])})")
    missing = [name for name in _FIELDS[kind] if doc.get(name) in (None, "")]
    if missing:
        raise ValueError(f"{missing[0]}: missing")
    line_id = _text(doc["line_id"], "line_id", MAX_ID_CHARS)
    moment = _time(doc["time"])
    product = _text(doc["product_id"], "product_id", 256)
    warehouse = _text(doc["warehouse_id"], "warehouse_id", 256)
    if kind == "counts":
        return line_id, moment, product, warehouse, _whole(doc["on_hand"], "on_hand", 0, MAX_ON_HAND, text), COUNT
    quantity = _whole(doc["quantity"], "quantity", 1, MAX_QUANTITY, text)
    if kind == "receipts":
        return line_id, moment, product, warehouse, quantity, RECEIPT
    what = doc.get("type") or "order"
    if what not in ("order", "return"):
        raise ValueError(f"type: must be order or return, got {str(what)[:20]!r}")
    return line_id, moment, product, warehouse, quantity, ORDER if what == "order" else RETURN


def _records(text: str, kind: str) -> Any:
    """(line number, dict or an error text) for every non-empty line: NDJSON, or CSV with a header."""
    first = text.lstrip()[:1]
    if first == "{" or not first:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            if len(line) > MAX_LINE_CHARS:
                yield number, f"longer than {MAX_LINE_CHARS} characters"
                continue
            try:
                doc = json.loads(line)
            except ValueError as exc:  # also an integer of thousands of digits
                yield number, f"not a JSON object ({str(exc)[:60]})"
                continue
            yield number, (doc, False) if isinstance(doc, dict) else "not a JSON object"
        return
    lines = text.splitlines()
    header = next(csv.reader([lines[0]]))
    header = [name.strip() for name in header]
    if "line_id" not in header:
        raise ValueError(f"neither NDJSON nor a CSV with a header naming {', '.join(_FIELDS[kind])}")
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_CHARS:
            yield number, f"longer than {MAX_LINE_CHARS} characters"
            continue
        try:
            values = next(csv.reader(io.StringIO(line)))
        except csv.Error as exc:
            yield number, f"not a CSV row ({exc})"
            continue
        if len(values) != len(header):
            yield number, f"{len(values)} fields, the header names {len(header)}"
            continue
        yield number, ({name: value for name, value in zip(header, values) if value != "" or name in _FIELDS[kind]}, True)


def parse_object(data: bytes, kind: str) -> Parsed:
    """The lines of one feed object of ``kind`` (``orders``, ``receipts``, ``counts``)."""
    if kind not in KINDS:
        raise ValueError(f"feed kind {kind!r}")
    try:
        text = _unzip(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        return Parsed(_empty(), damaged=f"not UTF-8 (byte {exc.start})")
    except ValueError as exc:
        return Parsed(_empty(), damaged=str(exc))
    columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [])
    bad: list[tuple[int, str]] = []
    try:
        for number, record in _records(text, kind):
            if len(columns[0]) + len(bad) >= MAX_LINES:
                bad.append((number, f"beyond the {MAX_LINES:,} lines one object may hold"))
                continue
            if isinstance(record, str):
                bad.append((number, record))
                continue
            try:
                row = _row(kind, *record)
            except ValueError as exc:
                bad.append((number, str(exc)))
                continue
            columns[0].append(number)
            for target, value in zip(columns[1:], row):
                target.append(value)
    except ValueError as exc:
        return Parsed(_empty(), damaged=str(exc))
    number, line_id, moment, product, warehouse, quantity, what = columns
    return Parsed(
        Lines(
            np.array(number, dtype=np.int64),
            line_id,
            np.array(moment, dtype=np.int64),
            product,
            warehouse,
            np.array(quantity, dtype=np.int64),
            np.array(what, dtype=np.int8),
        ),
        bad,
    )


@dataclass(frozen=True)
class Batch:
    """The feed lines one order tick applies, in the order it applies them (by time, then as they came),
    chosen by the runtime: due by the tick, in this shard's series, never applied before, not too late.
    A line whose minute an earlier tick already simulated is *late*: it is applied at the start of this
    tick's minutes. ``moved_since`` is, for a late count, the net change of on hand the store recorded
    since the count's time (the count is taken as of its time); 0 for every other line."""

    series: np.ndarray  # [n] int64: the line's series in the (shard's) catalog
    time: np.ndarray  # [n] int64 epoch seconds
    kind: np.ndarray  # [n] int8: ORDER, RETURN, RECEIPT, COUNT
    quantity: np.ndarray  # [n] int64
    line_id: list[str]
    late: np.ndarray  # [n] bool
    moved_since: np.ndarray  # [n] int64
    counters: dict[str, dict[str, int]] = field(default_factory=dict)  # feed -> outcome -> lines this tick
    rejected: list[dict[str, Any]] = field(default_factory=list)  # what the log says of refused lines and objects

    @classmethod
    def empty(cls) -> Batch:
        none = np.zeros(0, dtype=np.int64)
        return cls(none, none.copy(), np.zeros(0, dtype=np.int8), none.copy(), [], np.zeros(0, dtype=bool), none.copy())

    def __len__(self) -> int:
        return int(self.series.shape[0])
