"""Who reads state/forecast.bin (handlers/runtime/layout.py): the forecast and the alert; an order tick and a
restock never do — their metrics' days of cover use the hot part's copy of the forecast's demand."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from handlers.errors import StorageError
from handlers.runtime import layout
from handlers.runtime.invoke import Runtime, invoke, load_state
from handlers.storage.file import FileStore
from handlers.telemetry.metrics import Focus, cover_days, focus_series
from tests.support.crash import BUSY_CATALOG
from tests.support.ticks import START, event_at, zero_clock

NOON = START.replace(hour=12)


class RecordingStore:
    """Delegates to a store and records (method, key) of every call. (Not ``inner``: the runtime
    unwraps a store with that attribute for the push-failure count, which must be recorded too.)"""

    def __init__(self, store: FileStore) -> None:
        self._store, self.url, self.calls = store, store.url, []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args[0] if args else kwargs.get("key")))
            return method(*args, **kwargs)

        return call

    def keys(self) -> set[str]:
        return {key for _, key in self.calls}


class LogWriteFails(RecordingStore):
    """The log objects of ``handler`` cannot be written (the process dies right after its commit)."""

    def __init__(self, store: FileStore, handler: str) -> None:
        super().__init__(store)
        self.handler = handler

    def __getattr__(self, name: str) -> Any:
        if name == "put_once":

            def put_once(key: str, data: bytes, **kwargs: Any) -> bool:
                if key.startswith(f"logs/{self.handler}/"):
                    raise RuntimeError(f"crash before writing {key}")
                return self._store.put_once(key, data, **kwargs)

            return put_once
        return super().__getattr__(name)


def _runtime(store: Any, **kwargs: Any) -> Runtime:
    return Runtime(store=store, catalog=BUSY_CATALOG, clock=zero_clock, **kwargs)


def _with_forecast(store: FileStore) -> None:
    """Order ticks, a forecast and an alert: both parts exist, the forecast's outbox holds its log."""
    invoke("order_tick", event_at(NOON), _runtime(store))
    invoke("forecast", event_at(NOON), _runtime(store))
    invoke("alert", event_at(NOON), _runtime(store))


def test_order_tick_and_restock_never_touch_the_forecast_part(tmp_path):
    """GIVEN a store with a forecast WHEN an order tick and a restock run, each with a failing metrics
    push (the push-failure count commits too) THEN no storage call of theirs names state/forecast.bin,
    while an alert's does (the recording sees it)."""
    store = FileStore(tmp_path)
    _with_forecast(store)
    for minute, handler in enumerate(("order_tick", "restock"), start=1):
        recorded = RecordingStore(store)
        result = invoke(
            handler, event_at(NOON + timedelta(minutes=minute)), _runtime(recorded, publish=lambda *args, **kwargs: "pushgateway down")
        )
        assert result["status"] == "applied" and result["metrics_error"] == "pushgateway down"
        assert ("write", "state/state.bin") in recorded.calls
        assert layout.FORECAST_KEY not in recorded.keys(), handler
    state, _ = load_state(store)
    assert state.push_failures.tolist() == [1, 1, 0, 0]
    recorded = RecordingStore(store)
    invoke("alert", event_at(NOON + timedelta(minutes=15)), _runtime(recorded))
    assert ("read", layout.FORECAST_KEY) in recorded.calls


def test_the_forecast_log_promised_by_its_commit_is_written_by_the_next_alert(tmp_path):
    """GIVEN a forecast that committed but died before writing its log object WHEN order ticks run
    THEN the log is still missing (they do not read the forecast part); WHEN the next alert runs
    THEN it is written, exactly once."""
    store = FileStore(tmp_path)
    invoke("order_tick", event_at(NOON), _runtime(store))
    with pytest.raises(RuntimeError, match="crash before writing logs/forecast/"):
        invoke("forecast", event_at(NOON), _runtime(LogWriteFails(store, "forecast")))
    invoke("order_tick", event_at(NOON + timedelta(minutes=1)), _runtime(store))
    assert not list(store.list("logs/forecast/"))
    invoke("alert", event_at(NOON + timedelta(minutes=2)), _runtime(store))
    assert [key.rsplit("/", 1)[1] for key in store.list("logs/forecast/")] == ["forecast-20260105T120000Z.ndjson.gz"]
    assert invoke("forecast", event_at(NOON), _runtime(store))["status"] == "skipped"


def test_without_the_forecast_part_its_fields_fail_loudly(tmp_path):
    """GIVEN a state loaded without the forecast part THEN using a forecast field raises, and the
    forecast part cannot be committed from it."""
    store = FileStore(tmp_path)
    _with_forecast(store)
    loaded = layout.load(store, BUSY_CATALOG, at=0.0, forecast=False)
    assert loaded is not None
    with pytest.raises(StorageError, match="forecast part"):
        loaded.state.forecast_mean.sum()
    with pytest.raises(ValueError, match="forecast part"):
        layout.commit(store, loaded, loaded.state, "forecast")


def test_days_of_cover_without_the_forecast_part_use_the_hot_copy_of_its_demand(tmp_path):
    """GIVEN a forecast and then an alert (a hot commit that read the forecast part) WHEN the state is
    loaded without the forecast part THEN the hot part's copy is the forecast's first day, and days
    of cover and the series in focus over a cap are the same as with the forecast part."""
    store = FileStore(tmp_path)
    invoke("order_tick", event_at(NOON), _runtime(store))
    invoke("forecast", event_at(NOON), _runtime(store))
    before_alert = layout.load(store, BUSY_CATALOG, at=0.0, forecast=False)
    assert before_alert is not None and np.isnan(before_alert.state.cover_daily_demand).all()  # no copy yet
    invoke("alert", event_at(NOON), _runtime(store))
    invoke("order_tick", event_at(NOON + timedelta(minutes=1)), _runtime(store))  # carries the copy on
    whole, _ = load_state(store)
    hot_only = layout.load(store, BUSY_CATALOG, at=0.0, forecast=False)
    assert hot_only is not None
    np.testing.assert_array_equal(hot_only.state.cover_daily_demand, whole.forecast_mean[:, 0].astype(np.float32))
    np.testing.assert_allclose(cover_days(hot_only.state), cover_days(whole), rtol=1e-6)
    for cap in (1, 2, 3):
        assert focus_series(hot_only.state, Focus(cap=cap), {}).tolist() == focus_series(whole, Focus(cap=cap), {}).tolist()
