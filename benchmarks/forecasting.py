"""Forecasting benchmark: accuracy, runtime and calibration of the stockpulse model against the baselines.

    python benchmarks/forecasting.py [--quick] [--series N ...] [--repeats 5] [--data PATH]

One run prints, as markdown tables (the first line names the machine):

1. Synthetic retail-like data (seeded, generated here, never downloaded): mean RMSSE / WAPE of
   stockpulse, every baseline and the oracle (the generator's true mean), h = 28 and h = 8.
2. tiny_m5 (``../shared/data/m5_tiny_m5_280series.csv.gz``, skipped with a note when absent) through
   ``jobs.backtest.run_backtest``: last 28 days, second origin, last 8 days; plus the mean RMSSE over
   12 origins 28 days apart.
3. Hourly synthetic data (season 24) through ``run_backtest``.
4. Runtime: fit + forecast seconds of stockpulse and of moving_average_28 (the baseline, timed in the
   same run, interleaved) on N series x 112 days; median of ``--repeats`` runs and the ratio.
5. Calibration: empirical coverage of ``mean ± z·std`` on the synthetic and tiny_m5 holdouts.

The machine is shared and noisy: read the ratios, not the absolute seconds.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pandas loads only where a table is built or read
    import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from handlers.forecasting.baselines import baselines_for
from handlers.forecasting.model import HISTORY_DAYS, MODEL_NAME, Forecast, forecast
from handlers.forecasting.scores import mean_rmsse, wape
from jobs.backtest import load_matrix, run_backtest

TINY_M5 = ROOT.parent / "shared" / "data" / "m5_tiny_m5_280series.csv.gz"
M5_COLUMNS: dict[str, Any] = {"id_cols": ["item_id", "store_id"], "date_col": "date", "value_col": "value"}
Z_LEVELS = (
    (1.0, "±1σ (68 %)"),
    (1.2816, "±1.28σ (80 %)"),
    (1.96, "**±1.96σ (95 %)**"),
    (2.576, "±2.58σ (99 %)"),
)  # (z, column header): the normal quantiles of 68/80/95/99 %
BASELINE = "moving_average_28"


def synthetic_retail(n_series: int, n_days: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded retail-like daily demand ``[S, T]`` and its true expected value (the oracle).

    Negative-binomial counts (dispersion 0.5–5) around ``lognormal level (median 1/day) × drifting
    random walk × ±20 % yearly wave × per-series weekly profile × 2 % promotion days at 1.5–3×``;
    30 % of series get a 3–14-day stock-out, 15 % launch late (NaN before) and 5 % are discontinued.
    """
    rng = np.random.default_rng(seed)
    days = np.arange(n_days)
    base = np.exp(rng.normal(0.0, 1.3, n_series))
    pooled = np.array([0.9, 0.85, 0.9, 0.95, 1.1, 1.3, 1.0])
    own = pooled[None] * np.exp(rng.normal(0, 0.15, (n_series, 7)))
    profile = own / own.mean(1, keepdims=True)
    drift = np.cumsum(rng.normal(0, 0.02, (n_series, n_days)), axis=1)
    amplitude, phase = 0.2 * rng.uniform(-1, 1, (n_series, 1)), rng.integers(0, 365, (n_series, 1))
    yearly = 1 + amplitude * np.sin(2 * np.pi * (days + phase) / 365)
    promo = np.where(rng.random((n_series, n_days)) < 0.02, rng.uniform(1.5, 3.0, (n_series, n_days)), 1.0)
    mean = base[:, None] * np.exp(drift) * yearly * profile[:, days % 7] * promo
    dispersion = rng.uniform(0.5, 5.0, (n_series, 1))
    demand = rng.negative_binomial(dispersion, dispersion / (dispersion + mean)).astype(float)
    stockout = rng.random(n_series) < 0.3
    starts, lengths = rng.integers(0, n_days, n_series), rng.integers(3, 15, n_series)
    out = stockout[:, None] & (days[None] >= starts[:, None]) & (days[None] < (starts + lengths)[:, None])
    launch = np.where(rng.random(n_series) < 0.15, rng.integers(1, n_days // 2, n_series), 0)
    stop = np.where(rng.random(n_series) < 0.05, rng.integers(n_days // 2, n_days, n_series), n_days)
    gone = out | (days[None] >= stop[:, None])
    demand[gone], mean[gone] = 0.0, 0.0
    demand[days[None] < launch[:, None]] = np.nan
    mean[np.isnan(demand)] = np.nan
    return demand, mean


def hourly_frame(n_series: int = 500, weeks: int = 8, seed: int = 3) -> pd.DataFrame:
    """Seeded hourly Poisson demand with a midday peak and busier weekends, as a long table."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    hours = np.arange(24 * 7 * weeks)
    daily = np.exp(-0.5 * ((hours % 24 - 13) / 4.0) ** 2) + 0.05
    base = np.exp(rng.normal(0, 1, (n_series, 1)))
    level = base * np.exp(np.cumsum(rng.normal(0, 0.003, (n_series, hours.size)), 1))
    demand = rng.poisson(level * daily[None] * (1 + 0.3 * ((hours // 24) % 7 >= 5))[None]).astype(float)
    series, hour = np.nonzero(np.ones_like(demand, dtype=bool))
    stamps = pd.Timestamp("2024-01-01") + pd.to_timedelta(hour, unit="h")
    return pd.DataFrame({"unique_id": series, "ds": stamps, "y": demand[series, hour]})


def models(season: int = 7) -> dict[str, Callable[..., Forecast]]:
    """stockpulse first, then every baseline, in the backtest's order."""
    return {MODEL_NAME: forecast, **baselines_for(season)}


def split(data: np.ndarray, horizon: int, origin_back: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train / test around an origin ``origin_back`` periods before the end."""
    kept = data[:, : data.shape[1] - origin_back]
    return kept[:, :-horizon], kept[:, -horizon:]


def score(train: np.ndarray, test: np.ndarray, pred: np.ndarray) -> str:
    """``RMSSE / WAPE`` of one forecast, as a table cell."""
    return f"{mean_rmsse(train, test, pred):.3f} / {wape(test, pred):.3f}"


def table(header: list[str], rows: Iterable[list[str]]) -> None:
    """Print a markdown table and a blank line."""
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def synthetic_accuracy(cases: list[tuple[int, int]], n_series: int) -> None:
    """RMSSE / WAPE of every model and the oracle for each (seed, horizon)."""
    names = [*models(), "oracle (true mean)"]
    print(f"## Synthetic retail-like data: {n_series} series x 730 days, last h days held out\n")
    print("(RMSSE / WAPE)\n")
    rows = []
    for seed, horizon in cases:
        demand, truth = synthetic_retail(n_series, 730, seed)
        train, test = split(demand, horizon)
        cells = [score(train, test, model(train, horizon, season=7).mean) for model in models().values()]
        cells.append(score(train, test, truth[:, -horizon:]))
        rows.append([f"synthetic seed {seed}, h = {horizon}", *cells])
    table(["data", *names], rows)


def tiny_m5_accuracy(frame: pd.DataFrame, matrix: np.ndarray, origins: int) -> None:
    """run_backtest at three origins / horizons; mean RMSSE over ``origins`` origins 28 days apart."""
    dates = np.sort(frame["date"].unique())
    cases = [
        ("last 28 days", frame, 28),
        ("second origin: the 28 days before the last 28", frame[frame["date"] < dates[-28]], 28),
        ("last 8 days (the live horizon)", frame, 8),
    ]
    print(f"## tiny_m5 ({matrix.shape[0]} series) via jobs.backtest.run_backtest\n")
    print("(RMSSE / WAPE; seconds = fit + predict of the 28-day run)\n")
    rows: list[list[str]] = []
    seconds: list[str] = []
    names, walls = list(models()), []
    for label, part, horizon in cases:
        started = time.perf_counter()
        result = run_backtest(part, horizon=horizon, **M5_COLUMNS)
        walls.append(time.perf_counter() - started)
        rows.append([label, *(f"{m['rmsse']:.3f} / {m['wape']:.3f}" for m in result["models"])])
        seconds = seconds or [f"{m['seconds']:.2f}" for m in result["models"]]
    per_origin: dict[str, list[float]] = {name: [] for name in names}
    for back in range(0, 28 * origins, 28):
        train, test = split(matrix, 28, back)
        for name, model in models().items():
            per_origin[name].append(mean_rmsse(train, test, model(train, 28, season=7).mean))
    rows.append([f"mean RMSSE of {origins} origins, 28 days apart, h = 28", *(f"{np.mean(per_origin[name]):.3f}" for name in names)])
    rows.append(["seconds (fit + predict), last 28 days", *seconds])
    table(["tiny_m5", *names], rows)
    wins = int(np.sum(np.array(per_origin[MODEL_NAME]) < np.array(per_origin[BASELINE])))
    print(
        f"stockpulse beats {BASELINE} on {wins} of {origins} origins. One run_backtest call (calendar "
        f"layout + five models) took {walls[0]:.1f} s of wall time.\n"
    )


def hourly_accuracy() -> None:
    """run_backtest on the hourly generator, last 24 hours held out."""
    frame = hourly_frame()
    result = run_backtest(frame, horizon=24, freq="H")
    print("## Hourly synthetic data: 500 Poisson series x 8 weeks, season 24, last 24 hours held out\n")
    table(["model", "RMSSE", "WAPE"], ([m["model"], f"{m['rmsse']:.3f}", f"{m['wape']:.3f}"] for m in result["models"]))


def runtime(sizes: list[int], horizons: list[int], repeats: int) -> None:
    """Median fit + forecast seconds of stockpulse and the baseline, interleaved in the same run."""
    baseline = baselines_for(7)[BASELINE]
    print(f"## Runtime: fit + forecast on N series x {HISTORY_DAYS} days, median of {repeats} runs\n")
    rows = []
    for n_series in sizes:
        history, _ = synthetic_retail(n_series, HISTORY_DAYS, seed=1)
        for horizon in horizons:
            times: dict[str, list[float]] = {MODEL_NAME: [], BASELINE: []}
            for _ in range(repeats):
                for name, model in ((MODEL_NAME, forecast), (BASELINE, baseline)):
                    started = time.perf_counter()
                    model(history, horizon, season=7)
                    times[name].append(time.perf_counter() - started)
            ours, base = statistics.median(times[MODEL_NAME]), statistics.median(times[BASELINE])
            rows.append(
                [
                    f"{n_series:,}",
                    str(horizon),
                    f"{ours:.3f}",
                    f"{min(times[MODEL_NAME]):.3f}",
                    f"{base:.4f}",
                    f"{ours / base:.0f}×",
                    f"{ours / n_series * 1e6:.1f}",
                ]
            )
    table(["series", "horizon", "stockpulse s (median)", "stockpulse s (min)", f"{BASELINE} s (median)", "ratio", "µs per series"], rows)


def coverage(data: np.ndarray, horizon: int, backs: Iterable[int]) -> list[float]:
    """Mean over origins of the share of held-out values inside ``mean ± z·std``, for each z, then the
    95 % coverage of smooth (≥ 50 % non-zero in the last 112 days) and of intermittent series."""
    out = []
    for back in backs:
        train, test = split(data, horizon, back)
        result = forecast(train, horizon)
        error = np.abs(test - result.mean)
        z = np.where(result.std > 0, error / np.where(result.std > 0, result.std, 1.0), np.inf)
        z = np.where((result.std == 0) & (error == 0), 0.0, z)
        finite = np.isfinite(test)
        smooth = (np.nanmean(train[:, -HISTORY_DAYS:] > 0, axis=1) >= 0.5)[:, None] & finite
        inside = [float((z[finite] <= level).mean()) for level, _ in Z_LEVELS]
        out.append([*inside, float((z[smooth] <= 1.96).mean()), float((z[finite & ~smooth] <= 1.96).mean())])
    return list(np.mean(out, axis=0))


def calibration(synthetic: np.ndarray, matrix: np.ndarray | None, origins: int, h8_origins: int) -> None:
    """Coverage table: tiny_m5 at one, two and many origins (when loaded), then synthetic seed 7."""
    cases: list[tuple[str, np.ndarray, int, Iterable[int]]] = []
    if matrix is not None:
        cases += [
            ("tiny_m5, last 28 days", matrix, 28, [0]),
            ("tiny_m5, second origin", matrix, 28, [28]),
            (f"tiny_m5, {origins} origins, h = 28", matrix, 28, range(0, 28 * origins, 28)),
            (f"tiny_m5, {h8_origins} origins, h = 8", matrix, 8, range(0, 8 * h8_origins, 8)),
        ]
    cases += [("synthetic seed 7, h = 28", synthetic, 28, [0]), ("synthetic seed 7, h = 8", synthetic, 8, [0])]
    print("## Calibration: share of held-out values inside mean ± z·std\n")
    header = ["holdout", *(label for _, label in Z_LEVELS), "95 %, smooth (≥ 50 % non-zero)", "95 %, intermittent"]
    rows = []
    for label, data, horizon, backs in cases:
        cells = [f"{value:.3f}" for value in coverage(data, horizon, backs)]
        cells[2] = f"**{cells[2]}**"
        rows.append([label, *cells])
    table(header, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller run (~15 s here): 500 synthetic series, 10k series timed, fewer origins"
    )
    parser.add_argument("--series", type=int, nargs="+", metavar="N", help="series counts to time (default 10000 100000; --quick: 10000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case, median reported (default 5)")
    parser.add_argument("--data", type=Path, default=TINY_M5, help=f"tiny_m5 CSV (default {TINY_M5})")
    args = parser.parse_args(argv)
    quick = args.quick
    sizes = args.series or ([10_000] if quick else [10_000, 100_000])
    n_synthetic, origins, h8_origins = (500, 4, 10) if quick else (2000, 12, 30)
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    print(
        f"machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, numpy {np.__version__}{load}\n"
    )
    command = " ".join(["python benchmarks/forecasting.py", *(sys.argv[1:] if argv is None else argv)])
    print(f"command: {command}\n")
    started = time.perf_counter()
    synthetic_accuracy([(7, 28), (11, 28), (7, 8)], n_synthetic)
    matrix = None
    if args.data.exists():
        import pandas as pd

        read = time.perf_counter()
        frame = pd.read_csv(args.data, usecols=["item_id", "store_id", "date", "value"])
        matrix, _, _ = load_matrix(frame, freq="D", **M5_COLUMNS)
        print(f"(read and laid out {args.data.name} in {time.perf_counter() - read:.1f} s)\n")
        tiny_m5_accuracy(frame, matrix, origins)
    else:
        print(f"## tiny_m5\n\nskipped: {args.data} not found (the synthetic figures above do not need it).\n")
    hourly_accuracy()
    runtime(sizes, [8, 28], args.repeats)
    synthetic, _ = synthetic_retail(n_synthetic, 730, 7)
    calibration(synthetic, matrix, origins, h8_origins)
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
