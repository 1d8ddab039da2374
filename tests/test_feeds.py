"""A shop's own feed: every line exactly once, late and bad lines counted, backorders, receipts, counts
(handlers/runtime/feeds.py, handlers/model/feeding.py, docs/feeds.md)."""

from __future__ import annotations

import gzip
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from handlers.model.catalog import Catalog, parse_catalog
from handlers.model.logs import decode_events
from handlers.runtime import feeds
from handlers.runtime.feeds import Feeds
from handlers.runtime.invoke import Runtime, invoke, load_state
from handlers.storage.file import FileStore
from tests.support.feeds import csv_bytes, line, ndjson, put
from tests.support.ticks import SMALL_CATALOG, START, event_at, zero_clock

T0 = START + timedelta(hours=10)  # a Monday, 10:00 UTC


@pytest.fixture
def catalog() -> Catalog:
    return parse_catalog(SMALL_CATALOG, source="small.yaml")  # P-1, P-2 x W-A, W-B; 60 on hand each


class Shop:
    """A state store, the shop's feed stores, and order ticks minute by minute."""

    def __init__(self, root: Path, catalog: Catalog, kinds: tuple[str, ...] = ("orders",), lateness: float = 3600.0):
        self.store = FileStore(root / "store")
        self.feed = {kind: FileStore(root / kind) for kind in kinds}
        self.catalog = catalog
        self.runtime = Runtime(store=self.store, catalog=catalog, clock=zero_clock, feeds=Feeds(self.feed, max_lateness=lateness))

    def tick(self, moment, handler: str = "order_tick") -> dict:
        return invoke(handler, event_at(moment), self.runtime)

    def state(self):
        return load_state(self.store, self.catalog)[0]

    def series(self, product: str = "P-1", warehouse: str = "W-A") -> int:
        return self.catalog.series_product_ids.index(product) * 2 + ["W-A", "W-B"].index(warehouse)

    def events(self, kind: str | None = None) -> list[dict]:
        found = [e for key in sorted(self.store.list("logs/order_tick/")) for e in decode_events(self.store.get(key))]
        return [e for e in found if kind is None or e["type"] == kind]

    def counters(self, feed: str = "orders") -> dict:
        return self.state().feed_counters.get(feed, {})


def test_each_line_applies_once_whatever_is_delivered_twice(tmp_path: Path, catalog):
    """GIVEN order lines WHEN the same object is delivered twice, re-uploaded under another key, and a
    line repeated in a third object THEN each line changes stock once; the repeats are counted as
    duplicates, and on hand equals the initial stock less the distinct orders."""
    shop = Shop(tmp_path, catalog)
    shop.tick(T0)  # the store starts at T0
    first = [line("a1", T0 + timedelta(seconds=30), quantity=5), line("a2", T0 + timedelta(seconds=90), quantity=3)]
    put(shop.feed["orders"], T0, "one.ndjson", ndjson(first))
    assert shop.tick(T0 + timedelta(minutes=2))["lines_applied"] == 2
    put(shop.feed["orders"], T0, "copy.ndjson", ndjson(first))  # the same lines under another key
    put(shop.feed["orders"], T0, "three.ndjson.gz", ndjson([first[0], line("a3", T0 + timedelta(minutes=2, seconds=5))]), zipped=True)
    result = shop.tick(T0 + timedelta(minutes=3))
    assert result["lines_applied"] == 1 and result["lines_refused"] == 3
    for minute in (4, 5):
        assert shop.tick(T0 + timedelta(minutes=minute))["lines_applied"] == 0  # nothing read again
    state = shop.state()
    assert state.on_hand[shop.series()] == 60 - 5 - 3 - 1
    assert shop.counters() == {"applied": 3, "duplicate": 3, "newest": (T0 + timedelta(minutes=2, seconds=5)).timestamp()}
    orders = shop.events("order")
    assert [e["line_id"] for e in orders] == ["a1", "a2", "a3"]
    assert len({e["event_id"] for e in orders}) == 3
    assert [e["line_id"] for e in shop.events("feed_rejected")] == ["a1", "a2", "a1"]


def test_a_late_line_applies_in_the_next_tick_and_a_too_late_one_is_refused(tmp_path: Path, catalog):
    """GIVEN minutes already applied WHEN a line for one of them arrives THEN the next tick applies it
    and counts it late; a line older than the lateness horizon before them is refused and counted."""
    shop = Shop(tmp_path, catalog, lateness=1800.0)
    shop.tick(T0)
    shop.tick(T0 + timedelta(hours=1))
    put(
        shop.feed["orders"],
        T0 + timedelta(hours=1),
        "late.ndjson",
        ndjson(
            [
                line("late", T0 + timedelta(minutes=50), quantity=2),  # 10 min before the minutes applied
                line("too-late", T0 + timedelta(minutes=10), quantity=4),  # 50 min before: beyond 30 min
            ]
        ),
    )
    result = shop.tick(T0 + timedelta(hours=1, minutes=1))
    assert (result["lines_applied"], result["lines_late"], result["lines_refused"]) == (1, 1, 1)
    assert shop.state().on_hand[shop.series()] == 58
    assert shop.counters() == {"applied": 1, "late": 1, "too_late": 1, "newest": (T0 + timedelta(minutes=50)).timestamp()}
    (order,) = shop.events("order")
    assert order["line_id"] == "late" and order["late"] is True
    (refused,) = shop.events("feed_rejected")
    assert refused["outcome"] == "too_late" and refused["line_id"] == "too-late"


def test_bad_lines_are_named_by_key_and_line_and_the_rest_applies(tmp_path: Path, catalog):
    """GIVEN an object with malformed lines, an unknown product and a quantity of 0 THEN the good lines
    apply, and each bad one is counted and logged with the object's key and its line number."""
    shop = Shop(tmp_path, catalog)
    shop.tick(T0)
    rows = [
        line("ok", T0 + timedelta(seconds=10)),
        line("zero", T0 + timedelta(seconds=10), quantity=0),
        line("ghost", T0 + timedelta(seconds=10), product="NOPE"),
    ]
    data = ndjson(rows[:1]) + b"{not json\n" + ndjson(rows[1:])
    key = put(shop.feed["orders"], T0, "mixed.ndjson", data)
    result = shop.tick(T0 + timedelta(minutes=1))
    assert (result["lines_applied"], result["lines_refused"]) == (1, 3)
    refused = {(e["key"], e["line"], e["outcome"]) for e in shop.events("feed_rejected")}
    assert refused == {(key, 2, "bad"), (key, 3, "bad"), (key, 4, "not_in_catalog")}
    assert shop.counters()["bad"] == 2 and shop.counters()["not_in_catalog"] == 1


def test_a_damaged_object_is_skipped_counted_once_and_read_again_when_it_changes(tmp_path: Path, catalog):
    """GIVEN a truncated gzip object THEN it is named in one event, counted once however many ticks
    list it, and applied when the shop rewrites it whole."""
    shop = Shop(tmp_path, catalog)
    shop.tick(T0)
    whole = gzip.compress(ndjson([line("g1", T0 + timedelta(seconds=5), quantity=7)]), mtime=0)
    key = put(shop.feed["orders"], T0, "cut.ndjson.gz", whole[:-6])
    for minute in (1, 2, 3):
        shop.tick(T0 + timedelta(minutes=minute))
    assert shop.counters() == {"objects_damaged": 1}
    (damaged,) = shop.events("feed_rejected")
    assert damaged["key"] == key and "truncated gzip" in damaged["reason"]
    shop.feed["orders"].replace(key, whole)  # the shop uploads it again
    assert shop.tick(T0 + timedelta(minutes=4))["lines_applied"] == 1
    assert shop.state().on_hand[shop.series()] == 53


def test_an_order_beyond_on_hand_is_backordered_and_shipped_first_from_the_next_receipt(tmp_path: Path, catalog):
    """GIVEN 60 on hand WHEN 100 are ordered THEN 60 ship and 40 are backordered (on hand 0, never
    negative); a receipt of 50 ships the 40 first and leaves 10; the ledger balances throughout."""
    shop = Shop(tmp_path, catalog, kinds=("orders", "receipts"))
    shop.tick(T0)
    put(shop.feed["orders"], T0, "big.csv", csv_bytes([line("big", T0 + timedelta(seconds=20), quantity=100)]))
    result = shop.tick(T0 + timedelta(minutes=1))
    assert (result["units_shipped"], result["units_backordered"]) == (60, 40)
    i = shop.series()
    state = shop.state()
    assert (state.on_hand[i], state.backorder[i], state.backordered[i]) == (0, 40, 40)
    put(shop.feed["receipts"], T0, "in.ndjson", ndjson([line("r1", T0 + timedelta(minutes=1, seconds=10), quantity=50)]))
    shop.tick(T0 + timedelta(minutes=2))
    state = shop.state()
    assert (state.on_hand[i], state.backorder[i], state.shipped[i], state.received[i]) == (10, 0, 100, 50)
    assert (state.on_hand == state.initial + state.received + state.returned + state.adjusted - state.shipped).all()
    (receipt,) = shop.events("receipt")
    assert (receipt["received_quantity"], receipt["backorder_filled"], receipt["new_inventory"]) == (50, 40, 10)


def test_a_return_adds_stock_and_is_not_demand(tmp_path: Path, catalog):
    shop = Shop(tmp_path, catalog)
    shop.tick(T0)
    put(
        shop.feed["orders"],
        T0,
        "r.ndjson",
        ndjson([line("o1", T0 + timedelta(seconds=5), quantity=4), line("ret1", T0 + timedelta(seconds=6), quantity=1, type="return")]),
    )
    shop.tick(T0 + timedelta(minutes=1))
    state = shop.state()
    i = shop.series()
    assert (state.on_hand[i], state.returned[i], state.today_hours[i].sum()) == (57, 1, 4)


def test_a_count_sets_on_hand_as_of_its_time_also_when_it_comes_late(tmp_path: Path, catalog):
    """GIVEN a count of 30 taken at 10:05 that arrives at 10:30, after orders of 10:10 and 10:20 were
    applied THEN on hand is 30 less those orders, and the difference is one adjustment event."""
    shop = Shop(tmp_path, catalog, kinds=("orders", "counts"))
    shop.tick(T0)
    put(
        shop.feed["orders"],
        T0,
        "o.ndjson",
        ndjson([line("o1", T0 + timedelta(minutes=10), quantity=2), line("o2", T0 + timedelta(minutes=20), quantity=3)]),
    )
    shop.tick(T0 + timedelta(minutes=25))
    assert shop.state().on_hand[shop.series()] == 55
    count = line("c1", T0 + timedelta(minutes=5), quantity=None)
    del count["quantity"]
    put(shop.feed["counts"], T0 + timedelta(minutes=30), "count.ndjson", ndjson([{**count, "on_hand": 30}]))
    shop.tick(T0 + timedelta(minutes=31))
    state = shop.state()
    i = shop.series()
    assert state.on_hand[i] == 30 - 2 - 3 and state.adjusted[i] == 25 - 55
    (adjustment,) = shop.events("adjustment")
    assert (adjustment["counted"], adjustment["expected"], adjustment["difference"]) == (30, 60, -30)
    assert (state.on_hand == state.initial + state.received + state.returned + state.adjusted - state.shipped).all()


def test_a_store_remembers_line_ids_only_within_the_lateness_horizon(tmp_path: Path, catalog):
    """GIVEN a tick every 10 minutes for 5 hours with a 1 h lateness horizon THEN the state references
    only the journals of the last partition hours, the store holds no others, and a copy of a line
    older than the horizon is refused as too late, not applied twice."""
    shop = Shop(tmp_path, catalog)
    shop.tick(T0)
    old = line("old", T0 + timedelta(minutes=1))
    put(shop.feed["orders"], T0, "old.ndjson", ndjson([old]))
    for step in range(1, 31):
        moment = T0 + timedelta(minutes=10 * step)
        put(shop.feed["orders"], moment, f"o{step}.ndjson", ndjson([line(f"l{step}", moment - timedelta(minutes=1))]))
        shop.tick(moment)
    state = shop.state()
    written = [float(w) for _, w in state.feed_journals]
    assert min(written) >= state.orders_through - (Feeds({}).partition_hours + 2) * 3600
    assert sorted(k for k, _ in state.feed_journals) == sorted(shop.store.list(feeds.JOURNAL_PREFIX))
    put(shop.feed["orders"], T0 + timedelta(minutes=300), "again.ndjson", ndjson([old]))
    shop.tick(T0 + timedelta(minutes=301))
    assert shop.counters()["too_late"] == 1 and shop.counters()["applied"] == 31
    assert np.asarray(shop.state().shipped).sum() == 31


def test_a_sharded_feed_equals_an_unsharded_one_series_by_series(tmp_path: Path):
    """GIVEN 24 products in 3 shards and one order feed WHEN each shard applies it THEN per series the
    stock, backorders and demand equal an unsharded store's, every event is the same, and a line of a
    product in no shard is refused once (by the shard its id hashes to), not by every shard."""
    from handlers.runtime.invoke import invoke_all
    from tests.support.catalogs import make_catalog

    catalog = make_catalog(24)
    feed = FileStore(tmp_path / "orders")
    ids = [p.id for p in catalog.products]
    rows = [
        line(
            f"l{n}",
            T0 + timedelta(minutes=1 + n % 9, seconds=n % 60),
            product=ids[n % len(ids)],
            warehouse=catalog.warehouses[n % len(catalog.warehouses)].id,
            quantity=1 + n % 5,
        )
        for n in range(120)
    ] + [line("ghost", T0 + timedelta(minutes=2), product="NO-SUCH", warehouse=catalog.warehouses[0].id)]
    put(feed, T0, "all.ndjson", ndjson(rows))
    results = {}
    for shards in (1, 3):
        store = FileStore(tmp_path / f"store-{shards}")
        runtime = Runtime(store=store, catalog=catalog, clock=zero_clock, num_shards=shards, feeds=Feeds({"orders": feed}))
        for minute in range(0, 11):
            invoke_all("order_tick", event_at(T0 + timedelta(minutes=minute)), runtime)
        state, _ = load_state(store, catalog)
        events = sorted(
            (e for key in store.list("logs/") for e in decode_events(store.get(key)) if e["type"] != "job_run"), key=lambda e: e["event_id"]
        )
        results[shards] = state, events
    (whole, whole_events), (sharded, sharded_events) = results[1], results[3]
    for name in ("on_hand", "shipped", "backorder", "backordered", "today_hours", "today_oos"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(sharded, name), err_msg=name)
    assert whole_events == sharded_events
    assert sharded.feed_counters["orders"]["not_in_catalog"] == whole.feed_counters["orders"]["not_in_catalog"] == 1
    assert sharded.feed_counters["orders"]["applied"] == 120


def test_a_journal_holding_another_journals_bytes_is_damage_named_in_one_line(tmp_path: Path, catalog):
    """GIVEN a store whose journals are content-addressed WHEN one journal's bytes are found under another's
    name (a copy gone wrong) THEN a cold process's next order tick refuses it in one line naming the key,
    and nothing is committed (was: its line ids and objects trusted silently). Control: untouched, a cold
    process's tick is applied."""
    from handlers.errors import StorageError
    from handlers.runtime import layout

    for swapped in (True, False):
        shop = Shop(tmp_path / str(swapped), catalog)
        shop.tick(T0)
        for minute in (1, 2):
            put(shop.feed["orders"], T0, f"m{minute}.ndjson", ndjson([line(f"l{minute}", T0 + timedelta(seconds=60 * minute - 5))]))
            shop.tick(T0 + timedelta(minutes=minute))
        keys = sorted(key for key, _ in shop.state().feed_journals)
        assert len(keys) >= 2
        if swapped:
            (shop.store.root / keys[0]).write_bytes((shop.store.root / keys[-1]).read_bytes())
        before = shop.store.read("state/state.bin").etag
        layout.forget()
        feeds._journals.clear()
        if not swapped:
            assert shop.tick(T0 + timedelta(minutes=3))["status"] == "applied"
            continue
        with pytest.raises(StorageError, match=rf"^{keys[0]}: damaged — its content's SHA-256") as refused:
            shop.tick(T0 + timedelta(minutes=3))
        assert "\n" not in str(refused.value) and shop.store.read("state/state.bin").etag == before


class _RacesBeforeJournal:
    """A store that, on the first read of a feed journal, lets other order ticks commit first."""

    def __init__(self, inner: FileStore, race) -> None:
        self.inner, self.url, self.race = inner, inner.url, race

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def get(self, key: str) -> bytes:
        if key.startswith(feeds.JOURNAL_PREFIX) and self.race is not None:
            race, self.race = self.race, None
            race()
        return self.inner.get(key)


def test_an_order_tick_whose_journals_newer_ticks_pruned_reads_the_state_again(tmp_path: Path, catalog):
    """GIVEN an order tick that has read state/state.bin WHEN, before it reads the journals that state
    references, order ticks hours later commit and prune those journals THEN it reads the state again and
    is applied over the minutes since (was: 'missing — restore it from a backup'); every line once."""
    from handlers.runtime import layout

    shop = Shop(tmp_path, catalog, lateness=600.0)
    shop.tick(T0)
    put(shop.feed["orders"], T0, "first.ndjson", ndjson([line("first", T0 + timedelta(seconds=30))]))
    shop.tick(T0 + timedelta(minutes=1))
    referenced = [key for key, _ in shop.state().feed_journals]

    def hours_later() -> None:
        for step in range(1, 29):
            moment = T0 + timedelta(minutes=1 + 10 * step)
            put(shop.feed["orders"], moment, f"o{step}.ndjson", ndjson([line(f"l{step}", moment - timedelta(seconds=5))]))
            assert invoke("order_tick", event_at(moment), shop.runtime)["status"] == "applied"

    layout.forget()
    feeds._journals.clear()
    slow = Runtime(
        store=_RacesBeforeJournal(shop.store, hours_later), catalog=catalog, clock=zero_clock, feeds=Feeds(shop.feed, max_lateness=600.0)
    )
    moment = T0 + timedelta(minutes=1 + 10 * 29)
    put(shop.feed["orders"], moment, "last.ndjson", ndjson([line("last", moment - timedelta(seconds=5))]))
    result = invoke("order_tick", event_at(moment), slow)
    assert not any(shop.store.exists(key) for key in referenced)  # the race really pruned what it had read
    assert result["status"] == "applied"
    assert shop.counters()["applied"] == 30 and int(np.asarray(shop.state().shipped).sum()) == 30


class _RacesAtJournalPrune:
    """A store that runs ``race`` once, when the invocation lists the journals to prune them (after its
    commit): another process's order tick commits between that commit and the prune."""

    def __init__(self, inner: FileStore, race) -> None:
        self.inner, self.url, self.race = inner, inner.url, race

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def list(self, prefix: str):
        if prefix == feeds.JOURNAL_PREFIX and self.race is not None:
            race, self.race = self.race, None
            race()
        return self.inner.list(prefix)


def test_a_journal_prune_never_deletes_the_journal_a_concurrent_tick_commits(tmp_path: Path, catalog):
    """GIVEN a quiet feed, so that an order tick's state references no journal any more WHEN, between
    that tick's commit and its prune, another process's order tick applies a new line and commits its
    journal THEN the prune leaves that journal: the newest state's journals all exist and a fresh process
    applies the next tick (was: with no journal referenced the prune deleted every journal, the new one
    too, and every later tick failed on a journal 'missing — restore it from a backup')."""
    from handlers.runtime import layout

    shop = Shop(tmp_path, catalog, lateness=600.0)
    shop.tick(T0)
    put(shop.feed["orders"], T0, "first.ndjson", ndjson([line("first", T0 + timedelta(seconds=30))]))
    shop.tick(T0 + timedelta(minutes=1))
    for step in range(1, 24):  # quiet: the first line's journal leaves the lateness horizon
        shop.tick(T0 + timedelta(minutes=1 + 10 * step))
    assert shop.state().feed_journals  # still referenced: the next quiet tick drops it
    later = []

    def another_process_applies_a_line() -> None:
        moment = T0 + timedelta(minutes=1 + 10 * 25)
        put(shop.feed["orders"], moment, "late-comer.ndjson", ndjson([line("next", moment - timedelta(seconds=5))]))
        layout.forget()
        feeds._journals.clear()
        later.append(invoke("order_tick", event_at(moment), shop.runtime))

    racing = Runtime(
        store=_RacesAtJournalPrune(shop.store, another_process_applies_a_line),
        catalog=catalog,
        clock=zero_clock,
        feeds=Feeds(shop.feed, max_lateness=600.0),
    )
    result = invoke("order_tick", event_at(T0 + timedelta(minutes=1 + 10 * 24)), racing)
    assert result["status"] == "applied" and later and later[0]["status"] == "applied"  # the race ran
    referenced = [key for key, _ in shop.state().feed_journals]
    assert referenced and all(shop.store.exists(key) for key in referenced), referenced
    layout.forget()
    feeds._journals.clear()
    assert shop.tick(T0 + timedelta(minutes=1 + 10 * 26))["status"] == "applied"
    assert shop.counters()["applied"] == 2
