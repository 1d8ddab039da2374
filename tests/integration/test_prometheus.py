"""Handlers push to a real Pushgateway; a real Prometheus scrapes it; PromQL gives right answers.

Also: every PromQL query in docs/observability.md returns a valid, non-empty result, and the alerting rules
load in the real Prometheus.
"""

from __future__ import annotations

import logging
import re
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from handlers.model.catalog import parse_catalog
from handlers.model.state import HANDLERS
from handlers.runtime.invoke import Runtime, invoke, load_state
from handlers.runtime.settings import Settings
from handlers.storage.file import FileStore
from handlers.telemetry.metrics import METRICS, ONLY_WITH_FEEDS
from handlers.telemetry.publisher import publisher
from tests.support import servers
from tests.support.emitted import replay_feed
from tests.support.ticks import START, event_at, run, schedule

FED = "shop-feed"  # the instance label of the group pushed from a store on a shop's feeds
WARM_UP_MINUTES = 9 * 24 * 60  # 9 business days: day-ahead forecasts scored against seasonal naive
FAST = {"order_tick": 15, "restock": 15, "forecast": 60, "alert": 15}

REPO = Path(__file__).resolve().parents[2]
# Low initial stock and long lead times: stockouts are projected inside 24 h, so every query has data.
CATALOG = parse_catalog(
    """
seed: 5
products:
  - {id: LAPTOP-001, base_demand_per_day: 48, lead_time_hours: 72, pack_size: 5}
  - {id: MOUSE-004, base_demand_per_day: 120, lead_time_hours: 48, pack_size: 50}
warehouses: [{id: WH-NYC, timezone: America/New_York}, {id: WH-TYO, timezone: Asia/Tokyo}]
initial_stock: 40
""",
    source="integration.yaml",
)


def leave_low(store: FileStore, series: list[int]) -> None:
    """Write off stock so these series hold ~8 hours of demand and nothing on order (the ledger
    stays balanced: the write-off comes out of ``initial``), so stockouts are projected inside 24 h."""
    state, etag = load_state(store)
    on_hand, initial = state.on_hand.copy(), state.initial.copy()
    for i in series:
        low = int(CATALOG.base_demand_per_day[i] / 3)
        initial[i] -= on_hand[i] - low
        on_hand[i] = low
    keep = ~np.isin(state.po_series, series)
    trimmed = {name: getattr(state, name)[keep] for name in ("po_series", "po_quantity", "po_due", "po_placed", "po_number")}
    store.write("state/state.bin", state.replace(on_hand=on_hand, initial=initial, **trimmed).to_bytes(), etag=etag)


def readme_queries() -> list[str]:
    """Every line of every ```promql block in the docs of the metrics (docs/observability.md)."""
    text = (REPO / "docs" / "observability.md").read_text()
    blocks = re.findall(r"```promql\n(.*?)```", text, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


pytestmark = pytest.mark.xdist_group("prometheus")  # its module fixture (servers and a replay) made once, on one worker


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Pushgateway + Prometheus (1 s scrapes, the project's rules). 9 business days run without
    pushing (so day-ahead forecasts have been scored), then 4 business hours push, in 12 bursts
    over ~12 s of wall time so Prometheus sees the counters grow."""
    rules = {"stockpulse.rules.yml": (REPO / "infra/prometheus/rules/stockpulse.rules.yml").read_text()}
    with (
        servers.pushgateway() as gateway,
        servers.prometheus(servers.prometheus_config(gateway.address, rule_files=list(rules)), rule_files=rules) as prom,
    ):
        store = FileStore(tmp_path_factory.mktemp("pushed"))
        settings = Settings(store_url=f"file://{store.root}", pushgateway_url=gateway.url)
        run(Runtime(store=store, catalog=CATALOG), schedule(START, WARM_UP_MINUTES, FAST))
        leave_low(store, series=[0, 3])
        runtime = Runtime(store=store, catalog=CATALOG, publish=publisher(settings, store=store))
        ticks = schedule(START + timedelta(minutes=WARM_UP_MINUTES), 240)
        burst = len(ticks) // 12 + 1
        for i in range(0, len(ticks), burst):
            for name, moment in ticks[i : i + burst]:
                result = invoke(name, event_at(moment), runtime)
                assert "metrics_error" not in result, result
            time.sleep(1.0)
        prom.wait_for("resets(orders_total[1m])", lambda r: len(r) == 2, timeout=20)
        yield gateway, prom, store, runtime


def gateway_group(gateway: servers.Pushgateway, method: str, path: str, data: bytes | None = None) -> None:
    request = urllib.request.Request(f"{gateway.url}{path}", method=method, data=data)
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as answer:
        assert answer.status in (200, 202), answer.status


@pytest.fixture
def fed_group(stack, tmp_path):
    """A second store, run on a shop's feeds, pushes its order tick's group as instance ``FED``: the
    metrics only a feed gives (ONLY_WITH_FEEDS) reach Prometheus too. Deleted afterwards (and gone
    from Prometheus) so the other tests see the simulator's store alone."""
    gateway, prom, _, _ = stack
    path = f"/metrics/job/order_tick/instance/{FED}"
    gateway_group(gateway, "PUT", path, replay_feed(tmp_path).get("metrics/order_tick.prom"))
    try:
        prom.wait_for("feed_lines_total", timeout=20)
        yield
    finally:
        gateway_group(gateway, "DELETE", path)
        prom.wait_for(f'count(orders_total{{instance="{FED}"}})', lambda r: not r, timeout=20)


def test_every_contract_metric_is_present_with_its_labels(stack, fed_group):
    """GIVEN the pushed groups WHEN Prometheus is queried THEN each metric of the contract exists
    with exactly its labels (plus job = the handler, and instance); the metrics only a feed gives come
    from the store on a shop's feeds alone (control: the simulator's store never exposes them)."""
    _, prom, _, _ = stack
    for name, (kind, labels, owner, _) in METRICS.items():
        series = name + "_bucket" if kind == "histogram" else name
        result = prom.query(series)
        assert result, f"{series} missing"
        if name in ONLY_WITH_FEEDS:
            assert {sample["metric"].get("instance") for sample in result} == {FED}, series
        for sample in result:
            got = set(sample["metric"]) - {"__name__", "job", "instance", "le"}
            assert got == set(labels), (series, sample["metric"])
            if owner != "*":
                assert sample["metric"]["job"] == owner


def test_rate_of_orders_is_positive_and_counters_never_reset(stack):
    """GIVEN counters pushed as absolute values from fresh registries THEN rate() is positive and
    Prometheus saw no counter reset across invocations."""
    _, prom, _, _ = stack
    rates = prom.query("sum by (product_id) (rate(orders_total[1m]))")
    assert len(rates) == 2 and all(float(r["value"][1]) > 0 for r in rates)
    for counter in ("orders_total", "reorder_events_total", "handler_invocations_total", "processing_latency_seconds_count"):
        resets = prom.query(f"max(resets({counter}[1m]))")
        assert resets and float(resets[0]["value"][1]) == 0, counter


def test_latency_quantile_comes_back(stack):
    """GIVEN the cumulative latency histogram THEN histogram_quantile over its rate is a number per handler."""
    _, prom, _, _ = stack
    result = prom.query("histogram_quantile(0.95, sum by (le, handler) (rate(processing_latency_seconds_bucket[1m])))")
    assert {r["metric"]["handler"] for r in result} == set(HANDLERS)
    assert all(0 < float(r["value"][1]) < 10 for r in result if r["value"][1] != "NaN")


def test_pushed_values_equal_the_state(stack):
    """GIVEN the store the handlers committed THEN Prometheus holds the same absolute counter values."""
    _, prom, store, _ = stack
    state, _ = load_state(store)
    result = prom.query("orders_total")
    total = sum(float(r["value"][1]) for r in result)
    assert total == float(state.shipped.sum())


@pytest.mark.parametrize("query", readme_queries())
def test_every_readme_query_returns_data(stack, query):
    """GIVEN the PromQL queries of docs/observability.md THEN each is valid and returns a non-empty result."""
    _, prom, _, _ = stack
    assert prom.query(query), query


def test_readme_has_the_original_queries():
    queries = readme_queries()
    for original in (
        "inventory_level_units",
        "orders_per_minute",
        "predicted_stockout_hours < 24",
        "demand_forecast_units",
        "sum(rate(orders_total[5m])) by (product_id)",
        "avg(inventory_level_units) by (product_id)",
        "predicted_stockout_hours < 24 and predicted_stockout_hours > 0",
    ):
        assert original in queries


def test_rules_load_and_the_stockout_alert_is_pending_or_firing(stack):
    """GIVEN the project's rule file in a real Prometheus THEN the rules are healthy and StockoutImminent is active."""
    _, prom, _, _ = stack
    groups = prom.api("/api/v1/rules")["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert rules["StockoutImminent"]["health"] == "ok"
    assert all(r["health"] == "ok" for r in rules.values()), rules
    prom.wait_for('ALERTS{alertname="StockoutImminent"}', bool, timeout=10)


def test_pushgateway_down_the_handlers_succeed_and_count_the_failure(stack, caplog):
    """GIVEN the Pushgateway stopped WHEN handlers run THEN they succeed with state and logs complete,
    the failure is logged and counted, and after a restart the count reaches Prometheus."""
    gateway, prom, store, runtime = stack
    before, _ = load_state(store)
    logs_before = len(list(store.list("logs/")))
    gateway.stop()
    try:
        moment = START + timedelta(minutes=WARM_UP_MINUTES + 241)
        with caplog.at_level(logging.WARNING, logger="stockpulse"):
            result = invoke("order_tick", event_at(moment), runtime)
        assert result["status"] == "applied" and "metrics_error" in result
        assert any("not published" in r.message for r in caplog.records)
    finally:
        gateway.start()
    after, _ = load_state(store)
    assert after.push_failures[0] == before.push_failures[0] + 1
    assert after.invocations[0] == before.invocations[0] + 1
    assert len(list(store.list("logs/"))) == logs_before + 1
    invoke("order_tick", event_at(START + timedelta(minutes=WARM_UP_MINUTES + 242)), runtime)
    prom.wait_for('metrics_push_failures_total{handler="order_tick"} >= 1', bool, timeout=15)


def test_after_simulate_run_and_a_skipped_invoke_every_documented_metric_is_on_the_pushgateway(tmp_path, pushgateway):
    """GIVEN a real Pushgateway WHEN `simulate` pushes every group at its end, then `run` and an
    `invoke` of a tick already applied THEN after each, every metric docs/observability.md lists for
    each handler has samples in that handler's group (was: simulate's forecast group was pushed
    without predicted_stockout_hours and four more, so `predicted_stockout_hours < 24` could not fire)."""
    from tests.support.documented_metrics import documented, simulate_run_skip, with_samples

    expected = documented()
    url = f"http://{pushgateway.address}"
    for step in simulate_run_skip(tmp_path, "--store", f"file://{tmp_path}/s", "--pushgateway", url):
        text = pushgateway.metrics_text()
        for handler, names in expected.items():
            found = with_samples(text, job=handler)
            assert names <= found, (step, handler, sorted(names - found))
        assert not (tmp_path / "s" / "metrics").exists()  # pushed, not written
