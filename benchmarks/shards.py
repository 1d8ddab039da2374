"""What sharding costs (issue 12, part 3): the forecast's "own" fallback, the pooled fit's one-day lag,
and a 1M-series catalog as shards.

    python benchmarks/shards.py --json shards.json           # about 25 minutes on 2 cores
    python benchmarks/shards.py --skip-timing --json a.json  # 1 and 1b only (no fresh processes)
    python benchmarks/shards.py --quick --json q.json        # a smoke run (< 1 minute; the test runs it)

The live forecast fits its pooled parameters over the whole catalog however it is sharded, from the
sum of every shard's statistics of the day before (handlers/runtime/pool.py); a shard fits on its own series
only when those are missing (``pool: own`` in its result). Data sets: benchmarks/scale.py's generated
catalogs (``write_catalog``, ``history``: Poisson around the catalog's demand, one weekly pattern;
each series' row key is the catalog's ``series_keys``, as in the handler) at 1k and 10k series;
benchmarks/forecasting.py's retail-like generator (per-series weekly profiles, drift, promotions,
stock-outs, launches; products = 10 consecutive series) at 1k and 10k; tiny M5 (../shared/data, 28
items x 10 stores, N <= 4) when present. Holdout: ``--folds`` weekly origins at the end of each
history, 7 days ahead; scored by mean RMSSE and WAPE (handlers/forecasting/scores.py, as in jobs/backtest.py) and
by how often ``mean ± 1.96 std`` holds the actual day (the band safety stock is calibrated on).

1. **The "own" fallback.** What a shard's forecast loses on a day it fits on its own series: for each
   data set and ``N`` shards (products assigned by ``handlers.runtime.shards.shard_of``, every warehouse of a
   product together) the model is fitted separately on each shard (``forecasting.pooled_forecast``
   with no parameters: the staged fit of ``forecasting.forecast``, each series drawing its training
   rows by its own key) and compared with the fit over the whole catalog — which is what the pooled
   fit gives every shard. Reported per ``N``: the relative difference of each series' 7-day forecast
   (sum of the daily means; series whose whole-catalog 7-day forecast is >= 1 unit) and of its 7-day
   spread (root sum of squared daily std) against the whole-catalog fit (median, p95, p99), and the
   holdout accuracy of both. A control row refits the whole catalog with another training-row sample
   (every key mixed with ``OTHER_SAMPLE``): the difference any refit shows. For the generated scale
   catalog also the hour-of-day shares (``planning.hour_shares``, shrunk to the warehouse profile of
   the series it sees, as the fallback does): per series, the share of a day's demand put at other
   hours (total variation distance), median and p99.
1b. **The one-day lag.** The live parameters are fitted from statistics of the history one day
   shorter, computed under the parameters of the day before that (``lagged_params``: a chain of
   ``LAG_CHAIN`` days, one per stage, from nothing fitted — the steady state, checked by a longer
   chain); compared on the same origins with parameters fitted on the same history (the whole-catalog
   fit of 1). Controls: the chain with no lag is the plain fit bit for bit. Also the size of the
   statistics object a forecast of the data set publishes.
2. **1M series as 10 shards** (100k products x 10 warehouses). The catalog is compiled once in
   this process (``handlers.runtime.catalogs``, as the first process that reads the file would); two
   shards get a state with 112 days of history (benchmarks/scale.py ``prepare``, through
   ``ShardStore``); then fresh ``python -m jobs invoke HANDLER --num-shards 10 --shard K``
   processes, wall and peak RSS (GNU time). A store prepared with history has no statistics of the
   day before, so these forecasts run the "own" fallback: the staged fit on up to ``MAX_TRAIN_ROWS``
   training rows of the shard's series, where the pooled path draws only the shard's share of the
   catalog's (``MAX_TRAIN_ROWS`` x shard series / catalog series) but reads every shard's statistics.
   Separately, in fresh processes: reading the shard's compiled sub-catalog (``handlers.runtime.catalogs``,
   what a shard's invocation reads), against reading the whole 1M compiled catalog and splitting it
   (``shards.split``: what ``status``, ``report`` and an invocation without a shard read). The sizes
   of the statistics objects the forecasts published.
3. **Baseline**: benchmarks/scale.py's unsharded 100k store in the same run (``prepare``,
   ``handler_costs``), and the ``python -c "import numpy"`` process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from zoneinfo import ZoneInfo

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import scale
from handlers.forecasting import model as forecasting
from handlers.forecasting import planning
from handlers.forecasting.pooled import own
from handlers.forecasting.scores import rmsse
from handlers.model.bounds import MAX_SERIES
from handlers.model.streams import mix
from handlers.runtime import pool, shards

PYTHON = sys.executable
HORIZON = 7
TINY_M5 = ROOT.parent / "shared" / "data" / "m5_tiny_m5_280series.csv.gz"
TIMED_HANDLERS = ("order_tick", "forecast", "alert")
LAG_CHAIN = 4  # days of statistics a lagged fit reaches back: one per stage (profile, regression, variance, tails)
OTHER_SAMPLE = 0x6F74686572  # the control refit draws its training rows from keys mixed with this


# -- 1. accuracy ---------------------------------------------------------------------------------


@dataclass
class DataSet:
    name: str
    history: np.ndarray  # [S, T] daily demand, NaN before a series starts
    products: list[str]  # product id of every series (what the shard hash sees)
    warehouse: np.ndarray  # warehouse number of every series
    keys: np.ndarray  # uint64 [S]: each series' row key (which training rows it contributes), whatever the split
    hour_profile: np.ndarray | None = None  # [S, 24] UTC hour-of-day counts, for planning.hour_shares
    max_shards: int = 16


def generated(series: int, days: int) -> DataSet:
    """benchmarks/scale.py's catalog and history, plus an hour profile from the simulator's diurnal
    curve in each warehouse's time zone (about ten days of counts)."""
    from handlers.model.demand import DIURNAL
    from handlers.runtime.catalogs import load_catalog

    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "catalog.yaml"
        scale.write_catalog(path, series)
        catalog = load_catalog(str(path))
    offsets = [ZoneInfo(w.timezone).utcoffset(scale.START) for w in catalog.warehouses]
    utc = np.array([np.roll(DIURNAL, -int(o.total_seconds() // 3600)) for o in offsets if o is not None])
    shares = utc / utc.sum(axis=1, keepdims=True)  # [W, 24]: local diurnal curve at UTC hours
    rng = np.random.default_rng(8)
    profile = rng.poisson(10 * catalog.base_demand_per_day[:, None] * shares[catalog.warehouse_index]).astype(float)
    return DataSet(
        f"scale.py catalog, {series:,} series",
        scale.history(catalog, days),
        catalog.series_product_ids,
        catalog.warehouse_index,
        catalog.series_keys,
        profile,
    )


def default_keys(series: int) -> np.ndarray:
    """The row keys ``forecasting.forecast`` gives series 0 .. S - 1 (a catalog's are its ``series_keys``)."""
    return mix(np.arange(series, dtype=np.uint64) + np.uint64(forecasting.SEED))


def retail_like(series: int, days: int) -> DataSet:
    from benchmarks.forecasting import synthetic_retail

    demand, _ = synthetic_retail(series, days, seed=11)
    return DataSet(
        f"retail-like, {series:,} series", demand, [f"R-{i // 10:06d}" for i in range(series)], np.arange(series) % 10, default_keys(series)
    )


def tiny_m5(path: Path) -> DataSet:
    import pandas as pd

    from jobs.backtest import load_matrix

    frame = pd.read_csv(path, usecols=["item_id", "store_id", "date", "value"], dtype=str)
    matrix, names, _ = load_matrix(frame, id_cols=["item_id", "store_id"], date_col="date", value_col="value", freq="D")
    items = [name.split("|")[0] for name in names]
    stores = sorted({name.split("|")[1] for name in names})
    warehouse = np.array([stores.index(name.split("|")[1]) for name in names])
    return DataSet(
        f"tiny M5 ({len(names)} series, {len(set(items))} items x {len(stores)} stores)",
        matrix,
        items,
        warehouse,
        default_keys(len(names)),
        max_shards=4,
    )


def owners(data: DataSet, num_shards: int) -> np.ndarray:
    by_product = {p: shards.shard_of(p, num_shards) for p in dict.fromkeys(data.products)}
    return np.array([by_product[p] for p in data.products])


Fit = tuple[np.ndarray, np.ndarray]  # mean and std [S, HORIZON]
Split = tuple[np.ndarray, np.ndarray]  # (history up to an origin, the HORIZON days after it)


def own_fits(train: np.ndarray, keys: np.ndarray, owner: np.ndarray, num_shards: int) -> Fit:
    """The "own" fallback on every shard: the model fitted separately on each shard's series (the staged
    fit on the shard's own history, what ``forecasting.forecast`` does, with each series' row key).
    ``num_shards`` 1: fitted on the whole catalog."""
    mean, std = np.zeros((train.shape[0], HORIZON)), np.zeros((train.shape[0], HORIZON))
    for k in range(num_shards):
        rows = np.flatnonzero(owner == k)
        if rows.size:
            result = forecasting.pooled_forecast(train[rows], HORIZON, None, keys=keys[rows])[0]
            mean[rows], std[rows] = result.mean, result.std
    return mean, std


def lagged_params(history: np.ndarray, keys: np.ndarray, *, lag: int = 1, days: int = LAG_CHAIN) -> forecasting.Params:
    """The pooled parameters the live forecast uses at the end of ``history``: fitted from the
    statistics of the history ``lag`` day(s) shorter, computed under the parameters fitted the day
    before that, and so on back (handlers/runtime/pool.py). A stage (profile, regression, variance, tails) is
    computed under the stages before it, so ``days`` = 4 links reach the steady state from nothing
    fitted (``Params(series=S)``, a new store's first day). ``lag`` 0 runs every link on the same
    history: the plain staged fit, the control."""
    params = forecasting.Params(series=history.shape[0])
    for back in range(days, 0, -1):
        shorter = history[:, : history.shape[1] - lag * back]
        params = forecasting.fit(forecasting.pooled_forecast(shorter, HORIZON, params, keys=keys)[1])
    return params


def lagged_fit(train: np.ndarray, keys: np.ndarray, *, lag: int = 1, days: int = LAG_CHAIN) -> Fit:
    result = forecasting.pooled_forecast(train, HORIZON, lagged_params(train, keys, lag=lag, days=days), keys=keys)[0]
    return result.mean, result.std


def quantiles(values: np.ndarray) -> dict[str, Any]:
    if not values.size:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "counted": 0}
    p50, p95, p99 = np.quantile(values, [0.5, 0.95, 0.99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "counted": int(values.size)}


def hour_share_difference(data: DataSet, owner: np.ndarray, num_shards: int) -> dict[str, Any]:
    """Per series, the share of a day's demand that the per-shard hour shares put at other hours than
    the whole catalog's (total variation distance: half the sum of absolute differences)."""
    profile = data.hour_profile
    assert profile is not None

    def shares(rows: np.ndarray) -> np.ndarray:
        warehouses = int(data.warehouse.max()) + 1
        state = SimpleNamespace(hour_profile=profile[rows])
        catalog = SimpleNamespace(warehouses=range(warehouses), warehouse_index=data.warehouse[rows])
        return planning.hour_shares(cast(Any, state), cast(Any, catalog))

    whole = shares(np.arange(len(owner)))
    sharded = np.empty_like(whole)
    for k in range(num_shards):
        rows = np.flatnonzero(owner == k)
        if rows.size:
            sharded[rows] = shares(rows)
    return quantiles(0.5 * np.abs(sharded - whole).sum(axis=1))  # share of a day's demand put at other hours


def scores(splits: list[Split], fits: list[Fit]) -> dict[str, float]:
    """Holdout accuracy over the origins: mean RMSSE, WAPE, and how often ``mean ± 1.96 std`` holds the day."""
    errors = np.concatenate([rmsse(train, test, mean) for (train, test), (mean, _) in zip(splits, fits)])
    absolute = sum(float(np.nansum(np.abs(test - mean))) for (_, test), (mean, _) in zip(splits, fits))
    actual = sum(float(np.nansum(test)) for _, test in splits)
    inside = [(np.abs(test - mean) <= forecasting.NORMAL_QUANTILE * std)[np.isfinite(test)] for (_, test), (mean, std) in zip(splits, fits)]
    return {"rmsse": float(np.nanmean(errors)), "wape": absolute / actual, "coverage_95": float(np.concatenate(inside).mean())}


def difference(splits: list[Split], fits: list[Fit], reference: list[Fit]) -> dict[str, Any]:
    """Each series' 7-day forecast and spread against ``reference`` (series whose reference 7-day
    forecast is >= 1 unit), and the holdout scores of ``fits``."""
    mean_diff, std_diff = [], []
    for (mean, std), (mean0, std0) in zip(fits, reference):
        week, week0 = mean.sum(axis=1), mean0.sum(axis=1)
        spread, spread0 = np.sqrt((std**2).sum(axis=1)), np.sqrt((std0**2).sum(axis=1))
        counted = week0 >= 1.0
        mean_diff.append(np.abs(week - week0)[counted] / week0[counted])
        std_diff.append(np.abs(spread - spread0)[counted] / spread0[counted])
    return {"forecast_7d": quantiles(np.concatenate(mean_diff)), "spread_7d": quantiles(np.concatenate(std_diff)), **scores(splits, fits)}


def pool_object_bytes(data: DataSet, train: np.ndarray) -> int:
    """Size of the statistics object a forecast of this data set publishes (handlers/runtime/pool.py
    ``state/pool/<day>.json``): the model's statistics under its pooled parameters and the hour-of-day
    profile summed per warehouse."""
    params = lagged_params(train, data.keys)
    stats = forecasting.pooled_forecast(train, HORIZON, params, keys=data.keys)[1]
    hours = data.hour_profile if data.hour_profile is not None else np.zeros((len(train), 24))
    warehouses = int(data.warehouse.max()) + 1
    return len(own(0, stats, hours, [f"W-{w:02d}" for w in range(warehouses)], data.warehouse).to_bytes())


def accuracy(data: DataSet, counts: list[int], folds: int) -> dict[str, Any]:
    """Per shard count: the "own" fallback's difference from the pooled whole-catalog fit and its holdout
    accuracy; then what the pooled fit's one-day lag costs."""
    length = data.history.shape[1]
    origins = [length - HORIZON * (folds - i) for i in range(folds)]
    splits = [(data.history[:, :o], data.history[:, o : o + HORIZON]) for o in origins]
    whole = [own_fits(train, data.keys, np.zeros(len(train), dtype=np.int64), 1) for train, _ in splits]
    rows = []
    for n in counts:
        owner = owners(data, n)
        sizes = np.bincount(owner, minlength=n)
        started = time.perf_counter()
        fits = [own_fits(train, data.keys, owner, n) for train, _ in splits]
        row = {
            "num_shards": n,
            "shard_series": {"min": int(sizes.min()), "median": float(np.median(sizes)), "max": int(sizes.max())},
            "seconds": time.perf_counter() - started,
            **difference(splits, fits, whole),
        }
        if data.hour_profile is not None:
            row["hour_shares"] = hour_share_difference(data, owner, n)
        rows.append(row)
    other_keys = mix(data.keys ^ np.uint64(OTHER_SAMPLE))
    control = [own_fits(train, other_keys, np.zeros(len(train), dtype=np.int64), 1) for train, _ in splits]
    lagged = [lagged_fit(train, data.keys) for train, _ in splits]
    first = splits[0][0]
    lag = {
        **difference(splits, lagged, whole),
        # controls: every link on the same history is the plain staged fit, bit for bit; a longer
        # chain gives the same parameters as LAG_CHAIN links (the chain has reached its steady state)
        "lag_0_is_the_plain_fit": all(np.array_equal(a, b) for a, b in zip(lagged_fit(first, data.keys, lag=0), whole[0])),
        "longer_chain_is_the_same": _same_params(lagged_params(first, data.keys), lagged_params(first, data.keys, days=LAG_CHAIN + 1)),
        "pool_object_bytes": pool_object_bytes(data, first),
    }
    return {
        "name": data.name,
        "series": int(data.history.shape[0]),
        "products": len(set(data.products)),
        "folds": folds,
        "whole": scores(splits, whole),
        "rows": rows,
        "control_other_sample": difference(splits, control, whole),
        "lag": lag,
    }


def _same_params(a: forecasting.Params, b: forecasting.Params) -> bool:
    return all(np.array_equal(getattr(a, name), getattr(b, name)) for name in ("profile", "coef", "variance_coef", "tails"))


def pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def print_accuracy(result: dict[str, Any]) -> None:
    w = result["whole"]
    print(
        f"\n### {result['name']}: {result['products']:,} products; {result['folds']} weekly origins, 7 days ahead; "
        f"pooled over the whole catalog: RMSSE {w['rmsse']:.4f}, WAPE {w['wape']:.4f}, 95 % band holds "
        f"{pct(w['coverage_95'])}"
    )
    hours = "hour_shares" in result["rows"][0]
    print(
        "| N | series per shard (min / median) | 7-day forecast: rel. diff p50 / p95 / p99 | 7-day spread: p50 / p95 | "
        "RMSSE own (Δ) | WAPE own (Δ) | 95 % band holds |" + (" hour shares moved: p50 / p99 |" if hours else "")
    )
    print("|---|---|---|---|---|---|---|" + ("---|" if hours else ""))

    def line(label: str, sizes: str, row: dict[str, Any]) -> str:
        f, s = row["forecast_7d"], row["spread_7d"]
        text = (
            f"| {label} | {sizes} | {pct(f['p50'])} / {pct(f['p95'])} / {pct(f['p99'])} | {pct(s['p50'])} / "
            f"{pct(s['p95'])} | {row['rmsse']:.4f} ({100 * (row['rmsse'] / w['rmsse'] - 1):+.2f} %) | "
            f"{row['wape']:.4f} ({100 * (row['wape'] / w['wape'] - 1):+.2f} %) | {pct(row['coverage_95'])} |"
        )
        if hours:
            h = row.get("hour_shares")
            text += f" {pct(h['p50'])} / {pct(h['p99'])} |" if h else " — |"
        return text

    for row in result["rows"]:
        print(line(str(row["num_shards"]), f"{row['shard_series']['min']:,} / {row['shard_series']['median']:,.0f}", row))
    print(line("1, another row sample", f"{result['series']:,}", result["control_other_sample"]))
    print(
        f"({result['rows'][0]['forecast_7d']['counted']:,} series-origins with a whole-catalog 7-day forecast >= 1 unit "
        "counted in the differences)",
        flush=True,
    )


def print_lag(results: list[dict[str, Any]]) -> None:
    print(
        "\n## The one-day lag: parameters fitted from the statistics of the day before (the live pooled fit) "
        "against parameters fitted on the same history"
    )
    print(
        "| data | series | RMSSE same day → lagged (Δ) | WAPE same day → lagged (Δ) | 95 % band holds: same day → "
        "lagged | 7-day forecast moved: p50 / p95 / p99 | refit, another row sample: p50 / p95 / p99 | "
        "statistics object |\n|---|---|---|---|---|---|---|---|"
    )
    for result in results:
        w, lag, other = result["whole"], result["lag"], result["control_other_sample"]["forecast_7d"]
        f = lag["forecast_7d"]
        print(
            f"| {result['name']} | {result['series']:,} | {w['rmsse']:.4f} → {lag['rmsse']:.4f} "
            f"({100 * (lag['rmsse'] / w['rmsse'] - 1):+.2f} %) | {w['wape']:.4f} → {lag['wape']:.4f} "
            f"({100 * (lag['wape'] / w['wape'] - 1):+.2f} %) | {pct(w['coverage_95'])} → {pct(lag['coverage_95'])} | "
            f"{pct(f['p50'])} / {pct(f['p95'])} / {pct(f['p99'])} | {pct(other['p50'])} / {pct(other['p95'])} / "
            f"{pct(other['p99'])} | {lag['pool_object_bytes'] / 1000:.1f} KB |"
        )
    checks = all(r["lag"]["lag_0_is_the_plain_fit"] and r["lag"]["longer_chain_is_the_same"] for r in results)
    print(
        f"(controls on the first origin of every data set: the chain with no lag is the plain fit bit for bit, and "
        f"{LAG_CHAIN + 1} links give the parameters of {LAG_CHAIN}: {'yes' if checks else 'NO'})",
        flush=True,
    )


# -- 2. a large catalog as shards -----------------------------------------------------------------


def compile_catalog(path: Path, url: str) -> tuple[Any, float]:
    """Parse ``path`` once and store its compiled form (what the first process does); (catalog, seconds)."""
    from handlers.runtime.catalogs import load_compiled
    from handlers.storage.location import open_store

    started = time.perf_counter()
    catalog = load_compiled(path, open_store(url))
    return catalog, time.perf_counter() - started


def shard_cmd(handler: str, moment: datetime, url: str, path: Path, num_shards: int, number: int) -> list[str]:
    return [*scale.invoke_cmd(handler, moment, url, path), "--num-shards", str(num_shards), "--shard", str(number)]


def prepare_shard(url: str, path: Path, catalog: Any, num_shards: int, number: int) -> None:
    """benchmarks/scale.py ``prepare`` for one shard: its state at START with 112 days of history, then
    one forecast."""
    from handlers.runtime import layout
    from handlers.storage.location import open_store

    if scale.run(shard_cmd("order_tick", scale.START, url, path, num_shards, number))[2]:
        raise SystemExit(f"shard {number}: the first order tick failed")
    part = shards.shard(catalog, number, num_shards)
    store = shards.ShardStore(open_store(url), number)
    loaded = layout.load(cast(Any, store), part.catalog, at=scale.START.timestamp())
    assert loaded is not None
    daily = scale.history(part.catalog)
    profile = np.repeat(daily.mean(axis=1, keepdims=True) / 24, 24, axis=1) * 10
    state = loaded.state.replace(
        daily_demand=daily,
        history_day=int(scale.START.timestamp() // 86400),
        hour_profile=profile,
        created_at=scale.START.timestamp() - scale.HISTORY_DAYS * 86400,
    )
    layout.commit(cast(Any, store), loaded, state, "hot")
    if scale.run(shard_cmd("forecast", scale.START + timedelta(minutes=1), url, path, num_shards, number))[2]:
        raise SystemExit(f"shard {number}: the first forecast failed")
    scale.stand_in_yesterday(store)  # the timed forecasts fit from every prepared shard's statistics


#: A fresh process that loads a catalog the way handlers/app.py does; prints seconds. "whole": the
#: whole compiled catalog, then split (what ``status``, ``report`` and an invocation without a shard
#: read); "shard": only the shard's compiled sub-catalog (what one shard's invocation reads).
CATALOG_PROBE = """
import json, sys, time
started = time.perf_counter()
from handlers.runtime import shards
from handlers.runtime.catalogs import load_compiled
from handlers.storage.location import open_store
imported = time.perf_counter()
url, path, mode, count, number = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
whole = load_compiled(path, open_store(url), shard=None if mode == "whole" else (number, count))
loaded = time.perf_counter()
part = shards.shard(whole, number, count).catalog if mode == "whole" else whole
part.fingerprint
done = time.perf_counter()
print(json.dumps({"import_s": imported - started, "load_s": loaded - imported, "split_s": done - loaded,
                  "series": whole.num_series, "shard_series": part.num_series}))
"""


def catalog_cost(url: str, path: Path, mode: str, num_shards: int, number: int, runs: int) -> dict[str, float]:
    """Medians over fresh processes: import, read the compiled catalog, split it (and the shard's
    fingerprint, which every invocation computes); wall and peak RSS of the whole process."""
    samples: dict[str, list[float]] = {}
    for _ in range(runs):
        with tempfile.NamedTemporaryFile("r", suffix=".time") as timing:
            started = time.perf_counter()
            proc = subprocess.run(
                [
                    "/usr/bin/time",
                    "-f",
                    "%M",
                    "-o",
                    timing.name,
                    PYTHON,
                    "-c",
                    CATALOG_PROBE,
                    url,
                    str(path),
                    mode,
                    str(num_shards),
                    str(number),
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            wall = time.perf_counter() - started
            peak = float(timing.read().strip().splitlines()[-1]) / 1024
        figures = {**json.loads(proc.stdout), "wall_s": wall, "rss_mb": peak}
        for key, value in figures.items():
            samples.setdefault(key, []).append(value)
    return {key: statistics.median(values) for key, values in samples.items()}


def sharded_catalog(series: int, num_shards: int, prepared: int, runs: int) -> dict[str, Any]:
    """A ``series`` catalog split ``num_shards`` ways: what a shard's invocations and its catalog cost."""
    work = Path(tempfile.mkdtemp(prefix=f"shards-{series}-"))
    try:
        path, url = work / "catalog.yaml", f"file://{work / 'store'}"
        scale.write_catalog(path, series)
        catalog, compile_s = compile_catalog(path, url)
        out: dict[str, Any] = {
            "series": series,
            "num_shards": num_shards,
            "catalog_bytes": path.stat().st_size,
            "compile_s": compile_s,
            "shards": {},
        }
        out["shard_series"] = [part.catalog.num_series for part in shards.split(catalog, num_shards)]
        # an invocation refuses a shard above MAX_SERIES (handlers/model/bounds.py): time the first that fit
        out["over_limit"] = [k for k, n in enumerate(out["shard_series"]) if n > MAX_SERIES]
        out["prepared_shards"] = [k for k, n in enumerate(out["shard_series"]) if n <= MAX_SERIES][:prepared]
        for number in out["prepared_shards"]:
            started = time.perf_counter()
            prepare_shard(url, path, catalog, num_shards, number)
            figures: dict[str, Any] = {"prepare_s": time.perf_counter() - started}
            minute = 2
            for handler in TIMED_HANDLERS:
                walls, peaks, failed = [], [], 0
                for _ in range(runs):
                    minute += 1
                    wall, peak, code = scale.run(shard_cmd(handler, scale.START + timedelta(minutes=minute), url, path, num_shards, number))
                    walls.append(wall)
                    peaks.append(peak)
                    failed += code != 0
                figures[handler] = {"wall_s": statistics.median(walls), "rss_mb": statistics.median(peaks), "failures": failed}
            out["shards"][number] = figures
        first = out["prepared_shards"][0]
        out["pool_objects"] = pool_objects(url, f"{shards.SHARDS_PREFIX}{first}/")
        out["catalog_whole"] = catalog_cost(url, path, "whole", num_shards, first, runs)
        out["catalog_own"] = catalog_cost(url, path, "shard", num_shards, first, runs)  # written by the first invocation
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def pool_objects(url: str, prefix: str) -> dict[str, int]:
    """The forecast's statistics objects in a store (``prefix``: a shard's ``shards/<k>/``) and their
    sizes in bytes (handlers/runtime/pool.py)."""
    from handlers.storage.location import open_store

    store = open_store(url)
    return {key: len(store.get(key)) for key in store.list(f"{prefix}{pool.PREFIX}")}


def unsharded(series: int, runs: int) -> dict[str, Any]:
    """benchmarks/scale.py's unsharded store at ``series``: every handler, fresh processes."""
    work = Path(tempfile.mkdtemp(prefix=f"shards-baseline-{series}-"))
    try:
        path = work / "catalog.yaml"
        scale.write_catalog(path, series)
        url = scale.prepare(work / "store", path)
        return {"series": series, "handlers": scale.handler_costs(work / "store", url, path, runs), "pool_objects": pool_objects(url, "")}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_timing(big: dict[str, Any], base: dict[str, Any] | None, numpy_s: float) -> None:
    n, series = big["num_shards"], big["series"]
    print(
        f"\n## {series:,} series as {n} shards ({min(big['shard_series']):,}–{max(big['shard_series']):,} series "
        f"per shard; catalog file {big['catalog_bytes'] / 1e6:.1f} MB, compiled in {big['compile_s']:.1f} s)"
    )
    if big["over_limit"]:
        print(f"(shards {big['over_limit']} hold more than {MAX_SERIES:,} series: an invocation refuses them)")
    header = "| fresh process, wall / peak RSS | " + " | ".join(f"shard {k}" for k in big["shards"])
    header += f" | unsharded {base['series']:,} (scale.py) |" if base else " |"
    print(header + "\n|---|" + "---|" * (len(big["shards"]) + (1 if base else 0)))
    for handler in TIMED_HANDLERS:
        cells = [f"{f[handler]['wall_s']:.2f} s / {f[handler]['rss_mb']:,.0f} MB" for f in big["shards"].values()]
        if base:
            b = base["handlers"][handler]
            cells.append(f"{b['wall_s']:.2f} s / {b['rss_mb']:,.0f} MB")
        print(f"| `{handler}` | " + " | ".join(cells) + " |")
    print(f"(`python -c 'import numpy'`: {numpy_s:.3f} s in this run)")
    whole, own = big["catalog_whole"], big["catalog_own"]
    print(
        f"\n| the catalog in a fresh process (shard {big['prepared_shards'][0]}) | import | read compiled catalog | "
        "split + shard fingerprint | "
        "process wall | peak RSS |\n|---|---|---|---|---|---|"
    )
    print(
        f"| whole catalog ({whole['series']:,} series), split {n} ways | {whole['import_s']:.2f} s | "
        f"{whole['load_s']:.2f} s | {whole['split_s']:.2f} s | {whole['wall_s']:.2f} s | {whole['rss_mb']:,.0f} MB |"
    )
    print(
        f"| only the shard's compiled sub-catalog ({own['series']:,} series) | "
        f"{own['import_s']:.2f} s | {own['load_s']:.2f} s | {own['split_s']:.2f} s | {own['wall_s']:.2f} s | "
        f"{own['rss_mb']:,.0f} MB |",
        flush=True,
    )
    for label, objects in (
        (f"shard {big['prepared_shards'][0]}", big["pool_objects"]),
        *(((f"unsharded {base['series']:,}", base["pool_objects"]),) if base else ()),
    ):
        sizes = ", ".join(f"{key.rsplit('/', 1)[-1]} {size / 1000:.1f} KB" for key, size in sorted(objects.items()))
        print(f"(the forecast's statistics objects of {label}: {sizes or 'none'})")


# -- the report -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small catalogs, one run each")
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per timed figure (median)")
    parser.add_argument("--folds", type=int, default=4, help="weekly holdout origins at the end of each history")
    parser.add_argument("--large", type=int, default=1_000_000, help="series of the sharded catalog")
    parser.add_argument("--large-shards", type=int, default=10, help="shards of the sharded catalog")
    parser.add_argument("--prepared", type=int, default=2, help="shards given a state and timed")
    parser.add_argument("--baseline", type=int, default=100_000, help="series of the unsharded baseline (0: none)")
    parser.add_argument("--data", type=Path, default=TINY_M5, help=f"tiny M5 CSV (default {TINY_M5})")
    parser.add_argument("--skip-accuracy", action="store_true", help="only the timed part")
    parser.add_argument("--skip-timing", action="store_true", help="only the accuracy part (no fresh processes)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.folds, args.large, args.large_shards, args.prepared, args.baseline = 1, 2, 2000, 2, 1, 0
    counts = [1, 2, 4] if args.quick else [1, 2, 4, 8, 16]
    commit = scale.commit()
    print(
        f"# benchmarks/shards.py{' --quick' if args.quick else ''} on {os.cpu_count()} cores, Python "
        f"{sys.version.split()[0]}, commit {commit}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; "
        + ("no timed part" if args.skip_timing else f"timed figures: medians of {args.runs} fresh processes"),
        flush=True,
    )
    report: dict[str, Any] = {
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "commit": commit,
        "quick": args.quick,
        "runs": args.runs,
        "horizon_days": HORIZON,
        "accuracy": [],
    }
    days = scale.HISTORY_DAYS + HORIZON * args.folds
    makers: list[Callable[[], DataSet]] = [lambda: generated(1000, days)]
    if not args.quick:
        makers += [lambda: generated(10_000, days), lambda: retail_like(1000, 2 * 365), lambda: retail_like(10_000, 2 * 365)]
        if args.data.exists():
            makers.append(lambda: tiny_m5(args.data))
        else:
            print(f"(tiny M5 skipped: {args.data} not found)")
    if not args.skip_accuracy:
        print('\n## Accuracy of the "own" fallback: the model fitted on each shard\'s series against the pooled fit over the whole catalog')
    for make in [] if args.skip_accuracy else makers:
        data = make()
        result = accuracy(data, [n for n in counts if n <= data.max_shards], args.folds)
        report["accuracy"].append(result)
        print_accuracy(result)
    if report["accuracy"]:
        print_lag(report["accuracy"])
    if args.skip_timing:
        if args.json:
            args.json.write_text(json.dumps(report, indent=1, default=str))
        return 0
    report["load_average_before_timing"] = os.getloadavg()
    report["numpy_process_s"] = scale.baseline(args.runs)
    report["baseline"] = unsharded(args.baseline, args.runs) if args.baseline else None
    report["sharded"] = sharded_catalog(args.large, args.large_shards, args.prepared, args.runs)
    report["load_average_after_timing"] = os.getloadavg()
    print_timing(report["sharded"], report["baseline"], report["numpy_process_s"])
    print(
        "load average (1, 5, 15 min) before / after the timed part: "
        + " / ".join(", ".join(f"{v:.1f}" for v in report[k]) for k in ("load_average_before_timing", "load_average_after_timing"))
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
