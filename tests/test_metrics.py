"""Metrics built from the state: absolute counters, one group per handler, never fatal."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from handlers.model.state import HANDLERS
from handlers.runtime.declarations import DECLARATIONS
from handlers.runtime.invoke import Runtime, invoke, load_state
from handlers.runtime.settings import Settings
from handlers.storage.file import FileStore
from handlers.telemetry.metrics import METRICS, ONLY_WITH_FEEDS, metrics_key
from handlers.telemetry.publisher import publisher
from tests.support.ticks import START, event_at, run, schedule


@pytest.fixture(scope="module")
def worked(tmp_path_factory) -> tuple[FileStore, dict[str, CollectorRegistry]]:
    """Three business hours of every handler on the small catalog; each handler's last pushed registry."""
    from handlers.model.catalog import parse_catalog
    from tests.support.ticks import SMALL_CATALOG

    store = FileStore(tmp_path_factory.mktemp("metrics"))
    pushed: dict[str, CollectorRegistry] = {}

    def capture(url: str, timeout: float, handler: str, registry: CollectorRegistry) -> None:
        pushed[handler] = registry

    settings = Settings(store_url=f"file://{store.root}", pushgateway_url="http://127.0.0.1:9")
    run(
        Runtime(store=store, catalog=parse_catalog(SMALL_CATALOG), publish=publisher(settings, store=store, push=capture)),
        schedule(START, 180),
    )
    return store, pushed


#: what a store without a feed has no value for: absent, not 0 (tests/test_feeds.py pushes them)


def families(handler: str, worked) -> dict:
    text = generate_latest(worked[1][handler]).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


@pytest.mark.parametrize("handler", HANDLERS)
def test_each_group_holds_exactly_the_metrics_its_handler_owns(handler, worked):
    """GIVEN a worked state WHEN a handler's registry is pushed THEN it holds the metrics its module
    declares and the operations metrics, and none owned by another handler (no metric in two groups);
    the metrics of a shop's feed only where a feed is configured (here: none)."""
    found = families(handler, worked)
    expected = {name for name, (_, _, owner, _) in METRICS.items() if owner in (handler, "*")} - ONLY_WITH_FEEDS
    assert {name for name, (_, _, owner, _) in METRICS.items() if owner == handler} == set(DECLARATIONS[handler].metrics)
    names = {re.sub(r"_total$", "", n) for n in expected}
    assert set(found) == names
    if handler == "forecast":  # three business hours score no day yet: no ratio rather than a made-up one
        assert not found["forecast_wape"].samples and not found["forecast_skill_vs_seasonal_naive"].samples


def test_counters_are_absolute_values_from_the_state(worked):
    """GIVEN a worked state THEN orders_total per product is the state's shipped units summed over warehouses."""
    store, pushed = worked
    state, _ = load_state(store)
    registry = pushed["order_tick"]
    orders = {p: registry.get_sample_value("orders_total", {"product_id": p}) for p in ("P-1", "P-2")}
    assert orders == {"P-1": float(state.shipped[:2].sum()), "P-2": float(state.shipped[2:].sum())}
    assert orders["P-1"] > 0


def test_latency_histogram_is_cumulative_with_count_equal_to_invocations(worked):
    """GIVEN a worked state THEN the order_tick histogram's +Inf bucket and _count equal its invocations."""
    store, _ = worked
    state, _ = load_state(store)
    samples = families("order_tick", worked)["processing_latency_seconds"].samples
    buckets = [s.value for s in samples if s.name.endswith("_bucket")]
    count = [s.value for s in samples if s.name.endswith("_count")][0]
    assert buckets == sorted(buckets) and buckets[-1] == count == state.invocations[0] == 180
    assert all(s.labels["handler"] == "order_tick" for s in samples)


def test_no_stockout_within_horizon_is_an_absent_series_not_a_sentinel(worked):
    """GIVEN the forecast group THEN predicted_stockout_hours exists only where stockout_within_horizon is 1."""
    found = families("forecast", worked)
    within = {(s.labels["product_id"], s.labels["warehouse_id"]): s.value for s in found["stockout_within_horizon"].samples}
    hours = {(s.labels["product_id"], s.labels["warehouse_id"]): s.value for s in found["predicted_stockout_hours"].samples}
    assert set(hours) == {k for k, v in within.items() if v == 1}
    assert all(0 <= v <= 168 for v in hours.values())


def test_a_small_catalog_exposes_every_series(worked):
    """GIVEN the 4-series catalog (under the default cap) THEN every group exposes all 4 series."""
    _, pushed = worked
    for handler in HANDLERS:
        assert pushed[handler].get_sample_value("metrics_series_exposed", {"handler": handler}) == 4
    inventory = families("order_tick", worked)["inventory_level_units"].samples
    assert len(inventory) == 4


def test_without_a_pushgateway_metrics_are_written_next_to_the_state(tmp_path: Path, small_catalog):
    """GIVEN no Pushgateway URL WHEN a handler runs THEN metrics/<handler>.prom holds its group in text format."""
    store = FileStore(tmp_path)
    settings = Settings(store_url=f"file://{tmp_path}")
    runtime = Runtime(store=store, catalog=small_catalog, publish=publisher(settings, store=store))
    invoke("order_tick", event_at(START + timedelta(minutes=1)), runtime)
    text = store.get(metrics_key("order_tick")).decode()
    assert 'inventory_level_units{product_id="P-1",warehouse_id="W-A"}' in text
    assert 'processing_latency_seconds_count{handler="order_tick"} 1.0' in text


def test_a_failed_push_never_fails_the_handler_and_is_logged_and_counted(tmp_path: Path, small_catalog, caplog):
    """GIVEN a Pushgateway that refuses every push WHEN handlers run THEN they succeed, the failure
    is logged and counted in the state, and the next successful push carries the count."""

    def refuse(*args) -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    store = FileStore(tmp_path)
    settings = Settings(store_url=f"file://{tmp_path}", pushgateway_url="http://127.0.0.1:9")
    runtime = Runtime(store=store, catalog=small_catalog, publish=publisher(settings, store=store, push=refuse))
    with caplog.at_level(logging.WARNING, logger="stockpulse"):
        results = [invoke("order_tick", event_at(START + timedelta(minutes=m)), runtime) for m in (1, 2)]
    assert [r["status"] for r in results] == ["applied", "applied"]
    assert "ConnectionRefusedError" in results[0]["metrics_error"]
    assert sum("not published" in r.message for r in caplog.records) == 2
    state, _ = load_state(store)
    assert state.push_failures.tolist() == [2, 0, 0, 0]
    assert len(list(store.list("logs/"))) == 2

    pushed = []
    runtime = Runtime(
        store=store, catalog=small_catalog, publish=publisher(settings, store=store, push=lambda url, t, job, reg: pushed.append(reg))
    )
    invoke("order_tick", event_at(START + timedelta(minutes=3)), runtime)
    text = generate_latest(pushed[0]).decode()
    assert 'metrics_push_failures_total{handler="order_tick"} 2.0' in text


@pytest.mark.slow
def test_after_simulate_run_and_a_skipped_invoke_every_documented_metric_is_in_the_files(tmp_path: Path):
    """GIVEN the file backend (no Pushgateway) WHEN `simulate` publishes every group at its end, then
    `run` and an `invoke` of a tick already applied THEN after each, every metric docs/observability.md
    lists for each handler has samples in metrics/<handler>.prom (was: simulate's forecast group lost
    predicted_stockout_hours, stockout_within_horizon, stockout_probability, demand_forecast_units,
    reorder_point_units and series_at_risk: its publish passed no core outcome)."""
    from tests.support.documented_metrics import documented, simulate_run_skip, with_samples

    expected = documented()
    assert {"predicted_stockout_hours", "demand_forecast_units", "processing_latency_seconds"} <= expected["forecast"]
    for step in simulate_run_skip(tmp_path, "--store", f"file://{tmp_path}/s"):
        for handler, names in expected.items():
            text = (tmp_path / "s" / "metrics" / f"{handler}.prom").read_text()
            assert names <= with_samples(text), (step, handler, sorted(names - with_samples(text)))


def test_on_a_shops_feeds_every_documented_metric_is_in_the_files_feed_metrics_too(tmp_path: Path):
    """GIVEN a store run on a shop's feeds (tests/support/emitted.py replay_feed: three hours) THEN every
    metric docs/observability.md lists for each handler has samples, the ones only a feed gives included
    (but the forecast's skill against seasonal naive, which needs a week of history)."""
    from tests.support.documented_metrics import documented, with_samples
    from tests.support.emitted import replay_feed

    store = replay_feed(tmp_path)
    expected = documented(feeds=True)
    assert ONLY_WITH_FEEDS <= expected["order_tick"]
    expected["forecast"].discard("forecast_skill_vs_seasonal_naive")
    for handler, names in expected.items():
        text = store.get(f"metrics/{handler}.prom").decode()
        assert names <= with_samples(text), (handler, sorted(names - with_samples(text)))


def test_a_publish_without_the_cores_values_exposes_what_the_last_forecast_computed(tmp_path: Path):
    """GIVEN a committed forecast WHEN its group is published again from the loaded state alone (no
    core outcome, as `simulate` does at its end) THEN it is the text the forecast's own publish
    exposed — the values read from the state, not recomputed. Control: before any forecast, a
    publish from the state exposes none of them."""
    from handlers.model.catalog import parse_catalog
    from tests.support.ticks import SMALL_CATALOG

    catalog = parse_catalog(SMALL_CATALOG)
    store = FileStore(tmp_path / "s")
    pushed: list[tuple[str, CollectorRegistry]] = []
    settings = Settings(store_url=f"file://{tmp_path}/s", pushgateway_url="http://127.0.0.1:9")
    publish = publisher(
        settings, store=store, wall_clock=lambda: 0.0, push=lambda url, timeout, handler, registry: pushed.append((handler, registry))
    )
    run(Runtime(store=store, catalog=catalog, publish=publish), schedule(START, 60))
    live = generate_latest([registry for handler, registry in pushed if handler == "forecast"][-1]).decode()
    state, _ = load_state(store, catalog)
    assert publish("forecast", state, catalog) is None
    assert "stockout_probability{" in live and "demand_forecast_units{" in live
    assert generate_latest(pushed[-1][1]).decode() == live
    empty = FileStore(tmp_path / "empty")
    invoke("order_tick", event_at(START + timedelta(minutes=1)), Runtime(store=empty, catalog=catalog))
    before, _ = load_state(empty, catalog)
    assert publish("forecast", before, catalog) is None
    assert "stockout_probability{" not in generate_latest(pushed[-1][1]).decode()
