"""A sharded catalog's metrics through a real Pushgateway and Prometheus: one group per handler and
shard, and catalog-wide answers by summing over ``shard`` that equal the unsharded run's."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from handlers.model.catalog import parse_catalog
from handlers.model.state import HANDLERS
from handlers.runtime import shards
from handlers.runtime.invoke import Runtime, invoke_all, load_state
from handlers.runtime.settings import Settings
from handlers.storage.file import FileStore
from handlers.telemetry.publisher import publisher
from tests.support import servers
from tests.support.catalogs import catalog_text
from tests.support.ticks import START, event_at, schedule

REPO = Path(__file__).resolve().parents[2]
CATALOG = parse_catalog(catalog_text(24), source="sharded.yaml")
NUM_SHARDS = 3
EVERY = {"order_tick": 5, "restock": 10, "forecast": 60, "alert": 15}


def replay(store: FileStore, runtime: Runtime, minutes: int, bursts: int = 1) -> None:
    ticks = schedule(START, minutes, EVERY)
    size = len(ticks) // bursts + 1
    for i in range(0, len(ticks), size):
        for name, moment in ticks[i : i + size]:
            for result in invoke_all(name, event_at(moment, id=f"m-{name}-{moment:%s}"), runtime):
                assert result["status"] == "applied" and "metrics_error" not in result, result
        if bursts > 1:
            time.sleep(1.0)


pytestmark = pytest.mark.xdist_group("sharded_metrics")  # its module fixture (servers and a replay) made once, on one worker


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    rules = {"stockpulse.rules.yml": (REPO / "infra/prometheus/rules/stockpulse.rules.yml").read_text()}
    with (
        servers.pushgateway() as gateway,
        servers.prometheus(servers.prometheus_config(gateway.address, rule_files=list(rules)), rule_files=rules) as prom,
    ):
        sharded = FileStore(tmp_path_factory.mktemp("sharded"))
        settings = Settings(store_url=f"file://{sharded.root}", pushgateway_url=gateway.url, num_shards=NUM_SHARDS)
        replay(
            sharded,
            Runtime(store=sharded, catalog=CATALOG, num_shards=NUM_SHARDS, publish=publisher(settings, store=sharded)),
            6 * 60,
            bursts=6,
        )
        whole = FileStore(tmp_path_factory.mktemp("whole"))
        replay(whole, Runtime(store=whole, catalog=CATALOG), 6 * 60)
        prom.wait_for(
            "count by (job, shard) (handler_invocations_total)", lambda result: len(result) == len(HANDLERS) * NUM_SHARDS, timeout=30
        )
        yield gateway, prom, sharded, whole


def value(sample: dict) -> float:
    return float(sample["value"][1])


def test_every_handler_and_shard_has_its_own_group(stack):
    gateway, prom, _, _ = stack
    groups = {(r["metric"]["job"], r["metric"]["shard"]) for r in prom.query("handler_invocations_total")}
    assert groups == {(h, str(k)) for h in HANDLERS for k in range(NUM_SHARDS)}
    text = gateway.metrics_text()
    for k in range(NUM_SHARDS):
        assert f'shard="{k}"' in text


def test_a_series_is_exposed_by_its_own_shard_only(stack):
    _, prom, _, _ = stack
    owner = {p.id: part.number for part in shards.split(CATALOG, NUM_SHARDS) for p in part.catalog.products}
    result = prom.query("inventory_level_units")
    assert len(result) == CATALOG.num_series
    for sample in result:
        assert int(sample["metric"]["shard"]) == owner[sample["metric"]["product_id"]]


def test_sums_over_shards_equal_the_unsharded_run(stack):
    """``sum without (shard)`` (or a sum over every label) answers catalog-wide questions."""
    _, prom, sharded, whole = stack
    expected, _ = load_state(whole, CATALOG)
    got, _ = load_state(sharded, CATALOG)
    assert expected is not None and got is not None
    np.testing.assert_array_equal(got.on_hand, expected.on_hand)
    assert value(prom.query("sum(inventory_level_units)")[0]) == expected.on_hand.sum()
    by_product = {r["metric"]["product_id"]: value(r) for r in prom.query("sum by (product_id) (orders_total)")}
    shipped = {}
    for i, product in enumerate(CATALOG.series_product_ids):
        shipped[product] = shipped.get(product, 0) + int(expected.shipped[i])
    assert by_product == shipped
    invocations = prom.query('sum by (job) (handler_invocations_total{job="order_tick"})')
    assert value(invocations[0]) == NUM_SHARDS * expected.invocations[HANDLERS.index("order_tick")]


def test_no_shard_is_reported_as_not_succeeding(stack):
    _, prom, _, _ = stack
    assert prom.query('ALERTS{alertname="HandlerNotSucceeding"}') == []
    latency = prom.query("histogram_quantile(0.95, sum by (le) (rate(processing_latency_seconds_bucket[1m])))")
    assert latency and np.isfinite(value(latency[0]))
