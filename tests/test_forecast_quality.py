"""Forecast quality, after the fact: each day's forecast is scored against what happened, beside
seasonal naive, and exported per product."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from handlers.model.catalog import parse_catalog
from handlers.model.logs import EVENT_FIELDS, decode_events
from handlers.runtime.invoke import Runtime, load_state
from handlers.storage.file import FileStore
from handlers.telemetry.metrics import build_registry
from jobs.schedule import Schedule
from jobs.simulate import simulate
from tests.support.ticks import SMALL_CATALOG, START

pytestmark = pytest.mark.xdist_group("forecast_quality")  # its replays (module fixtures) made once, on one worker


@pytest.fixture(scope="module")
def ten_days(tmp_path_factory):
    catalog = parse_catalog(SMALL_CATALOG)
    store = FileStore(tmp_path_factory.mktemp("quality"))
    simulate(Runtime(store=store, catalog=catalog), start=START, days=10, schedule=Schedule.parse(["order_tick=15m", "restock=15m"]))
    return store, catalog


def test_each_complete_day_is_scored_once_per_series(ten_days):
    """GIVEN 10 simulated days THEN days 2..9 are scored (day 1 is partial, day 10 not yet closed)
    with one forecast_score event per series and day, carrying its contract fields."""
    store, catalog = ten_days
    scores = [e for key in store.list("logs/forecast/") for e in decode_events(store.get(key)) if e["type"] == "forecast_score"]
    days = sorted({e["day"] for e in scores})
    assert days == [f"2026-01-{d:02d}" for d in range(6, 14)]
    assert len(scores) == len(days) * catalog.num_series
    for e in scores:
        assert set(EVENT_FIELDS["forecast_score"]) <= set(e)
        assert e["abs_error"] == pytest.approx(abs(e["forecast_units"] - e["actual_units"]), abs=0.01)


def test_each_score_carries_the_day_ahead_forecasts_spread(ten_days):
    """GIVEN the scores THEN each carries forecast_std_units, the standard deviation of the forecast
    it scores: positive (counted demand is never less spread than Poisson) and finite."""
    store, _ = ten_days
    spreads = [
        e["forecast_std_units"]
        for key in store.list("logs/forecast/")
        for e in decode_events(store.get(key))
        if e["type"] == "forecast_score"
    ]
    assert spreads and all(isinstance(s, float) and 0 < s < 1e6 for s in spreads)


def test_scored_actuals_are_the_recorded_demand(ten_days):
    """GIVEN the scores THEN each actual equals that day's demand in the state's history."""
    store, catalog = ten_days
    state, _ = load_state(store)
    scores = [
        e
        for key in store.list("logs/forecast/")
        for e in decode_events(store.get(key))
        if e["type"] == "forecast_score" and e["day"] == "2026-01-13"
    ]
    by_series = {(e["product_id"], e["warehouse_id"]): e["actual_units"] for e in scores}
    # the replay ends at Jan 15 00:00; the last minute belongs to Jan 14, still open: Jan 13 is the
    # last complete day in the history
    assert state.history_day * 86400 == START.timestamp() + 9 * 86400
    for i in range(catalog.num_series):
        key = (catalog.series_product_ids[i], catalog.series_warehouse_ids[i])
        assert by_series[key] == state.daily_demand[i, -1]


def test_seasonal_naive_is_compared_only_once_a_week_of_history_exists(ten_days):
    """GIVEN scores THEN the naive error is null until the day 7 days earlier is in the history."""
    store, _ = ten_days
    scores = [e for key in store.list("logs/forecast/") for e in decode_events(store.get(key)) if e["type"] == "forecast_score"]
    early = [e["seasonal_naive_abs_error"] for e in scores if e["day"] < "2026-01-13"]
    late = [e["seasonal_naive_abs_error"] for e in scores if e["day"] == "2026-01-13"]
    assert all(v is None for v in early) and all(v is not None for v in late)


def test_error_and_skill_are_exported_per_product(ten_days):
    """GIVEN the scored state THEN the forecast group carries WAPE and skill vs seasonal naive per
    product, consistent with the cumulative error counters."""
    store, catalog = ten_days
    state, _ = load_state(store)
    text = generate_latest(build_registry("forecast", state, catalog, wall_time=0.0)).decode()
    samples = {(s.name, s.labels.get("product_id")): s.value for f in text_string_to_metric_families(text) for s in f.samples}
    for p, product in enumerate(catalog.products):
        rows = catalog.product_index == p
        wape = state.score_abs_error[rows].sum() / state.score_actual[rows].sum()
        skill = 1 - state.score_paired_abs_error[rows].sum() / state.score_naive_abs_error[rows].sum()
        assert samples[("forecast_wape", product.id)] == pytest.approx(wape)
        assert samples[("forecast_skill_vs_seasonal_naive", product.id)] == pytest.approx(skill)
        assert 0 < wape < 1
    assert np.all(state.score_days >= 8)
