"""Comparison forecasters with the same contract as :func:`handlers.forecasting.model.forecast`.

Each takes ``history [S, T]`` (NaN before a series started), ``horizon`` and ``season`` and returns a
:class:`~handlers.forecasting.model.Forecast`. They are vectorised over series; ``std`` is a simple
residual-based estimate, good enough to compare against, not to plan safety stock with.

- ``naive`` — repeat the last observed value.
- ``seasonal_naive_<season>`` — repeat the last observed season.
- ``moving_average_28`` — the mean of the last 28 observed points.
- ``linear_trend_7`` — the original system's method: a least-squares line through the last 7 points,
  extrapolated and clipped at 0.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from handlers.forecasting.model import Forecast
from handlers.forecasting.scores import naive_scale

__all__ = [
    "BASELINES",
    "Forecaster",
    "baselines_for",
    "linear_trend",
    "moving_average",
    "naive",
    "seasonal_naive",
]

Forecaster = Callable[..., Forecast]


def _as_history(history: np.ndarray, horizon: int) -> np.ndarray:
    values = np.asarray(history, dtype=float)
    if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 1:
        raise ValueError(f"history must be [series, periods] with both >= 1, got shape {values.shape}")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    return values


def _last_finite(values: np.ndarray) -> np.ndarray:
    """Last finite value of each series (0 for a series with none)."""
    finite = np.isfinite(values)
    last = values.shape[1] - 1 - np.argmax(finite[:, ::-1], axis=1)
    return np.where(finite.any(axis=1), values[np.arange(values.shape[0]), last], 0.0)


def _clean(mean: np.ndarray, std: np.ndarray) -> Forecast:
    return Forecast(mean=np.maximum(np.nan_to_num(mean), 0.0), std=np.maximum(np.nan_to_num(std), 0.0))


def naive(history: np.ndarray, horizon: int, *, season: int = 7) -> Forecast:
    """Repeat the last observed value; std grows like a random walk, ``sqrt(step)``."""
    values = _as_history(history, horizon)
    level = _last_finite(values)[:, None]
    step_sd = np.sqrt(naive_scale(values))[:, None]
    steps = np.arange(1, horizon + 1)[None, :]
    return _clean(np.repeat(level, horizon, axis=1), step_sd * np.sqrt(steps))


def seasonal_naive(history: np.ndarray, horizon: int, *, season: int = 7) -> Forecast:
    """Repeat the last observed season (the last value where a phase has never been seen)."""
    values = _as_history(history, horizon)
    n_series, length = values.shape
    steps = np.arange(horizon)
    source = length - season + (steps % season)  # same phase, last season
    in_range = source >= 0
    picked = values[:, np.where(in_range, source, 0)]
    fallback = _last_finite(values)[:, None]
    mean = np.where(in_range[None, :] & np.isfinite(picked), picked, fallback)
    diffs = values[:, season:] - values[:, :-season] if length > season else np.full((n_series, 1), np.nan)
    sq = np.where(np.isfinite(diffs), diffs, 0.0) ** 2
    count = np.isfinite(diffs).sum(axis=1)
    season_sd = np.sqrt(sq.sum(axis=1) / np.maximum(count, 1))[:, None]
    return _clean(mean, season_sd * np.sqrt(steps[None, :] // season + 1))


def moving_average(history: np.ndarray, horizon: int, *, season: int = 7, window: int = 28) -> Forecast:
    """The mean of the last ``window`` observed points, flat over the horizon."""
    values = _as_history(history, horizon)[:, -window:]
    finite = np.isfinite(values)
    count = np.maximum(finite.sum(axis=1), 1)
    mean = np.where(finite, values, 0.0).sum(axis=1) / count
    var = np.where(finite, values - mean[:, None], 0.0) ** 2
    sd = np.sqrt(var.sum(axis=1) / count * (1.0 + 1.0 / count))
    return _clean(np.repeat(mean[:, None], horizon, axis=1), np.repeat(sd[:, None], horizon, axis=1))


def linear_trend(history: np.ndarray, horizon: int, *, season: int = 7, window: int = 7) -> Forecast:
    """Least-squares line through the last ``window`` observed points, extrapolated, clipped at 0."""
    values = _as_history(history, horizon)[:, -window:]
    finite = np.isfinite(values)
    x = np.broadcast_to(np.arange(values.shape[1], dtype=float), values.shape)
    y = np.where(finite, values, 0.0)
    n = finite.sum(axis=1)
    sx, sy = (x * finite).sum(axis=1), y.sum(axis=1)
    sxx, sxy = (x * x * finite).sum(axis=1), (x * y).sum(axis=1)
    denom = n * sxx - sx**2
    slope = np.where(denom > 0, (n * sxy - sx * sy) / np.where(denom > 0, denom, 1.0), 0.0)
    intercept = (sy - slope * sx) / np.maximum(n, 1)
    future = values.shape[1] + np.arange(horizon)[None, :]
    mean = intercept[:, None] + slope[:, None] * future
    residual = np.where(finite, y - (intercept[:, None] + slope[:, None] * x), 0.0)
    sd = np.sqrt((residual**2).sum(axis=1) / np.maximum(n - 2, 1))
    return _clean(mean, np.repeat(sd[:, None], horizon, axis=1))


def baselines_for(season: int) -> dict[str, Forecaster]:
    """The comparison models by name; the seasonal one is named after ``season``."""
    return {
        "naive": naive,
        f"seasonal_naive_{season}": seasonal_naive,
        "moving_average_28": partial(moving_average, window=28),
        "linear_trend_7": partial(linear_trend, window=7),
    }


BASELINES: dict[str, Forecaster] = baselines_for(7)
