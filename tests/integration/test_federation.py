"""Metricbeat's federation query is real: the handlers push to a real Pushgateway, a real Prometheus
scrapes it (honor_labels), and GET /federate with exactly the query of infra/metricbeat/metricbeat.yml
returns every seed metric, everything the handlers pushed, and every metric a Kibana panel uses,
typed so that Metricbeat names it as the panel does."""

from __future__ import annotations

import copy
import urllib.parse
import urllib.request
from datetime import timedelta

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from handlers.model.state import HANDLERS
from handlers.runtime.settings import Settings
from handlers.storage.file import FileStore
from handlers.telemetry.publisher import publisher
from tests.support import emitted, servers

SEED_METRICS = (
    "inventory_level_units",
    "orders_per_minute",
    "predicted_stockout_hours",
    "demand_forecast_units",
    "orders_total",
    "reorder_events_total",
    "processing_latency_seconds",
)
WARM_UP_MINUTES = 2 * 24 * 60  # low stock by then: stockouts are projected, so predicted_stockout_hours exists
# Metricbeat (use_types: true): the field under prometheus.<name> by the family's `# TYPE` in the
# answer (x-pack/metricbeat/module/prometheus/collector/data.go; textparse.go maps the TYPE line).
METRICBEAT_KIND = {
    "gauge": "value",
    "unknown": "value",
    "untyped": "value",
    "counter": "counter",
    "histogram": "histogram",
    "summary": "value",
}


def metricbeat_module() -> dict:
    config = yaml.safe_load((emitted.REPO / "infra/metricbeat/metricbeat.yml").read_text())
    (module,) = config["metricbeat.modules"]
    return module


def federate(prom: servers.Prometheus, module: dict) -> str:
    url = f"{prom.url}{module['metrics_path']}?{urllib.parse.urlencode(module['query'])}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as answer:
        assert answer.status == 200
        return answer.read().decode()


def samples_by_name(text: str) -> dict[str, tuple[str, set[str], set[str]]]:
    """sample name -> (its family's type, label names, job label values)."""
    found: dict[str, tuple[str, set[str], set[str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            kind, labels, jobs = found.setdefault(sample.name, (family.type, set(), set()))
            labels |= set(sample.labels)
            jobs.add(sample.labels.get("job", ""))
    return found


pytestmark = pytest.mark.xdist_group("federation")  # its module fixture (servers and a replay) made once, on one worker


@pytest.fixture(scope="module")
def federated(tmp_path_factory):
    module = metricbeat_module()
    selector = module["query"]["match[]"]
    with servers.pushgateway() as gateway, servers.prometheus(servers.prometheus_config(gateway.address)) as prom:
        store = FileStore(tmp_path_factory.mktemp("federation"))
        emitted.replay(store, minutes=WARM_UP_MINUTES)  # metrics to files: nothing pushed yet
        pushing = publisher(Settings(store_url=f"file://{store.root}", pushgateway_url=gateway.url), store=store)
        from handlers.model.events import scheduled_event
        from handlers.runtime.invoke import Runtime, invoke

        runtime = Runtime(store=store, catalog=emitted.CATALOG, publish=pushing)
        moment = emitted.START + timedelta(minutes=WARM_UP_MINUTES + 60)
        for name in HANDLERS:
            result = invoke(name, scheduled_event(moment, name, event_id=f"fed-{name}"), runtime)
            assert result["status"] == "applied" and "metrics_error" not in result, result
        prom.wait_for(f"count by (job) ({selector})", lambda result: len(result) == len(HANDLERS))
        yield {"text": federate(prom, module), "pushed": gateway.metrics_text(), "module": module}


def test_federation_returns_every_seed_metric(federated):
    found = samples_by_name(federated["text"])
    for name in SEED_METRICS:
        assert name in found or f"{name}_bucket" in found, f"{name} not federated"
    assert {"processing_latency_seconds_bucket", "processing_latency_seconds_sum", "processing_latency_seconds_count"} <= set(found)


def test_federation_returns_everything_the_handlers_pushed_and_nothing_else(federated):
    pushed = {name for name, (_, _, jobs) in samples_by_name(federated["pushed"]).items() if jobs & set(HANDLERS)}
    found = samples_by_name(federated["text"])
    assert pushed and pushed <= set(found)
    assert {job for _, _, jobs in found.values() for job in jobs} == set(HANDLERS)


def panel_problems(saved_objects: list[dict], found: dict[str, tuple[str, set[str], set[str]]]) -> tuple[list[str], set[str]]:
    """What the prom-metrics panels name that the federation does not give as Metricbeat names it,
    and every field checked: a field not of Metricbeat's ``prometheus.*`` shape, a metric not
    federated or not of the kind its field says, a label that no metric of its panel carries."""
    problems, checked = [], set()
    for saved in saved_objects:
        if saved["type"] != "lens" or emitted.data_view_of(saved) != "prom-metrics":
            continue
        title = saved["attributes"]["title"]
        fields = emitted.referenced_fields(saved) - {"@timestamp"}
        parsed = {field: emitted.METRICBEAT_FIELD.match(field) for field in sorted(fields)}
        metrics = {m["metric"] for m in parsed.values() if m and m["metric"]}
        labels = set().union(*(found[metric][1] for metric in metrics if metric in found))
        if not metrics:
            problems.append(f"{title}: names no metric")
        for field, match in parsed.items():
            checked.add(field)
            if match is None:
                problems.append(f"{title}: {field}: not a field Metricbeat's prometheus module makes")
            elif match["metric"] and match["metric"] not in found:
                problems.append(f"{title}: {field}: {match['metric']} is not federated")
            elif match["metric"] and METRICBEAT_KIND[found[match["metric"]][0]] != match["kind"]:
                problems.append(f"{title}: {field}: federated as a {found[match['metric']][0]}")
            elif match["label"] and match["label"] not in labels:
                problems.append(f"{title}: {field}: no metric of this panel has the label {match['label']!r}")
    return problems, checked


def test_every_metric_a_kibana_panel_uses_is_federated_as_metricbeat_names_it(federated):
    """Every field of every prom-metrics Lens panel (columns, multi terms, formulas, KQL) resolves in
    the federation answer: the two metrics, typed as Metricbeat names them, and each label on the
    panel's own metric."""
    found = samples_by_name(federated["text"])
    problems, checked = panel_problems(emitted.saved_objects(), found)
    assert problems == []
    assert checked == {
        "prometheus.demand_forecast_units.value",
        "prometheus.inventory_level_units.value",
        "prometheus.labels.product_id",
        "prometheus.labels.warehouse_id",
    }
    for name in ("demand_forecast_units", "inventory_level_units"):
        assert {"product_id"} <= found[name][1]


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ("secondaryFields", "prometheus.labels.aisle_id"),
        ("sourceField", "prometheus.labels.shop_id"),
        ("formula", "prometheus.reorder_lead_units.value"),
        ("query", "prometheus.inventory_level_units"),
    ],
)
def test_control_a_panel_field_the_federation_cannot_resolve_is_reported(federated, where, field):
    """The check above can fail: a label no metric of the panel carries (in a multi-terms split or a
    column), a metric not federated (in a formula), a field of no Metricbeat shape (in the KQL)."""
    found = samples_by_name(federated["text"])
    saved = copy.deepcopy(next(o for o in emitted.saved_objects() if o["id"] == "stockpulse-inventory-prometheus"))
    (layer,) = emitted.layers(saved).values()
    columns = layer["columns"]
    if where == "secondaryFields":
        columns["split"]["params"]["secondaryFields"] = [field]
    elif where == "sourceField":
        columns["split"]["sourceField"] = field
    elif where == "formula":
        columns["ratio"] = {"operationType": "formula", "params": {"formula": f"average({field}) / 2"}}
    else:
        saved["attributes"]["state"]["query"]["query"] = f"{field} : *"
    problems, _ = panel_problems([saved], found)
    assert [p for p in problems if field in p], problems
