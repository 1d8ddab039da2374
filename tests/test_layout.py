"""The state's objects (handlers/layout.py): each invocation writes only the part it changed."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from handlers.runtime import Runtime, invoke, load_state
from handlers.state import STATE_KEY
from handlers.storage import FileStore
from tests.conftest import START, event_at, zero_clock
from tests.test_runtime import BUSY_CATALOG

NOON = START.replace(hour=12)


def _runtime(store: FileStore) -> Runtime:
    return Runtime(store=store, catalog=BUSY_CATALOG, clock=zero_clock)


def _history_objects(store: FileStore) -> list[str]:
    return list(store.list("state/history/"))


def test_a_forecast_commits_its_own_object_and_leaves_the_hot_state_alone(tmp_path):
    """GIVEN a store with order ticks WHEN the forecast runs THEN it commits state/forecast.bin and
    the hot state keeps its ETag (an order tick reading it before the forecast still commits);
    loading merges both: the forecast is there, applied by the forecast handler."""
    store = FileStore(tmp_path)
    invoke("order_tick", event_at(NOON), _runtime(store))
    hot = store.read(STATE_KEY).etag
    assert invoke("forecast", event_at(NOON), _runtime(store))["status"] == "applied"
    assert store.read(STATE_KEY).etag == hot
    assert store.read("state/forecast.bin") is not None
    state, _ = load_state(store)
    assert state.forecast_at == NOON.timestamp() and state.applied["forecast"] == NOON.timestamp()
    assert int(state.invocations[2]) == 1 and int(state.invocations[0]) == 1


def test_order_ticks_within_a_day_reuse_the_history_and_a_closing_day_writes_one(tmp_path):
    """GIVEN a store WHEN order ticks run within one business day THEN they share one history object
    (closing the partial first day changes nothing in it: content-addressed, no new object); WHEN a
    tick closes a complete day THEN one new history object holds it, ending with that day's demand."""
    store = FileStore(tmp_path)
    for minute in range(1, 4):
        invoke("order_tick", event_at(NOON + timedelta(minutes=minute)), _runtime(store))
    assert len(_history_objects(store)) == 1
    invoke("order_tick", event_at(NOON + timedelta(days=1)), _runtime(store))
    assert len(_history_objects(store)) == 1
    invoke("order_tick", event_at(START + timedelta(days=2, minutes=1)), _runtime(store))
    assert len(_history_objects(store)) == 2
    state, _ = load_state(store)
    assert state.history_day * 86400 == (START + timedelta(days=2)).timestamp()
    assert np.isnan(state.daily_demand[:, -2]).all()  # the day the store began in is partial: unknown
    assert (state.daily_demand[:, -1] > 0).all()


def test_a_state_in_one_object_still_loads_and_moves_to_the_parts_on_the_next_commit(tmp_path):
    """GIVEN a store whose state/state.bin holds the whole state (schema 1, before the parts) WHEN it is
    loaded THEN it is that state; WHEN a restock commits THEN the forecast part, a history object and the hot part are
    written and the state loads the same apart from what the tick changed."""
    store = FileStore(tmp_path)
    invoke("order_tick", event_at(NOON), _runtime(store))
    invoke("forecast", event_at(NOON), _runtime(store))
    whole, _ = load_state(store)
    legacy = FileStore(tmp_path / "legacy")
    legacy.write(STATE_KEY, whole.to_bytes(), etag=None)
    again, _ = load_state(legacy)
    for name in ("on_hand", "forecast_mean", "daily_demand", "latency_buckets"):
        np.testing.assert_array_equal(getattr(again, name), getattr(whole, name))
    assert again.applied == whole.applied
    invoke("restock", event_at(NOON + timedelta(minutes=1)), _runtime(legacy))
    moved, _ = load_state(legacy)
    assert _history_objects(legacy) and legacy.read("state/forecast.bin") is not None
    np.testing.assert_array_equal(moved.forecast_mean, whole.forecast_mean)
    assert moved.applied == {**whole.applied, "restock": (NOON + timedelta(minutes=1)).timestamp()}
