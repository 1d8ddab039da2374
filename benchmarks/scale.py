"""What one invocation costs at 1k, 10k and 100k series (issue 12), on this machine.

    python benchmarks/scale.py                          # 1k, 10k, 100k; about 15 minutes on 2 cores
    python benchmarks/scale.py --sizes 1000 --runs 3    # a quick look

For each size: a generated catalog (N/10 products x 10 warehouses) and a store prepared with 112
days of demand history (written into the state directly: replaying 112 days at 100k series would
take hours) and one forecast. Then, per handler, fresh ``python -m jobs invoke`` processes on that
store, one business minute apart, each measured from outside (wall time, and peak RSS by GNU
``/usr/bin/time -f %M``); what each commit wrote (files new or changed in the
store: the state, the log object, the metrics text); the conflict rate of ``jobs run --speed``
for a short while on a copy of the store; cold import per handler (fresh interpreters, the import
measured inside); and the forecast core against statsforecast's AutoETS(season_length=7) and
SeasonalNaive(7) on the same series (AutoETS on a subset, scaled to N) and a per-series
scikit-learn loop in the style of the original system (a linear trend over the last 7 days per
series, on a subset, scaled). Every figure is the median of ``--runs`` runs; the machine is shared
and noisy, so each size also times a fixed baseline process (``python -c "import numpy"``) in the
same run and the handlers' wall times are given as multiples of it too.

Each handler is timed twice over: as ``python -m jobs invoke`` (the command line, which also imports
the CLI's other commands) and as its Lambda entry point ``handlers.<name>.handler(event)`` called
in a fresh ``python -c`` process (what a cold Lambda container runs); beside them the floors of a
fresh process in the same run: ``python -c pass`` and the cold import of what a handler's first call
needs. ``--no-run --no-models`` measures the invocations only (a few minutes at 100k).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the handlers this checkout holds, also where it is not the installed one
PYTHON = sys.executable
HANDLERS = ("order_tick", "restock", "forecast", "alert")
WAREHOUSES = 10
HISTORY_DAYS = 112
START = datetime(2026, 3, 2, tzinfo=timezone.utc)  # a Monday, 00:00 business time
ZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Tokyo",
    "Asia/Singapore",
    "Australia/Sydney",
    "America/Sao_Paulo",
    "Africa/Johannesburg",
)


# -- inputs ------------------------------------------------------------------------------------


def write_catalog(path: Path, series: int, seed: int = 12) -> None:
    rng = np.random.default_rng(seed)
    products = series // WAREHOUSES
    demand = np.round(rng.lognormal(np.log(20), 1.0, products), 1).clip(0.5, 5000)
    lead = rng.choice([12, 24, 36, 48, 72], products)
    pack = rng.choice([1, 5, 10, 25, 50], products)
    lines = [f"seed: {seed}", "products:"]
    lines += [
        f"  - {{id: P-{i:06d}, base_demand_per_day: {demand[i]}, lead_time_hours: {lead[i]}, pack_size: {pack[i]}}}"
        for i in range(products)
    ]
    lines.append("warehouses:")
    lines += [f"  - {{id: W-{w:02d}, timezone: {ZONES[w]}}}" for w in range(WAREHOUSES)]
    path.write_text("\n".join(lines) + "\n")


def history(catalog: Any, days: int = HISTORY_DAYS, seed: int = 5) -> np.ndarray:
    """[S, days] daily demand: Poisson around the catalog's demand with a weekly pattern."""
    rng = np.random.default_rng(seed)
    weekly = np.array([1.1, 1.0, 0.95, 0.95, 1.05, 1.25, 0.7])
    rates = catalog.base_demand_per_day[:, None] * np.tile(weekly, days // 7 + 1)[None, :days]
    return rng.poisson(rates).astype(float)


def invoke_cmd(handler: str, moment: datetime, store: str, catalog: Path) -> list[str]:
    return [
        PYTHON,
        "-m",
        "jobs",
        "invoke",
        handler,
        "--time",
        moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "--store",
        store,
        "--catalog",
        str(catalog),
    ]


def entry_point_cmd(handler: str, moment: datetime, store: str, catalog: Path) -> list[str]:
    """A fresh interpreter calling the Lambda entry point ``handlers.<handler>.handler`` once, configured
    by the environment as a function is (``env`` below); exit 1 unless the tick was applied."""
    from handlers.model.events import scheduled_event

    event = json.dumps(scheduled_event(moment, f"stockpulse-{handler}", event_id=f"scale-{moment:%H%M}"))
    code = (
        f"import json, sys; from handlers.{handler} import handler; sys.exit(handler(json.loads(sys.argv[1])).get('status') != 'applied')"
    )
    return ["env", f"STOCKPULSE_STORE_URL={store}", f"STOCKPULSE_CATALOG={catalog}", PYTHON, "-c", code, event]


def prepare(directory: Path, catalog_path: Path) -> str:
    """A store at START with 112 days of history, one forecast and one alert; returns its URL."""
    from handlers.runtime import layout
    from handlers.runtime.catalogs import load_catalog
    from handlers.storage.location import open_store

    url = f"file://{directory}"
    run(invoke_cmd("order_tick", START, url, catalog_path))  # creates the state
    catalog = load_catalog(str(catalog_path))
    store = open_store(url)
    loaded = layout.load(store, catalog, at=START.timestamp())
    assert loaded is not None
    daily = history(catalog)
    day = int(START.timestamp() // 86400)
    profile = np.repeat(daily.mean(axis=1, keepdims=True) / 24, 24, axis=1) * 10  # ~10 days of decayed memory
    state = loaded.state.replace(
        daily_demand=daily, history_day=day, hour_profile=profile, created_at=START.timestamp() - HISTORY_DAYS * 86400
    )
    layout.commit(store, loaded, state, "hot")  # writes the history object the hot state then references
    run(invoke_cmd("forecast", START + timedelta(minutes=1), url, catalog_path))
    stand_in_yesterday(store)
    # an alert: the hot part then carries the forecast's demand the light handlers' metrics use for cover
    run(invoke_cmd("alert", START + timedelta(minutes=2), url, catalog_path))
    return url


def stand_in_yesterday(store: Any) -> None:
    """Let the prepared store's statistics of today stand in for those of the day before, so that the
    timed forecasts fit as a live store's do: from the statistics of the day before
    (handlers/runtime/pool.py), not on their own series (what a store that starts with history does first)."""
    from handlers.forecasting.pooled import Pool
    from handlers.runtime import pool

    day = int(START.timestamp() // 86400)  # the prepared state's history day
    today = Pool.from_bytes(store.get(pool.key(day)), pool.key(day), day)
    store.put_once(pool.key(day - 1), dataclasses.replace(today, day=day - 1).to_bytes())


# -- measuring ---------------------------------------------------------------------------------


def run(cmd: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MB, exit code) of ``cmd`` measured by GNU time: a child forked from
    this (large) process would report this process's RSS as its own peak."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        started = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", out.name, *cmd], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        wall = time.perf_counter() - started
        peak_kb = float(out.read().strip().splitlines()[-1])
    if proc.returncode != 0:
        sys.stderr.write(f"  ! {' '.join(cmd[2:5])}: exit {proc.returncode}: {proc.stderr.decode()[-400:]}\n")
    return wall, peak_kb / 1024, proc.returncode


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def written(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> dict[str, int]:
    """Bytes of files new or changed, by kind: state (everything not a log or metrics), logs, metrics."""
    out = {"state": 0, "logs": 0, "metrics": 0}
    for path, (size, mtime) in after.items():
        if before.get(path) != (size, mtime):
            kind = path.split("/", 1)[0]
            out[kind if kind in ("logs", "metrics") else "state"] += size
    return out


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def handler_costs(directory: Path, url: str, catalog: Path, runs: int, how: str = "cli", minute: int = 2) -> dict[str, dict[str, float]]:
    """Per handler, ``runs`` fresh processes one business minute apart from ``minute`` on: as
    ``jobs invoke`` (``how="cli"``) or through the Lambda entry point (``how="entry"``)."""
    results: dict[str, dict[str, float]] = {}
    command = invoke_cmd if how == "cli" else entry_point_cmd
    for handler in HANDLERS:
        walls, rss, state_b, logs_b, metrics_b, failures = [], [], [], [], [], 0
        for _ in range(runs):
            minute += 1
            before = snapshot(directory)
            wall, peak, code = run(command(handler, START + timedelta(minutes=minute), url, catalog))
            failures += code != 0
            sizes = written(before, snapshot(directory))
            walls.append(wall)
            rss.append(peak)
            state_b.append(sizes["state"])
            logs_b.append(sizes["logs"])
            metrics_b.append(sizes["metrics"])
        results[handler] = {
            "wall_s": median(walls),
            "rss_mb": median(rss),
            "state_bytes": median(state_b),
            "log_bytes": median(logs_b),
            "metrics_bytes": median(metrics_b),
            "failures": failures,
        }
    return results


def baseline(runs: int, code: str = "import numpy") -> float:
    return median([run([PYTHON, "-c", code])[0] for _ in range(runs)])


def conflict_rate(directory: Path, catalog: Path, speed: int, seconds: int) -> dict[str, Any]:
    """``jobs run --speed`` for ``seconds`` on a copy of the store: conflicts per handler."""
    from handlers.runtime.invoke import load_state
    from handlers.storage.location import open_store

    copy = Path(tempfile.mkdtemp(prefix="scale-run-"))
    shutil.copytree(directory, copy, dirs_exist_ok=True)
    url = f"file://{copy}"
    state_before, _ = load_state(open_store(url))
    proc = subprocess.run(
        [PYTHON, "-m", "jobs", "run", "--speed", str(speed), "--for", f"{seconds}s", "--store", url, "--catalog", str(catalog)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=seconds * 4 + 120,
    )
    state, _ = load_state(open_store(url))
    applied = {h: int(state.invocations[i] - state_before.invocations[i]) for i, h in enumerate(HANDLERS)}
    conflicts = {h: int(getattr(state, "conflicts", {}).get(h, 0) - getattr(state_before, "conflicts", {}).get(h, 0)) for h in HANDLERS}
    errors = sum("failed" in line for line in proc.stderr.splitlines())
    shutil.rmtree(copy, ignore_errors=True)
    return {"applied": applied, "conflicts": conflicts, "errors": errors, "exit": proc.returncode}


def cold_import(runs: int) -> dict[str, float]:
    """Seconds to import what a handler's first call needs, in a fresh interpreter, median of runs.

    The handler module itself imports nothing heavy (the registry imports it); its first call loads
    the app (runtime, cores, storage) and the metrics (prometheus_client); forecast's first call also
    loads scipy's NNLS (handlers/forecasting/model.py imports it on its first fit)."""
    loads = {name: f"import handlers.{name}, handlers.app, handlers.telemetry.metrics" for name in HANDLERS}
    loads["forecast"] += "; from scipy.optimize import nnls"
    out = {}
    for name, statement in loads.items():
        code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
        times = [
            float(subprocess.run([PYTHON, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout) for _ in range(runs)
        ]
        out[name] = median(times)
    return out


def timed(function: Any, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return median(times)


def forecast_models(catalog: Any, runs: int, subset: int, ets_subset: int) -> dict[str, Any]:
    """Seconds for all N series: the project's core, statsforecast, a per-series sklearn loop."""
    from handlers.forecasting import model as forecasting

    data = history(catalog)
    n = data.shape[0]
    forecasting.forecast(data[:50], 8, season=7)  # loads scipy's NNLS: a cold start is measured above
    out: dict[str, Any] = {"stockpulse": timed(lambda: forecasting.forecast(data, 8, season=7), runs)}
    part = data[: min(subset, n)]
    try:
        from sklearn.linear_model import LinearRegression
    except ImportError as exc:
        out["sklearn_loop"] = f"not installed ({exc}); pip install -e '.[bench]'"
    else:

        def sklearn_loop(rows: np.ndarray) -> None:
            x = np.arange(7, dtype=float)[:, None]
            ahead = np.arange(7, 15, dtype=float)[:, None]
            for row in rows:
                LinearRegression().fit(x, row[-7:]).predict(ahead)

        out["sklearn_loop"] = timed(lambda: sklearn_loop(part), runs) * n / len(part)
    try:
        import pandas as pd
        from statsforecast import StatsForecast
        from statsforecast.models import AutoETS, SeasonalNaive
    except ImportError as exc:
        out["statsforecast"] = f"not installed ({exc}); pip install -e '.[bench]'"
        return out

    def frame(rows: np.ndarray) -> pd.DataFrame:
        s, d = rows.shape
        return pd.DataFrame(
            {"unique_id": np.repeat(np.arange(s), d), "ds": np.tile(pd.date_range("2026-01-01", periods=d), s), "y": rows.ravel()}
        )

    StatsForecast(models=[AutoETS(season_length=7), SeasonalNaive(7)], freq="D", n_jobs=1).forecast(
        df=frame(data[:5]), h=8
    )  # numba compiles here, not in the timing
    naive_part = data[: min(n, 10_000)]
    naive_df = frame(naive_part)
    out["seasonal_naive"] = (
        timed(lambda: StatsForecast(models=[SeasonalNaive(7)], freq="D", n_jobs=1).forecast(df=naive_df, h=8), runs) * n / len(naive_part)
    )
    ets_df = frame(data[: min(ets_subset, n)])
    out["auto_ets"] = (
        timed(lambda: StatsForecast(models=[AutoETS(season_length=7)], freq="D", n_jobs=1).forecast(df=ets_df, h=8), max(1, runs // 2))
        * n
        / min(ets_subset, n)
    )
    out["subsets"] = {"sklearn_loop": len(part), "seasonal_naive": len(naive_part), "auto_ets": min(ets_subset, n)}
    return out


# -- the report --------------------------------------------------------------------------------


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "handlers", "jobs"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return head + (" (+ uncommitted changes in handlers/ or jobs/)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def mb(value: float) -> str:
    return f"{value / 1e6:.2f} MB" if value >= 1e5 else f"{value / 1e3:.1f} kB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="series counts, comma-separated")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("--speed", type=int, default=60, help="business speed of the conflict run")
    parser.add_argument("--run-seconds", type=int, default=75, help="wall seconds of the conflict run")
    parser.add_argument("--run-max-series", type=int, default=100_000, help="largest size the conflict run is made at")
    parser.add_argument("--large-speed", type=int, default=10, help="business speed of the conflict run above 10k series")
    parser.add_argument(
        "--large-seconds", type=int, default=400, help="wall seconds of the conflict run above 10k series (a forecast needs an hour)"
    )
    parser.add_argument("--no-run", action="store_true", help="skip the conflict run of `jobs run`")
    parser.add_argument("--no-models", action="store_true", help="skip the forecast core against statsforecast and scikit-learn")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"# benchmarks/scale.py on {os.cpu_count()} cores, Python {sys.version.split()[0]}, commit {commit()}, "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; medians of {args.runs}",
        flush=True,
    )
    report: dict[str, Any] = {"cores": os.cpu_count(), "commit": commit(), "runs": args.runs, "sizes": {}}
    report["cold_import_s"] = cold_import(max(args.runs, 7))
    print("cold import (s): " + ", ".join(f"{k} {v:.3f}" for k, v in report["cold_import_s"].items()), flush=True)
    from handlers.runtime.catalogs import load_catalog

    for n in sizes:
        work = Path(tempfile.mkdtemp(prefix=f"scale-{n}-"))
        catalog_path = work / "catalog.yaml"
        write_catalog(catalog_path, n)
        store_dir = work / "store"
        started = time.perf_counter()
        url = prepare(store_dir, catalog_path)
        figures: dict[str, Any] = {
            "prepare_s": time.perf_counter() - started,
            "baseline_s": baseline(args.runs),
            "python_s": baseline(args.runs, "pass"),
        }
        figures["handlers"] = handler_costs(store_dir, url, catalog_path, args.runs)
        figures["entry_point"] = handler_costs(store_dir, url, catalog_path, args.runs, how="entry", minute=2 + len(HANDLERS) * args.runs)
        if n <= args.run_max_series and not args.no_run:
            speed, seconds = (args.speed, args.run_seconds) if n <= 10_000 else (args.large_speed, args.large_seconds)
            figures["run"] = conflict_rate(store_dir, catalog_path, speed, seconds)
            figures["run"].update(speed=speed, seconds=seconds)
        if not args.no_models:
            figures["forecast_models_s"] = forecast_models(
                load_catalog(str(catalog_path)), max(1, min(args.runs, 3)), subset=2000, ets_subset=100
            )
        report["sizes"][n] = figures
        print(
            f"\n## {n:,} series (prepared in {figures['prepare_s']:.1f} s; baseline process "
            f"`python -c 'import numpy'` {figures['baseline_s']:.3f} s, `python -c pass` "
            f"{figures['python_s']:.3f} s)",
            flush=True,
        )
        print("| handler | wall | × baseline | peak RSS | state bytes per commit | log bytes | metrics bytes | failed |")
        print("|---|---|---|---|---|---|---|---|")
        for how, label in (("handlers", "`jobs invoke`"), ("entry_point", "entry point")):
            for handler, f in figures[how].items():
                print(
                    f"| {handler} ({label}) | {f['wall_s']:.2f} s | {f['wall_s'] / figures['baseline_s']:.1f} | "
                    f"{f['rss_mb']:.0f} MB | {mb(f['state_bytes'])} | {mb(f['log_bytes'])} | "
                    f"{mb(f['metrics_bytes'])} | {f['failures']} |"
                )
        if "run" in figures:
            r = figures["run"]
            print(
                f"\n`run --speed {r['speed']}` for {r['seconds']} s: applied {r['applied']}, "
                f"conflicts {r['conflicts']}, failed invocations {r['errors']}, exit {r['exit']}"
            )
        if "forecast_models_s" not in figures:
            shutil.rmtree(work, ignore_errors=True)
            continue
        m = figures["forecast_models_s"]
        print("\n| forecast of all series (8 days) | seconds | × stockpulse |\n|---|---|---|")
        for name, value in m.items():
            if name == "subsets":
                continue
            if isinstance(value, str):
                print(f"| {name} | skipped: {value} | |")
            else:
                print(f"| {name} | {value:.2f} | {value / m['stockpulse']:.1f} |")
        if "subsets" in m:
            print(f"(timed on subsets, scaled to {n:,}: {m['subsets']})", flush=True)
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
