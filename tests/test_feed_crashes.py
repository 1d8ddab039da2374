"""Exactly once on a shop's feed: a crash before any storage call of a feed run — the state's or
the feed's — then the retry, equals one clean run byte for byte (the journals included)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from handlers.model.catalog import parse_catalog
from handlers.runtime import feeds, layout
from handlers.runtime.feeds import Feeds
from handlers.runtime.invoke import Runtime, invoke
from handlers.storage.file import FileStore
from tests.support.crash import Crash, Crashes, snapshot
from tests.support.feeds import line, ndjson, put
from tests.support.ticks import SMALL_CATALOG, START, event_at, zero_clock

CATALOG = parse_catalog(SMALL_CATALOG, source="small.yaml")
T0 = START + timedelta(hours=10)
MINUTES = 12

pytestmark = pytest.mark.slow  # ~270 crash points, each a run and its retry (tests/test_runtime.py's matrix is in --quick)


def shop_feed(root: Path) -> None:
    """Orders beyond on hand, a return, a duplicate object, a late line, a bad line and a receipt."""
    orders, receipts = FileStore(root / "orders"), FileStore(root / "receipts")
    minute = timedelta(minutes=1)
    put(
        orders,
        T0,
        "a.ndjson",
        ndjson(
            [
                line("a1", T0 + minute, quantity=40),
                line("a2", T0 + 2 * minute, quantity=30),
                line("a3", T0 + 2 * minute, product="P-2", warehouse="W-B", quantity=5),
            ]
        ),
    )
    put(orders, T0, "a-copy.ndjson", ndjson([line("a1", T0 + minute, quantity=40)]))
    put(
        orders,
        T0,
        "b.ndjson",
        ndjson([line("b1", T0 + 6 * minute, quantity=2, type="return"), line("b2", T0 + 3 * minute, quantity=1)]) + b"{bad\n",
    )
    put(receipts, T0, "r.ndjson", ndjson([line("r1", T0 + 8 * minute, quantity=25)]))


def ticks() -> list[tuple[str, object]]:
    out = []
    for m in range(0, MINUTES + 1):
        moment = T0 + timedelta(minutes=m)
        out += [("restock", moment), ("order_tick", moment)] + ([("alert", moment)] if m % 4 == 0 else [])
    return out


def run(root: Path, crashes: Crashes | None) -> None:
    """The schedule; when the process 'crashes', a new one (it forgets what it read) retries the tick."""

    def runtime() -> Runtime:
        wrap = (lambda store: store) if crashes is None else crashes.wrap
        stores = {kind: wrap(FileStore(root / kind)) for kind in ("orders", "receipts")}
        return Runtime(store=wrap(FileStore(root / "store")), catalog=CATALOG, clock=zero_clock, feeds=Feeds(stores))

    current = runtime()
    for name, moment in ticks():
        while True:
            try:
                invoke(name, event_at(moment), current)
                break
            except Crash:
                layout.forget()
                feeds._journals.clear()
                current = runtime()


def calls(root: Path) -> int:
    shop_feed(root)
    crashes = Crashes(crash_at=0)
    run(root, crashes)
    layout.forget()
    feeds._journals.clear()
    return crashes.calls


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    shop_feed(root)
    layout.forget()
    feeds._journals.clear()
    run(root, None)
    return snapshot(FileStore(root / "store"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "crash_at" in metafunc.fixturenames:
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:
            metafunc.parametrize("crash_at", range(1, calls(Path(scratch)) + 1))


def test_the_clean_run_applies_the_lines_once(clean):
    parts, objects, logs = clean
    assert any(key.startswith("state/feed/") for key in objects)  # journals were written and kept
    assert len(logs) > MINUTES


def test_a_crash_before_any_storage_call_of_a_feed_run_then_retry_equals_one_clean_run(crash_at, clean, tmp_path: Path):
    shop_feed(tmp_path)
    crashes = Crashes(crash_at)
    run(tmp_path, crashes)
    assert crashes.calls >= crash_at  # the crash really happened
    parts, objects, logs = snapshot(FileStore(tmp_path / "store"))
    assert logs == clean[2]
    assert objects == clean[1]
    assert parts == clean[0]
