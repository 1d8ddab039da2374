"""Reliability figures for the README: concurrent deliveries of the same ticks, and how long a push
to a Pushgateway that dribbles its answer really takes with a total budget.

    python benchmarks/reliability.py [--processes 8] [--minutes 60]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from handlers.errors import ConflictError
from handlers.runtime.invoke import Runtime, invoke, load_state
from handlers.storage.file import FileStore
from tests.support.crash import BUSY_CATALOG, busy_ticks
from tests.support.ticks import event_at


class CountingStore:
    """Counts the compare-and-swap writes that lost."""

    def __init__(self, inner: FileStore) -> None:
        self.inner, self.url, self.conflicts, self.writes = inner, inner.url, 0, 0

    def write(self, key, data, *, etag):
        self.writes += 1
        try:
            return self.inner.write(key, data, etag=etag)
        except ConflictError:
            self.conflicts += 1
            raise

    def __getattr__(self, name):
        return getattr(self.inner, name)


def deliver(root: str, minutes: int, queue) -> None:
    store = CountingStore(FileStore(root))
    runtime = Runtime(store=store, catalog=BUSY_CATALOG)
    statuses = Counter(invoke(name, event_at(moment), runtime)["status"] for name, moment in busy_ticks(minutes))
    queue.put((statuses, store.conflicts, store.writes))


def concurrency(processes: int, minutes: int) -> None:
    root = tempfile.mkdtemp()
    queue = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=deliver, args=(root, minutes, queue)) for _ in range(processes)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    results = [queue.get() for _ in workers]
    for w in workers:
        w.join()
    seconds = time.perf_counter() - started
    statuses = sum((r[0] for r in results), Counter())
    conflicts, writes = sum(r[1] for r in results), sum(r[2] for r in results)
    state, _ = load_state(FileStore(root))
    ticks = len(busy_ticks(minutes))
    print(
        f"{processes} processes x {ticks} ticks = {processes * ticks} deliveries in {seconds:.1f} s: "
        f"{statuses['applied']} applied, {statuses['skipped']} skipped as already applied; "
        f"state counts {int(state.invocations.sum())} invocations; "
        f"{conflicts} of {writes} compare-and-swap writes lost ({conflicts / max(writes, 1):.0%}) and were retried"
    )


class Dribbler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 10_000:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass


def push_budget() -> None:
    from prometheus_client import CollectorRegistry
    from prometheus_client import Counter as PromCounter

    from handlers.telemetry.publisher import _push

    server = ThreadingHTTPServer(("127.0.0.1", 0), Dribbler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    registry = CollectorRegistry()
    PromCounter("x", "x", registry=registry).inc()
    for budget in (0.5, 1.0, 5.0):
        started = time.perf_counter()
        try:
            _push(f"http://127.0.0.1:{server.server_address[1]}", budget, "bench", registry)
            outcome = "answered"
        except OSError as exc:
            outcome = type(exc).__name__
        print(
            f"push to a server answering one byte per 50 ms, budget {budget:g} s: gave up after "
            f"{time.perf_counter() - started:.2f} s ({outcome})"
        )
    server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--minutes", type=int, default=60)
    args = parser.parse_args()
    push_budget()
    concurrency(args.processes, args.minutes)


if __name__ == "__main__":
    main()
