"""Forecast accuracy scores for many series at once (M5 conventions).

All functions take arrays laid out ``[series, time]`` and are vectorised: no Python loop per series.

- :func:`rmsse` — root mean squared scaled error per series. The scale is the mean squared one-step
  naive difference of the training history, counted from each series' first non-zero value (the M5
  rule: leading zeros before a product was on sale do not make the naive forecast look good).
- :func:`mean_rmsse` — the mean of :func:`rmsse` over series whose scale is non-zero.
- :func:`wape` — weighted absolute percentage error, ``Σ|y - ŷ| / Σ y`` over every series and period.
"""

from __future__ import annotations

import numpy as np

__all__ = ["naive_scale", "rmsse", "mean_rmsse", "wape"]


def naive_scale(train: np.ndarray) -> np.ndarray:
    """Mean squared one-step difference of each series from its first non-zero value on.

    Args:
        train: ``[S, T]`` history; NaN marks periods before a series existed.

    Returns:
        ``[S]`` float array; NaN where the series has fewer than two points from its first non-zero value
        (the scale is undefined). Zero where the history is constant from that point on.
    """
    values = np.atleast_2d(np.asarray(train, dtype=float))
    with np.errstate(invalid="ignore"):
        started = np.logical_or.accumulate(np.abs(values) > 0, axis=1)  # from the first non-zero value on
    diffs = np.diff(values, axis=1)
    valid = started[:, :-1] & np.isfinite(diffs)  # both ends of the difference are in the active part
    count = valid.sum(axis=1)
    total = np.square(diffs, out=np.zeros_like(diffs), where=valid).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def rmsse(train: np.ndarray, test: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Root mean squared scaled error of each series (M5 style).

    Args:
        train: ``[S, T]`` in-sample history (NaN allowed before a series starts).
        test: ``[S, h]`` actual values over the forecast horizon.
        pred: ``[S, h]`` forecasts for the same periods.

    Returns:
        ``[S]`` RMSSE; NaN for series whose scale is zero or undefined.
    """
    test_arr = np.atleast_2d(np.asarray(test, dtype=float))
    pred_arr = np.atleast_2d(np.asarray(pred, dtype=float))
    if test_arr.shape != pred_arr.shape:
        raise ValueError(f"test {test_arr.shape} and pred {pred_arr.shape} must have the same shape")
    scale = naive_scale(train)
    if scale.shape[0] != test_arr.shape[0]:
        raise ValueError(f"train has {scale.shape[0]} series but test has {test_arr.shape[0]}")
    mse = np.mean((test_arr - pred_arr) ** 2, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, np.sqrt(mse / np.where(scale > 0, scale, 1.0)), np.nan)


def mean_rmsse(train: np.ndarray, test: np.ndarray, pred: np.ndarray) -> float:
    """Mean RMSSE over the series with a non-zero scale (NaN if there is none)."""
    per_series = rmsse(train, test, pred)
    finite = np.isfinite(per_series)
    return float(per_series[finite].mean()) if finite.any() else float("nan")


def wape(test: np.ndarray, pred: np.ndarray) -> float:
    """Weighted absolute percentage error ``Σ|test - pred| / Σ test`` (NaN if no demand at all)."""
    test_arr = np.asarray(test, dtype=float)
    pred_arr = np.asarray(pred, dtype=float)
    if test_arr.shape != pred_arr.shape:
        raise ValueError(f"test {test_arr.shape} and pred {pred_arr.shape} must have the same shape")
    actual = float(np.abs(test_arr).sum())
    return float(np.abs(test_arr - pred_arr).sum() / actual) if actual > 0 else float("nan")
