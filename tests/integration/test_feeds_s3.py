"""A shop's feeds and stock counts on a real S3 API (moto server): the same lines give the same stock
and the same events as on file://, duplicates, late lines, bad lines and damaged objects included; and a
crash before any storage call of a feed run, then its retry, equals one clean run (tests/test_feed_crashes.py
runs the longer matrix on file://)."""

from __future__ import annotations

import gzip
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from handlers.model.catalog import parse_catalog
from handlers.model.logs import decode_events
from handlers.runtime import feeds as feeds_io
from handlers.runtime import layout
from handlers.runtime.feeds import Feeds
from handlers.runtime.invoke import Runtime, invoke, load_state
from handlers.storage.base import Store
from handlers.storage.file import FileStore
from handlers.storage.location import open_store
from tests.support.crash import Crash, Crashes, snapshot
from tests.support.feeds import line, ndjson, put
from tests.support.ticks import SMALL_CATALOG, START, event_at, zero_clock

CATALOG = parse_catalog(SMALL_CATALOG, source="small.yaml")
T0 = START + timedelta(hours=10)
M = timedelta(minutes=1)


def scenario(store: Store, feeds: dict[str, Store]) -> tuple[Any, list[dict[str, Any]]]:
    runtime = Runtime(store=store, catalog=CATALOG, clock=zero_clock, feeds=Feeds(feeds))
    invoke("order_tick", event_at(T0), runtime)
    put(
        feeds["orders"],
        T0,
        "a.ndjson.gz",
        ndjson([line("a1", T0 + M, quantity=70), line("a2", T0 + 2 * M, quantity=3, product="P-2", warehouse="W-B")]),
        zipped=True,
    )
    put(
        feeds["orders"],
        T0,
        "a-again.csv",
        b"line_id,time,product_id,warehouse_id,quantity\n" + f"a1,{(T0 + M).isoformat()},P-1,W-A,70\n".encode() + b"bad,line\n",
    )
    put(feeds["orders"], T0, "cut.ndjson.gz", gzip.compress(ndjson([line("z", T0 + M)]))[:-3])
    put(feeds["receipts"], T0, "r.ndjson", ndjson([line("r1", T0 + 4 * M, quantity=20)]))
    for minute in range(1, 6):
        invoke("restock", event_at(T0 + minute * M), runtime)
        invoke("order_tick", event_at(T0 + minute * M), runtime)
    count = {k: v for k, v in line("c1", T0 + 2 * M, product="P-2", warehouse="W-B").items() if k != "quantity"}
    put(feeds["counts"], T0 + 6 * M, "count.ndjson", ndjson([{**count, "on_hand": 40}]))
    put(feeds["orders"], T0 + 6 * M, "late.ndjson", ndjson([line("late", T0 + 3 * M, quantity=2)]))
    for minute in range(6, 9):
        invoke("order_tick", event_at(T0 + minute * M), runtime)
    layout.forget()
    feeds_io._journals.clear()
    state, _ = load_state(store, CATALOG)
    events = [e for key in sorted(store.list("logs/order_tick/")) for e in decode_events(store.get(key))]
    return state, events


def test_feeds_on_s3_give_what_they_give_on_file(moto_s3, tmp_path: Path):
    """GIVEN the same feed lines WHEN applied from S3 objects (state and feeds in buckets of a real S3
    API) and from files THEN stock, backorders, adjustments, counters and every event are the same."""
    client = moto_s3.client
    s3_store = open_store(moto_s3.bucket_url("shop"), s3_client=client)
    s3_feeds = {kind: open_store(moto_s3.bucket_url(kind), s3_client=client) for kind in ("orders", "receipts", "counts")}
    on_s3, s3_events = scenario(s3_store, s3_feeds)
    file_feeds: dict[str, Store] = {kind: FileStore(tmp_path / kind) for kind in ("orders", "receipts", "counts")}
    on_file, file_events = scenario(FileStore(tmp_path / "store"), file_feeds)
    for name in ("on_hand", "shipped", "received", "backorder", "backordered", "adjusted", "today_hours", "today_oos"):
        np.testing.assert_array_equal(getattr(on_s3, name), getattr(on_file, name), err_msg=name)
    assert on_s3.feed_counters == on_file.feed_counters
    assert on_s3.feed_counters["orders"] == {
        "applied": 3,
        "late": 1,
        "duplicate": 1,
        "bad": 1,
        "objects_damaged": 1,
        "newest": (T0 + 3 * M).timestamp(),
    }
    strip = ("key",)  # S3 keys carry the bucket's prefix the same way: compare what the lines did
    assert [{k: v for k, v in e.items() if k not in strip} for e in s3_events] == [
        {k: v for k, v in e.items() if k not in strip} for e in file_events
    ]
    assert [e["type"] for e in s3_events if e["type"] in ("adjustment", "receipt")] == ["receipt", "adjustment"]


def counted(line_id: str, at: Any, **where: str) -> dict[str, Any]:
    """A stock count's line: an order line's fields but its quantity (the count says ``on_hand``)."""
    return {k: v for k, v in line(line_id, at, **where).items() if k != "quantity"}


def crash_run(stores: dict[str, Store], crashes: Crashes) -> None:
    """Two order ticks on the shop's feeds (the first makes the state), objects arriving before each (a
    duplicate object, a bad line, a receipt; then a stock count and a late line); when the process dies before a storage call
    of any store (the state's or a feed's), a new one (it forgets what it read) retries the tick."""

    def runtime() -> Runtime:
        feeds = Feeds({kind: crashes.wrap(stores[kind]) for kind in ("orders", "receipts", "counts")})
        return Runtime(store=crashes.wrap(stores["store"]), catalog=CATALOG, clock=zero_clock, feeds=feeds)

    arrivals = {
        1: [
            ("orders", "a.ndjson", ndjson([line("a1", T0 + M, quantity=70), line("a2", T0 + M, product="P-2", warehouse="W-B")])),
            ("orders", "a-again.ndjson", ndjson([line("a1", T0 + M, quantity=70)]) + b"{bad\n"),
            ("receipts", "r.ndjson", ndjson([line("r1", T0 + M, quantity=20)])),
        ],
        2: [
            ("counts", "c.ndjson", ndjson([{**counted("c1", T0 + M, product="P-2", warehouse="W-B"), "on_hand": 40}])),
            ("orders", "late.ndjson", ndjson([line("late", T0 + M, quantity=2)])),
        ],
    }
    current = runtime()
    for minute in (1, 2):
        for kind, name, body in arrivals[minute]:
            put(stores[kind], T0 + minute * M, name, body)
        while True:
            try:
                invoke("order_tick", event_at(T0 + minute * M), current)
                break
            except Crash:
                layout.forget()
                feeds_io._journals.clear()
                current = runtime()
    layout.forget()
    feeds_io._journals.clear()


def test_a_crash_before_any_s3_call_of_a_feed_run_then_retry_equals_one_clean_run(moto_s3):
    """GIVEN a feed run with its state and its three feeds in buckets of a real S3 API WHEN the process
    dies before its n-th storage call (any store's), for every n, and a new one retries THEN the state,
    the journals and the log objects equal one clean run's byte for byte: every line applied once."""

    def buckets() -> dict[str, Store]:
        return {kind: open_store(moto_s3.bucket_url(kind), s3_client=moto_s3.client) for kind in ("store", "orders", "receipts", "counts")}

    clean, counting = buckets(), Crashes(crash_at=0)
    crash_run(clean, counting)
    expected = snapshot(clean["store"])
    assert any(key.startswith("state/feed/") for key in expected[1])  # journals were written
    state, _ = load_state(clean["store"], CATALOG)
    assert state.feed_counters["orders"]["applied"] == 3 and state.feed_counters["orders"]["duplicate"] == 1
    assert state.feed_counters["orders"]["late"] == 1 and state.feed_counters["counts"]["applied"] == 1
    assert counting.calls > 15
    for crash_at in range(1, counting.calls + 1):
        stores, crashes = buckets(), Crashes(crash_at)
        crash_run(stores, crashes)
        assert crashes.calls >= crash_at  # the crash really happened
        assert snapshot(stores["store"]) == expected, f"crash before call {crash_at}"
