"""The invocation event: an EventBridge "Scheduled Event" whose ``time`` is the business clock."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from handlers.errors import InputError
from handlers.model.bounds import MAX_EVENT_BYTES, MAX_EVENT_DEPTH, check_time
from handlers.model.numbers import MAX_DIGITS, LongInteger, parse_int, shown, whole

__all__ = ["Tick", "parse_event", "scheduled_event", "format_time", "format_epoch", "parse_time", "load_event_json"]

#: ``shard``: the shard this invocation handles (handlers/runtime/shards.py); ``num_shards``: the count the
#: sender assumed, checked against the deployment's.
ALLOWED_DETAIL_KEYS: frozenset[str] = frozenset({"shard", "num_shards"})
_MAX_SHARD_NUMBER = 1_000_000  # bounds only the parse; the deployment's count is checked in handlers/runtime/shards.py


@dataclass(frozen=True)
class Tick:
    """What a handler needs from its event: the business time, and the delivery id for the logs."""

    time: datetime  # timezone-aware, UTC
    event_id: str
    shard: int | None = None  # detail.shard
    num_shards: int | None = None  # detail.num_shards

    @property
    def epoch(self) -> float:
        return self.time.timestamp()


def parse_time(value: Any, field: str = "time") -> datetime:
    """Parse an ISO-8601 timestamp; naive values are taken as UTC. Raises InputError naming ``field``,
    also for times outside 1971-01-01 .. 2199-12-31 (handlers/model/bounds.py)."""
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{field}: must be an ISO-8601 timestamp string, got {shown(value)}")
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError as exc:
        raise InputError(f"{field}: not an ISO-8601 timestamp: {value[:64]!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        parsed = parsed.astimezone(timezone.utc)
    except OverflowError as exc:
        raise InputError(f"{field}: {value[:64]!r} is outside the supported business times") from exc
    return check_time(parsed, field)


def format_time(moment: datetime) -> str:
    """ISO-8601 UTC with a ``Z`` and no sub-second digits unless present."""
    text = moment.astimezone(timezone.utc).isoformat()
    return text.replace("+00:00", "Z")


def format_epoch(epoch: float) -> str:
    return format_time(datetime.fromtimestamp(epoch, timezone.utc))


def parse_event(event: Any) -> Tick:
    """Validate a Scheduled Event; every error names the offending field as ``event.<field>``."""
    if not isinstance(event, dict):
        raise InputError(f"event: must be a JSON object, got {type(event).__name__}")
    if "time" not in event:
        raise InputError("event.time: missing (the business time of the tick, ISO-8601)")
    moment = parse_time(event["time"], "event.time")
    detail = event.get("detail", {})
    if detail is None:
        detail = {}
    if not isinstance(detail, dict):
        raise InputError(f"event.detail: must be an object, got {type(detail).__name__}")
    unknown = sorted((key for key in detail if key not in ALLOWED_DETAIL_KEYS), key=shown)
    if unknown:
        allowed = ", ".join(sorted(ALLOWED_DETAIL_KEYS)) or "none"
        first = unknown[0]
        key = first if isinstance(first, str) and first.isprintable() and len(first) <= 64 else shown(first, 64)
        raise InputError(f"event.detail.{key}: unknown key (allowed: {allowed})")
    event_id = event.get("id", "")
    if not isinstance(event_id, str):
        raise InputError(f"event.id: must be a string, got {type(event_id).__name__}")
    return Tick(time=moment, event_id=event_id, shard=_whole(detail, "shard", 0), num_shards=_whole(detail, "num_shards", 1))


def _whole(detail: dict[str, Any], key: str, low: int) -> int | None:
    """An optional whole number of ``detail`` (a JSON integer, or a string of ASCII digits as an
    InputTransformer may render it)."""
    value = detail.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = whole(value, most=7)
        except ValueError:
            pass  # refused below, naming the field
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= _MAX_SHARD_NUMBER:
        raise InputError(f"event.detail.{key}: must be a whole number >= {low} written with ASCII digits, got {shown(value, 32)}")
    return value


def scheduled_event(
    moment: datetime,
    rule: str,
    *,
    event_id: str | None = None,
    account: str = "000000000000",
    region: str = "us-east-1",
    shard: int | None = None,
) -> dict[str, Any]:
    """Build the event EventBridge would deliver for ``rule`` firing at ``moment`` (for ``shard``:
    what the rule's target for that shard delivers, ``detail.shard`` set)."""
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": format_time(moment),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{account}:rule/{rule}"],
        "detail": {} if shard is None else {"shard": shard},
    }


def load_event_json(data: bytes, field: str) -> Any:
    """An event from JSON bytes: at most MAX_EVENT_BYTES, UTF-8, nested at most MAX_EVENT_DEPTH
    deep. Errors name ``field`` (e.g. ``--event FILE``)."""
    if len(data) > MAX_EVENT_BYTES:
        raise InputError(f"{field}: larger than {MAX_EVENT_BYTES // 1024} KiB, the event size limit")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{field}: not UTF-8 text (byte {exc.start})") from exc
    depth = deepest = 0
    quoted = escaped = False
    for char in text:  # nesting is counted before parsing: json.loads would recurse without a bound
        if quoted:
            escaped, quoted = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            quoted = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_EVENT_DEPTH:
                raise InputError(f"{field}: nested deeper than {MAX_EVENT_DEPTH} levels")
        elif char in "]}":
            depth -= 1
    try:
        doc = json.loads(text, parse_int=parse_int)
    except json.JSONDecodeError as exc:
        raise InputError(f"{field}: not valid JSON (line {exc.lineno} column {exc.colno}): {exc.msg}") from exc
    for path, value in _leaves(doc, "event"):
        if isinstance(value, LongInteger):
            raise InputError(f"{field}: {path}: an integer of {value.length:,} digits (at most {MAX_DIGITS} are read)")
    return doc


def _leaves(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(path, value) of every scalar in a parsed JSON document (nested at most MAX_EVENT_DEPTH deep)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{path}.{key}" if key.isidentifier() else f"{path}[{shown(key)}]")
    elif isinstance(node, list):
        for number, value in enumerate(node):
            yield from _leaves(value, f"{path}[{number}]")
    else:
        yield path, node
