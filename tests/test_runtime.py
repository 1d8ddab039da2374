"""Exactly once: redeliveries, crashes between any two storage calls, and concurrent handlers."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from handlers.model.catalog import parse_catalog
from handlers.model.logs import decode_events
from handlers.runtime import layout
from handlers.runtime.invoke import Runtime, invoke, load_state
from handlers.storage.file import FileStore
from tests.conftest import START, event_at, zero_clock

# Fast dynamics so a short window holds every kind of event: stock runs low within minutes,
# purchase orders arrive 6 minutes after they are placed.
BUSY_CATALOG = parse_catalog("""
seed: 11
products:
  - {id: FAST, base_demand_per_day: 2000, lead_time_hours: 0.1, pack_size: 5}
  - {id: SLOW, base_demand_per_day: 300, lead_time_hours: 0.1, pack_size: 5}
warehouses: [{id: W1, timezone: Europe/Berlin}, {id: W2, timezone: America/Chicago}]
initial_stock: 8
""", source="busy.yaml")


def busy_ticks(minutes: int = 24) -> list[tuple[str, object]]:
    ticks = []
    for m in range(1, minutes + 1):
        moment = START.replace(hour=12) + timedelta(minutes=m)
        if m % 4 == 0:
            ticks.append(("restock", moment))
        ticks.append(("order_tick", moment))
        if m % 6 == 0:
            ticks += [("forecast", moment), ("alert", moment)]
    return ticks


class Crash(BaseException):
    """The process dies (not an Exception: nothing may catch it)."""


class CrashingStore:
    """Delegates to a store and dies just before its ``crash_at``-th call."""

    def __init__(self, inner, crash_at: int) -> None:
        self.inner, self.crash_at, self.calls = inner, crash_at, 0
        self.url = inner.url

    def __getattr__(self, name):
        method = getattr(self.inner, name)

        def call(*args, **kwargs):
            self.calls += 1
            if self.calls == self.crash_at:
                raise Crash(f"crash before call {self.calls}: {name}")
            return method(*args, **kwargs)

        return call


def snapshot(store: FileStore) -> tuple[list[bytes | None], dict[str, bytes], dict[str, bytes]]:
    """The state's parts (hot and forecast by their newest version, history objects, the hot part's
    base and deltas, the forecast's statistics) and every log object."""
    parts = [store.read(key) for key in ("state/state.bin", "state/forecast.bin")]
    history = {k: store.get(k) for prefix in ("state/history/", "state/pool/", "state/hot/") for k in store.list(prefix)}
    return [p.data if p else None for p in parts], history, {k: store.get(k) for k in store.list("logs/")}


def run_with_retries(store, ticks) -> None:
    """Invoke each tick; when the process 'crashes', retry the same tick (as Lambda would)."""
    for name, moment in ticks:
        runtime = Runtime(store=store, catalog=BUSY_CATALOG, clock=zero_clock)
        while True:
            try:
                invoke(name, event_at(moment), runtime)
                break
            except Crash:  # a new process: it knows nothing of the old one's
                layout.forget()
                store = FileStore(store.inner.root) if isinstance(store, CrashingStore) else store


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> tuple[bytes, dict[str, bytes]]:
    store = FileStore(tmp_path_factory.mktemp("clean"))
    run_with_retries(store, busy_ticks())
    return snapshot(store)


def test_busy_window_has_every_kind_of_event(clean_run):
    """GIVEN the crash scenario's clean run THEN it really exercises orders, lost sales, alerts and restocks."""
    types = {e["type"] for payload in clean_run[2].values() for e in decode_events(payload)}
    assert {"order", "lost_sale", "inventory", "reorder_alert", "restock", "job_run"} <= types


STORAGE_CALLS = 217  # storage calls of busy_ticks() run once without a crash (checked below); one is the
#                     shard manifest check (handlers/runtime/shards.py), once per store in a process


def test_the_crash_scenario_makes_the_expected_number_of_storage_calls(tmp_path: Path):
    store = CrashingStore(FileStore(tmp_path), crash_at=10**9)
    run_with_retries(store, busy_ticks())
    assert store.calls == STORAGE_CALLS


@pytest.mark.parametrize("crash_at", range(1, STORAGE_CALLS + 1))
def test_crash_before_any_storage_call_then_retry_equals_one_clean_run(crash_at, clean_run, tmp_path: Path):
    """GIVEN a process that dies before its n-th storage call WHEN the tick is retried and the
    schedule goes on THEN state and logs are byte-identical to a run that never crashed."""
    store = CrashingStore(FileStore(tmp_path), crash_at)
    run_with_retries(store, busy_ticks())
    assert store.calls >= crash_at  # the crash really happened
    parts, history, logs = snapshot(FileStore(tmp_path))
    assert sorted(logs) == sorted(clean_run[2])
    assert logs == clean_run[2]
    assert history == clean_run[1]
    assert parts == clean_run[0]


def test_crash_after_commit_leaves_the_log_to_the_next_invocation(tmp_path: Path):
    """GIVEN a crash right after the state commit (before the log write) WHEN any later invocation
    runs THEN the promised log object is written by it, exactly once."""
    store = FileStore(tmp_path)
    runtime = Runtime(store=store, catalog=BUSY_CATALOG, clock=zero_clock)
    invoke("order_tick", event_at(START.replace(hour=12)), runtime)
    # calls of an order tick: read (hot; never the forecast part; its base is known to this process),
    # matches (outbox), put_once (the hot part's delta), write (commit), put_once (log)
    crashing = CrashingStore(FileStore(tmp_path), crash_at=5)
    with pytest.raises(Crash):
        invoke("order_tick", event_at(START.replace(hour=12, minute=1)),
               Runtime(store=crashing, catalog=BUSY_CATALOG, clock=zero_clock))
    assert len(list(store.list("logs/"))) == 1
    invoke("restock", event_at(START.replace(hour=12, minute=2)), runtime)
    keys = list(store.list("logs/"))
    assert len(keys) == 3 and any("order_tick-20260105T120100Z" in k for k in keys)


def test_handlers_racing_on_one_store_lose_nothing(tmp_path: Path):
    """GIVEN the four handlers invoked concurrently from separate store handles WHEN they race
    THEN every tick is applied once and the stock ledger balances."""
    ticks = busy_ticks(30)
    by_handler: dict[str, list] = {}
    for name, moment in ticks:
        by_handler.setdefault(name, []).append(moment)
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        runtime = Runtime(store=FileStore(tmp_path), catalog=BUSY_CATALOG)
        try:
            for moment in by_handler[name]:
                invoke(name, event_at(moment), runtime)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(name,)) for name in by_handler]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    store = FileStore(tmp_path)
    state, _ = load_state(store)
    applied = {name: int(state.invocations[i]) for i, name in enumerate(("order_tick", "restock", "forecast", "alert"))}
    assert applied == {name: len(moments) for name, moments in by_handler.items()} | {
        name: 0 for name in ("order_tick", "restock", "forecast", "alert") if name not in by_handler}
    np.testing.assert_array_equal(state.on_hand, state.initial + state.received - state.shipped)
    logged = [e for k in store.list("logs/") for e in decode_events(store.get(k))]
    assert sum(e["quantity"] for e in logged if e["type"] == "order") == state.shipped.sum()
    assert len(list(store.list("logs/"))) == len(ticks)


class InterleavingStore:
    """Delegates to a store; before its first compare-and-swap write, ``meanwhile()`` runs (another
    writer commits), so that write really loses the race."""

    def __init__(self, inner, meanwhile) -> None:
        self.inner, self.meanwhile, self.url = inner, meanwhile, inner.url

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def write(self, key, data, *, etag):
        if self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile()
        return self.inner.write(key, data, etag=etag)


def test_a_lost_compare_and_swap_is_counted_in_the_state_and_the_job_run_event(tmp_path: Path):
    """GIVEN an alert whose first commit loses to an order tick committed in between WHEN it retries
    THEN it commits once, and its conflict is counted: 1 in its job_run event and in the state's
    conflicts counter of alert (0 for the others), and in its result."""
    store = FileStore(tmp_path)
    runtime = Runtime(store=store, catalog=BUSY_CATALOG, clock=zero_clock)
    noon = START.replace(hour=12)
    invoke("order_tick", event_at(noon), runtime)
    racing = InterleavingStore(FileStore(tmp_path), lambda: invoke("order_tick", event_at(noon + timedelta(minutes=1)),
                                                                   runtime))
    result = invoke("alert", event_at(noon + timedelta(minutes=1)), Runtime(store=racing, catalog=BUSY_CATALOG,
                                                                             clock=zero_clock))
    assert result["status"] == "applied" and result["conflicts"] == 1
    state, _ = load_state(store)
    assert state.conflicts == {"order_tick": 0, "restock": 0, "forecast": 0, "alert": 1}
    [run] = [e for e in decode_events(store.get(result["log_key"])) if e["type"] == "job_run"]
    assert run["conflicts"] == 1
    assert int(state.invocations[3]) == 1
