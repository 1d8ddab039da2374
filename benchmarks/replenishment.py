"""Replenishment benchmark: this project's forecast + reorder policy against the original system's,
over the same 30 simulated days and the same demand, through the real handlers.

    python benchmarks/replenishment.py [--days 30] [--warm-up-days 14] [--catalog FILE]

Both policies start from one state: a warm-up under this project's policy builds two weeks of
demand history, then the store is forked and each policy runs the same schedule (order tick every
minute, restock every 5 min, forecast hourly, alert every 15 min). Demand is a function of (seed,
minute) only, so both see exactly the same customers.

Predictors are scored at every hourly forecast of both runs against the *realised* stockout time:
when the simulation's actual demand, minute by minute, empties the shelf given the stock and open
orders at the moment of the prediction (orders placed later are excluded: no predictor can know
them). "None within 168 h" is scored as 168 h for both predictors (the original's 999/9999 and
this project's "no stockout within the horizon").

A third predictor, the **oracle**, knows what no forecast can: the simulator's true demand rate of
every minute. Its mean path gives the best a point forecast can do, and its exact probability of a
stockout within 24 h (demand is Poisson, so the probability follows from those rates; see
``oracle_probability``) ranks the predictions as well as anything can. Calling "out within 24 h"
when that probability is above a threshold therefore traces the best precision/recall trade-off any
predictor can reach on these predictions: the ceiling the goals are measured against.

Two breakdowns follow. The same precision, recall and ceiling on one run's predictions at a time, and
alerts as an operator sees them: each policy's own predictor in its own run, an alert being a stretch
of consecutive hourly "out within 24 h" for one product x warehouse, judged by whether the shelf then
really emptied in that run, and every stockout of the run by whether an alert warned of it 1-24 h ahead.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from scipy.stats import poisson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.memstore import MemoryStore  # noqa: E402
from benchmarks.original import heuristic_stockout_hours, original_cores  # noqa: E402
from handlers.catalog import Catalog, load_catalog  # noqa: E402
from handlers.demand import minute_demand, minute_rates  # noqa: E402
from handlers.events import scheduled_event  # noqa: E402
from handlers.planning import daily_forecast, hour_shares, intraday_update, outlook  # noqa: E402
from handlers.policy import Policy  # noqa: E402
from handlers.projection import HORIZON_HOURS  # noqa: E402
from handlers.purchasing import arrivals  # noqa: E402
from handlers.runtime import CORES, Runtime, invoke, load_state  # noqa: E402
from handlers.state import State  # noqa: E402
from jobs.schedule import Schedule  # noqa: E402

START = datetime(2026, 1, 5, tzinfo=timezone.utc)
THRESHOLD = 24.0


@dataclass
class RunStats:
    name: str
    on_hand_minutes: float = 0.0
    minutes: int = 0
    # (t, series, ours, heuristic, our probability of a stockout within 24 h)
    predictions: list[tuple[float, int, float, float, float]] = field(default_factory=list)
    snapshots: list[tuple[float, np.ndarray, object]] = field(default_factory=list)  # (t, on_hand, arrivals)
    stockouts: list[tuple[float, int]] = field(default_factory=list)  # (t, series): the shelf emptied in this run
    refills: list[tuple[float, int]] = field(default_factory=list)  # (t, series): an empty shelf was stocked again
    final: State | None = None
    start: State | None = None
    seconds: float = 0.0


def demand_matrix(catalog: Catalog, first_minute_end: float, minutes: int) -> tuple[np.ndarray, np.ndarray]:
    """Units demanded in each minute [M, S], exactly as order_tick draws them, and the expected
    units (the Poisson rates they are drawn with) [M, S]."""
    ends = first_minute_end + 60.0 * np.arange(minutes)
    out = np.empty((minutes, catalog.num_series), dtype=np.int64)
    expected = np.empty((minutes, catalog.num_series))
    for chunk in range(0, minutes, 1440):
        block = ends[chunk:chunk + 1440]
        rates = minute_rates(catalog, block)
        expected[chunk:chunk + len(block)] = rates
        for j, end in enumerate(block):
            out[chunk + j] = minute_demand(catalog, float(end), rates[j])
    return out, expected


def cumulate(per_minute: np.ndarray) -> np.ndarray:
    """[M + 1, S] running totals, starting with a row of zeros."""
    return np.vstack([np.zeros((1, per_minute.shape[1]), dtype=per_minute.dtype), np.cumsum(per_minute, axis=0)])


def run_policy(name: str, store: MemoryStore, catalog: Catalog, cores, begin: float, days: float,
               schedule: Schedule, progress: bool, policy: Policy = Policy()) -> RunStats:
    runtime = Runtime(store=store, catalog=catalog, cores=cores, policy=policy)
    stats = RunStats(name)
    stats.start, _ = load_state(store)
    empty = np.zeros(catalog.num_series, dtype=bool) if stats.start is None else stats.start.on_hand <= 0
    started = time.perf_counter()
    end = int(begin + days * 86400)
    for minute_end in range(int(begin) + 60, end + 1, 60):
        moment = datetime.fromtimestamp(minute_end, timezone.utc)
        for handler in schedule.due(minute_end):
            invoke(handler, scheduled_event(moment, handler, event_id=f"{name}-{minute_end}"), runtime)
            if handler == "order_tick":
                state, _ = load_state(store)
                stats.on_hand_minutes += float(state.on_hand.sum()) * (schedule.intervals["order_tick"] / 60)
                stats.minutes += schedule.intervals["order_tick"] // 60
                now_empty = state.on_hand <= 0
                stats.stockouts.extend((float(minute_end), int(i)) for i in np.flatnonzero(now_empty & ~empty))
                stats.refills.extend((float(minute_end), int(i)) for i in np.flatnonzero(empty & ~now_empty))
                empty = now_empty
            if handler == "forecast":
                state, _ = load_state(store)
                record_predictions(stats, state, catalog, float(minute_end))
        if progress and minute_end % 86400 == 0:
            print(f"  {name}: day {(minute_end - begin) / 86400:.0f}/{days:g}", file=sys.stderr, flush=True)
    stats.final, _ = load_state(store)
    stats.seconds = time.perf_counter() - started
    return stats


def record_predictions(stats: RunStats, state: State, catalog: Catalog, now: float) -> None:
    """Both predictors on the same state: this project's projection and the original heuristic."""
    mean, std = daily_forecast(state, catalog, now)  # as the forecast handler makes it, on any policy's state
    shares = hour_shares(state, catalog)
    ours_state = state.replace(forecast_at=now, forecast_mean=intraday_update(state, mean, shares, now),
                               forecast_std=std, hour_share=shares)
    view = outlook(ours_state, now, Policy(alert_threshold_hours=THRESHOLD))
    heuristic = heuristic_stockout_hours(state)
    for i in range(state.num_series):
        stats.predictions.append((now, i, float(view.stockout_in[i]), float(heuristic[i]), float(view.probability[i])))
    stats.snapshots.append((now, state.on_hand.copy(), arrivals(state, now)))


def _pending(on_hand: np.ndarray, inbound, i: int) -> tuple[float, list[tuple[float, float]]]:
    """Series ``i``'s stock with the orders already due, and its later arrivals (minutes, units)."""
    rows = np.flatnonzero(inbound.series == i)
    etas = sorted((max(0.0, float(inbound.eta_hours[r])) * 60, float(inbound.quantity[r])) for r in rows)
    level = float(on_hand[i]) + sum(q for eta, q in etas if eta <= 0)
    return level, [(eta, q) for eta, q in etas if eta > 0]


def realised_hours(cumulative: np.ndarray, origin: float, minute_index0: float, on_hand: np.ndarray,
                   inbound, *, unmet: bool = False) -> np.ndarray:
    """Hours until demand empties the shelf from ``origin`` [S]; NaN if not within 168 h.

    ``cumulative`` [M + 1, S] is the running demand per minute: the realised units give the
    realised stockout, the expected units (the simulator's rates) the oracle's mean-path one.
    ``unmet=True``: until the first demand that cannot be served (the shelf is empty when a
    customer comes), instead of the moment the last unit sells."""
    m0 = int((origin - minute_index0) // 60)  # minutes already simulated before origin
    s = on_hand.shape[0]
    result = np.full(s, np.nan)
    horizon_minutes = HORIZON_HOURS * 60
    for i in range(s):
        level, etas = _pending(on_hand, inbound, i)
        etas = etas + [(math.inf, 0.0)]
        base = cumulative[m0, i]
        start = 0.0
        for eta, quantity in etas:
            if level <= 0:
                result[i] = start / 60
                break
            m = int(np.searchsorted(cumulative[m0:, i], base + level, side="right" if unmet else "left"))
            if m < eta and m <= horizon_minutes and m0 + m < cumulative.shape[0]:
                result[i] = max(m, start) / 60
                break
            if eta > horizon_minutes:
                break
            level += quantity
            start = eta
    return result


def oracle_probability(expected: np.ndarray, origin: float, minute_index0: float, on_hand: np.ndarray,
                       inbound, within_hours: float = THRESHOLD) -> np.ndarray:
    """Exact probability that demand empties the shelf within ``within_hours`` [S], knowing the
    simulator's minute rates (``expected``: their running totals [M + 1, S]).

    Demand over any stretch is Poisson with the summed rate, and D(t) never decreases, so with
    stock L_k until the k-th arrival (due after minute e_k) the shelf empties in time unless
    D(e_k) < L_k for every k. That is a product of Poisson terms over the independent increments
    between arrivals, summed over the units demanded so far (a short convolution per stretch).
    Matches ``realised_hours``: a crossing at minute m counts before an arrival due at eta if
    m < eta, and within the threshold if m <= within_hours * 60."""
    m0 = int((origin - minute_index0) // 60)
    window = int(within_hours * 60)
    probability = np.zeros(on_hand.shape[0])
    for i in range(on_hand.shape[0]):
        level, etas = _pending(on_hand, inbound, i)
        ends, levels = [], []
        for eta, quantity in etas:
            end = min(math.ceil(eta) - 1, window)
            ends.append(end)
            levels.append(level)
            level += quantity
            if end >= window:
                break
        else:
            ends.append(window)
            levels.append(level)
        thresholds = np.ceil(np.array(levels)).astype(np.int64)  # D(e) >= L <=> D(e) >= ceil(L)
        means = expected[m0 + np.array(ends), i] - expected[m0, i]
        if thresholds[0] <= 0:
            probability[i] = 1.0
            continue
        # stock beyond 12 sigma of the whole window's demand is never reached (P < 1e-30): drop those
        # stretches (levels only grow), which keeps the exact sum small whatever is on order
        reachable = int(means[-1] + 12 * math.sqrt(means[-1]) + 30)
        kept = thresholds <= reachable
        thresholds, means = thresholds[kept], means[kept]
        if len(thresholds) <= 1:
            probability[i] = float(poisson.sf(thresholds[0] - 1, means[0])) if len(thresholds) else 0.0
            continue
        survive = np.zeros(int(thresholds.max()))  # P(D(e_k) = d, no crossing yet), d < max threshold
        survive[0] = 1.0
        previous = 0.0
        for mean, threshold in zip(means, thresholds):
            step = poisson.pmf(np.arange(len(survive)), max(mean - previous, 0.0))
            previous = mean
            survive = np.convolve(survive, step)[:len(survive)]
            survive[threshold:] = 0.0
        probability[i] = 1.0 - survive.sum()
    return np.clip(probability, 0.0, 1.0)


def _precision_recall(said: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    tp = int((said & actual).sum())
    return tp / max(int(said.sum()), 1), tp / max(int(actual.sum()), 1)


PROBABILITY_THRESHOLDS = (0.3, 0.4, 0.5, 0.6)


def _ceiling(exact: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    """The oracle's best balanced min(precision, recall) over thresholds, and that threshold."""
    curve = [(min(_precision_recall(exact >= tau, actual)), tau) for tau in np.linspace(0.05, 0.95, 91)]
    best, tau = max(curve)
    return best, float(tau)


def score(stats_runs: list[RunStats], cumulative: np.ndarray, expected: np.ndarray, minute0: float, *,
          unmet: bool = False) -> dict[str, dict[str, float]]:
    """Every prediction of every run against the realised stockout; the oracle's on the same snapshots.

    The pooled figures come first; ``out["by run"][name]`` holds the stockpulse projection's precision,
    recall and the oracle ceiling on the predictions of one run only."""
    ours, heur, real, oracle, prob, oracle_prob, run_of = [], [], [], [], [], [], []
    for stats in stats_runs:
        snapshots = {}
        for t, on_hand, inbound in stats.snapshots:
            snapshots[t] = (realised_hours(cumulative, t, minute0, on_hand, inbound, unmet=unmet),
                            realised_hours(expected, t, minute0, on_hand, inbound, unmet=unmet),
                            None if unmet else oracle_probability(expected, t, minute0, on_hand, inbound))
        for t, i, o, h, p in stats.predictions:
            truth, mean_path, exact = snapshots[t]
            ours.append(o)
            heur.append(h)
            prob.append(p)
            real.append(truth[i])
            oracle.append(mean_path[i])
            oracle_prob.append(np.nan if exact is None else exact[i])
            run_of.append(stats.name)
    ours_a, heur_a, real_a, oracle_a = (np.array(x) for x in (ours, heur, real, oracle))
    cap = float(HORIZON_HOURS)

    def capped(hours: np.ndarray) -> np.ndarray:
        return np.minimum(np.nan_to_num(hours, nan=cap), cap)

    predicted = {"stockpulse": capped(ours_a), "original": capped(heur_a), "oracle": capped(oracle_a)}
    real_capped = capped(real_a)
    has_stockout = np.isfinite(real_a)
    actual_soon = real_capped <= THRESHOLD
    out: dict[str, dict[str, float]] = {}
    for name, hours in predicted.items():
        precision, recall = _precision_recall(hours <= THRESHOLD, actual_soon)
        out[name] = {
            "mae_hours": float(np.abs(hours - real_capped)[has_stockout].mean()),
            "mae_hours_all": float(np.abs(hours - real_capped).mean()),
            "precision": precision, "recall": recall, "pairs": int(has_stockout.sum()),
            "positives": int(actual_soon.sum()),
        }
    if not unmet:
        exact_a = np.array(oracle_prob)
        for name, values in (("stockpulse", np.array(prob)), ("oracle", exact_a)):
            for tau in PROBABILITY_THRESHOLDS:
                out[name][f"p>={tau}"] = _precision_recall(values >= tau, actual_soon)
        # the best any predictor can do: the oracle's probability at its most balanced threshold
        out["oracle"]["best_balanced"], out["oracle"]["best_threshold"] = _ceiling(exact_a, actual_soon)
        runs = np.array(run_of)
        out["by run"] = {}
        for stats in stats_runs:
            mine = runs == stats.name
            said = predicted["stockpulse"][mine] <= THRESHOLD
            precision, recall = _precision_recall(said, actual_soon[mine])
            out["by run"][stats.name] = {"predictions": int(mine.sum()), "positives": int(actual_soon[mine].sum()),
                                         "said": int(said.sum()), "precision": precision, "recall": recall,
                                         "ceiling": _ceiling(exact_a[mine], actual_soon[mine])[0]}
    return out


def alert_episodes(predictions: list[tuple[float, int, float, float, float]],
                   column: int) -> list[tuple[int, float, float]]:
    """(series, first, end) of every alert: a run of consecutive hourly predictions saying "out within 24 h"
    (``column`` 2: the stockpulse projection, 3: the original heuristic), ended by the first that does not."""
    by_series: dict[int, list[tuple[float, bool]]] = {}
    for row in predictions:
        hours = row[column]
        by_series.setdefault(row[1], []).append((row[0], math.isfinite(hours) and hours <= THRESHOLD))
    episodes = []
    for series, rows in by_series.items():
        rows.sort()
        first = None
        for t, soon in rows:
            if soon and first is None:
                first = t
            elif not soon and first is not None:
                episodes.append((series, first, t))
                first = None
        if first is not None:
            episodes.append((series, first, rows[-1][0] + 3600.0))
    return episodes


def alert_scores(stats: RunStats, column: int, cumulative: np.ndarray, minute0: float,
                 lead_hours: float = 1.0) -> dict[str, float]:
    """Alerts as an operator sees them in one run: was each followed by an empty shelf, was each
    stockout warned about in time?

    An alert is right when the shelf empties while it fires or within 24 h of its start. A wrong one
    is put down to an order landing first when, at its start, an order was due within 24 h or the
    realised demand would have emptied the shelf within 24 h but for orders placed later. A stockout
    is warned about when an alert fired for it between 24 h and ``lead_hours`` before it."""
    episodes = alert_episodes(stats.predictions, column)
    stockouts = np.array(stats.stockouts, dtype=float).reshape(-1, 2)
    snapshots = {t: (on_hand, inbound) for t, on_hand, inbound in stats.snapshots}
    right = order_first = 0
    for i, first, end in episodes:
        if np.any((stockouts[:, 1] == i) & (stockouts[:, 0] >= first)
                  & (stockouts[:, 0] <= max(end, first + THRESHOLD * 3600))):
            right += 1
            continue
        on_hand, inbound = snapshots[first]
        due = inbound.eta_hours[inbound.series == i]
        would = realised_hours(cumulative, first, minute0, on_hand, inbound)[i]
        order_first += bool(np.any((due > 0) & (due <= THRESHOLD)) or would <= THRESHOLD)
    said = [(t, i) for t, i, *hours in stats.predictions
            if math.isfinite(hours[column - 2]) and hours[column - 2] <= THRESHOLD]
    warned = sum(any(j == i and t - THRESHOLD * 3600 <= when <= t - lead_hours * 3600 for when, j in said)
                 for t, i in stats.stockouts)
    return {"alerts": len(episodes), "precision": right / max(len(episodes), 1),
            "wrong, an order landed first": order_first,
            "stockouts": len(stats.stockouts), "warned": warned / max(len(stats.stockouts), 1),
            "median hours empty": _median_hours_empty(stats)}


def _median_hours_empty(stats: RunStats) -> float:
    """Median time from a shelf emptying to its next refill (an order tick's view; to the end of the run
    if never refilled); NaN without stockouts."""
    end = max((t for t, *_ in stats.predictions), default=0.0) + 3600.0
    hours = [(min((r for r, j in stats.refills if j == i and r > t), default=max(end, t)) - t) / 3600
             for t, i in stats.stockouts]
    return float(np.median(hours)) if hours else math.nan


def policy_row(stats: RunStats) -> dict[str, float]:
    final, start = stats.final, stats.start
    sold = int((final.shipped - start.shipped).sum())
    lost = int((final.lost_sales - start.lost_sales).sum())
    return {"fill_rate": sold / max(sold + lost, 1), "lost_sales": lost,
            "mean_on_hand": stats.on_hand_minutes / max(stats.minutes, 1),
            "alerts": int((final.reorders - start.reorders).sum()),
            "purchase_orders": int((final.po_count - start.po_count).sum()), "seconds": stats.seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--warm-up-days", type=float, default=14)
    parser.add_argument("--catalog", help="catalog YAML (default: the built-in 5 x 3)")
    parser.add_argument("--service-level", type=float, default=Policy.service_level)
    parser.add_argument("--cover-days", type=float, default=Policy.cover_days)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    policy = Policy(service_level=args.service_level, cover_days=args.cover_days)
    catalog = load_catalog(args.catalog)
    schedule = Schedule.parse()
    progress = not args.quiet

    warm = MemoryStore()
    if progress:
        print(f"warm-up: {args.warm_up_days:g} days under the stockpulse policy", file=sys.stderr)
    run_policy("warm-up", warm, catalog, CORES, START.timestamp(), args.warm_up_days, schedule, progress, policy)
    begin = START.timestamp() + args.warm_up_days * 86400
    runs = []
    for name, cores in (("stockpulse", CORES),
                        ("original", original_cores(every_alert_orders=True)),
                        ("original, one open order", original_cores(every_alert_orders=False))):
        runs.append(run_policy(name, warm.copy(), catalog, cores, begin, args.days, schedule, progress, policy))

    minutes = int((args.days + 8) * 1440) + 1
    if progress:
        print("scoring every prediction against the realised demand and the oracle", file=sys.stderr, flush=True)
    demand, rates = demand_matrix(catalog, begin + 60, minutes)
    cumulative, expected = cumulate(demand), cumulate(rates)
    predictors = score(runs, cumulative, expected, begin)
    predictors_unmet = score(runs, cumulative, expected, begin, unmet=True)

    rows = {r.name: policy_row(r) for r in runs}
    base = rows["original"]
    print(f"Replenishment benchmark — {catalog.num_series} series ({catalog.source}), {args.days:g} days after a "
          f"{args.warm_up_days:g}-day warm-up, same demand for every policy")
    print(f"stockpulse policy: service level {policy.service_level:.0%}, cover {policy.cover_days:g} days, "
          f"alert threshold {policy.alert_threshold_hours:g} h")
    print(f"machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
          f"{platform.machine()}\n")
    print("| policy | fill rate | lost sales | mean on-hand | on-hand vs original | alerts | purchase orders | run s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['fill_rate']:.2%} | {r['lost_sales']:,} | {r['mean_on_hand']:,.0f} | "
              f"{r['mean_on_hand'] / base['mean_on_hand']:.2f}x | {r['alerts']:,} | {r['purchase_orders']:,} | "
              f"{r['seconds']:.0f} |")
    ours, heur = predictors["stockpulse"], predictors["original"]
    print(f"\nPredicted hours to stockout vs realised ({ours['pairs']:,} predictions with a realised stockout "
          f"within 168 h, from all three runs):\n")
    print("| predictor | stockout = | MAE h (stockout within 168 h) | MAE h (all) | precision <=24 h | recall <=24 h |")
    print("|---|---|---|---|---|---|")
    labels = (("stockpulse", "stockpulse projection"), ("original", "original heuristic"),
              ("oracle", "oracle: true demand rates, mean path"))
    for table, definition in ((predictors, "last unit sold"), (predictors_unmet, "first unmet demand")):
        for name, label in labels:
            p = table[name]
            print(f"| {label} | {definition} | {p['mae_hours']:.1f} | {p['mae_hours_all']:.1f} | {p['precision']:.3f} | "
                  f"{p['recall']:.3f} |")
    oracle = predictors["oracle"]
    print(f"\n\"Out within 24 h\" called when the probability of a stockout within 24 h is at least a threshold "
          f"(stockout = last unit sold; {ours['positives']:,} predictions with a realised stockout within 24 h):\n")
    print("| threshold | stockpulse precision | stockpulse recall | oracle precision | oracle recall |")
    print("|---|---|---|---|---|")
    for tau in PROBABILITY_THRESHOLDS:
        (op, orc), (xp, xr) = ours[f"p>={tau}"], oracle[f"p>={tau}"]
        print(f"| {tau:g} | {op:.3f} | {orc:.3f} | {xp:.3f} | {xr:.3f} |")
    if not ours["positives"]:
        print("\nNo prediction had a realised stockout within 24 h: no ceiling to measure (run more days).")
    else:
        print(f"\nCeiling: the oracle's exact probability at its most balanced threshold ({oracle['best_threshold']:.2f}) "
              f"reaches precision and recall of {oracle['best_balanced']:.3f} at best; no predictor can expect both "
              f"higher on these predictions.")
    print("\nThe same, one run at a time (the states each policy leads to differ in how many stockouts are "
          "close calls):\n")
    print("| predictions of the run | predictions | realised stockout within 24 h | stockpulse precision | "
          "stockpulse recall | oracle's best balanced |")
    print("|---|---|---|---|---|---|")
    for name, r in predictors["by run"].items():
        precision = f"{r['precision']:.3f}" if r["said"] else "-"
        recall, ceiling = (f"{r['recall']:.3f}", f"{r['ceiling']:.3f}") if r["positives"] else ("-", "-")
        print(f"| {name} | {r['predictions']:,} | {r['positives']:,} | {precision} | {recall} | {ceiling} |")
    print("\nAlerts as an operator sees them: each policy's own predictor in its own run. An alert is a run of "
          "consecutive hourly \"out within 24 h\" for one product x warehouse; it is right if the shelf then "
          "empties (while it fires or within 24 h of its start), later orders included:\n")
    print("| run | predictor | alerts | right | wrong, an order landed first | stockouts in the run | "
          "median hours empty | warned 1-24 h ahead |")
    print("|---|---|---|---|---|---|---|---|")
    for stats in runs:
        mine = stats.name == "stockpulse"
        a = alert_scores(stats, 2 if mine else 3, cumulative, begin)
        right = f"{a['precision']:.3f}" if a["alerts"] else "-"
        warned, empty = (f"{a['warned']:.3f}", f"{a['median hours empty']:.1f}") if a["stockouts"] else ("-", "-")
        print(f"| {stats.name} | {'stockpulse projection' if mine else 'original heuristic'} | {a['alerts']:,} | "
              f"{right} | {a['wrong, an order landed first']:,} | {a['stockouts']:,} | {empty} | {warned} |")
    ok = {
        "fill rate >= 98 %": rows["stockpulse"]["fill_rate"] >= 0.98,
        "mean on-hand <= 0.8 x original": rows["stockpulse"]["mean_on_hand"] <= 0.8 * base["mean_on_hand"],
        "stockout MAE <= 1/3 of the heuristic's": ours["mae_hours"] <= heur["mae_hours"] / 3,
        "precision >= 0.9": ours["precision"] >= 0.9,
        "recall >= 0.9": ours["recall"] >= 0.9,
    }
    print("\nGoals: " + "; ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in ok.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
