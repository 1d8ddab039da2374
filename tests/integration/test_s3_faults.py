"""Faults on a real S3 API server (moto): a crash before every storage call of a busy schedule,
and the server unreachable mid-run then back — each compared with a clean run, byte for byte."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config

from handlers.errors import StorageError
from handlers.runtime import layout
from handlers.runtime.invoke import Runtime, invoke
from handlers.storage.s3 import S3Store
from tests.support.crash import BUSY_CATALOG, Crash, CrashingStore, busy_ticks, snapshot
from tests.support.ticks import event_at, zero_clock

TICKS = busy_ticks(8)  # every handler: 13 ticks, 2 restocks, a forecast and an alert


def s3_store(moto_s3, url: str | None = None, endpoint: str | None = None) -> S3Store:
    bucket = (url or moto_s3.bucket_url()).removeprefix("s3://").strip("/")
    client = boto3.session.Session().client(
        "s3",
        region_name=moto_s3.region,
        endpoint_url=endpoint or moto_s3.endpoint_url,
        config=Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=2, read_timeout=10),
    )
    return S3Store(bucket, client=client)


def listing(store: S3Store) -> dict[str, tuple[int, str]]:
    """Every object of the bucket by its size and ETag (moto's: the MD5 of its bytes), in one LIST."""
    return {found.key: (found.size, found.tag) for found in store.scan("")}


def run_with_retries(make_store, ticks, after_tick=None) -> int:
    """Invoke each tick; on a crash retry it from a fresh store handle (as Lambda would). After a crash,
    run one more tick (a new process's first after its retry) and stop. ``after_tick(i)`` is called
    after tick i. Returns the number of storage calls of the first handle."""
    store = make_store()
    first, crashed_in = store, None
    for i, (name, moment) in enumerate(ticks):
        while True:
            try:
                invoke(name, event_at(moment), Runtime(store=store, catalog=BUSY_CATALOG, clock=zero_clock))
                break
            except Crash:  # a new process: it knows nothing of the old one's
                layout.forget()
                store = make_store.fresh()
                crashed_in = i
        if after_tick:
            after_tick(i)
        if crashed_in is not None and i > crashed_in:
            break
    layout.forget()
    return first.calls


def test_crash_before_every_s3_call_then_retry_equals_a_clean_run(moto_s3):
    """GIVEN the busy schedule on S3 WHEN the process dies before its n-th S3 call, for every n, and the
    tick is retried (and the new process runs the next tick) THEN the state and log objects equal the
    clean run's at that tick: the same keys, each with the same size and MD5. (Each crash run stops one tick after its crash: the ticks
    after it are a new process's, as after any crash; tests/test_runtime.py runs every crash point to
    the end of its schedule on file://.)"""
    clean = s3_store(moto_s3)
    expected: dict[int, object] = {}

    class Counting:
        def __call__(self):
            return CrashingStore(clean, crash_at=10**9)

    calls = run_with_retries(Counting(), TICKS, after_tick=lambda i: expected.__setitem__(i, listing(clean)))
    assert calls > 40 and len(expected) == len(TICKS)
    for crash_at in range(1, calls + 1):
        target = s3_store(moto_s3)
        ran: list[int] = []

        class Crashing:
            def __init__(self, target=target, crash_at=crash_at):
                self.target, self.crash_at = target, crash_at

            def __call__(self):
                return CrashingStore(self.target, self.crash_at)

            def fresh(self):
                return CrashingStore(self.target, crash_at=10**9)

        assert run_with_retries(Crashing(), TICKS, after_tick=ran.append) >= crash_at  # the crash really happened
        assert listing(target) == expected[ran[-1]], f"crash before call {crash_at}, compared after tick {ran[-1]}"


class Link:
    """A TCP forwarder to the S3 server that can be cut (listener closed, connections reset) and
    restored on the same port: the server keeps its data, as S3 does through a network outage."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.connections: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._serve()

    def _serve(self) -> None:
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.listener.close()
        for conn in self.connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        self.connections.clear()

    def restore(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self._serve()


@pytest.fixture
def link(moto_s3) -> Iterator[Link]:
    port = int(moto_s3.endpoint_url.rsplit(":", 1)[1].strip("/"))
    forwarder = Link(port)
    yield forwarder
    forwarder.cut()


@pytest.mark.parametrize("outage_at", [2, 7])
def test_s3_unreachable_mid_run_then_back_loses_and_duplicates_nothing(moto_s3, link: Link, outage_at: int):
    """GIVEN the busy schedule through a link to S3 WHEN the link goes down for 4 ticks THEN each of them
    fails with one StorageError line naming the bucket and key (nothing half-applied); redelivered once
    the link is back, the result equals a clean run's, byte for byte."""
    clean = s3_store(moto_s3)
    for name, moment in TICKS:
        invoke(name, event_at(moment), Runtime(store=clean, catalog=BUSY_CATALOG, clock=zero_clock))
    url = moto_s3.bucket_url()
    store = s3_store(moto_s3, url, endpoint=f"http://127.0.0.1:{link.port}")
    failed = []
    for i, (name, moment) in enumerate(TICKS):
        if i == outage_at:
            link.cut()
        if i == outage_at + 4:
            link.restore()
            for late_name, late_moment in failed:  # EventBridge's retry, in order
                invoke(late_name, event_at(late_moment), Runtime(store=store, catalog=BUSY_CATALOG, clock=zero_clock))
        try:
            invoke(name, event_at(moment), Runtime(store=store, catalog=BUSY_CATALOG, clock=zero_clock))
        except StorageError as exc:
            assert "\n" not in str(exc) and "s3://" in str(exc)
            failed.append((name, moment))
    assert len(failed) == 4
    assert snapshot(s3_store(moto_s3, url)) == snapshot(clean)


def test_a_huge_statistics_object_is_refused_after_a_ranged_get_of_at_most_the_bound(moto_s3, caplog):
    """GIVEN a forecast-statistics object of 3 MB on S3 WHEN the forecast's statistics are gathered
    THEN the GET asks for a range and S3 sends at most the bound (the largest object this catalog's
    statistics can take) — never the whole object — and the object is refused as damaged."""
    import logging

    from handlers.forecasting.pooled import max_bytes
    from handlers.runtime import pool

    store = s3_store(moto_s3)
    store.put_once(pool.key(100), b"{" + b" " * (3 * 2**20) + b"}")
    sent: list[int] = []
    store.client.meta.events.register("after-call.s3.GetObject", lambda parsed, **_: sent.append(int(parsed["ContentLength"])))
    warehouses = [w.id for w in BUSY_CATALOG.warehouses]
    with caplog.at_level(logging.WARNING, logger="stockpulse"):
        assert pool.gather(store, 1, 100, warehouses=warehouses) is None
    assert sent and max(sent) <= max_bytes(warehouses) + 1 < 2**20
    assert "state/pool/100.json: damaged forecast statistics (more than the" in caplog.text
