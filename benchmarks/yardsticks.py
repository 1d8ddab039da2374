"""Yardsticks of the replenishment benchmark: when the shelf really empties, the oracle's exact
probability that it does within 24 h, and the scores of every prediction and alert against them.

``RunStats`` is what one run of a policy records; ``score`` pools the hourly predictions of several
runs (and breaks them down by run), ``alert_scores`` judges one run's alerts as an operator would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import poisson

from handlers.model.projection import HORIZON_HOURS
from handlers.model.state import State

__all__ = [
    "HEURISTIC",
    "PROBABILITY_THRESHOLDS",
    "PROJECTION",
    "THRESHOLD",
    "RunStats",
    "alert_episodes",
    "alert_scores",
    "cumulate",
    "oracle_probability",
    "realised_hours",
    "score",
]

THRESHOLD = 24.0
PROJECTION, HEURISTIC = 2, 3  # where each predictor's hours to stockout sit in a ``RunStats.predictions`` row
PROBABILITY_THRESHOLDS = (0.3, 0.4, 0.5, 0.6)


@dataclass
class RunStats:
    """What one run of a policy records: stock held, every hourly prediction with the state it was made
    on, and when shelves emptied and were stocked again."""

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


def cumulate(per_minute: np.ndarray) -> np.ndarray:
    """[M + 1, S] running totals, starting with a row of zeros."""
    return np.vstack([np.zeros((1, per_minute.shape[1]), dtype=per_minute.dtype), np.cumsum(per_minute, axis=0)])


def _pending(on_hand: np.ndarray, inbound, i: int) -> tuple[float, list[tuple[float, float]]]:
    """Series ``i``'s stock with the orders already due, and its later arrivals (minutes, units)."""
    rows = np.flatnonzero(inbound.series == i)
    etas = sorted((max(0.0, float(inbound.eta_hours[r])) * 60, float(inbound.quantity[r])) for r in rows)
    level = float(on_hand[i]) + sum(q for eta, q in etas if eta <= 0)
    return level, [(eta, q) for eta, q in etas if eta > 0]


def realised_hours(
    cumulative: np.ndarray, origin: float, minute_index0: float, on_hand: np.ndarray, inbound, *, unmet: bool = False
) -> np.ndarray:
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


def oracle_probability(
    expected: np.ndarray, origin: float, minute_index0: float, on_hand: np.ndarray, inbound, within_hours: float = THRESHOLD
) -> np.ndarray:
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
            survive = np.convolve(survive, step)[: len(survive)]
            survive[threshold:] = 0.0
        probability[i] = 1.0 - survive.sum()
    return np.clip(probability, 0.0, 1.0)


def _precision_recall(said: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    tp = int((said & actual).sum())
    return tp / max(int(said.sum()), 1), tp / max(int(actual.sum()), 1)


def _ceiling(exact: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    """The oracle's best balanced min(precision, recall) over thresholds, and that threshold."""
    curve = [(min(_precision_recall(exact >= tau, actual)), tau) for tau in np.linspace(0.05, 0.95, 91)]
    best, tau = max(curve)
    return best, float(tau)


def score(
    stats_runs: list[RunStats], cumulative: np.ndarray, expected: np.ndarray, minute0: float, *, unmet: bool = False
) -> dict[str, dict[str, float]]:
    """Every prediction of every run against the realised stockout; the oracle's on the same snapshots.

    The pooled figures come first; ``out["by run"][name]`` holds the stockpulse projection's precision,
    recall and the oracle ceiling on the predictions of one run only."""
    ours, heur, real, oracle, prob, oracle_prob, run_of = [], [], [], [], [], [], []
    for stats in stats_runs:
        snapshots = {}
        for t, on_hand, inbound in stats.snapshots:
            snapshots[t] = (
                realised_hours(cumulative, t, minute0, on_hand, inbound, unmet=unmet),
                realised_hours(expected, t, minute0, on_hand, inbound, unmet=unmet),
                None if unmet else oracle_probability(expected, t, minute0, on_hand, inbound),
            )
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
            "precision": precision,
            "recall": recall,
            "pairs": int(has_stockout.sum()),
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
            out["by run"][stats.name] = {
                "predictions": int(mine.sum()),
                "positives": int(actual_soon[mine].sum()),
                "said": int(said.sum()),
                "precision": precision,
                "recall": recall,
                "ceiling": _ceiling(exact_a[mine], actual_soon[mine])[0],
            }
    return out


def _soon(hours: float) -> bool:
    """The call "out within 24 h" (NaN: no stockout within the horizon)."""
    return math.isfinite(hours) and hours <= THRESHOLD


def alert_episodes(predictions: list[tuple[float, int, float, float, float]], column: int) -> list[tuple[int, float, float]]:
    """(series, first, end) of every alert: a run of consecutive hourly predictions saying "out within 24 h"
    (``column``: ``PROJECTION`` or ``HEURISTIC``), ended by the first that does not."""
    by_series: dict[int, list[tuple[float, bool]]] = {}
    for row in predictions:
        by_series.setdefault(row[1], []).append((row[0], _soon(row[column])))
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


def alert_scores(stats: RunStats, column: int, cumulative: np.ndarray, minute0: float, lead_hours: float = 1.0) -> dict[str, float]:
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
        if np.any((stockouts[:, 1] == i) & (stockouts[:, 0] >= first) & (stockouts[:, 0] <= max(end, first + THRESHOLD * 3600))):
            right += 1
            continue
        on_hand, inbound = snapshots[first]
        due = inbound.eta_hours[inbound.series == i]
        would = realised_hours(cumulative, first, minute0, on_hand, inbound)[i]
        order_first += bool(np.any((due > 0) & (due <= THRESHOLD)) or would <= THRESHOLD)
    said = [(row[0], row[1]) for row in stats.predictions if _soon(row[column])]
    warned = sum(any(j == i and t - THRESHOLD * 3600 <= when <= t - lead_hours * 3600 for when, j in said) for t, i in stats.stockouts)
    return {
        "alerts": len(episodes),
        "precision": right / max(len(episodes), 1),
        "wrong, an order landed first": order_first,
        "stockouts": len(stats.stockouts),
        "warned": warned / max(len(stats.stockouts), 1),
        "median hours empty": _median_hours_empty(stats),
    }


def _median_hours_empty(stats: RunStats) -> float:
    """Median time from a shelf emptying to its next refill (an order tick's view; to the end of the run
    if never refilled); NaN without stockouts."""
    end = max((t for t, *_ in stats.predictions), default=0.0) + 3600.0
    hours = [(min((r for r, j in stats.refills if j == i and r > t), default=max(end, t)) - t) / 3600 for t, i in stats.stockouts]
    return float(np.median(hours)) if hours else math.nan
