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


def test_a_closed_day_deletes_the_history_objects_before_the_previous_one(tmp_path):
    """GIVEN four business days of order ticks WHEN each day closes THEN the hot part references the
    new history object and only it and the one it replaced are kept (older ones were garbage: a day's
    history holds every day the model keeps); the state still loads with its history."""
    from handlers.layout import HISTORY_PREFIX

    store = FileStore(tmp_path)
    runtime = Runtime(store=store, catalog=BUSY_CATALOG)
    pruned = []
    for hours in range(1, 4 * 24 + 1, 3):
        result = invoke("order_tick", event_at(START + timedelta(hours=hours)), runtime)
        pruned.append(result.get("history_pruned"))
    kept = list(store.list(HISTORY_PREFIX))
    assert len(kept) == 2
    state, _ = load_state(store, BUSY_CATALOG)
    assert state is not None and state.history_day == START.timestamp() // 86400 + 3
    assert np.isfinite(state.daily_demand).sum() > 0
    # day 1 wrote the first history object, day 2 the second (nothing to delete), day 3 deleted day 1's
    assert [p for p in pruned if p is not None] == [0, 1]


class _DiesAtDelete:
    """A store whose process dies at its first delete (after the commit and the log write)."""

    def __init__(self, inner) -> None:
        self.inner, self.url, self.died = inner, inner.url, False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def delete(self, key: str) -> None:
        if not self.died:
            self.died = True
            raise KeyboardInterrupt("the process dies while deleting old history")
        self.inner.delete(key)


def test_dying_while_deleting_old_history_loses_nothing_and_the_next_day_cleans_up(tmp_path):
    from handlers.layout import HISTORY_PREFIX

    clean, dying = FileStore(tmp_path / "clean"), _DiesAtDelete(FileStore(tmp_path / "dying"))
    moments = [START + timedelta(hours=h) for h in range(1, 5 * 24 + 1, 3)]
    for moment in moments:
        invoke("order_tick", event_at(moment), Runtime(store=clean, catalog=BUSY_CATALOG, clock=zero_clock))
        try:
            invoke("order_tick", event_at(moment), Runtime(store=dying, catalog=BUSY_CATALOG, clock=zero_clock))
        except KeyboardInterrupt:  # the retry of the same tick: already applied, nothing written twice
            again = invoke("order_tick", event_at(moment), Runtime(store=dying, catalog=BUSY_CATALOG, clock=zero_clock))
            assert again["status"] == "skipped"
    assert dying.died
    assert list(clean.list("logs/")) == list(dying.inner.list("logs/"))
    assert all(clean.get(k) == dying.inner.get(k) for k in clean.list("logs/"))
    assert list(clean.list(HISTORY_PREFIX)) == list(dying.inner.list(HISTORY_PREFIX))  # the garbage went later
    assert clean.read(STATE_KEY).data == dying.inner.read(STATE_KEY).data
