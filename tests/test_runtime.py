"""Exactly once: redeliveries, crashes between any two storage calls, and concurrent handlers."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from handlers.model.logs import decode_events
from handlers.runtime import layout
from handlers.runtime.invoke import Runtime, invoke, load_state
from handlers.storage.file import FileStore
from handlers.storage.memory import MemoryStore
from tests.support.crash import BUSY_CATALOG, Crash, CrashingStore, busy_ticks, snapshot
from tests.support.ticks import START, event_at, zero_clock


def run_with_retries(store, ticks) -> None:
    """Invoke each tick; when the process 'crashes', retry the same tick (as Lambda would)."""
    for name, moment in ticks:
        while True:
            try:
                invoke(name, event_at(moment), Runtime(store=store, catalog=BUSY_CATALOG, clock=zero_clock))
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


def counted_run(store) -> CrashingStore:
    """The busy schedule run once without a crash, every storage call counted."""
    layout.forget()
    counting = CrashingStore(store, crash_at=0)
    run_with_retries(counting, busy_ticks())
    layout.forget()
    return counting


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One crash point before each storage call of a clean run, as many as that run makes (counted in
    memory when the tests are collected: the protocol's calls do not depend on the backend)."""
    if "crash_at" in metafunc.fixturenames:
        metafunc.parametrize("crash_at", range(1, counted_run(MemoryStore()).calls + 1))


def test_the_crash_scenario_calls_every_storage_operation_the_same_on_any_backend(tmp_path: Path):
    """GIVEN the busy schedule WHEN it runs on file:// and in memory THEN it makes the same storage
    calls, and they include every operation the runtime uses but ``delete`` (no day closes and no
    older generation exists in 24 minutes: tests/test_layout.py crashes the prunes): a crash before
    each of them is tested below."""
    on_file, in_memory = counted_run(FileStore(tmp_path)), counted_run(MemoryStore())
    assert on_file.operations == in_memory.operations
    assert {"read", "write", "put_once", "exists", "matches", "get", "list"} <= set(on_file.operations)


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
        invoke("order_tick", event_at(START.replace(hour=12, minute=1)), Runtime(store=crashing, catalog=BUSY_CATALOG, clock=zero_clock))
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
        name: 0 for name in ("order_tick", "restock", "forecast", "alert") if name not in by_handler
    }
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
    racing = InterleavingStore(FileStore(tmp_path), lambda: invoke("order_tick", event_at(noon + timedelta(minutes=1)), runtime))
    result = invoke("alert", event_at(noon + timedelta(minutes=1)), Runtime(store=racing, catalog=BUSY_CATALOG, clock=zero_clock))
    assert result["status"] == "applied" and result["conflicts"] == 1
    state, _ = load_state(store)
    assert state.conflicts == {"order_tick": 0, "restock": 0, "forecast": 0, "alert": 1}
    [run] = [e for e in decode_events(store.get(result["log_key"])) if e["type"] == "job_run"]
    assert run["conflicts"] == 1
    assert int(state.invocations[3]) == 1
