"""Metrics that scale: per-series gauges only for the series that matter in a large catalog,
aggregates per product and warehouse always; exposition reads what the core computed."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from handlers.forecasting import planning
from handlers.model.events import parse_event
from handlers.model.outcome import Inputs
from handlers.model.policy import Policy
from handlers.model.state import HANDLERS, initial_state
from handlers.runtime.catalogs import default_catalog
from handlers.runtime.declarations import DECLARATIONS
from handlers.runtime.invoke import Runtime, invoke
from handlers.runtime.settings import Settings
from handlers.storage.file import FileStore
from handlers.telemetry.metrics import Focus, build_registry, focus_series
from handlers.telemetry.publisher import publisher
from jobs.schedule import DEFAULT_INTERVALS
from tests.support.ticks import START, event_at

#: series of the default catalog (5 products x 3 warehouses), in catalog order
CATALOG = default_catalog()
SERIES = list(zip(CATALOG.series_product_ids, CATALOG.series_warehouse_ids))


def forecast_outcome(on_hand: list[int] | None = None):
    """The forecast core's outcome at START on a fresh state, with ``on_hand`` per series."""
    state = initial_state(CATALOG, START.timestamp() - 60)
    if on_hand is not None:
        state = state.replace(on_hand=np.array(on_hand, dtype=state.on_hand.dtype))
    return planning.forecast(state, parse_event(event_at(START)), CATALOG, Inputs(policy=Policy()))


def labels(i: int) -> dict[str, str]:
    return {"product_id": SERIES[i][0], "warehouse_id": SERIES[i][1]}


def exposed_series(registry, name: str) -> set[int]:
    return {i for i in range(len(SERIES)) if registry.get_sample_value(name, labels(i)) is not None}


AMPLE = [10_000] * 15


def test_the_forecast_group_exposes_the_values_its_core_computed():
    """GIVEN the forecast core's outcome WHEN its values are changed before exposition THEN the metrics
    show the changed values: the exposition reads them, it does not recompute the policy."""
    outcome = forecast_outcome()
    doubled = {name: values * 2 for name, values in outcome.exposed.items()}
    registry = build_registry("forecast", outcome.state, CATALOG, exposed=doubled, wall_time=0.0)
    for i in range(len(SERIES)):
        assert registry.get_sample_value("reorder_point_units", labels(i)) == pytest.approx(2 * outcome.exposed["reorder_point"][i])
        assert registry.get_sample_value("stockout_probability", labels(i)) == pytest.approx(2 * outcome.exposed["stockout_probability"][i])
    laptop = CATALOG.product_index == 0
    assert registry.get_sample_value("demand_forecast_units", {"product_id": CATALOG.products[0].id}) == pytest.approx(
        2 * outcome.exposed["forecast_7d_units"][laptop].sum()
    )


def test_the_reorder_point_exposed_is_the_one_in_the_inventory_events():
    """GIVEN a forecast run THEN reorder_point_units equals the reorder_point its inventory events carry."""
    outcome = forecast_outcome()
    registry = build_registry("forecast", outcome.state, CATALOG, exposed=outcome.exposed, wall_time=0.0)
    events = [e for e in outcome.events if e["type"] == "inventory"]
    assert len(events) == len(SERIES)
    for e in events:
        value = registry.get_sample_value("reorder_point_units", {"product_id": e["product_id"], "warehouse_id": e["warehouse_id"]})
        assert value == pytest.approx(e["reorder_point"], abs=0.005)


def test_over_the_cap_only_series_at_risk_get_per_series_gauges_and_aggregates_cover_all():
    """GIVEN 15 series, a cap of 3 and two series with nothing on hand WHEN the order_tick group is
    built THEN inventory_level_units exists for those two only, while the per-warehouse and
    per-product sums and the out-of-stock count cover every series."""
    on_hand = list(AMPLE)
    on_hand[4], on_hand[11] = 0, 0
    state = forecast_outcome(on_hand).state
    registry = build_registry("order_tick", state, CATALOG, focus=Focus(cap=3), wall_time=0.0)
    assert exposed_series(registry, "inventory_level_units") == {4, 11}
    assert exposed_series(registry, "lost_sales_units_total") == {4, 11}
    assert registry.get_sample_value("metrics_series_exposed", {"handler": "order_tick"}) == 2
    for w, warehouse in enumerate(CATALOG.warehouses):
        mine = CATALOG.warehouse_index == w
        assert registry.get_sample_value("inventory_units_by_warehouse", {"warehouse_id": warehouse.id}) == float(
            np.array(on_hand)[mine].sum()
        )
        assert registry.get_sample_value("series_out_of_stock", {"warehouse_id": warehouse.id}) == float(
            (np.array(on_hand)[mine] == 0).sum()
        )
    assert registry.get_sample_value("inventory_units_by_product", {"product_id": CATALOG.products[1].id}) == float(sum(on_hand[3:6]))
    assert registry.get_sample_value("catalog_series") == 15


def test_the_cap_keeps_the_least_covered_series():
    """GIVEN five series short of stock and a cap of 2 THEN the two with the fewest days of cover are exposed."""
    on_hand = list(AMPLE)
    for i, units in ((0, 3), (2, 1), (5, 8), (9, 0), (13, 5)):
        on_hand[i] = units
    state = forecast_outcome(on_hand).state
    chosen = focus_series(state, Focus(cap=2), {})
    cover = state.on_hand / state.forecast_mean[:, 0]
    assert chosen.tolist() == sorted(np.argsort(cover, kind="stable")[:2].tolist())
    assert 9 in chosen.tolist()


def test_a_series_with_an_open_purchase_order_is_exposed_though_well_covered():
    """GIVEN ample stock everywhere and one open purchase order, a cap below the catalog's size
    THEN the alert group exposes that series only."""
    state = forecast_outcome(AMPLE).state
    state = state.replace(
        po_series=np.array([7]),
        po_quantity=np.array([50]),
        po_due=np.array([START.timestamp() + 3600]),
        po_placed=np.array([START.timestamp()]),
        po_number=np.array([1]),
    )
    registry = build_registry("alert", state, CATALOG, focus=Focus(cap=5), wall_time=0.0)
    assert exposed_series(registry, "inbound_units") == {7}
    assert registry.get_sample_value("purchase_orders_open_by_warehouse", {"warehouse_id": SERIES[7][1]}) == 1.0


def test_the_forecast_group_counts_series_at_risk_from_its_own_projection():
    """GIVEN one series with nothing on hand WHEN the forecast group is built over the cap THEN
    series_at_risk counts it in its warehouse, and its predicted stockout hours are exposed."""
    on_hand = list(AMPLE)
    on_hand[6] = 0
    outcome = forecast_outcome(on_hand)
    registry = build_registry("forecast", outcome.state, CATALOG, exposed=outcome.exposed, focus=Focus(cap=3), wall_time=0.0)
    at_risk = {w.id: registry.get_sample_value("series_at_risk", {"warehouse_id": w.id}) for w in CATALOG.warehouses}
    assert at_risk == {w.id: float(w.id == SERIES[6][1]) for w in CATALOG.warehouses}
    assert exposed_series(registry, "stockout_probability") == {6}
    assert registry.get_sample_value("predicted_stockout_hours", labels(6)) == pytest.approx(0.0, abs=1.0)


def test_the_cap_comes_from_the_settings(tmp_path):
    """GIVEN STOCKPULSE_METRICS_SERIES_CAP=1 WHEN order_tick runs THEN its group exposes at most one series."""
    pushed = {}
    settings = Settings.from_env(
        {
            "STOCKPULSE_STORE_URL": f"file://{tmp_path}",
            "STOCKPULSE_PUSHGATEWAY_URL": "http://127.0.0.1:9",
            "STOCKPULSE_METRICS_SERIES_CAP": "1",
        }
    )
    store = FileStore(tmp_path)
    runtime = Runtime(
        store=store, catalog=CATALOG, publish=publisher(settings, store=store, push=lambda u, t, job, reg: pushed.update({job: reg}))
    )
    invoke("order_tick", event_at(START + timedelta(minutes=1)), runtime)
    assert pushed["order_tick"].get_sample_value("metrics_series_exposed", {"handler": "order_tick"}) <= 1
    assert len(exposed_series(pushed["order_tick"], "inventory_level_units")) <= 1


def test_the_registry_and_the_schedule_derive_from_the_handler_modules():
    """GIVEN the handler modules' declarations THEN HANDLERS, the runtime's cores and the CLI's default
    intervals are theirs, and each core is the function its module names."""
    assert HANDLERS == ("order_tick", "restock", "forecast", "alert")
    assert DEFAULT_INTERVALS == {name: d.every_seconds for name, d in DECLARATIONS.items()}
    assert DEFAULT_INTERVALS == {"order_tick": 60, "restock": 300, "forecast": 3600, "alert": 900}
    assert DECLARATIONS["forecast"].core is planning.forecast and DECLARATIONS["alert"].core is planning.alert
    import handlers.restock

    assert handlers.restock.DECLARED is DECLARATIONS["restock"]


def test_conflicts_are_exposed_per_handler_from_the_state():
    """GIVEN a state whose alert lost 3 compare-and-swap writes THEN the alert group says 3, order_tick 0."""
    state = forecast_outcome().state
    state = state.replace(conflicts={**state.conflicts, "alert": 3})
    alert = build_registry("alert", state, CATALOG, wall_time=0.0)
    order_tick = build_registry("order_tick", state, CATALOG, wall_time=0.0)
    assert alert.get_sample_value("state_write_conflicts_total", {"handler": "alert"}) == 3
    assert order_tick.get_sample_value("state_write_conflicts_total", {"handler": "order_tick"}) == 0
