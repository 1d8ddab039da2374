"""Projecting stock forward hour by hour: when does it run out, and how likely is that.

Demand is projected from the stored daily forecast (mean and standard deviation per UTC day) and
the hour-of-day share of each series. Within an hour demand is taken as uniform, so cumulative
expected demand ``D(t)`` is piecewise linear and the stockout time is exact for that projection.
Every open purchase order adds its quantity at its due time.

"No stockout within the horizon" is ``NaN`` here, ``null`` in the logs, and an absent
``predicted_stockout_hours`` series in Prometheus (with ``stockout_within_horizon`` 0/1 beside it):
never a large sentinel number that would skew averages.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from handlers.model.purchasing import Arrivals

__all__ = ["DemandPath", "demand_path", "stockout_hours", "stockout_probability", "HORIZON_HOURS"]

HORIZON_HOURS = 168


@dataclass(frozen=True)
class DemandPath:
    """Cumulative expected demand and its variance at the end of each hour from now [S, H]."""

    mean: np.ndarray  # expected demand in hour k
    cum_mean: np.ndarray  # D(k + 1)
    cum_var: np.ndarray  # Var D(k + 1)

    def at(self, hours: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of D(t) for t in hours from now (per series), linear in between;
        beyond the horizon it continues at the last day's average rate."""
        s, h = self.cum_mean.shape
        t = np.broadcast_to(np.asarray(hours, dtype=float), (s,))
        t = np.clip(np.nan_to_num(t, nan=0.0, posinf=h), 0.0, None)
        zero = np.zeros((s, 1))
        cm = np.hstack([zero, self.cum_mean])
        cv = np.hstack([zero, self.cum_var])
        k = np.minimum(np.floor(t).astype(np.int64), h - 1)
        frac = t - k
        rows = np.arange(s)
        mean = cm[rows, k] + frac * (cm[rows, k + 1] - cm[rows, k])
        var = cv[rows, k] + frac * (cv[rows, k + 1] - cv[rows, k])
        beyond = t > h
        if beyond.any():
            tail = min(24, h)
            rate_m = (cm[:, h] - cm[:, h - tail]) / tail
            rate_v = (cv[:, h] - cv[:, h - tail]) / tail
            mean = np.where(beyond, cm[:, h] + (t - h) * rate_m, mean)
            var = np.where(beyond, cv[:, h] + (t - h) * rate_v, var)
        return mean, var


def demand_path(
    daily_mean: np.ndarray, daily_std: np.ndarray, hour_share: np.ndarray, forecast_day: int, now: float, hours: int = HORIZON_HOURS
) -> DemandPath:
    """Hourly demand from ``now`` (epoch s) for ``hours`` hours.

    ``daily_mean``/``daily_std`` [S, F] are per UTC day starting at day number ``forecast_day``;
    days past the last one repeat it. Within a day the variance is spread like the mean (a
    partial day of fraction f has variance f * day variance).
    """
    mids = now + (np.arange(hours) + 0.5) * 3600.0
    day = np.clip((mids // 86400).astype(np.int64) - forecast_day, 0, daily_mean.shape[1] - 1)
    hour = ((mids % 86400) // 3600).astype(np.int64)
    share = hour_share[:, hour]
    mean = np.maximum(daily_mean[:, day], 0.0) * share
    var = np.square(daily_std[:, day]) * share
    return DemandPath(mean=mean, cum_mean=np.cumsum(mean, axis=1), cum_var=np.cumsum(var, axis=1))


def _first_crossing(path: DemandPath, level: np.ndarray) -> np.ndarray:
    """First t (hours) with D(t) >= level; 0 when level <= 0; NaN if not within the horizon."""
    s, h = path.cum_mean.shape
    reached = path.cum_mean >= level[:, None]
    found = reached.any(axis=1)
    k = np.argmax(reached, axis=1)
    rows = np.arange(s)
    before = np.where(k > 0, path.cum_mean[rows, np.maximum(k - 1, 0)], 0.0)
    rate = path.mean[rows, k]
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = np.where(rate > 0, (level - before) / rate, 0.0)
    t = np.where(found, k + np.clip(inside, 0.0, 1.0), np.nan)
    return np.where(level <= 0, 0.0, t)


def _segments(on_hand: np.ndarray, arrivals: Arrivals) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Stock levels between arrivals: yields (level, segment start, segment end) [S] per segment k
    (k = 0 before any arrival). Arrivals already due (eta <= 0) count as on hand."""
    s = on_hand.shape[0]
    eta = np.maximum(np.nan_to_num(arrivals.eta_hours, nan=np.inf), 0.0)
    order = np.lexsort((eta, arrivals.series))
    series, quantity, eta = arrivals.series[order], arrivals.quantity[order], eta[order]
    counts = np.bincount(series, minlength=s)
    first = np.r_[0, np.cumsum(counts)[:-1]]
    level = on_hand.astype(float)
    start = np.zeros(s)
    immediate = eta <= 0
    np.add.at(level, series[immediate], quantity[immediate])
    position = first + np.bincount(series[immediate], minlength=s)  # next pending arrival per series
    ends = np.append(eta, np.inf)
    while True:
        pending = position < first + counts
        end = np.where(pending, ends[np.minimum(position, len(eta))], np.inf)
        yield level, start, end
        if not pending.any():
            return
        rows = np.flatnonzero(pending)
        level = level.copy()
        level[rows] += quantity[position[rows]]
        start = np.where(pending, end, start)
        position = position + pending


def stockout_hours(path: DemandPath, on_hand: np.ndarray, arrivals: Arrivals) -> np.ndarray:
    """Hours until projected on-hand reaches zero (NaN: not within the horizon), with every open
    order added at its due time."""
    result = np.full(on_hand.shape[0], np.nan)
    undecided = np.ones(on_hand.shape[0], dtype=bool)
    for level, _, end in _segments(np.asarray(on_hand, dtype=float), arrivals):
        t = _first_crossing(path, level)
        hit = undecided & (t < end)  # runs out before the next arrival (NaN compares False)
        result[hit] = t[hit]
        undecided &= ~hit & np.isfinite(t)  # never crossing this level: never crossing a higher one
        if not undecided.any():
            break
    return result


_erfc = np.frompyfunc(math.erfc, 1, 1)


def normal_sf(z: np.ndarray) -> np.ndarray:
    """P(Z > z) for a standard normal Z, elementwise (the C library's erfc: accurate in the far
    tail, where ``1 - cdf`` would round to 0, and no scipy import on the handlers' cold path)."""
    return 0.5 * np.asarray(_erfc(np.asarray(z, dtype=float) / math.sqrt(2.0)), dtype=float)


def _p_reaches(path: DemandPath, t: np.ndarray, level: np.ndarray) -> np.ndarray:
    """P(D(t) >= level), normal approximation with continuity correction."""
    mean, var = path.at(t)
    sd = np.sqrt(np.maximum(var, 1e-12))
    p = normal_sf((level - 0.5 - mean) / sd)
    return np.where(level <= 0, 1.0, p)


def stockout_probability(path: DemandPath, on_hand: np.ndarray, arrivals: Arrivals, within_hours: float) -> np.ndarray:
    """Probability that stock runs out within ``within_hours``: the largest over the stretches
    between arrivals of P(demand by the stretch's end >= stock in it) — a tight lower bound of the
    probability of the union."""
    on_hand = np.asarray(on_hand, dtype=float)
    probability = np.zeros(on_hand.shape[0])
    for level, start, end in _segments(on_hand, arrivals):
        inside = start < within_hours
        p = _p_reaches(path, np.minimum(end, within_hours), level)
        probability = np.where(inside, np.maximum(probability, p), probability)
        if not inside.any():
            break
    return np.clip(probability, 0.0, 1.0)
