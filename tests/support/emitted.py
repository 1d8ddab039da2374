"""What the handlers really emit, from a short replay of the real handlers on a file store.

Shared by the tests that check the Elastic configs (tests/test_elastic_configs.py) and the
Metricbeat federation (tests/integration/test_federation.py): they compare configs against this,
never against a hand-written list.

``replay(root)`` runs 9 business days (every event type appears: lost sales and restocks need the
low stock and lead times of ``CATALOG``; ``forecast_score`` with a seasonal-naive error needs a week
of complete days), order_tick and alert every 15 minutes so it takes a few seconds.
"""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from handlers.model.catalog import Catalog, parse_catalog
from handlers.model.events import scheduled_event
from handlers.model.logs import decode_events
from handlers.model.state import HANDLERS
from handlers.runtime.invoke import Publisher, Runtime, invoke, invoke_all
from handlers.runtime.settings import Settings
from handlers.storage.base import Store
from handlers.storage.file import FileStore
from handlers.telemetry.metrics import metrics_key
from handlers.telemetry.publisher import publisher

__all__ = [
    "CATALOG",
    "CATALOG_TEXT",
    "START",
    "FAST",
    "replay",
    "replay_sharded",
    "replay_feed",
    "ticks",
    "log_events",
    "field_types",
    "pushed_metrics",
    "saved_objects",
    "referenced_fields",
    "kql_fields",
    "lens_fields",
    "layers",
    "data_view_of",
    "RECORDS",
    "FORMULA_CALL",
    "METRICBEAT_FIELD",
    "REPO",
]

START = datetime(2026, 1, 5, tzinfo=timezone.utc)  # a Monday
FAST = {"restock": 60, "order_tick": 60, "forecast": 60, "alert": 60}  # minutes; run order as in simulate
DAYS = 10
CATALOG_TEXT = """
seed: 11
products:
  - {id: LAPTOP-001, base_demand_per_day: 48, lead_time_hours: 72, pack_size: 5}
  - {id: MOUSE-004, base_demand_per_day: 120, lead_time_hours: 48, pack_size: 50}
warehouses: [{id: WH-NYC, timezone: America/New_York}, {id: WH-TYO, timezone: Asia/Tokyo}]
initial_stock: 40
"""
CATALOG: Catalog = parse_catalog(CATALOG_TEXT, source="emitted.yaml")


def ticks(start: datetime = START, minutes: int = DAYS * 24 * 60, every: dict[str, int] = FAST) -> Iterator[tuple[str, datetime]]:
    """(handler, business time) in run order for the minutes (start, start + minutes]."""
    for m in range(1, minutes + 1):
        moment = start + timedelta(minutes=m)
        number = int(moment.timestamp() // 60)
        for name in every:
            if number % every[name] == 0:
                yield name, moment


def replay(store: Store, *, publish: Publisher | None = None, minutes: int = DAYS * 24 * 60) -> dict[str, int]:
    """Run the handlers over ``minutes`` of business time; metrics go to ``metrics/<handler>.prom``
    in the store unless ``publish`` says otherwise. Returns applied invocations per handler."""
    if publish is None:
        assert isinstance(store, FileStore)
        publish = publisher(Settings(store_url=f"file://{store.root}"), store=store)
    runtime = Runtime(store=store, catalog=CATALOG, publish=publish)
    applied: dict[str, int] = collections.Counter()
    for name, moment in ticks(minutes=minutes):
        result = invoke(name, scheduled_event(moment, name.replace("_", "-"), event_id=f"t-{name}-{moment:%s}"), runtime)
        applied[name] += result["status"] == "applied"
    return dict(applied)


def replay_sharded(store: Store, num_shards: int = 2, hours: int = 2) -> None:
    """A few hours of ``CATALOG`` split into shards: what a sharded deployment adds to the logs
    (``job_run.shard``, the shard-named log objects)."""
    runtime = Runtime(store=store, catalog=CATALOG, num_shards=num_shards)
    for name, moment in ticks(minutes=hours * 60):
        invoke_all(name, scheduled_event(moment, name.replace("_", "-"), event_id=f"s-{name}-{moment:%s}"), runtime)


def replay_feed(root: Path, hours: int = 3) -> FileStore:
    """A few hours of ``CATALOG`` on a shop's feeds (handlers/runtime/feeds.py): orders beyond on hand
    (backorders), a return, a receipt, an on-time and a late count, a duplicate, bad and unknown lines and
    a damaged object — every event type and field a feed adds. Metrics go to the store's files."""
    import gzip

    from handlers.runtime.feeds import Feeds
    from tests.support.feeds import line, ndjson, put

    store = FileStore(root / "store")
    stores = {kind: FileStore(root / kind) for kind in ("orders", "receipts", "counts")}
    runtime = Runtime(
        store=store, catalog=CATALOG, publish=publisher(Settings(store_url=f"file://{store.root}"), store=store), feeds=Feeds(stores)
    )
    at = START.replace(hour=9)
    minute = timedelta(minutes=1)
    laptop = {"product": "LAPTOP-001", "warehouse": "WH-NYC"}
    put(
        stores["orders"],
        at,
        "o1.ndjson",
        ndjson(
            [
                line("o1", at + 2 * minute, quantity=25, **laptop),
                line("o2", at + 3 * minute, quantity=30, **laptop),
                line("o3", at + 4 * minute, quantity=2, type="return", **laptop),
                line("o4", at + 5 * minute, product="NO-SUCH", warehouse="WH-NYC"),
            ]
        )
        + b"{broken\n",
    )
    put(stores["orders"], at, "o1-again.ndjson", ndjson([line("o1", at + 2 * minute, quantity=25, **laptop)]))
    put(stores["orders"], at, "cut.ndjson.gz", gzip.compress(ndjson([line("o9", at + minute, **laptop)]))[:-4])
    put(stores["receipts"], at, "r.ndjson", ndjson([line("r1", at + 6 * minute, quantity=40, **laptop)]))
    count = {k: v for k, v in line("c1", at + 8 * minute, **laptop).items() if k != "quantity"}
    put(stores["counts"], at, "c.ndjson", ndjson([{**count, "on_hand": 20}]))
    late = {k: v for k, v in line("c2", at + 20 * minute, product="MOUSE-004", warehouse="WH-TYO").items() if k != "quantity"}
    put(stores["counts"], at + 40 * minute, "late.ndjson", ndjson([{**late, "on_hand": 33}]))
    for name, moment in ticks(start=at, minutes=hours * 60, every={"restock": 5, "order_tick": 5, "forecast": 60, "alert": 15}):
        invoke(name, scheduled_event(moment, name.replace("_", "-"), event_id=f"f-{name}-{moment:%s}"), runtime)
    return store


def log_events(store: Store) -> list[dict[str, Any]]:
    """Every event of every log object under logs/."""
    return [event for key in store.list("logs/") for event in decode_events(store.get(key))]


def field_types(events: list[dict[str, Any]]) -> dict[str, set[str]]:
    """field -> JSON types seen ("string", "integer", "number", "boolean", "null") over all events."""
    names = {str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null"}
    seen: dict[str, set[str]] = collections.defaultdict(set)
    for event in events:
        for field, value in event.items():
            seen[field].add(names[type(value)])
    return dict(seen)


def pushed_metrics(store: Store) -> dict[str, set[str]]:
    """sample name as on the wire (``orders_total``, ``processing_latency_seconds_bucket``) -> its
    label names, from the metrics/<handler>.prom files the handlers wrote (no Pushgateway)."""
    samples: dict[str, set[str]] = collections.defaultdict(set)
    for handler in HANDLERS:
        text = store.get(metrics_key(handler)).decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[sample.name] |= set(sample.labels)
    return dict(samples)


# --- what the Elastic configs reference ----------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent.parent
KIBANA_DIR = REPO / "infra" / "kibana"
_FIELD_KEYS = {"field", "terms_field", "time_field", "timeFieldName"}
_KQL_FIELD = re.compile(r"([A-Za-z_@][\w.@]*)\s*:")


def saved_objects(path: Path = KIBANA_DIR / "saved_objects.ndjson") -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def kql_fields(query: str) -> set[str]:
    """Field names of a KQL query (``type : "inventory" and x : *`` -> {type, x})."""
    return set(_KQL_FIELD.findall(re.sub(r'"[^"]*"', '""', query)))


RECORDS = "___records___"  # Lens' document-count pseudo field, not a document field
FORMULA_CALL = re.compile(r"\b(count|sum|average|min|max|median)\(([\w.@]*)\)")


def layers(lens: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return lens["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]


def data_view_of(saved: dict[str, Any]) -> str:
    (view,) = {r["id"] for r in saved["references"] if r["type"] == "index-pattern"}
    return view


def lens_fields(lens: dict[str, Any]) -> dict[str, set[str]]:
    """Every document field a Lens object names, by use: ``sourceField`` of each column (by its
    operation; Lens' count pseudo field aside), ``secondaryFields`` of multi terms, the fields of a
    formula's calls, the fields of KQL (the query, column filters, filters)."""
    uses: dict[str, set[str]] = {}

    def use(kind: str, field: str) -> None:
        uses.setdefault(kind, set()).add(field)

    state = lens["attributes"]["state"]
    for layer in layers(lens).values():
        for column in layer["columns"].values():
            operation = column["operationType"]
            if column.get("sourceField") not in (None, RECORDS):
                use(operation, column["sourceField"])
            for field in column.get("params", {}).get("secondaryFields", []):
                use(operation, field)
            for function, field in FORMULA_CALL.findall(column.get("params", {}).get("formula", "")):
                if field:
                    use(function, field)
            if column.get("filter"):
                assert column["filter"]["language"] == "kuery"
                for field in kql_fields(column["filter"]["query"]):
                    use("kql", field)
    assert state["query"]["language"] == "kuery"
    for field in kql_fields(state["query"]["query"]):
        use("kql", field)
    for item in state["filters"]:
        use("kql", item["meta"]["key"])
    return uses


def referenced_fields(saved: dict[str, Any]) -> set[str]:
    """Every document field a saved object names. Lens (every panel today): :func:`lens_fields`.
    Aggregation-based and TSVB visualisations, dashboards and searches: aggregation and TSVB fields,
    time fields, and the fields of their KQL queries (JSON-in-string attributes decoded). A data
    view: its time field. Any other type is an error, so a new kind of object cannot pass unread."""
    if saved["type"] == "lens":
        return set().union(*lens_fields(saved).values())
    if saved["type"] == "index-pattern":
        return {saved["attributes"]["timeFieldName"]}
    if saved["type"] not in ("visualization", "dashboard", "search"):
        raise ValueError(f"{saved['id']}: no reader for the fields of a {saved['type']!r} saved object")
    attributes = dict(saved["attributes"])
    for key in ("visState", "panelsJSON"):
        if key in attributes:
            attributes[key] = json.loads(attributes[key])
    meta = attributes.get("kibanaSavedObjectMeta", {})
    if "searchSourceJSON" in meta:
        attributes["kibanaSavedObjectMeta"] = {"searchSourceJSON": json.loads(meta["searchSourceJSON"])}
    fields: set[str] = set()
    for key, value in _walk(attributes):
        if key in _FIELD_KEYS and isinstance(value, str) and value:
            fields.add(value)
        if isinstance(value, dict) and value.get("language") == "kuery" and isinstance(value.get("query"), str):
            fields |= kql_fields(value["query"])
    if saved["type"] == "visualization" and attributes["visState"]["type"] == "metrics":
        # TSVB metric "field" of a math/derivative metric names another metric's id, not a field
        for series in attributes["visState"]["params"]["series"]:
            ids = {metric["id"] for metric in series["metrics"]}
            used = {metric.get("field") for metric in series["metrics"]}
            for metric in series["metrics"]:
                for variable in metric.get("variables", []):
                    if variable["field"] in ids and variable["field"] not in used:
                        fields.discard(variable["field"])
    return fields


METRICBEAT_FIELD = re.compile(r"^prometheus\.(?:labels\.(?P<label>\w+)|(?P<metric>\w+)\.(?P<kind>value|counter|rate|histogram))$")
