"""What checking content-addressed objects against their names costs a cold process (issue 19, item 4).

    python benchmarks/verified_reads.py                  # 100,000 series; about a minute
    python benchmarks/verified_reads.py --series 10000

A store at ``--series`` series (N/10 products x 10 warehouses, benchmarks/scale.py's catalog) with
112 days of demand history, one forecast and one alert — what a cold invocation finds. Then, each
the median of ``--runs``: the size of the hot part's base and of the history object; reading them
(the GET of the file backend), SHA-256 of their bytes (what every read of such an object now adds),
and unpacking them (the decompression every read already paid).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.scale import prepare, write_catalog  # noqa: E402


def _median(runs: int, work: Callable[..., object], *args: object, **kwargs: object) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work(*args, **kwargs)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args(argv)

    from handlers.model.state import STATE_KEY, unpack
    from handlers.storage.location import open_store

    with tempfile.TemporaryDirectory() as tmp:
        catalog = Path(tmp) / "catalog.yaml"
        write_catalog(catalog, args.series)
        url = prepare(Path(tmp) / "store", catalog)
        store = open_store(url)
        header = unpack(store.read(STATE_KEY).data, key=STATE_KEY)[0]  # type: ignore[union-attr]
        print(f"{args.series} series, median of {args.runs} runs")
        for what, key in (("base", header["base"]), ("history", header["history"])):
            data = store.get(key)
            read = _median(args.runs, store.get, key)
            digest = _median(args.runs, hashlib.sha256, data)
            unpacked = _median(args.runs, unpack, data, key=key)
            print(
                f"{what:8s} {len(data) / 1e6:7.2f} MB  read {read * 1000:7.1f} ms  sha256 {digest * 1000:6.1f} ms  "
                f"unpack {unpacked * 1000:7.1f} ms  (sha256 adds {digest / (read + unpacked):.0%} to read + unpack)"
            )


if __name__ == "__main__":
    main()
