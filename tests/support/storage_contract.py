"""The storage contract, run on every backend: tests/test_storage.py (file://),
tests/test_storage_memory.py (the in-memory test double) and tests/integration/test_storage_s3.py
(s3:// on a real moto server) import these tests and supply
the fixtures ``store`` and ``store_factory`` (a new handle on the same location each call, as a
second process would have)."""

from __future__ import annotations

import threading

import pytest

from handlers.errors import ConflictError
from handlers.model.logs import decode_events
from handlers.runtime.invoke import Runtime, invoke
from tests.support.ticks import START, event_at


def test_reading_a_missing_key_gives_none(store):
    """GIVEN an empty store WHEN a key is read THEN there is nothing, not an error."""
    assert store.read("state/state.bin") is None


def test_create_only_if_absent(store):
    """GIVEN a key created with etag=None (If-None-Match: *) WHEN created again THEN the second loses."""
    store.write("state/a", b"one", etag=None)
    with pytest.raises(ConflictError):
        store.write("state/a", b"two", etag=None)
    assert store.read("state/a").data == b"one"


def test_compare_and_swap_at_the_current_etag_and_conflict_when_stale(store):
    """GIVEN a key at etag e1 WHEN written at e1 THEN it moves to e2, and a write at e1 again loses (If-Match)."""
    e1 = store.write("state/a", b"one", etag=None)
    assert store.read("state/a").etag == e1
    e2 = store.write("state/a", b"two", etag=e1)
    assert e2 != e1
    with pytest.raises(ConflictError):
        store.write("state/a", b"three", etag=e1)
    current = store.read("state/a")
    assert (current.data, current.etag) == (b"two", e2)


def test_put_once_writes_exactly_once(store):
    """GIVEN a log object WHEN put twice THEN the first wins, the second reports it existed."""
    assert store.put_once("logs/x/1.ndjson.gz", b"first") is True
    assert store.put_once("logs/x/1.ndjson.gz", b"second") is False
    assert store.get("logs/x/1.ndjson.gz") == b"first"
    assert store.exists("logs/x/1.ndjson.gz") and not store.exists("logs/x/2.ndjson.gz")


def test_list_gives_keys_under_a_prefix_in_order(store):
    """GIVEN objects under two prefixes WHEN one prefix is listed THEN only its keys come back, sorted."""
    for key in ("logs/b/2026/01/02/x", "logs/a/2026/01/01/y", "logs/b/2026/01/01/z", "state/other"):
        store.put_once(key, b"-")
    assert list(store.list("logs/b/")) == ["logs/b/2026/01/01/z", "logs/b/2026/01/02/x"]


def test_scan_gives_each_keys_size_and_a_tag_that_changes_with_its_bytes(store):
    """GIVEN objects under a prefix WHEN scanned THEN each key comes with its size, in key order, the
    same keys as list; an object rewritten with other bytes has another tag, the others keep theirs."""
    store.put_once("feed/2026/01/05/10/b.ndjson", b"12345")
    store.put_once("feed/2026/01/05/10/a.ndjson", b"1")
    store.put_once("other/c", b"-")
    found = list(store.scan("feed/"))
    assert [(f.key, f.size) for f in found] == [("feed/2026/01/05/10/a.ndjson", 1), ("feed/2026/01/05/10/b.ndjson", 5)]
    assert [f.key for f in found] == list(store.list("feed/"))
    store.replace("feed/2026/01/05/10/b.ndjson", b"123456789")
    again = {f.key: f for f in store.scan("feed/")}
    assert again["feed/2026/01/05/10/b.ndjson"].tag != found[1].tag and again["feed/2026/01/05/10/b.ndjson"].size == 9
    assert again["feed/2026/01/05/10/a.ndjson"].tag == found[0].tag


def test_get_prefix_reads_at_most_the_bound(store):
    """GIVEN a write-once object of 10 bytes WHEN read with a bound THEN a bound of 4 gives its first 4
    bytes, a bound beyond its size gives all of it, a missing key gives None (never an error)."""
    store.put_once("state/pool/1.json", b"0123456789")
    assert store.get_prefix("state/pool/1.json", 4) == b"0123"
    assert store.get_prefix("state/pool/1.json", 11) == b"0123456789"
    assert store.get_prefix("state/pool/2.json", 11) is None


def test_delete_removes_a_write_once_object_and_a_missing_one_is_no_error(store):
    """GIVEN a write-once object WHEN deleted THEN it is gone from get, exists and list; deleting it
    again (a retried cleanup) is no error; other objects stay."""
    store.put_once("state/history/a.bin", b"old")
    store.put_once("state/history/b.bin", b"new")
    store.delete("state/history/a.bin")
    store.delete("state/history/a.bin")
    assert not store.exists("state/history/a.bin") and store.get("state/history/b.bin") == b"new"
    assert list(store.list("state/history/")) == ["state/history/b.bin"]
    assert store.put_once("state/history/a.bin", b"again") is True


def test_concurrent_compare_and_swap_loses_no_update(store_factory):
    """GIVEN 4 writers, each with its own handle, incrementing a counter by CAS WHEN they race
    THEN every increment lands exactly once."""
    first = store_factory()
    first.write("state/counter", b"0", etag=None)
    per_writer, conflicts = 15, []

    def writer() -> None:
        store = store_factory()
        done = 0
        while done < per_writer:
            current = store.read("state/counter")
            try:
                store.write("state/counter", str(int(current.data) + 1).encode(), etag=current.etag)
                done += 1
            except ConflictError:
                conflicts.append(1)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert int(first.read("state/counter").data) == 4 * per_writer


def test_redelivered_tick_is_a_no_op_with_one_log_object(store, small_catalog):
    """GIVEN a tick applied once WHEN the same tick is delivered again (new EventBridge id)
    THEN nothing changes and there is exactly one log object."""
    runtime = Runtime(store=store, catalog=small_catalog)
    moment = START.replace(hour=12)
    first = invoke("order_tick", event_at(moment, id="delivery-1"), runtime)
    etag = store.read("state/state.bin").etag
    second = invoke("order_tick", event_at(moment, id="delivery-2"), runtime)
    assert first["status"] == "applied" and second["status"] == "skipped"
    assert store.read("state/state.bin").etag == etag
    keys = list(store.list("logs/"))
    assert keys == [first["log_key"]]
    run = [e for e in decode_events(store.get(keys[0])) if e["type"] == "job_run"]
    assert run[0]["tick_id"] == "delivery-1"
