"""A simulated week: conservation of stock, logs that add up, and the event contract."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone

import numpy as np
import pytest

from handlers.model.logs import EVENT_FIELDS, FEED_ONLY_FIELDS, decode_events
from handlers.runtime.catalogs import default_catalog
from handlers.runtime.invoke import Runtime
from handlers.storage.file import FileStore
from jobs.cli import main
from jobs.schedule import Schedule
from jobs.simulate import simulate

WEEK_START = datetime(2026, 1, 5, tzinfo=timezone.utc)
# order_tick and restock every 15 minutes simulate the same per-minute demand with a tenth of the invocations
FAST_WEEK = Schedule.parse(["order_tick=15m", "restock=15m"])

pytestmark = pytest.mark.xdist_group("simulation")  # its replays (module fixtures) made once, on one worker


@pytest.fixture(scope="module")
def week(tmp_path_factory) -> tuple[FileStore, object, list[dict]]:
    store = FileStore(tmp_path_factory.mktemp("week"))
    runtime = Runtime(store=store, catalog=default_catalog())
    result = simulate(runtime, start=WEEK_START, days=7, schedule=FAST_WEEK)
    events = [e for key in store.list("logs/") for e in decode_events(store.get(key))]
    return store, result, events


def by_series(events: list[dict], kind: str, field: str) -> dict[tuple[str, str], int]:
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for e in events:
        if e["type"] == kind:
            totals[(e["product_id"], e["warehouse_id"])] += e[field]
    return totals


def test_stock_is_conserved_for_every_series(week):
    """GIVEN a simulated week THEN on-hand = initial + received - shipped for every series, never negative."""
    _, result, _ = week
    state = result.after
    np.testing.assert_array_equal(state.on_hand, state.initial + state.received - state.shipped)
    assert (state.on_hand >= 0).all()


def test_shipped_and_received_equal_the_sums_in_the_logs(week):
    """GIVEN a simulated week THEN shipped = sum of order.quantity and received = sum of
    restock.restocked_quantity in the log objects, per series."""
    _, result, events = week
    catalog = default_catalog()
    shipped, received = by_series(events, "order", "quantity"), by_series(events, "restock", "restocked_quantity")
    for i in range(catalog.num_series):
        series = (catalog.series_product_ids[i], catalog.series_warehouse_ids[i])
        assert shipped[series] == result.after.shipped[i]
        assert received[series] == result.after.received[i]
    assert sum(received.values()) > 0, "the week must include restocks"


def test_inventory_never_goes_below_zero_in_any_event(week):
    """GIVEN every order and lost-sale event of the week THEN remaining inventory is never negative."""
    _, _, events = week
    remaining = [e["remaining_inventory"] for e in events if e["type"] in ("order", "lost_sale")]
    assert remaining and min(remaining) >= 0


def test_every_event_type_carries_its_contract_fields_and_business_time(week):
    """GIVEN the week's events THEN each has @timestamp (business time, inside the week), type,
    handler, a unique event_id, and every field ARCHITECTURE lists for its type."""
    _, _, events = week
    seen = {e["type"] for e in events}
    assert {"order", "inventory", "reorder_alert", "restock", "job_run"} <= seen
    for e in events:
        assert set(EVENT_FIELDS[e["type"]]) - set(FEED_ONLY_FIELDS.get(e["type"], ())) <= set(e), e
        moment = datetime.fromisoformat(e["@timestamp"].replace("Z", "+00:00"))
        assert WEEK_START < moment <= datetime(2026, 1, 12, tzinfo=timezone.utc)
    assert len({e["event_id"] for e in events}) == len(events)


def test_reorder_alert_fields_say_why(week):
    """GIVEN the week's reorder alerts THEN each names its purchase order, quantity in packs, and a reason."""
    _, _, events = week
    catalog = default_catalog()
    packs = {p.id: p.pack_size for p in catalog.products}
    alerts = [e for e in events if e["type"] == "reorder_alert"]
    assert alerts
    for e in alerts:
        assert e["recommended_reorder_quantity"] % packs[e["product_id"]] == 0
        assert e["purchase_order_id"].startswith(f"PO-{e['product_id']}-{e['warehouse_id']}-")
        assert e["reason"]


def test_status_json_after_the_week_satisfies_the_invariant(week, capsys):
    """GIVEN the simulated week's store WHEN `status --json` runs THEN every series balances."""
    store, _, _ = week
    assert main(["status", "--json", "--store", f"file://{store.root}"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["series"]) == 15
    for s in report["series"]:
        assert s["on_hand"] == s["initial"] + s["received"] - s["shipped"] >= 0
        assert {"on_hand", "initial", "received", "shipped", "lost_sales"} <= set(s)
    assert report["pending_log_objects"] == 0
