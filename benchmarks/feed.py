"""What an order tick costs on a shop's order feed (issue #21), on this machine.

    python benchmarks/feed.py                                   # 100k series, 10,000 lines a minute
    python benchmarks/feed.py --series 10000 --runs 3           # a quick look

A store prepared as benchmarks/scale.py prepares one (N/10 products x 10 warehouses, 112 days of
history, a forecast and an alert), then an order feed: every business minute ``--objects`` objects
of ``--lines / --objects`` order lines each (random series, 1-3 units), in the partition of their
minute's hour. The store runs ``--warm-minutes`` order ticks in this process first, so that a timed
tick finds what a live store has: the journals of the last hour (every line id the lateness
horizon keeps). Then ``--runs`` order ticks, each a **fresh process** calling the Lambda entry point
(``handlers.order_tick.handler``, configured by the environment as a function is), measured from
outside: wall time and peak RSS (GNU time). Beside them, in the same run: ``python -c "import numpy"``
as a baseline, and the same tick without a feed (the simulator's demand) for the cost of the feed.

Then the requests a tick makes, counted by a wrapper on both stores (the state's and the feed's), on
the first day and after ``--days`` days of feed (the older days' partitions filled with objects):
what a tick lists and reads must follow the new objects, not the feed's age.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import scale  # noqa: E402  (the repository on sys.path first)

PYTHON = sys.executable
START = scale.START


def write_minute(feed_root: Path, catalog: Any, minute_end: datetime, lines: int, objects: int, rng: Any) -> None:
    """The order lines of the minute ending at ``minute_end``: ``objects`` objects in its hour's partition."""
    products = [p.id for p in catalog.products]
    warehouses = [w.id for w in catalog.warehouses]
    folder = feed_root / minute_end.strftime("%Y/%m/%d/%H")
    folder.mkdir(parents=True, exist_ok=True)
    stamp = minute_end.strftime("%H%M")
    moment = (minute_end - timedelta(seconds=30)).isoformat()
    for k in range(objects):
        count = lines // objects
        p = rng.integers(0, len(products), count)
        w = rng.integers(0, len(warehouses), count)
        q = rng.integers(1, 4, count)
        body = "".join(
            json.dumps(
                {
                    "line_id": f"{stamp}-{k}-{n}",
                    "time": moment,
                    "product_id": products[p[n]],
                    "warehouse_id": warehouses[w[n]],
                    "quantity": int(q[n]),
                }
            )
            + "\n"
            for n in range(count)
        )
        (folder / f"export-{stamp}-{k}.ndjson").write_text(body)


def entry_point(moment: datetime, store: str, catalog: Path, feed: str | None) -> list[str]:
    cmd = scale.entry_point_cmd("order_tick", moment, store, catalog)
    if feed is not None:
        cmd.insert(1, f"STOCKPULSE_ORDERS_URL={feed}")
    return cmd


class Counting:
    """Counts each storage call by (store, operation)."""

    def __init__(self, inner: Any, name: str, calls: Counter[tuple[str, str]]) -> None:
        self.inner, self.url, self.name, self.calls = inner, inner.url, name, calls

    def __getattr__(self, operation: str) -> Any:
        method = getattr(self.inner, operation)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[(self.name, operation)] += 1
            result = method(*args, **kwargs)
            return list(result) if operation in ("list", "scan") else result

        return call


def requests_of_one_tick(store_url: str, feed_url: str, catalog_path: Path, moment: datetime) -> dict[str, int]:
    """The storage calls of one order tick in a fresh process's shoes (nothing materialised)."""
    from handlers.model.events import scheduled_event
    from handlers.runtime import feeds, layout
    from handlers.runtime.catalogs import load_catalog
    from handlers.runtime.feeds import Feeds
    from handlers.runtime.invoke import Runtime, invoke
    from handlers.storage.location import open_store

    layout.forget()
    feeds._journals.clear()
    calls: Counter[tuple[str, str]] = Counter()
    runtime = Runtime(
        store=Counting(open_store(store_url), "state", calls),
        catalog=load_catalog(str(catalog_path)),
        feeds=Feeds({"orders": Counting(open_store(feed_url), "feed", calls)}),
    )
    result = invoke("order_tick", scheduled_event(moment, "order-tick", event_id="count"), runtime)
    assert result["status"] == "applied", result
    return {f"{store} {operation}": n for (store, operation), n in sorted(calls.items())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--lines", type=int, default=10_000, help="order lines per business minute")
    parser.add_argument("--objects", type=int, default=10, help="objects per business minute")
    parser.add_argument("--warm-minutes", type=int, default=60, help="ticks before the timed ones (journals)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--days", type=int, default=30, help="days of feed before the last request count")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args(argv)

    from handlers.model.events import scheduled_event
    from handlers.runtime.catalogs import load_catalog
    from handlers.runtime.feeds import Feeds
    from handlers.runtime.invoke import Runtime, invoke
    from handlers.storage.location import open_store

    work = Path(tempfile.mkdtemp(prefix="feed-bench-"))
    catalog_path = work / "catalog.yaml"
    scale.write_catalog(catalog_path, args.series)
    catalog = load_catalog(str(catalog_path))
    rng = np.random.default_rng(7)
    print(
        f"# {args.series:,} series, {args.lines:,} order lines a minute in {args.objects} objects; "
        f"{os.cpu_count()} cores; commit {scale.commit()}",
        flush=True,
    )
    store = work / "store"
    url = scale.prepare(store, catalog_path)
    plain = work / "plain"
    scale.prepare(plain, catalog_path)  # the same store without a feed: the simulator's tick, for comparison
    feed_root = work / "orders"
    feed_url = f"file://{feed_root}"
    first = START + timedelta(minutes=3)
    runtime = Runtime(store=open_store(url), catalog=catalog, feeds=Feeds({"orders": open_store(feed_url)}))
    for m in range(args.warm_minutes):
        moment = first + timedelta(minutes=m)
        write_minute(feed_root, catalog, moment, args.lines, args.objects, rng)  # a minute's objects, as they arrive
        invoke("order_tick", scheduled_event(moment, "order-tick", event_id=f"warm-{m}"), runtime)
    print(f"# warmed: {args.warm_minutes} ticks of {args.lines:,} lines", flush=True)
    walls, rss, plain_walls, bases = [], [], [], []
    for r in range(args.runs):
        moment = first + timedelta(minutes=args.warm_minutes + r)
        write_minute(feed_root, catalog, moment, args.lines, args.objects, rng)
        wall, peak, code = scale.run(entry_point(moment, url, catalog_path, feed_url))
        assert code == 0
        walls.append(wall)
        rss.append(peak)
        plain_walls.append(scale.run(entry_point(moment, f"file://{plain}", catalog_path, None))[0])
        bases.append(scale.run([PYTHON, "-c", "import numpy"])[0])
    moment = first + timedelta(minutes=args.warm_minutes + args.runs)
    write_minute(feed_root, catalog, moment, args.lines, args.objects, rng)
    day_one = requests_of_one_tick(url, feed_url, catalog_path, moment)
    # the older days of feed: one object an hour in every partition since --days days before
    for hour in range(args.days * 24):
        when = first - timedelta(hours=hour + 2)
        folder = feed_root / when.strftime("%Y/%m/%d/%H")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "old.ndjson").write_text(
            json.dumps(
                {
                    "line_id": f"old-{hour}",
                    "time": when.isoformat(),
                    "product_id": catalog.products[0].id,
                    "warehouse_id": catalog.warehouses[0].id,
                    "quantity": 1,
                }
            )
            + "\n"
        )
    moment = first + timedelta(minutes=args.warm_minutes + args.runs + 1)
    write_minute(feed_root, catalog, moment, args.lines, args.objects, rng)
    later = requests_of_one_tick(url, feed_url, catalog_path, moment)
    figures = {
        "series": args.series,
        "lines_per_minute": args.lines,
        "objects_per_minute": args.objects,
        "wall_s": statistics.median(walls),
        "rss_mb": statistics.median(rss),
        "without_feed_wall_s": statistics.median(plain_walls),
        "import_numpy_s": statistics.median(bases),
        "requests_first_day": day_one,
        f"requests_after_{args.days}_days": later,
        "cores": os.cpu_count(),
    }
    print("\n| order_tick, fresh process (entry point), median of", args.runs, "| wall | peak RSS | x import numpy |")
    print("|---|---|---|---|")
    print(
        f"| on the feed ({args.lines:,} lines in {args.objects} objects) | {figures['wall_s']:.2f} s | "
        f"{figures['rss_mb']:.0f} MB | {figures['wall_s'] / figures['import_numpy_s']:.1f} |"
    )
    print(
        f"| without a feed (simulated demand) | {figures['without_feed_wall_s']:.2f} s | | "
        f"{figures['without_feed_wall_s'] / figures['import_numpy_s']:.1f} |"
    )
    print(f"\n| storage calls of one tick | first day | after {args.days} days of feed |")
    print("|---|---|---|")
    for name in sorted(set(day_one) | set(later)):
        print(f"| {name} | {day_one.get(name, 0)} | {later.get(name, 0)} |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    subprocess.run(["rm", "-rf", str(work)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
