"""Censored-demand benchmark: the model fitted on recovered demand, where the truth is known.

    python benchmarks/censoring.py [--quick] [--sets shop,m5,fresh,frn,frn_heavy] [--timing-only]
                                   [--series N] [--repeats 3]

For each seeded shop (handlers/forecasting/censored_shop.py, benchmarks/censored_shops.py; the M5 one
reads ../shared/data and is skipped with a note when it is absent) and each estimator, the training
part is turned into a history, the project's model (``forecast``) is fitted on it and the test window
is forecast. Daily shops: 7 days from one origin. Hourly shops (season 24, the last 16 days): the next
24 h from 7 daily origins, pooled, and the next 168 h from one origin. Columns:

    bias_all, wape_all   against the true demand over every test period (the goal's metric)
    bias_in, wape_in     against the sales over the test periods without a stockout (there sales =
                         demand): what a backtest can score on real data
    bias_rec             against the test window's demand recovered from its own sales and flags
                         (recover_censored for days, recover_hourly with flags for hours): the
                         real-data yardstick over every period (backtest's ``bias_recovered``)

bias = (Σ forecast − Σ actual) / Σ actual; wape = Σ|forecast − actual| / Σ actual. "oracle" is the
model fitted on the true demand: the model's own bias, the floor. Then the bias by the series' share
of stockout days, the timing (median of ``--repeats``), and the cuts of ``recover_censored``'s cost that
were tried (skipping cells with a negligible lower tail, a gamma approximation for large means, whole-number
k), measured. The first line names the machine; the machine is shared: read the ratios.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from censored_shops import TINY_M5, frn_like_shop, m5_shop, periodic_review_shop

from handlers.forecasting import censored
from handlers.forecasting.censored_shop import CensoredShop, fresh_shop
from handlers.forecasting.model import forecast

Metrics = dict[str, float]


# ------------------------------------------------------------------ the naive estimators (what fails)


def mask(sales: np.ndarray, flag: np.ndarray) -> np.ndarray:
    """Periods with a stockout become missing (NaN): biased low, the periods that sell out are the busy ones."""
    return np.where(flag, np.nan, sales)


def divide(sales: np.ndarray, in_stock: np.ndarray, floor: float = 0.05) -> np.ndarray:
    """Sales / the share of time in stock: a shelf that empties early is a stopping time, and under a
    diurnal curve a share of time is not a share of demand."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(in_stock >= floor, sales / np.maximum(in_stock, floor), np.nan)


def instock_profile(sales: np.ndarray, in_stock: np.ndarray, season: int = 24) -> np.ndarray:
    """Hourly: every hour not fully in stock gets max(sales, the mean of the series' fully in-stock
    hours of that hour of day) -- "the easy estimator"."""
    full = in_stock >= 1.0
    s, n = sales.shape
    by_phase = np.where(full, sales, 0.0).reshape(s, n // season, season).sum(axis=1)
    count = full.reshape(s, n // season, season).sum(axis=1)
    mean = np.where(count > 0, by_phase / np.maximum(count, 1), 0.0)
    return np.where(full, sales, np.maximum(sales, np.tile(mean, n // season)))


def time_share_as_exposure(sales: np.ndarray, in_stock: np.ndarray, tau: float = censored.DAY_SHAPE, rounds: int = 4) -> np.ndarray:
    """The day's in-stock time share used as the share of its demand seen: the daily form of the
    recovery, right only where demand is flat over the day."""
    w = np.clip(in_stock, 0.0, 1.0)
    weight = np.ones_like(sales)
    for _ in range(rounds):
        mu = censored.expected_demand(sales, w, weight)
        weight = tau / (tau + mu * w)
    return sales + (1.0 - w) * censored.posterior_rate(sales, w, mu, tau)


def replay_live(shop: CensoredShop, train: int, warm_days: int = 28) -> np.ndarray:
    """The live handler, day by day: ``warm_days`` recovered in one batch (warm_state), then close_day."""
    s = shop.demand.shape[0]
    hs = shop.hourly_sales[:, : train * 24].reshape(s, train, 24)
    hm = shop.hourly_minutes[:, : train * 24].reshape(s, train, 24)
    history = np.full((s, train), np.nan)
    history[:, :warm_days], live = censored.warm_state(hs[:, :warm_days].reshape(s, -1), hm[:, :warm_days].reshape(s, -1))
    for day in range(warm_days, train):
        history[:, day], live = censored.close_day(live, hs[:, day], hm[:, day], day % 7)
    return history


# ------------------------------------------------------------------ scoring


def metrics(pred: np.ndarray, truth: np.ndarray, sales: np.ndarray, flag: np.ndarray, recovered: np.ndarray) -> Metrics:
    full = ~flag
    total, total_in, total_rec = truth.sum(), sales[full].sum(), recovered.sum()
    return {
        "bias_all": pred.sum() / total - 1,
        "bias_in": pred[full].sum() / total_in - 1,
        "bias_rec": pred.sum() / total_rec - 1,
        "wape_all": np.abs(pred - truth).sum() / total,
        "wape_in": np.abs(pred - sales)[full].sum() / total_in,
    }


def daily_estimators(shop: CensoredShop, train: int) -> dict[str, np.ndarray]:
    sales, share, flag = shop.sales[:, :train], shop.in_stock[:, :train], shop.flags[:, :train]
    hs, hm = shop.hourly_sales[:, : train * 24], shop.hourly_minutes[:, : train * 24]
    s = sales.shape[0]
    return {
        "oracle (true demand)": shop.demand[:, :train],
        "raw sales": sales,
        "mask stockout days": mask(sales, flag),
        "divide by in-stock time": divide(sales, share),
        "time share as exposure": time_share_as_exposure(sales, share),
        "hourly in-stock profile": instock_profile(hs, hm / 60.0).reshape(s, train, 24).sum(axis=2),
        "**EM day flags** (recover_censored)": censored.recover_censored(sales, flag),
        "**EM hourly flags** (recover_hourly)": censored.recover_hourly(hs, np.where(hm < 60, 0.0, 60.0), flags=True).daily,
        "**EM hourly minutes** (recover_hourly)": censored.recover_hourly(hs, hm).daily,
        "**live day close** (close_day)": replay_live(shop, train),
    }


def run_daily(shop: CensoredShop, horizon: int = 7) -> list[tuple[str, Metrics]]:
    train = shop.demand.shape[1] - horizon
    recovered = censored.recover_censored(shop.sales, shop.flags)[:, train:]
    test = (shop.demand[:, train:], shop.sales[:, train:], shop.flags[:, train:], recovered)
    return [(name, metrics(forecast(history, horizon).mean, *test)) for name, history in daily_estimators(shop, train).items()]


def run_hourly(shop: CensoredShop, horizon: int, origins: int) -> list[tuple[str, Metrics]]:
    """Forecast ``horizon`` hours from the last ``origins`` daily origins on the last 16 days; pooled."""
    demand, sales, minutes, flags = shop.hourly_demand, shop.hourly_sales, shop.hourly_minutes, shop.hour_flags
    n = demand.shape[1]
    recovered = censored.recover_hourly(sales, np.where(flags, 0.0, 60.0), flags=True).hourly
    parts: dict[str, list[tuple[np.ndarray, ...]]] = {}
    for j in range(origins):
        train = n - horizon - 24 * (origins - 1 - j)
        window = slice(train, train + horizon)
        estimators = {
            "oracle (true demand)": demand[:, :train],
            "raw sales": sales[:, :train],
            "mask stockout hours": mask(sales[:, :train], flags[:, :train]),
            "divide by in-stock time": divide(sales[:, :train], minutes[:, :train] / 60.0),
            "in-stock hour profile": instock_profile(sales[:, :train], (~flags[:, :train]).astype(float)),
            "**EM hourly flags**": censored.recover_hourly(sales[:, :train], np.where(flags[:, :train], 0.0, 60.0), flags=True).hourly,
            "**EM hourly minutes**": censored.recover_hourly(sales[:, :train], minutes[:, :train]).hourly,
        }
        for name, history in estimators.items():
            pred = forecast(history[:, -16 * 24 :], horizon, season=24).mean
            parts.setdefault(name, []).append((pred, demand[:, window], sales[:, window], flags[:, window], recovered[:, window]))
    return [(name, metrics(*(np.concatenate([p[i] for p in got], axis=1) for i in range(5)))) for name, got in parts.items()]


def describe(name: str, shop: CensoredShop, hourly: bool = False) -> str:
    out = shop.hour_flags if hourly else shop.flags
    lost = 1 - shop.sales.sum() / shop.demand.sum()
    return (
        f"{name}: {out.shape[0]} series x {out.shape[1]} {'hours' if hourly else 'days'}, {out.mean():.1%} of them with "
        f"a stockout (p90 series {np.quantile(out.mean(axis=1), 0.9):.0%}), {lost:.1%} of demand lost"
    )


def show(title: str, rows: list[tuple[str, Metrics]]) -> None:
    print(f"### {title}\n")
    print("| estimator | bias_all | bias_in | bias_rec | wape_all | wape_in |")
    print("|---|---|---|---|---|---|")
    for name, m in rows:
        print(f"| {name} | {m['bias_all']:+.1%} | {m['bias_in']:+.1%} | {m['bias_rec']:+.1%} | {m['wape_all']:.3f} | {m['wape_in']:.3f} |")
    print()


def by_stockout_share(name: str, shop: CensoredShop, horizon: int = 7) -> None:
    """7-day bias against the truth by the series' share of stockout days: the raw fit starves the
    series that run out."""
    train = shop.demand.shape[1] - horizon
    share = shop.flags[:, :train].mean(axis=1)
    histories = {
        "oracle": shop.demand[:, :train],
        "raw sales": shop.sales[:, :train],
        "EM day flags": censored.recover_censored(shop.sales[:, :train], shop.flags[:, :train]),
        "live day close": replay_live(shop, train),
    }
    preds = {k: forecast(v, horizon).mean for k, v in histories.items()}
    truth = shop.demand[:, train:]
    print(f"### {name}: 7-day bias against the truth by the series' share of stockout days\n")
    print("| stockout days | series | " + " | ".join(preds) + " |")
    print("|---|---|" + "---|" * len(preds))
    edges = [0, 0.05, 0.15, 0.3, 0.5, 1.01]
    for lo, hi in zip(edges[:-1], edges[1:]):
        rows = (share >= lo) & (share < hi)
        if rows.any():
            cells = " | ".join(f"{p[rows].sum() / truth[rows].sum() - 1:+.1%}" for p in preds.values())
            print(f"| {lo:.0%}–{min(hi, 1):.0%} | {rows.sum()} | {cells} |")
    print()


# ------------------------------------------------------------------ timing


def median_seconds(call: Callable[[], object], repeats: int) -> float:
    call()  # warm: page faults, imports
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def timing(series: int, repeats: int) -> None:
    """Seconds (median of ``repeats``) at ``series`` x 112 days: synthetic NB demand, a shelf that sells out on ~29 % of days."""
    days = 112
    rng = np.random.default_rng(7)
    mu = np.exp(rng.normal(1.4, 1.2, series)).clip(0.2, 300)[:, None] * (1 + 0.1 * np.sin(np.arange(days) / 7))
    demand = rng.poisson(mu * rng.gamma(8.0, 1 / 8.0, (series, days))).astype(float)
    stock = np.round(mu * rng.uniform(0.9, 2.2, (series, days)))
    sales, flag = np.minimum(demand, stock), demand >= stock
    ones = np.ones_like(sales)
    hours = rng.poisson(demand[:, -1:] * np.full(24, 1 / 24)).astype(float)
    minutes = np.where(rng.random((series, 24)) < 0.1, 0.0, 60.0)
    _, live = censored.close_day(censored.LiveState.empty(series), hours, minutes, 0)
    small = max(series // 10, 1)
    hs = rng.poisson(np.repeat(demand[:small], 24, axis=1) / 24).astype(float)
    hm = np.where(rng.random(hs.shape) < 0.1, 0.0, 60.0)
    cases: list[tuple[str, Callable[[], object]]] = [
        ("expected_demand (one M-step)", lambda: censored.expected_demand(sales, ones, ones)),
        ("recover_censored (day flags: 3 EM rounds + a last E-step)", lambda: censored.recover_censored(sales, flag)),
        ("close_day (live: one day of [S, 24] hours)", lambda: censored.close_day(live, hours, minutes, 1)),
        (f"recover_hourly, {small:,} series x {days} days x 24 h", lambda: censored.recover_hourly(hs, hm)),
        ("the model: forecast(history, 7)", lambda: forecast(sales, 7)),
    ]
    print(f"## Timing: {series:,} series x {days} days ({flag.mean():.0%} of days flagged), median of {repeats}\n")
    print("| stage | seconds |\n|---|---|")
    for name, call in cases:
        print(f"| {name} | {median_seconds(call, repeats):.2f} |")
    print()


def negligible_lower_tail(y: np.ndarray, mu: np.ndarray, inv_k: np.ndarray, skip: float = 1e-4) -> np.ndarray:
    """The cut the research suggested: cells where P(D < y) is surely below ``skip`` (a Chernoff bound,
    P(D <= a) <= (q (k + a) / a)^a (p (k + a) / k)^k for a = y - 1 < mu), whose E[D | D >= y] is mu
    to within that relative error, need no tail moments."""
    k = 1.0 / inv_k
    p = k / (k + mu)
    a = y - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = np.where(a > 0, a * np.log((1.0 - p) * (k + a) / np.where(a > 0, a, 1.0)), 0.0) + k * np.log(p * (k + a) / k)
    return np.asarray((a < mu) & (bound < np.log(skip)))


def skipped_share(sales: np.ndarray, flags: np.ndarray) -> float:
    """Share of the tail moments recover_censored evaluates (flagged days with sales, every E-step)
    that the cut would skip."""
    seen = {"skipped": 0, "cells": 0}
    original = censored.nb_tail_moments

    def count(y: np.ndarray, mu: np.ndarray, inv_k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seen["skipped"] += int(negligible_lower_tail(y, mu, inv_k).sum())
        seen["cells"] += y.size
        return original(y, mu, inv_k)

    censored.nb_tail_moments = count  # type: ignore[assignment]
    try:
        censored.recover_censored(sales, flags)
    finally:
        censored.nb_tail_moments = original
    return seen["skipped"] / max(seen["cells"], 1)


def rounded_shape(y: np.ndarray, mu: np.ndarray, inv_k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """nb_tail_moments with k >= 1 rounded to a whole number (scipy's incomplete beta then sums a
    finite series): a third cut, which changes the model."""
    k = 1.0 / inv_k
    return _exact_tail(y, mu, 1.0 / np.where(k >= 1, np.round(k), k))


_exact_tail = censored.nb_tail_moments


def with_rounded_shape(sales: np.ndarray, flags: np.ndarray) -> np.ndarray:
    censored.nb_tail_moments = rounded_shape  # type: ignore[assignment]
    try:
        return censored.recover_censored(sales, flags)
    finally:
        censored.nb_tail_moments = _exact_tail


def gamma_tail_mean(y: np.ndarray, mu: np.ndarray, inv_k: np.ndarray) -> np.ndarray:
    """E[D | D >= y] with D approximated by a gamma of the NB's mean and variance (y - 1/2 for the steps)."""
    from scipy import special

    theta = 1.0 + mu * inv_k
    shape, x = mu / theta, (y - 0.5) / theta
    upper = special.gammaincc(shape, x)
    return np.asarray(mu * (upper + np.exp(shape * np.log(x) - x - special.gammaln(shape + 1))) / upper)


def cuts(repeats: int, shops: dict[str, CensoredShop]) -> None:
    """The cuts tried for recover_censored, measured: nanoseconds per cell of 10^6 censored cells
    (median of ``repeats``); per shop, the share of cells the skip would apply to and what rounding k
    does to the 7-day bias of the day-flag recovery."""
    from scipy import special

    cells = 1_000_000
    rng = np.random.default_rng(8)
    mu = np.exp(rng.normal(1.4, 1.2, cells)).clip(0.2, 300)
    inv_k = 1.0 / np.exp(rng.uniform(np.log(2), np.log(30), cells))  # k as the EM estimates it: 2-30, not whole
    y = np.maximum(np.round(mu * rng.uniform(0.9, 2.2, cells)), 1.0)
    large = np.exp(rng.uniform(np.log(30), np.log(300), cells))
    k, y_large = 1.0 / inv_k, np.round(large * rng.uniform(0.9, 2.0, cells))
    q, x = large / (k + large), y_large * k / large
    rows: list[tuple[str, Callable[[], object]]] = [
        ("nb_tail_moments (what every censored cell costs, per E-step)", lambda: censored.nb_tail_moments(y, mu, inv_k)),
        ("the same with k rounded to a whole number", lambda: rounded_shape(y, mu, inv_k)),
        ("the skip's screen (Chernoff bound on P(D < y))", lambda: negligible_lower_tail(y, mu, inv_k)),
        (
            "means 30-300: betainc + betaln (the NB tail's special functions)",
            lambda: (special.betainc(y_large, k, q), special.betaln(k, y_large)),
        ),
        ("means 30-300: gammaincc + exp (the gamma approximation's)", lambda: (special.gammaincc(k, x), np.exp(k * np.log(x) - x))),
    ]
    print(f"## The cuts tried for recover_censored: ns per cell, 10^6 cells, median of {repeats}\n")
    print("| kernel | ns per cell |\n|---|---|")
    for name, call in rows:
        print(f"| {name} | {median_seconds(call, repeats) / cells * 1e9:.0f} |")
    exact, _ = censored.nb_tail_moments(y_large, large, inv_k)
    approx = gamma_tail_mean(y_large, large, inv_k)
    error = np.abs(approx - exact)
    print(
        f"\nThe gamma approximation (matched mean and variance, continuity-corrected) on those cells: E[D | D >= y] off "
        f"by up to {np.max(error / exact):.2%} of its value, {np.quantile(error / np.maximum(exact - y_large, 1e-9), 0.99):.1%} "
        "of the imputed excess at the 99th percentile."
    )
    if shops:
        print(
            "\n| data set | censored cells the skip (P(D < y) < 1e-4) would spare | 7-day bias of the day-flag "
            "recovery: k as estimated / k rounded |\n|---|---|---|"
        )
        for name, shop in shops.items():
            train = shop.demand.shape[1] - 7
            args = (shop.sales[:, :train], shop.flags[:, :train])
            truth = shop.demand[:, train:].sum()
            exact, rounded = (forecast(h, 7).mean.sum() / truth - 1 for h in (censored.recover_censored(*args), with_rounded_shape(*args)))
            print(f"| {name} | {skipped_share(*args):.2%} | {exact:+.2%} / {rounded:+.2%} |")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 3x smaller shops and 20,000 series timed")
    parser.add_argument("--sets", default="shop,m5,fresh,frn,frn_heavy", help="shops to run (default: all)")
    parser.add_argument("--timing-only", action="store_true", help="only the timing table")
    parser.add_argument("--series", type=int, help="series timed (default 100,000; --quick: 20,000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per stage, median reported (default 3)")
    args = parser.parse_args(argv)
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    print(
        f"machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, numpy {np.__version__}{load}\n"
    )
    print(f"command: {' '.join(['python benchmarks/censoring.py', *(sys.argv[1:] if argv is None else argv)])}\n")
    started = time.perf_counter()
    sets = set(args.sets.split(","))
    small = 3 if args.quick else 1
    cut_check: dict[str, CensoredShop] = {}
    if not args.timing_only:
        if "shop" in sets:
            shop = periodic_review_shop(series=3000 // small)
            show(describe("periodic-review shop", shop), run_daily(shop))
            by_stockout_share("periodic-review shop", shop)
            cut_check["periodic-review shop"] = shop
        if "m5" in sets:
            if TINY_M5.exists():
                shop = m5_shop(windows=2 if args.quick else 6)
                show(describe("M5 under a shelf", shop), run_daily(shop))
                cut_check["M5 under a shelf"] = shop
            else:
                print(f"### M5 under a shelf\n\nskipped: {TINY_M5} not found.\n")
        makers: dict[str, Callable[[int], CensoredShop]] = {
            "fresh": lambda n: fresh_shop(series=n),
            "frn": lambda n: frn_like_shop(series=n),
            "frn_heavy": lambda n: frn_like_shop(series=n, heavy=True),
        }
        names = {"fresh": "fresh shop", "frn": "FRN-like", "frn_heavy": "FRN-like, heavy"}
        for key, make in makers.items():
            if key not in sets:
                continue
            shop = make(2000 // small)
            show(describe(names[key] + ", daily", shop), run_daily(shop))
            if key == "frn":
                by_stockout_share(names[key], shop)
            show(describe(names[key] + ", hourly", shop, hourly=True) + " — next 24 h, 7 origins", run_hourly(shop, 24, 7))
            show(describe(names[key] + ", hourly", shop, hourly=True) + " — next 168 h", run_hourly(shop, 168, 1))
            cut_check[names[key]] = shop
    timing(args.series or (20_000 if args.quick else 100_000), args.repeats)
    cuts(args.repeats, cut_check)
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
