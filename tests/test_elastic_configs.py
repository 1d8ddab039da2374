"""The Elastic configs agree with what the handlers really emit (no Elastic binary runs here).

A short replay of the real handlers (tests/support/emitted.py) gives every log event type, every log object
and every pushed metric; the Filebeat and Metricbeat configs, the index template, the Kibana Lens
objects and the dashboard are checked against it. Filebeat's processor chain is run, as configured,
over the replay's real log objects by a model of the aws-s3 input and of the processors, written
from the beats sources (each function names its file). One test lists a real S3 API (moto) after
handler invocations configured as Lambda configures them, with the bucket and prefix Filebeat polls;
the last ones run kibana-setup / es-setup (infra/kibana/setup.py) against a stdlib server.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import importlib
import importlib.util
import json
import re
from datetime import datetime, timezone
from typing import Any

import boto3
import pytest
import yaml

from handlers.model.logs import CONTENT_TYPE, EVENT_FIELDS, LOG_PREFIX, decode_events
from handlers.model.state import HANDLERS
from handlers.storage.file import FileStore
from tests.support import emitted
from tests.support.emitted import FORMULA_CALL, data_view_of, layers, lens_fields

REPO = emitted.REPO
INFRA = REPO / "infra"
TEMPLATE = INFRA / "elasticsearch" / "stockpulse-logs.index-template.json"
BEATS_DEFAULT = re.compile(r"^\$\{(?P<name>\w+):(?P<default>.*)\}$")

# ARCHITECTURE.md, "Kibana contract": data views and the original system's six titles.
DATA_VIEWS = {"app-logs": "filebeat-*", "prom-metrics": "metricbeat-*"}
ORIGINAL_PANELS = {
    "Inventory Levels by Warehouse": "app-logs",
    "Order Rates by Product": "app-logs",
    "Predicted Stockout Hours": "app-logs",
    "Reorder Alerts by Product": "app-logs",
    "7-Day Demand Forecast": "prom-metrics",
    "Inventory Levels (Prometheus Metrics)": "prom-metrics",
}
ADDED_PANELS = {
    "Lost Sales by Product",
    "Fill Rate by Product",
    "Forecast Error vs Seasonal Naive",
    "Backorders by Product",
    "Stock Adjustments by Warehouse",
    "Feed Lines Refused by Outcome",
}
# Fields Filebeat itself puts on an event (not the handlers): the processors may name these.
FILEBEAT_OWN = {"message", "@metadata._id"}
# JSON types of the values seen -> the mapping types that hold them without coercion or loss.
ALLOWED_MAPPING = {"string": {"keyword", "date"}, "integer": {"long"}, "number": {"double"}, "boolean": {"boolean"}}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
READ_TIME = datetime(2030, 1, 1, tzinfo=timezone.utc)  # the wall clock when Filebeat reads (not business time)

pytestmark = pytest.mark.xdist_group("elastic_configs")  # its replays (module fixtures) made once, on one worker


def beats_default(value: str) -> str:
    """``${NAME:default}`` -> default (how Beats expand a variable that is unset)."""
    match = BEATS_DEFAULT.match(value)
    assert match, f"{value!r} is not a ${{VAR:default}} reference"
    return match["default"]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    store = FileStore(tmp_path_factory.mktemp("replay"))
    applied = emitted.replay(store)
    sharded = FileStore(tmp_path_factory.mktemp("sharded"))
    emitted.replay_sharded(sharded)
    fed = emitted.replay_feed(tmp_path_factory.mktemp("feed"))
    events = emitted.log_events(store) + emitted.log_events(sharded) + emitted.log_events(fed)
    stores = {"replay": store, "sharded": sharded, "feed": fed}  # three deployments: ids are unique within each
    by_store = {name: [(key, s.get(key)) for key in s.list(LOG_PREFIX)] for name, s in stores.items()}
    return {
        "applied": applied,
        "events": events,
        "types": emitted.field_types(events),
        "metrics": {**emitted.pushed_metrics(store), **emitted.pushed_metrics(fed)},
        "objects_by_store": by_store,
        "objects": [o for objects in by_store.values() for o in objects],
    }


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return json.loads(TEMPLATE.read_text())


@pytest.fixture(scope="module")
def filebeat() -> dict[str, Any]:
    return yaml.safe_load((INFRA / "filebeat" / "filebeat.yml").read_text())


@pytest.fixture(scope="module")
def metricbeat() -> dict[str, Any]:
    return yaml.safe_load((INFRA / "metricbeat" / "metricbeat.yml").read_text())


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return emitted.saved_objects()


def by_type(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["id"]: o for o in objects if o["type"] == kind}


# --- the replay itself ----------------------------------------------------------------------------


def test_the_replay_emits_every_event_type_and_field(replayed):
    """GIVEN the short replay WHEN its log objects are read THEN every event type and every field
    of handlers/model/logs.py EVENT_FIELDS occurs, with a non-null value somewhere (else the type checks
    below could not see it)."""
    types = {e["type"] for e in replayed["events"]}
    assert types == set(EVENT_FIELDS)
    for kind, fields in EVENT_FIELDS.items():
        events = [e for e in replayed["events"] if e["type"] == kind]
        for field in ("@timestamp", "type", "handler", "event_id", *fields):
            assert any(e.get(field) is not None for e in events), f"{kind}.{field} never has a value"


# --- the index template -----------------------------------------------------------------------------


def test_the_template_maps_every_emitted_field_with_its_json_type(replayed, template):
    properties = template["template"]["mappings"]["properties"]
    for field, seen in sorted(replayed["types"].items()):
        assert field in properties, f"{field} is emitted but not mapped"
        values = seen - {"null"}
        if values == {"integer", "number"}:
            values = {"number"}  # a double holds both
        assert len(values) == 1, f"{field}: values of several JSON types {sorted(seen)}"
        (json_type,) = values
        mapped = properties[field]["type"]
        assert mapped in ALLOWED_MAPPING[json_type], f"{field}: JSON {json_type} mapped as {mapped}"


def test_every_date_field_holds_iso_8601_values_elasticsearch_parses(replayed, template):
    properties = template["template"]["mappings"]["properties"]
    dates = {name for name, spec in properties.items() if spec["type"] == "date"}
    assert {"@timestamp", "expected_arrival", "day"} <= dates
    for event in replayed["events"]:
        for field in dates & event.keys():
            value = event[field]
            if value is None:
                continue
            if properties[field].get("format") == "strict_date":
                assert re.fullmatch(r"\d{4}-\d\d-\d\d", value), (field, value)
            else:
                assert RFC3339.match(value), (field, value)  # Filebeat's @timestamp parser: RFC 3339
            datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_the_template_maps_nothing_the_handlers_do_not_emit(replayed, template):
    properties = template["template"]["mappings"]["properties"]
    assert set(properties) - set(replayed["types"]) == set()


def test_the_template_owns_the_filebeat_data_stream(template, filebeat):
    assert template["index_patterns"] == ["filebeat-*"]
    assert "data_stream" in template
    assert template["template"]["mappings"]["dynamic"] in (False, "strict")
    # Filebeat's own template (priority 150) would compete: it is not installed, and ours is higher
    assert filebeat["setup.template.enabled"] is False and filebeat["setup.ilm.enabled"] is False
    assert template["priority"] > 150


# --- Filebeat -------------------------------------------------------------------------------------


def test_filebeat_polls_the_bucket_and_prefix_the_handlers_write(filebeat):
    (source,) = filebeat["filebeat.inputs"]
    assert source["type"] == "aws-s3"
    assert beats_default(source["non_aws_bucket_name"]) == "stockpulse"
    assert source["bucket_list_prefix"] == LOG_PREFIX
    assert beats_default(source["endpoint"]) == "http://localstack:4566"
    assert source["path_style"] is True  # LocalStack, Filebeat >= 9.5
    assert beats_default(source["region"]) == "us-east-1"
    assert beats_default(source["access_key_id"]) == "test"
    assert source["number_of_workers"] >= 1
    assert re.fullmatch(r"\d+s", source["bucket_list_interval"]) and int(source["bucket_list_interval"][:-1]) <= 60
    assert not {"queue_url", "bucket_arn"} & source.keys()
    assert filebeat["path.data"] == "/usr/share/filebeat/data"
    assert filebeat["monitoring.enabled"] is False


def test_filebeat_decodes_first_then_replaces_the_inputs_id_then_drops_message(filebeat):
    chain = [next(iter(p.items())) for p in filebeat["processors"]]
    assert [name for name, _ in chain] == ["decode_json_fields", "drop_fields", "copy_fields", "drop_fields"]
    decode = chain[0][1]
    assert decode["fields"] == ["message"] and decode["target"] == "" and decode["overwrite_keys"] is True
    assert "document_id" not in decode  # it would delete event_id from the document
    assert chain[1][1]["fields"] == ["@metadata._id"]
    assert chain[2][1]["fields"] == [{"from": "event_id", "to": "@metadata._id"}]
    assert chain[3][1]["fields"] == ["message"]


def test_every_field_the_filebeat_processors_name_is_emitted(filebeat, replayed):
    named: set[str] = set()
    for processor in filebeat["processors"]:
        (options,) = processor.values()
        named |= set(options.get("when", {}).get("has_fields", []))
        for item in options.get("fields", []):
            named |= set(item.values()) if isinstance(item, dict) else {item}
    assert named - FILEBEAT_OWN
    assert named - FILEBEAT_OWN <= set(replayed["types"])


# A model of Filebeat for the processor chain above: the aws-s3 input's events and the three
# processors, with their semantics as the elastic/beats sources state them (read 2026-12 through
# the source index, main line: each function names its file). It refuses options it does not
# model, so a config change that it cannot judge fails here instead of passing unjudged.


class BeatEvent:
    """libbeat/beat/event.go: ``Timestamp``, ``Meta``, ``Fields``. Keys address ``@timestamp``, the
    metadata (``@metadata.<key>``) or the fields, dotted keys walk nested maps (mapstr)."""

    def __init__(self, fields: dict[str, Any], meta: dict[str, Any], timestamp: datetime) -> None:
        self.fields, self.meta, self.timestamp = fields, meta, timestamp

    def _root(self, key: str) -> tuple[dict[str, Any], list[str]]:
        if key.startswith("@metadata."):
            return self.meta, key.removeprefix("@metadata.").split(".")
        return self.fields, key.split(".")

    def get(self, key: str) -> Any:
        """KeyError when absent (mapstr.ErrKeyNotFound)."""
        if key == "@timestamp":
            return self.timestamp
        node, path = self._root(key)
        for part in path:
            if not isinstance(node, dict) or part not in node:
                raise KeyError(key)
            node = node[part]
        return node

    def put(self, key: str, value: Any) -> None:
        node, path = self._root(key)
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value

    def delete(self, key: str) -> None:
        node, path = self._root(key)
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or path[-1] not in node:
            raise KeyError(key)
        del node[path[-1]]


def aws_s3_events(body: bytes, *, bucket: str, key: str, content_type: str) -> list[BeatEvent]:
    """x-pack/filebeat/input/awss3/s3_objects.go: gunzip when the body starts 1f 8b 08
    (isStreamGzipped); content type application/json or application/x-ndjson -> readJSON, one event
    per JSON value with the value's raw text in ``message``; createEvent then sets the event's id,
    ``SetID(objectID(s3ObjHash, offset))`` = ``@metadata._id`` "<10 hex of sha256(bucket ARN + key)>-
    <offset, 12 digits>", offset = the decoder's InputOffset at the value (whitespace skipped). In
    polling mode the bucket "ARN" is the configured bucket (s3_input.go createS3ObjectProcessor)."""
    if body[:3] == b"\x1f\x8b\x08":
        body = gzip.decompress(body)
    assert content_type.startswith(("application/json", "application/x-ndjson")), content_type
    object_hash = hashlib.sha256((bucket + key).encode()).hexdigest()[:10]
    text, decoder, events = body.decode(), json.JSONDecoder(), []
    position = offset = 0  # in characters of text, in bytes of body
    while True:
        while position < len(text) and text[position] in " \t\r\n":
            position, offset = position + 1, offset + 1
        if position == len(text):
            return events
        _, end = decoder.raw_decode(text, position)
        raw = text[position:end]
        fields = {
            "message": raw,
            "log": {"offset": offset, "file": {"path": f"s3://{bucket}/{key}"}},
            "aws": {"s3": {"bucket": {"name": bucket, "arn": bucket}, "object": {"key": key}}},
            "cloud": {"provider": "aws", "region": "us-east-1"},
        }
        events.append(BeatEvent(fields, {"_id": f"{object_hash}-{offset:012d}"}, READ_TIME))
        position, offset = end, offset + len(raw.encode())


def _parse_timestamp(text: str) -> datetime:
    """jsontransform.parseTimestamp: time.RFC3339, then ISO 8601 with milliseconds."""
    if not RFC3339.match(text):
        raise ValueError(f"timestamp parse error on {text}")
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _deep_update(target: dict[str, Any], update: dict[str, Any]) -> None:
    """mapstr.M.DeepUpdate: nested maps merge, anything else overwrites."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def _write_json_keys(event: BeatEvent, keys: dict[str, Any], *, overwrite: bool, add_error_key: bool) -> None:
    """libbeat/common/jsontransform/jsonhelper.go WriteJSONKeys (expand_keys off)."""

    def error(message: str) -> None:
        if add_error_key:
            event.fields["error"] = {"message": message, "type": "json"}

    if not overwrite:
        for key, value in keys.items():
            if key not in ("@timestamp", "@metadata"):
                event.fields.setdefault(key, value)
        return
    for key, value in list(keys.items()):
        if key == "@timestamp":
            try:
                if not isinstance(value, str):
                    raise ValueError("@timestamp not overwritten (not string)")
                event.timestamp = _parse_timestamp(value)
            except ValueError as parse_error:
                error(str(parse_error))
        elif key == "@metadata":
            if isinstance(value, dict):
                _deep_update(event.meta, value)
            else:
                error("failed to update @metadata")
        elif key == "type":
            if isinstance(value, str) and value and not value.startswith("_"):
                event.fields["type"] = value
            else:
                error(f"type not overwritten (invalid value [{value}])")
    _deep_update(event.fields, {k: v for k, v in keys.items() if k not in ("@timestamp", "@metadata", "type")})


def decode_json_fields(event: BeatEvent, options: dict[str, Any]) -> str | None:
    """libbeat/processors/actions/decode_json_fields.go Run: a field that is absent or no string is
    skipped; ``document_id: <key>`` takes that key of the decoded object as the event id, deletes it
    from the object and sets ``@metadata._id`` (overwriting any id) after the fields are written."""
    assert options.get("max_depth", 1) == 1 and not options.get("process_array") and not options.get("expand_keys")
    errors = []
    for field in options["fields"]:
        try:
            text = event.get(field)
        except KeyError:
            continue
        if not isinstance(text, str):
            continue
        try:
            output = json.loads(text)  # one JSON value, else "multiple json elements found"
        except ValueError as parse_error:
            errors.append(str(parse_error))
            if options.get("add_error_key"):
                event.fields["error"] = {"message": f"parsing input as JSON: {parse_error}", "data": text, "field": field}
            continue
        document_id = None
        if options.get("document_id") and isinstance(output, dict):
            if isinstance(output.get(options["document_id"]), str):
                document_id = output.pop(options["document_id"])
        target = options.get("target", field)
        if target != "":
            event.put(target, output)
        elif isinstance(output, dict):
            _write_json_keys(event, output, overwrite=bool(options.get("overwrite_keys")), add_error_key=bool(options.get("add_error_key")))
        else:
            errors.append("failed to add target to root")
            continue
        if document_id:
            event.meta["_id"] = document_id
    return ", ".join(errors) or None


def drop_fields(event: BeatEvent, options: dict[str, Any]) -> str | None:
    """libbeat/processors/actions/dropfields/drop_fields.go: ``type`` and ``type.*`` are never dropped
    (processors.MandatoryExportedFields); ``@metadata.<key>`` deletes from the metadata
    (beat.Event.Delete); a missing field is an error unless ``ignore_missing``."""
    assert not options.get("cleanup") and not any(f.startswith("/") for f in options["fields"])
    errors = []
    for field in options["fields"]:
        if field == "type" or field.startswith("type."):
            continue
        try:
            event.delete(field)
        except KeyError:
            if not options.get("ignore_missing", False):
                errors.append(f"failed to drop field [{field}]")
    return ", ".join(errors) or None


def copy_fields(event: BeatEvent, options: dict[str, Any]) -> str | None:
    """libbeat/processors/actions/copy_fields.go: a target that exists is an error ("target field %s
    already exists, drop or rename this field first"); with ``fail_on_error`` (default true) the
    event is restored and gets ``error.message``, without it the remaining pairs go on."""
    fail_on_error = options.get("fail_on_error", True)
    backup = copy.deepcopy((event.fields, event.meta)) if fail_on_error else None
    for pair in options["fields"]:
        source, target = pair["from"], pair["to"]
        try:
            event.get(target)
            problem = f"target field {target} already exists, drop or rename this field first"
        except KeyError:
            try:
                event.put(target, copy.deepcopy(event.get(source)))
                continue
            except KeyError:
                if options.get("ignore_missing", False):
                    continue
                problem = f"could not fetch value for key: {source}"
        if fail_on_error:
            event.fields, event.meta = backup
            event.put("error.message", f"Failed to copy fields in copy_fields processor: {problem}")
            return problem
    return None


FILEBEAT_PROCESSORS = {"decode_json_fields": decode_json_fields, "drop_fields": drop_fields, "copy_fields": copy_fields}


def run_processors(event: BeatEvent, chain: list[dict[str, Any]]) -> BeatEvent:
    """libbeat/publisher/processing/processors.go group.Run: each processor in turn; an error is
    logged and the event goes on to the next one. ``when`` (libbeat/conditions): only ``has_fields``,
    true when every field resolves."""
    for entry in chain:
        ((name, options),) = entry.items()
        assert name in FILEBEAT_PROCESSORS, f"the Filebeat model has no {name}: add it from the beats source"
        when = options.get("when")
        if when is not None:
            assert set(when) == {"has_fields"}, f"the Filebeat model has no condition {set(when)}"
            try:
                for field in when["has_fields"]:
                    event.get(field)
            except KeyError:
                continue
        FILEBEAT_PROCESSORS[name](event, {k: v for k, v in options.items() if k != "when"})
    return event


def filebeat_documents(objects: list[tuple[str, bytes]], chain: list[dict[str, Any]], bucket: str = "stockpulse") -> list[BeatEvent]:
    return [
        run_processors(event, chain)
        for key, body in objects
        for event in aws_s3_events(body, bucket=bucket, key=key, content_type=CONTENT_TYPE)
    ]


INPUT_OWN = {"log", "aws", "cloud"}  # fields the aws-s3 input adds to every event
HASH_ID = re.compile(r"^[0-9a-f]{10}-\d{12}$")


def test_filebeat_ids_every_document_by_its_event_id_and_keeps_the_event(filebeat, replayed):
    """GIVEN every log object of the replay, read as the aws-s3 input reads it (which sets its own
    @metadata._id) WHEN the configured processors run THEN each document's id is its event_id, the
    document holds exactly the event's fields (event_id included) and its @timestamp, no message,
    no error."""
    documents = filebeat_documents(replayed["objects"], filebeat["processors"])
    originals = [event for _, body in replayed["objects"] for event in decode_events(body)]
    assert len(documents) == len(originals) == len(replayed["events"]) > 1000
    for document, original in zip(documents, originals, strict=True):
        assert document.meta["_id"] == original["event_id"]
        assert {k: v for k, v in document.fields.items() if k not in INPUT_OWN} == {k: v for k, v in original.items() if k != "@timestamp"}
        assert document.timestamp == datetime.fromisoformat(original["@timestamp"].replace("Z", "+00:00"))
    for objects in replayed["objects_by_store"].values():  # distinct: no event's 409 hides another
        ids = [d.meta["_id"] for d in filebeat_documents(objects, filebeat["processors"])]
        assert len(set(ids)) == len(ids)


def test_control_copying_onto_the_inputs_id_without_dropping_it_leaves_the_hash_id(filebeat, replayed):
    """The chain this config had before: copy_fields onto the @metadata._id the input already set,
    with fail_on_error false. The model keeps the input's <hash>-<offset> id on every document (so
    the test above can fail), as Filebeat did."""
    old_chain = [
        filebeat["processors"][0],
        {
            "copy_fields": {
                "when": {"has_fields": ["event_id"]},
                "fields": [{"from": "event_id", "to": "@metadata._id"}],
                "fail_on_error": False,
                "ignore_missing": True,
            }
        },
        filebeat["processors"][-1],
    ]
    documents = filebeat_documents(replayed["objects"][:20], old_chain)
    assert documents
    assert all(HASH_ID.match(d.meta["_id"]) and d.meta["_id"] != d.fields["event_id"] for d in documents)


def test_decode_json_fields_document_id_would_set_the_id_but_delete_event_id(replayed):
    """Why the config does not use decode_json_fields' document_id: the id is right, but event_id
    (the log contract's field) leaves the document."""
    chain = [{"decode_json_fields": {"fields": ["message"], "target": "", "overwrite_keys": True, "document_id": "event_id"}}]
    (key, body) = replayed["objects"][0]
    (document, *_) = filebeat_documents([(key, body)], chain)
    assert document.meta["_id"] == next(decode_events(body))["event_id"]
    assert "event_id" not in document.fields


def test_every_event_timestamp_is_rfc3339_for_decode_json_fields(replayed):
    bad = [e["@timestamp"] for e in replayed["events"] if not RFC3339.match(e["@timestamp"])]
    assert bad == []


# --- Metricbeat ----------------------------------------------------------------------------------


def test_metricbeat_federates_the_handlers_groups_from_prometheus(metricbeat):
    (module,) = metricbeat["metricbeat.modules"]
    assert module["module"] == "prometheus" and module["metricsets"] == ["collector"]
    assert module["hosts"] == ["prometheus:9090"] and module["metrics_path"] == "/federate"
    assert module["use_types"] is True
    period = int(module["period"].rstrip("s"))
    assert 10 <= period <= 30
    selector = module["query"]["match[]"]
    jobs = re.fullmatch(r'\{job=~"([^"]+)"\}', selector)
    assert jobs, selector
    assert all(re.fullmatch(jobs[1], handler) for handler in HANDLERS)


# --- Kibana saved objects: Lens ---------------------------------------------------------------------

BUCKET_OPERATIONS = {"date_histogram": "date", "terms": "keyword"}  # -> the mapping type they need
NUMBER_OPERATIONS = {"average", "sum", "min", "max", "median", "last_value"}
TINYMATH_OPERATORS = {"divide": "/", "add": "+", "subtract": "-", "multiply": "*"}


def all_fields(lens: dict[str, Any]) -> set[str]:
    return set().union(*lens_fields(lens).values())


def tinymath_text(node: Any, parts: dict[str, str], *, top: bool = True) -> str:
    """A formula's math AST written back as formula text (column ids -> their function calls)."""
    if isinstance(node, str):
        return parts[node]
    left, right = (tinymath_text(arg, parts, top=False) for arg in node["args"])
    text = f"{left} {TINYMATH_OPERATORS[node['name']]} {right}"
    return text if top or node["name"] in ("multiply", "divide") else f"({text})"


def test_the_ndjson_is_what_the_generator_builds(objects):
    spec = importlib.util.spec_from_file_location("saved_objects", INFRA / "kibana" / "saved_objects.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (INFRA / "kibana" / "saved_objects.ndjson").read_text() == module.render(module.build())


def test_the_data_views_are_the_contracts(objects):
    views = by_type(objects, "index-pattern")
    assert {i: v["attributes"]["title"] for i, v in views.items()} == DATA_VIEWS
    assert {v["attributes"]["timeFieldName"] for v in views.values()} == {"@timestamp"}
    assert len({o["id"] for o in objects}) == len(objects)


def test_every_panel_is_lens_and_the_original_and_added_titles_are_there(objects):
    """No aggregation-based visualisation or TSVB is left (Kibana 9 can't create them any more);
    every title of the contract is a Lens panel on its data view."""
    assert {o["type"] for o in objects} == {"index-pattern", "lens", "dashboard"}
    panels = by_type(objects, "lens")
    titles = {p["attributes"]["title"]: data_view_of(p) for p in panels.values()}
    assert {t: titles.get(t) for t in ORIGINAL_PANELS} == ORIGINAL_PANELS
    assert ADDED_PANELS <= set(titles)
    assert len(titles) == len(panels) == len(ORIGINAL_PANELS) + len(ADDED_PANELS)


def test_every_lens_object_has_the_shape_and_versions_a_kibana_9_export_has(objects):
    """As in Kibana's own exports (saved_objects.py names them): versions, the formBased datasource,
    XY layers whose accessors are columns of their datasource layer, buckets before metrics."""
    for lens in by_type(objects, "lens").values():
        assert (lens["coreMigrationVersion"], lens["typeMigrationVersion"]) == ("8.8.0", "10.1.0"), lens["id"]
        attributes = lens["attributes"]
        assert set(attributes) == {"title", "description", "visualizationType", "state"}
        assert attributes["visualizationType"] == "lnsXY"
        state = attributes["state"]
        assert set(state) >= {"datasourceStates", "visualization", "query", "filters"}
        vis_layers = state["visualization"]["layers"]
        assert {v["layerId"] for v in vis_layers} == set(layers(lens))
        for vis_layer in vis_layers:
            layer = layers(lens)[vis_layer["layerId"]]
            columns = layer["columns"]
            order = layer["columnOrder"]
            assert sorted(order) == sorted(columns)  # every column once (the NDJSON sorts the keys)
            used = [vis_layer["xAccessor"], *vis_layer["accessors"], *filter(None, [vis_layer.get("splitAccessor")])]
            assert set(used) <= set(columns), (lens["id"], used)
            assert vis_layer["seriesType"] in ("line", "bar", "area", "bar_stacked")
            for column_id, column in columns.items():
                bucketed = column["operationType"] in BUCKET_OPERATIONS
                assert column["isBucketed"] is bucketed, (lens["id"], column_id)
                order = column.get("params", {}).get("orderBy", {})
                if order.get("type") == "column":
                    assert not columns[order["columnId"]]["isBucketed"], (lens["id"], column_id)
            flags = [columns[c]["isBucketed"] for c in order]
            assert flags == sorted(flags, reverse=True), (lens["id"], order)  # buckets first
            assert vis_layer.get("splitAccessor") is None or columns[vis_layer["splitAccessor"]]["isBucketed"]
            assert not any(columns[a]["isBucketed"] for a in vis_layer["accessors"])


def test_every_reference_resolves(objects):
    """A Lens layer's data view is the reference ``indexpattern-datasource-layer-<layerId>`` (its
    only link to one), the dashboard's panels are references ``<i>:panel_<i>``, and every
    reference names an object of the file."""
    ids = {(o["type"], o["id"]) for o in objects}
    for saved in objects:
        names = [r["name"] for r in saved["references"]]
        assert len(names) == len(set(names)), saved["id"]
        for ref in saved["references"]:
            assert (ref["type"], ref["id"]) in ids, f"{saved['id']}: dangling {ref}"
    for lens in by_type(objects, "lens").values():
        assert {r["name"] for r in lens["references"]} == {f"indexpattern-datasource-layer-{layer_id}" for layer_id in layers(lens)}
        assert {r["type"] for r in lens["references"]} == {"index-pattern"}


def test_the_dashboard_holds_every_lens_panel_through_its_panel_references(objects):
    (board,) = by_type(objects, "dashboard").values()
    assert board["typeMigrationVersion"] == "10.2.0" and board["id"] == "stockpulse-overview"
    panels = json.loads(board["attributes"]["panelsJSON"])
    refs = {r["name"]: r for r in board["references"]}
    held = set()
    for panel in panels:
        ref = refs[f"{panel['panelIndex']}:{panel['panelRefName']}"]
        assert ref["type"] == panel["type"] == "lens"
        held.add(ref["id"])
        assert panel["gridData"]["i"] == panel["panelIndex"]
    assert held == set(by_type(objects, "lens"))
    assert len(refs) == len(panels)


def test_every_log_panel_field_is_emitted_and_mapped_for_its_use(objects, replayed, template):
    properties = template["template"]["mappings"]["properties"]
    seen = 0
    for lens in by_type(objects, "lens").values():
        if data_view_of(lens) != "app-logs":
            continue
        uses = lens_fields(lens)
        assert set().union(*uses.values()) - set(replayed["types"]) == set(), lens["attributes"]["title"]
        for operation, fields in uses.items():
            for field in fields:
                kind = properties[field]["type"]
                if operation in BUCKET_OPERATIONS:
                    assert kind == BUCKET_OPERATIONS[operation], (lens["id"], field, kind)
                elif operation in NUMBER_OPERATIONS:
                    assert kind in ("long", "double"), (lens["id"], field, kind)
        seen += 1
    assert seen == 10  # the app-logs panels, the feeds' three among them


def test_control_a_panel_field_the_handlers_do_not_emit_is_caught(objects, replayed):
    """The field checks see sourceField, multi-terms fields, formula calls and KQL: one unknown
    field in any of them is reported."""
    emitted_fields = set(replayed["types"])
    lens = by_type(objects, "lens")["stockpulse-fill-rate"]
    assert all_fields(lens) <= emitted_fields
    for mutate in (
        lambda c: c["split"].update(sourceField="product_id.keyword"),
        lambda c: c["split"]["params"].update(secondaryFields=["warehouse"]),
        lambda c: c["fill"]["params"].update(formula="sum(quantity) / sum(lost_qty)"),
        lambda c: c["fill"].update(filter={"query": 'kind : "order"', "language": "kuery"}),
    ):
        broken = copy.deepcopy(lens)
        mutate(next(iter(layers(broken).values()))["columns"])
        assert all_fields(broken) - emitted_fields, mutate


def test_every_metric_panel_field_is_a_pushed_metric_as_metricbeat_names_it(objects, replayed):
    """prometheus.<metric>.value (gauges: .value whether federation types them gauge or untyped)
    and prometheus.labels.<label> of that metric (x-pack/metricbeat/module/prometheus/collector)."""
    pushed = replayed["metrics"]
    seen = 0
    for lens in by_type(objects, "lens").values():
        if data_view_of(lens) != "prom-metrics":
            continue
        uses = lens_fields(lens)
        fields = all_fields(lens) - {"@timestamp"}
        parsed = [emitted.METRICBEAT_FIELD.match(f) for f in fields]
        assert all(parsed), sorted(fields)
        metrics = {m["metric"] for m in parsed if m["metric"]}
        assert len(metrics) == 1 and metrics <= set(pushed), (lens["id"], metrics)
        assert {m["kind"] for m in parsed if m["metric"]} == {"value"}
        labels = {m["label"] for m in parsed if m["label"]}
        assert labels and labels <= pushed[metrics.pop()], (lens["id"], labels)
        assert {f"prometheus.labels.{label}" for label in labels} == uses["terms"]
        seen += 1
    assert seen == 2


def test_fill_rate_is_a_lens_formula_whose_parts_and_math_say_what_its_text_says(objects):
    """GIVEN the fill-rate panel WHEN its formula column is read as Lens reads it (the hidden part
    columns and the math AST, not the text) THEN it computes sum(quantity) / (sum(quantity) +
    sum(lost_quantity)) over order and lost_sale events."""
    lens = by_type(objects, "lens")["stockpulse-fill-rate"]
    (layer,) = layers(lens).values()
    columns = layer["columns"]
    (formula_id,) = [i for i, c in columns.items() if c["operationType"] == "formula"]
    formula = columns[formula_id]
    text = formula["params"]["formula"]
    assert text == "sum(quantity) / (sum(quantity) + sum(lost_quantity))"
    assert formula["params"]["isFormulaBroken"] is False and formula["params"]["format"]["id"] == "percent"
    (math_id,) = formula["references"]
    math = columns[math_id]
    assert math["operationType"] == "math"
    parts = math["references"]
    assert all(p.startswith(f"{formula_id}X") for p in [*parts, math_id])
    calls = [f"{columns[p]['operationType']}({columns[p]['sourceField']})" for p in parts]
    assert calls == [f"{f}({a})" for f, a in FORMULA_CALL.findall(text)]
    ast = math["params"]["tinymathAst"]
    assert tinymath_text(ast, dict(zip(parts, calls, strict=True))) == text == ast["text"]

    def located(node: Any) -> None:
        if isinstance(node, dict):
            assert text[node["location"]["min"] : node["location"]["max"]] == node["text"]
            for arg in node["args"]:
                located(arg)

    located(ast)
    query = lens["attributes"]["state"]["query"]["query"]
    assert emitted.kql_fields(query) == {"type"} and set(re.findall(r'"(\w+)"', query)) == {"order", "lost_sale"}


def test_control_a_formula_whose_math_disagrees_with_its_text_is_caught(objects):
    lens = copy.deepcopy(by_type(objects, "lens")["stockpulse-fill-rate"])
    (layer,) = layers(lens).values()
    math = layer["columns"]["fillX3"]
    math["params"]["tinymathAst"]["args"][1]["name"] = "subtract"
    parts = math["references"]
    calls = [f"{layer['columns'][p]['operationType']}({layer['columns'][p]['sourceField']})" for p in parts]
    assert (
        tinymath_text(math["params"]["tinymathAst"], dict(zip(parts, calls, strict=True))) != layer["columns"]["fill"]["params"]["formula"]
    )


def test_forecast_error_compares_the_two_errors_of_forecast_score_events(objects):
    lens = by_type(objects, "lens")["stockpulse-forecast-error"]
    (layer,) = layers(lens).values()
    sums = {c["sourceField"] for c in layer["columns"].values() if c["operationType"] == "sum"}
    assert sums == {"abs_error", "seasonal_naive_abs_error"}
    assert '"forecast_score"' in lens["attributes"]["state"]["query"]["query"]


# --- one version for the four -----------------------------------------------------------------------


def test_one_released_elastic_stack_version_for_all_four():
    version = (INFRA / "elastic-version.txt").read_text()
    assert re.fullmatch(r"(\d+)\.(\d+)\.(\d+)\n", version)
    major, minor, _ = (int(x) for x in version.split("."))
    assert (major, minor) >= (8, 17)
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    images = {name: compose["services"][name]["image"] for name in ("elasticsearch", "kibana", "filebeat", "metricbeat")}
    for name, image in images.items():
        match = re.fullmatch(r"docker\.elastic\.co/[\w/]+/(\w+):(?:\$\{ELASTIC_VERSION:-([^}]+)\}|([\w.]+))", image)
        assert match and match[1] == name, image
        assert (match[2] or match[3]) == version.strip(), (name, image)
    env_example = REPO / ".env.example"
    pinned = re.findall(r"^ELASTIC_VERSION=(.*)$", env_example.read_text(), flags=re.M)
    assert pinned == [version.strip()]


# --- the bucket Filebeat polls, on a real S3 API ------------------------------------------------------


@pytest.mark.integration
def test_the_prefix_filebeat_polls_lists_every_handlers_log_objects_on_s3(filebeat, monkeypatch):
    """GIVEN a moto server with the bucket named by the Filebeat config WHEN each handler runs as
    Lambda runs it (STOCKPULSE_STORE_URL=s3://<bucket>, AWS_ENDPOINT_URL) THEN listing the bucket
    with Filebeat's bucket_list_prefix finds every handler's log objects, gzip NDJSON that decode."""
    import handlers.app as app
    from tests.support import servers
    from tests.support.ticks import START, event_at

    (source,) = filebeat["filebeat.inputs"]
    bucket, prefix = beats_default(source["non_aws_bucket_name"]), source["bucket_list_prefix"]
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "STOCKPULSE_PUSHGATEWAY_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with servers.moto_server() as s3:
        client = boto3.session.Session().client("s3", region_name="us-east-1", endpoint_url=s3.url)
        client.create_bucket(Bucket=bucket)
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3.url)
        monkeypatch.setenv("STOCKPULSE_STORE_URL", f"s3://{bucket}")
        monkeypatch.setattr(app, "_cached", {})  # a cold start with this environment
        try:
            for minute, name in enumerate(("restock", "order_tick", "forecast", "alert"), start=1):
                handler = importlib.import_module(f"handlers.{name}").handler
                assert handler(event_at(START.replace(hour=9, minute=minute)), None)["status"] == "applied"
        finally:
            monkeypatch.setattr(app, "_cached", {})
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
        assert {key.split("/")[1] for key in keys} == set(HANDLERS)
        for key in keys:
            assert re.fullmatch(rf"{prefix}(\w+)/\d{{4}}/\d\d/\d\d/\d\d/\1-\d{{8}}T\d{{6}}Z\.ndjson\.gz", key), key
            obj = client.get_object(Bucket=bucket, Key=key)
            assert obj["ContentType"] == CONTENT_TYPE
            events = list(decode_events(obj["Body"].read()))
            assert events and {e["handler"] for e in events} == {key.split("/")[1]}
            assert all(e["event_id"] for e in events)


# --- kibana-setup (infra/kibana/setup.py) against a stdlib server that answers like ES and Kibana --


def _load_setup():
    """infra/kibana/setup.py as a module (it runs in the kibana-setup container, not as a package)."""
    import sys

    if "kibana_setup" not in sys.modules:
        spec = importlib.util.spec_from_file_location("kibana_setup", INFRA / "kibana" / "setup.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["kibana_setup"] = module  # dataclasses resolve annotations through it
        spec.loader.exec_module(module)
    return sys.modules["kibana_setup"]


class FakeStack:
    """One HTTP server on 127.0.0.1 playing Elasticsearch and Kibana; records every request."""

    def __init__(self, import_answer: dict[str, Any]) -> None:
        import http.server
        import threading

        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        stack = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                stack.requests.append((self.command, self.path, dict(self.headers), body))
                if self.path.startswith("/_cluster/health"):
                    self._answer(200, {"status": "green"})
                elif self.path == "/api/status":
                    self._answer(200, {"status": {"overall": {"level": "available"}}})
                elif self.path.startswith("/_index_template/"):
                    self._answer(200, {"acknowledged": True})
                elif self.path == "/api/saved_objects/_import?overwrite=true":
                    self._answer(200, import_answer)  # Kibana answers 200 whatever the objects did
                else:
                    self._answer(404, {"error": self.path})

            do_GET = do_PUT = do_POST = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeStack:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def _run_setup(
    stack: FakeStack,
    capsys,
    *,
    steps: tuple[str, ...] = ("elasticsearch", "kibana"),
    es_url: str | None = None,
    kibana_url: str | None = None,
) -> tuple[int, str, str]:
    setup = _load_setup()
    lines: list[str] = []
    code = setup.main(
        {
            "ELASTICSEARCH_URL": es_url or stack.url,
            "KIBANA_URL": kibana_url or stack.url + "/",
            "ELASTICSEARCH_DIR": str(INFRA / "elasticsearch"),
            "KIBANA_DIR": str(INFRA / "kibana"),
            "SETUP_TIMEOUT_SECONDS": "10",
        },
        steps=steps,
        progress=lines.append,
    )
    return code, "\n".join(lines), capsys.readouterr().err


def test_setup_elasticsearch_step_installs_the_template_without_kibana(capsys):
    """GIVEN no Kibana at all WHEN the es-setup step runs THEN it installs the template and exits 0,
    having asked Kibana nothing (Filebeat waits for this step alone)."""
    from tests.support.servers import free_port

    with FakeStack({"success": True, "errors": []}) as stack:
        code, out, err = _run_setup(stack, capsys, steps=("elasticsearch",), kibana_url=f"http://127.0.0.1:{free_port()}")
    assert (code, err) == (0, "")
    assert [(r[0], r[1].split("?")[0]) for r in stack.requests] == [
        ("GET", "/_cluster/health"),
        ("PUT", "/_index_template/stockpulse-logs"),
    ]
    assert "es-setup: done (elasticsearch)" in out


def test_setup_kibana_step_imports_the_objects_without_elasticsearch(capsys):
    from tests.support.servers import free_port

    with FakeStack({"success": True, "successCount": 12, "errors": []}) as stack:
        code, _, err = _run_setup(stack, capsys, steps=("kibana",), es_url=f"http://127.0.0.1:{free_port()}")
    assert (code, err) == (0, "")
    assert [(r[0], r[1]) for r in stack.requests] == [("GET", "/api/status"), ("POST", "/api/saved_objects/_import?overwrite=true")]


def test_setup_refuses_an_unknown_step(capsys):
    with FakeStack({"success": True, "errors": []}) as stack:
        code, _, err = _run_setup(stack, capsys, steps=("templates",))
    assert code == 2 and "unknown step(s) ['templates']" in err and stack.requests == []


def test_setup_installs_the_template_and_imports_the_objects_as_multipart(capsys):
    """GIVEN Elasticsearch and Kibana that accept everything WHEN kibana-setup runs THEN it PUTs the
    template file byte for byte and POSTs saved_objects.ndjson as a multipart file with kbn-xsrf."""
    with FakeStack({"success": True, "successCount": 12, "errors": []}) as stack:
        code, out, err = _run_setup(stack, capsys)
    assert (code, err) == (0, "")
    puts = [r for r in stack.requests if r[0] == "PUT"]
    assert [(p[1], p[3]) for p in puts] == [("/_index_template/stockpulse-logs", TEMPLATE.read_bytes())]
    (post,) = [r for r in stack.requests if r[0] == "POST"]
    headers = {k.lower(): v for k, v in post[2].items()}
    assert headers["kbn-xsrf"] == "true"
    boundary = re.fullmatch(r"multipart/form-data; boundary=(\S+)", headers["content-type"])[1]
    ndjson = (INFRA / "kibana" / "saved_objects.ndjson").read_bytes()
    parts = post[3].split(f"--{boundary}".encode())
    assert parts[0] == b"" and parts[-1] == b"--\r\n" and len(parts) == 3
    head, content = parts[1].split(b"\r\n\r\n", 1)
    assert b'name="file"; filename="saved_objects.ndjson"' in head
    assert content == ndjson + b"\r\n"
    assert "imported: 12" in out


def test_setup_fails_when_kibana_answers_200_with_success_false(capsys):
    """GIVEN an import answered HTTP 200 but success: false WHEN kibana-setup runs THEN it exits 1
    with one line saying so, followed by the errors."""
    answer = {
        "success": False,
        "successCount": 11,
        "errors": [
            {
                "id": "stockpulse-fill-rate",
                "type": "lens",
                "title": "Fill Rate by Product",
                "error": {"type": "missing_references", "references": [{"type": "index-pattern", "id": "app-logs"}]},
            }
        ],
    }
    with FakeStack(answer) as stack:
        code, _, err = _run_setup(stack, capsys)
    assert code == 1
    first, *rest = err.splitlines()
    assert first.startswith("kibana-setup: saved objects import failed: success=False, 1 error(s)")
    assert rest and "lens/stockpulse-fill-rate" in rest[0] and "missing_references" in rest[0]


def test_setup_fails_on_errors_even_with_success_true(capsys):
    answer = {"success": True, "successCount": 12, "errors": [{"id": "x", "type": "dashboard", "error": {}}]}
    with FakeStack(answer) as stack:
        code, _, err = _run_setup(stack, capsys)
    assert code == 1 and "1 error(s)" in err.splitlines()[0]


def test_setup_gives_up_at_the_deadline_with_one_line(capsys):
    """GIVEN nothing listening WHEN the deadline passes THEN exit 1 naming what was not ready."""
    from tests.support.servers import free_port

    setup = _load_setup()
    clock = iter(range(0, 1000, 5))
    with pytest.raises(setup.SetupError, match=r"Elasticsearch at .* not ready within 20 s \(last: URLError"):
        setup.wait_until(
            "Elasticsearch at x",
            lambda: setup.elasticsearch_ready(f"http://127.0.0.1:{free_port()}"),
            timeout=20,
            progress=lambda line: None,
            clock=lambda: next(clock),
            sleep=lambda s: None,
        )
