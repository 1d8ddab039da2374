"""The state's objects (handlers/runtime/layout.py): each invocation writes only the part it changed."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from handlers.errors import StorageError
from handlers.model.state import RATE_DECAY, STATE_KEY, pack, unpack
from handlers.runtime import layout
from handlers.runtime.invoke import Runtime, invoke, load_state
from handlers.storage.file import FileStore
from tests.support.crash import BUSY_CATALOG
from tests.support.ticks import START, event_at, zero_clock

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
    from handlers.runtime.layout import HISTORY_PREFIX

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
    from handlers.runtime.layout import HISTORY_PREFIX

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


# -- the hot part's base and deltas -------------------------------------------------------------


def _hot_objects(store: FileStore, kind: str) -> list[str]:
    return sorted(k for k in store.list(layout.HOT_PREFIX) if f"-{kind}-" in k)


def _fresh_process_state(store: FileStore):
    layout.forget()
    state, _ = load_state(store)
    return state


def test_an_order_tick_writes_what_changed_and_a_new_base_every_max_chain_commits(tmp_path):
    """GIVEN a store WHEN order ticks run THEN each commit writes one delta object (the elements that
    changed), every MAX_CHAIN-th a new base; a new process reads base + deltas back to exactly the
    state the committing process holds."""
    store = FileStore(tmp_path)
    for minute in range(1, layout.MAX_CHAIN + 3):
        invoke("order_tick", event_at(NOON + timedelta(minutes=minute)), _runtime(store))
        if minute == 4:
            warm, _ = load_state(store)
            cold = _fresh_process_state(store)
            for name in layout.SERIES_FIELDS:
                assert np.array_equal(getattr(warm, name), getattr(cold, name), equal_nan=True), name
    assert len(_hot_objects(store, "base")) == 2  # the first commit's, then after MAX_CHAIN deltas
    assert len(_hot_objects(store, "delta")) == layout.MAX_CHAIN  # commits 2 .. MAX_CHAIN + 1
    warm, _ = load_state(store)
    cold = _fresh_process_state(store)
    assert cold.orders_through == warm.orders_through
    for name in layout.SERIES_FIELDS:
        assert np.array_equal(getattr(warm, name), getattr(cold, name), equal_nan=True), name


def test_a_delta_is_proportional_to_the_series_that_changed(tmp_path):
    """GIVEN a state of 20 000 series WHEN a commit changes k of them THEN its delta object grows
    with k and stays far below the base (the hot part no longer rewrites every series)."""
    from handlers.model.catalog import parse_catalog

    lines = ["seed: 1", "products:"] + [
        f"  - {{id: P{i:05d}, base_demand_per_day: 3, lead_time_hours: 24, pack_size: 1}}" for i in range(10_000)
    ]
    lines += ["warehouses:", "  - {id: W1, timezone: UTC}", "  - {id: W2, timezone: UTC}"]
    catalog = parse_catalog("\n".join(lines) + "\n", source="big.yaml")
    store = FileStore(tmp_path)
    loaded = layout.fresh(catalog, NOON.timestamp())
    layout.commit(store, loaded, loaded.state, "hot")
    sizes = {}
    for k in (10, 100, 1000):
        loaded = layout.load(store, catalog, at=0.0, history=False, forecast=False)
        changed = np.array(loaded.state.on_hand, copy=True)
        rng = np.random.default_rng(k)
        changed[rng.choice(len(changed), k, replace=False)] -= rng.integers(1, 30, size=k)
        before = set(_hot_objects(store, "delta"))
        layout.commit(store, loaded, loaded.state.replace(on_hand=changed), "hot")
        (key,) = set(_hot_objects(store, "delta")) - before
        sizes[k] = len(store.get(key))
    # about 3 bytes a changed series (its position's gap and its new value, compressed), against
    # 8 bytes a series for the whole array
    assert sizes[10] < sizes[100] < sizes[1000] < 1000 * 4 + 200
    assert sizes[1000] > 5 * sizes[10] and sizes[1000] < catalog.num_series * 8 / 20
    assert _fresh_process_state(store).on_hand.tolist() == changed.tolist()


def test_a_new_base_deletes_the_generations_before_the_one_it_replaced(tmp_path):
    """GIVEN three generations of the hot part WHEN the third base is committed THEN the first
    generation's objects are deleted, the second's kept (a reader of the previous hot part may
    still be reading them)."""
    store = FileStore(tmp_path)
    bases: list[str] = []
    minute = 0
    while len(bases) < 3 and minute < 4 * layout.MAX_CHAIN:
        minute += 1
        invoke("order_tick", event_at(NOON + timedelta(minutes=minute)), _runtime(store))
        found = _hot_objects(store, "base")
        if found and found[-1] not in bases:
            bases.append(found[-1])
    assert len(bases) == 3
    left = _hot_objects(store, "base")
    assert left == bases[1:]
    oldest_kept = bases[1].split("/")[-1].split("-")[0]
    assert all(k.split("/")[-1].split("-")[0] >= oldest_kept for k in store.list(layout.HOT_PREFIX))
    assert _fresh_process_state(store).orders_through == (NOON + timedelta(minutes=minute)).timestamp()


def test_a_reader_whose_objects_were_pruned_reads_the_hot_part_again(tmp_path):
    """GIVEN a reader that got an older hot part whose objects a newer commit has pruned WHEN it loads
    THEN it reads the hot part again and gets the newest state; a hot part whose own objects are gone
    is an error that names the object."""
    store = FileStore(tmp_path)
    for minute in range(1, 3 * layout.MAX_CHAIN):
        invoke("order_tick", event_at(NOON + timedelta(minutes=minute)), _runtime(store))
    newest = store.read(STATE_KEY)

    class StaleOnce:
        """Serves the first hot part a commit of two generations ago had written."""

        def __init__(self, inner: FileStore, old: bytes) -> None:
            self.inner, self.old, self.url = inner, old, inner.url

        def read(self, key: str):
            if key == STATE_KEY and self.old is not None:
                data, self.old = self.old, None
                return type(newest)(data, "old")
            return self.inner.read(key)

        def __getattr__(self, name: str):
            return getattr(self.inner, name)

    # an older hot part: the same but for a base a later commit has pruned
    header, arrays, outbox = unpack(newest.data, key=STATE_KEY)
    header.update(base=f"{layout.HOT_PREFIX}00000000001-base-{'0' * 24}.bin", chain=[])
    layout.forget()
    loaded = layout.load(StaleOnce(store, pack(header, arrays, outbox)), None, at=0.0)
    assert loaded is not None and loaded.etags["hot"] == newest.etag
    for key in _hot_objects(store, "delta"):
        store.delete(key)
    layout.forget()
    with pytest.raises(StorageError, match=r"state/hot/.*referenced by state/state.bin but missing"):
        layout.load(store, None, at=0.0)


def test_a_schema_2_hot_part_still_loads_and_the_next_commit_writes_a_base(tmp_path):
    """GIVEN a hot part written before bases and deltas (schema 2: every array inline) WHEN it is
    loaded THEN it gives the same state, and the next commit moves it to a base."""
    store = FileStore(tmp_path)
    for minute in range(1, 4):
        invoke("order_tick", event_at(NOON + timedelta(minutes=minute)), _runtime(store))
    expected, _ = load_state(store)
    found = store.read(STATE_KEY)
    header, arrays, outbox = unpack(found.data, key=STATE_KEY)
    arrays.update(layout._series(store, header.pop("base"), tuple(map(tuple, header.pop("chain"))), found.etag))
    header.pop("base_bytes")
    header["schema"] = 2
    store.write(STATE_KEY, pack(header, arrays, outbox), etag=found.etag)
    for key in list(store.list(layout.HOT_PREFIX)):
        store.delete(key)
    state = _fresh_process_state(store)
    for name in layout.SERIES_FIELDS:
        assert np.array_equal(getattr(state, name), getattr(expected, name), equal_nan=True), name
    invoke("order_tick", event_at(NOON + timedelta(minutes=5)), _runtime(store))
    assert len(_hot_objects(store, "base")) == 1


def test_the_lazy_order_rate_is_the_minute_by_minute_ewma():
    rng = np.random.default_rng(0)
    sales = rng.poisson(0.05, size=(600, 30)) * (rng.random((600, 1)) < 0.5)
    rate, lazy, at = np.zeros(30), np.zeros(30), np.zeros(30, dtype=np.int64)
    for minute, sold in enumerate(sales, start=1):
        rate = rate * RATE_DECAY + sold * (1 - RATE_DECAY)
        hit = np.flatnonzero(sold)
        lazy[hit] = lazy[hit] * RATE_DECAY ** (minute - at[hit]) + sold[hit] * (1 - RATE_DECAY)
        at[hit] = minute
    np.testing.assert_allclose(lazy * RATE_DECAY ** (600 - at), rate, rtol=1e-12, atol=1e-300)


def _hot_header(store: FileStore) -> dict:
    return unpack(store.read(STATE_KEY).data, key=STATE_KEY)[0]


def test_a_base_stamped_by_a_forecast_ahead_is_never_pruned_by_the_next_base(tmp_path):
    """GIVEN a forecast 5 h ahead of the order clock (an accepted lead) and an alert (which reads the
    forecast part) writing a new base WHEN the order ticks after it fill the chain and write the next
    base THEN every object the hot part references exists, a cold process loads the state, and the
    stamps of the bases never go backwards (was: the order tick's base was stamped before the
    alert's, and its prune deleted it)."""
    store = FileStore(tmp_path)
    minute = 0

    def order_tick() -> dict:
        nonlocal minute
        minute += 1
        return invoke("order_tick", event_at(NOON + timedelta(minutes=minute)), _runtime(store))

    order_tick()
    while len(_hot_header(store)["chain"]) < layout.MAX_CHAIN:
        order_tick()
    ahead = NOON + timedelta(hours=5)
    assert invoke("forecast", event_at(ahead), _runtime(store))["status"] == "applied"
    invoke("alert", event_at(NOON + timedelta(minutes=minute)), _runtime(store))
    bases = [_hot_header(store)["base"]]
    assert layout._key_stamp(bases[0]) == ahead.timestamp()  # the alert's new base, stamped by the forecast
    while len(bases) < 3:
        order_tick()
        if _hot_header(store)["base"] != bases[-1]:
            bases.append(_hot_header(store)["base"])
        header = _hot_header(store)
        for key in (header["history"], header["base"], *(key for key, _ in header["chain"])):
            assert store.exists(key), key
    stamps = [layout._key_stamp(key) for key in bases]
    assert stamps == sorted(stamps)
    assert _fresh_process_state(store).orders_through == (NOON + timedelta(minutes=minute)).timestamp()


def test_a_prune_never_deletes_what_the_new_or_the_replaced_hot_part_references(tmp_path):
    """GIVEN hot objects whose names say they are older than the base the commit had loaded (a store
    written before stamps were kept from going backwards) WHEN the prune after a new base runs THEN
    the new base and the replaced generation stay, whatever their names; only unreferenced older
    objects go. Control: an unreferenced object with the same stamp is deleted."""
    store = FileStore(tmp_path)
    key = lambda stamp, kind, tag: f"{layout.HOT_PREFIX}{stamp:011d}-{kind}-{tag * 24}.bin"  # noqa: E731
    loaded_base, loaded_delta, new_base = key(500, "base", "a"), key(400, "delta", "b"), key(300, "base", "c")
    garbage = key(300, "delta", "d")
    for name in (loaded_base, loaded_delta, new_base, garbage):
        store.put_once(name, b"x")
    fresh = layout.fresh(BUSY_CATALOG, NOON.timestamp())
    loaded = layout.Loaded(
        fresh.state, fresh.etags, fresh.outboxes, None, fresh.history, base=loaded_base, chain=((loaded_delta, 1),), base_bytes=1
    )
    pruned = layout.prune_hot(store, loaded, layout.Committed(base=new_base))
    assert pruned == 1 and sorted(store.list(layout.HOT_PREFIX)) == sorted([new_base, loaded_delta, loaded_base])


class _RacesBeforeHistory:
    """A store that runs ``race`` once, just before the first look at a history object: between an
    invocation's read of state/state.bin and its read of the history that state references."""

    def __init__(self, inner: FileStore, race) -> None:
        self.inner, self.url, self.race = inner, inner.url, race

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def exists(self, key: str) -> bool:
        if key.startswith(layout.HISTORY_PREFIX) and self.race is not None:
            race, self.race = self.race, None
            race()
        return self.inner.exists(key)


def _two_days(store: FileStore) -> None:
    """Order ticks through 2026-01-06T23:00Z: the hot part references the history of 2026-01-05."""
    for moment in (START + timedelta(minutes=1), START + timedelta(days=1, minutes=1), START + timedelta(hours=47)):
        invoke("order_tick", event_at(moment), _runtime(store))


def test_a_forecast_whose_history_two_closing_days_replaced_reads_the_hot_part_again(tmp_path):
    """GIVEN a forecast that has read state/state.bin WHEN, before it reads the history object that
    state references, two order ticks close two days (the second one's prune deletes that object)
    THEN the forecast reads the hot part again and is applied with the newest history (was: 'missing
    — restore it from a backup', and a retry succeeded)."""
    store = FileStore(tmp_path)
    _two_days(store)
    first = unpack(store.read(STATE_KEY).data, key=STATE_KEY)[0]["history"]
    pruned = []

    def two_days_close() -> None:
        for day in (2, 3):
            result = invoke("order_tick", event_at(START + timedelta(days=day, minutes=1)), _runtime(store))
            pruned.append(result.get("history_pruned"))

    layout.forget()
    racing = _RacesBeforeHistory(store, two_days_close)
    result = invoke("forecast", event_at(START + timedelta(hours=47)), _runtime(racing))
    assert len(pruned) == 2 and not store.exists(first)  # the race really deleted what it had read
    assert result["status"] == "applied"
    state = _fresh_process_state(store)
    assert state.applied["forecast"] == (START + timedelta(hours=47)).timestamp()
    assert state.history_day * 86400 == (START + timedelta(days=3)).timestamp()


def test_a_history_object_missing_from_the_newest_hot_part_is_damage_named_in_one_line(tmp_path):
    """Control: GIVEN the newest hot part's history object deleted WHEN a forecast or a cold load
    reads it THEN a StorageError names the object and says what to do (no endless re-reading)."""
    store = FileStore(tmp_path)
    _two_days(store)
    ref = unpack(store.read(STATE_KEY).data, key=STATE_KEY)[0]["history"]
    store.delete(ref)
    layout.forget()
    pattern = rf"{ref}: referenced by state/state.bin but missing from .* restore it from a backup"
    with pytest.raises(StorageError, match=pattern) as refused:
        invoke("forecast", event_at(START + timedelta(hours=47)), _runtime(store))
    assert "\n" not in str(refused.value)
    with pytest.raises(StorageError, match=pattern):
        load_state(store)


class _RacesAtHistoryPrune:
    """A store that runs ``race`` once, when the invocation lists the history objects to prune them
    (after its commit): another process's commit lands between that commit and the prune."""

    def __init__(self, inner: FileStore, race) -> None:
        self.inner, self.url, self.race = inner, inner.url, race

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def list(self, prefix: str):
        if prefix == layout.HISTORY_PREFIX and self.race is not None:
            race, self.race = self.race, None
            race()
        return self.inner.list(prefix)


def test_a_history_prune_never_deletes_the_history_a_concurrent_commit_of_a_later_day_references(tmp_path):
    """GIVEN an order tick that closes a day WHEN, between its commit and its prune, another process's
    order tick (catching up) closes the next day and commits THEN the prune leaves that commit's
    history object: a fresh process loads the newest state, and every history object it references
    exists (was: the prune kept only its own two objects and deleted the newer one the live state
    references — every cold start then failed with 'missing — restore it from a backup')."""
    store = FileStore(tmp_path)
    _two_days(store)
    later = []

    def next_day_commits() -> None:
        layout.forget()  # another process
        later.append(invoke("order_tick", event_at(START + timedelta(days=3, minutes=1)), _runtime(store)))

    racing = _RacesAtHistoryPrune(store, next_day_commits)
    result = invoke("order_tick", event_at(START + timedelta(days=2, minutes=1)), _runtime(racing))
    assert result["status"] == "applied" and later and later[0]["status"] == "applied"  # the race ran
    referenced = unpack(store.read(STATE_KEY).data, key=STATE_KEY)[0]["history"]
    assert store.exists(referenced), referenced
    state = _fresh_process_state(store)
    assert state.history_day * 86400 == (START + timedelta(days=3)).timestamp()


def test_a_history_prune_deletes_only_unkept_objects_of_days_before_the_loaded_one(tmp_path):
    """Unit: objects of earlier days (and those named without a day) go; the kept ones and any of the
    loaded day or later stay, whatever the keep set says."""
    store = FileStore(tmp_path)
    names = {day: f"{layout.HISTORY_PREFIX}{day:08d}-{day:032x}.bin" for day in (20455, 20456, 20457, 20458)}
    legacy = f"{layout.HISTORY_PREFIX}{'ab' * 16}.bin"
    for name in (*names.values(), legacy):
        store.put_once(name, b"x")
    deleted = layout.prune_history(store, keep={names[20456], names[20457]}, older_than=20456)
    assert deleted == 2
    assert sorted(store.list(layout.HISTORY_PREFIX)) == sorted([names[20456], names[20457], names[20458]])
