"""The stockpulse demand model: one pooled regression over scaled window features of every series.

What it does, for a history ``[S, T]`` and a horizon ``h``:

1. Keep the last ``LOOKBACK_SEASONS`` seasons (112 days for daily data) and divide each series by its
   scale (root mean squared one-step difference, the RMSSE denominator), so that every series speaks
   the same units and a single model can be fitted over all of them.
2. Describe "series *i* seen up to origin *o*, target *o + h*" by a few window statistics: the mean of
   the last 1, 2, 4, 8 and 16 seasons; the mean of the last 4, 8 and 16 values in the target's phase
   (own weekday profile); the 4- and 16-season means times the pooled seasonal profile of all series
   (the shrinkage target for short or noisy profiles). Each statistic appears twice, multiplied by the
   series' share of non-zero periods ``p`` and by ``1 - p``, so intermittent and smooth series get their
   own weights (long windows for sparse series, recent ones for fast movers).
3. Fit ONE non-negative least-squares regression (``scipy.optimize.nnls``, what scikit-learn's
   ``LinearRegression(positive=True)`` calls, run on the Cholesky factor of the normal equations) on
   rolling origins inside the history, pooled over series (subsampled to ``MAX_TRAIN_ROWS`` rows with a
   fixed seed). Non-negative weights on non-negative features keep forecasts ``>= 0``; one weight vector
   serves every step ahead.
4. The predictive variance is a second pooled regression: squared scaled residuals of the training rows
   on ``[1, ŷ, ŷ², ŷ·step/season]`` (non-negative). Demand is heavy-tailed (many small errors, a few
   large ones), so the result is then scaled, per band of non-zero share, by the factor that makes
   ``mean ± 1.96·std`` hold 95 % of the training residuals: ``std`` is a normal-equivalent spread,
   calibrated at the 95 % level that safety stock uses. Multiplied back by the series scale.

Histories too short to hold a single training row fall back to the mean of what is there.
No loop over series; the only randomness is the seeded row sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from handlers.scores import naive_scale

__all__ = ["MODEL_NAME", "HISTORY_DAYS", "Forecast", "forecast"]

MODEL_NAME = "stockpulse"
LOOKBACK_SEASONS = 16
HISTORY_DAYS = 7 * LOOKBACK_SEASONS  # 112: daily history the live handler keeps; the model uses no more
LEVEL_SEASONS = (1, 2, 4, 8, 16)
PHASE_SEASONS = (4, 8, 16)
PROFILE_SEASONS = (4, 16)
MAX_TRAIN_ROWS = 100_000
MIN_TRAIN_ROWS = 30
SEED = 0
COVERAGE, NORMAL_QUANTILE = 0.95, 1.959964  # std is calibrated so that mean ± 1.96 std covers 95 %
SHARE_BANDS = (0.25, 0.5, 0.75)  # non-zero share bands with their own tail factor


@dataclass(frozen=True)
class Forecast:
    """Point forecast and predictive standard deviation, both ``[S, horizon]`` and ``>= 0``."""

    mean: np.ndarray
    std: np.ndarray


def _prefix(values: np.ndarray) -> np.ndarray:
    """``[S, T + 1]`` running sums along time, starting with a column of zeros."""
    out = np.zeros((values.shape[0], values.shape[1] + 1))
    np.cumsum(values, axis=1, out=out[:, 1:])
    return out


def _block_prefix(values: np.ndarray, season: int, pad: int) -> np.ndarray:
    """``[S, blocks + 1, season]`` running sums over whole seasons, per phase (front padded by ``pad``)."""
    n_series, length = values.shape
    out = np.zeros((n_series, (length + pad) // season + 1, season))
    out[:, 1:].reshape(n_series, -1)[:, pad:] = values
    np.cumsum(out, axis=1, out=out)
    return out


class _Windows:
    """Prefix sums of a scaled history so any window mean costs two lookups."""

    def __init__(self, scaled: np.ndarray, season: int) -> None:
        n_series, length = scaled.shape
        self.season, self.length = season, length
        finite = np.isfinite(scaled)
        values = np.where(finite, scaled, 0.0)
        self.sum = _prefix(values)
        self.count = _prefix(finite)
        self.nonzero = _prefix(values != 0)
        # same-phase prefix sums over blocks of one season; the front is padded to whole blocks
        self.pad = (-length) % season
        self.phase_sum = _block_prefix(values, season, self.pad)
        self.phase_count = _block_prefix(finite, season, self.pad)
        total, n = self.phase_sum[:, -1].sum(axis=0), self.phase_count[:, -1].sum(axis=0)
        overall = total.sum() / n.sum() if n.sum() > 0 else 0.0
        per_phase = np.where(n > 0, total / np.maximum(n, 1.0), overall)
        self.profile = per_phase / overall if overall > 0 else np.ones(season)  # by padded phase

    def mean(self, series: np.ndarray, origin: np.ndarray, width: int) -> np.ndarray:
        """Mean of the finite values in ``[origin - width, origin)``; NaN where there are none."""
        start = np.maximum(origin - width, 0)
        total = self.sum[series, origin] - self.sum[series, start]
        n = self.count[series, origin] - self.count[series, start]
        return np.where(n > 0, total / np.maximum(n, 1.0), np.nan)

    def nonzero_share(self, series: np.ndarray, origin: np.ndarray, width: int) -> np.ndarray:
        """Share of non-zero values among the finite values in ``[origin - width, origin)``."""
        start = np.maximum(origin - width, 0)
        n = self.count[series, origin] - self.count[series, start]
        nonzero = self.nonzero[series, origin] - self.nonzero[series, start]
        return np.where(n > 0, nonzero / np.maximum(n, 1.0), 0.0)

    def phase_mean(self, series: np.ndarray, origin: np.ndarray, target: np.ndarray, seasons: int) -> np.ndarray:
        """Mean of the last ``seasons`` values before ``origin`` in the phase of ``target``; NaN if none."""
        phase = (target + self.pad) % self.season
        last = origin - 1 + self.pad  # padded index of the latest observed value
        block = np.where(last % self.season >= phase, last // self.season, last // self.season - 1) + 1
        start = np.maximum(block - seasons, 0)
        total = self.phase_sum[series, block, phase] - self.phase_sum[series, start, phase]
        n = self.phase_count[series, block, phase] - self.phase_count[series, start, phase]
        return np.where(n > 0, total / np.maximum(n, 1.0), np.nan)


def _design(
    win: _Windows, series: np.ndarray, origin: np.ndarray, step: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Window features ``[n, m, F]`` and non-zero share ``[n, 1, 1]`` for ``n`` (series, origin) pairs.

    ``origin`` counts the observed periods (the forecast starts at index ``origin``); ``step`` ``[n, m]``
    holds the steps ahead (>= 1). The regression sees ``[features * share, features * (1 - share)]``.
    """
    season = win.season
    target = origin[:, None] + step - 1
    fallback = np.nan_to_num(win.mean(series, origin, win.length))
    levels = {k: win.mean(series, origin, k * season) for k in LEVEL_SEASONS}
    levels = {k: np.where(np.isnan(v), fallback, v)[:, None] for k, v in levels.items()}
    columns = [np.broadcast_to(level, target.shape) for level in levels.values()]
    for k in PHASE_SEASONS:
        own = win.phase_mean(series[:, None], origin[:, None], target, k)
        columns.append(np.where(np.isnan(own), levels[4], own))
    pooled = win.profile[(target + win.pad) % season]
    columns.extend(levels[k] * pooled for k in PROFILE_SEASONS)
    share = win.nonzero_share(series, origin, LOOKBACK_SEASONS * season)[:, None, None]
    return np.stack(columns, axis=-1), share


def _predict(features: np.ndarray, share: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``[features * share, features * (1 - share)] @ coef`` without building the wide matrix."""
    width = features.shape[-1]
    return (features @ coef[:width]) * share[..., 0] + (features @ coef[width:]) * (1.0 - share[..., 0])


def _training_rows(n_series: int, length: int, horizon: int, season: int) -> tuple[np.ndarray, ...]:
    """(series, origin, step) of the rolling-origin training rows: all of them, or a seeded sample."""
    first = int(min(2 * season, max(1, length // 2)))
    max_step = min(horizon, length - first)
    if max_step < 1:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    steps = np.arange(1, max_step + 1)
    per_step = length - first - steps + 1  # origins first .. length - step
    total = n_series * int(per_step.sum())
    if total <= MAX_TRAIN_ROWS:
        step = np.repeat(steps, per_step)
        origin = np.concatenate([np.arange(first, length - s + 1) for s in steps])
        series = np.repeat(np.arange(n_series), len(step))
        return series, np.tile(origin, n_series), np.tile(step, n_series)
    rng = np.random.default_rng(SEED)
    series = rng.integers(0, n_series, MAX_TRAIN_ROWS)
    step = rng.choice(steps, MAX_TRAIN_ROWS, p=per_step / per_step.sum())
    origin = first + (rng.random(MAX_TRAIN_ROWS) * (length - first - step + 1)).astype(np.int64)
    return series, origin, step


def _series_scale(history: np.ndarray) -> np.ndarray:
    """RMS one-step difference per series, falling back to the mean absolute value, then 1."""
    with np.errstate(invalid="ignore"):
        scale = np.sqrt(naive_scale(history))
    finite = np.isfinite(history)
    level = np.where(finite, np.abs(history), 0.0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1)
    fallback = np.where(level > 0, level, 1.0)
    return np.where(np.isfinite(scale) & (scale > 0), scale, fallback)


def _nonnegative_least_squares(features: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``argmin ||features @ w - target||²`` subject to ``w >= 0``, solved on the normal equations.

    With ``G = X'X = R'R`` (Cholesky) and ``z = R'⁻¹ X'y``, ``||Rw - z||²`` differs from the original
    objective by a constant, so scikit-learn's NNLS runs on an ``F x F`` problem instead of one row per
    training example (100 000 rows: milliseconds instead of a second).
    """
    # scipy's NNLS, which scikit-learn's LinearRegression(positive=True) calls with these very
    # arguments: the same coefficients for a third of the import time (loaded on first fit)
    from scipy.optimize import nnls

    gram = features.T @ features
    jitter = 1e-10 * (np.trace(gram) / len(gram) + 1.0)  # collinear windows: keep Cholesky defined
    upper = np.linalg.cholesky(gram + jitter * np.eye(len(gram))).T
    rotated = np.linalg.solve(upper.T, features.T @ target)
    return nnls(upper, rotated)[0]


def _variance_features(mean: np.ndarray, step: np.ndarray, season: int) -> np.ndarray:
    return np.stack([np.ones_like(mean), mean, mean**2, mean * step / season], axis=1)


def forecast(history: np.ndarray, horizon: int, *, season: int = 7) -> Forecast:
    """Forecast ``horizon`` periods of every series in ``history`` with one pooled model.

    Args:
        history: ``[S, T]`` float, chronological, last column the latest complete period; leading NaNs
            mark periods before a series existed. Only the last ``LOOKBACK_SEASONS * season`` are used.
        horizon: number of periods to forecast (``>= 1``).
        season: length of the seasonal cycle (7 for daily data, 24 for hourly).

    Returns:
        :class:`Forecast` with ``mean`` and ``std`` of shape ``[S, horizon]``, both ``>= 0``.
    """
    values = np.asarray(history, dtype=float)
    if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 1:
        raise ValueError(f"history must be [series, periods] with both >= 1, got shape {values.shape}")
    if horizon < 1 or season < 1:
        raise ValueError(f"horizon and season must be >= 1, got horizon={horizon}, season={season}")
    values = values[:, -LOOKBACK_SEASONS * season :]
    n_series, length = values.shape
    scale = _series_scale(values)
    win = _Windows(values / scale[:, None], season)

    series, origin, step = _training_rows(n_series, length, horizon, season)
    target = win.sum[series, origin + step] - win.sum[series, origin + step - 1]
    observed = win.count[series, origin + step] - win.count[series, origin + step - 1] > 0
    series, origin, step, target = series[observed], origin[observed], step[observed], target[observed]

    out_series = np.arange(n_series)
    out_origin = np.full(n_series, length)
    out_step = np.broadcast_to(np.arange(1, horizon + 1), (n_series, horizon))
    if len(target) < MIN_TRAIN_ROWS:  # too short to learn from: the mean of what is there, ±1 scale
        mean = np.repeat(np.nan_to_num(win.mean(out_series, out_origin, length)), horizon)
        return _result(mean, np.ones_like(mean), scale, values)

    features, share = _design(win, series, origin, step[:, None])
    features = np.concatenate([features * share, features * (1.0 - share)], axis=-1)[:, 0]
    coef = _nonnegative_least_squares(features, target)
    fitted = np.maximum(features @ coef, 0.0)
    in_sample = _variance_features(fitted, step, season)
    variance_coef = _nonnegative_least_squares(in_sample, (target - fitted) ** 2)
    band = np.digitize(share[:, 0, 0], SHARE_BANDS)
    inflate = _tail_factors(target - fitted, in_sample @ variance_coef, band)

    out_features, out_share = _design(win, out_series, out_origin, out_step)
    mean = np.maximum(_predict(out_features, out_share, coef), 0.0).ravel()
    variance_out = _variance_features(mean, out_step.ravel(), season) @ variance_coef
    out_band = np.repeat(np.digitize(out_share[:, 0, 0], SHARE_BANDS), horizon)
    spread = inflate[out_band] * np.sqrt(np.maximum(variance_out, 0.0))
    return _result(mean, spread, scale, values)


def _tail_factors(residual: np.ndarray, variance: np.ndarray, band: np.ndarray) -> np.ndarray:
    """Per non-zero-share band, the factor that makes ``± 1.96 std`` hold 95 % of the training residuals.

    Demand is heavy-tailed and more so the sparser it is, hence one factor per band of series.
    """
    spread = np.sqrt(np.maximum(variance, 0.0))
    usable = spread > 0
    ratio = np.abs(residual[usable]) / spread[usable]
    factors = np.ones(len(SHARE_BANDS) + 1)
    overall = float(np.quantile(ratio, COVERAGE)) / NORMAL_QUANTILE if ratio.size else 1.0
    for index in range(len(factors)):  # a handful of bands, not series
        in_band = ratio[band[usable] == index]
        factor = float(np.quantile(in_band, COVERAGE)) / NORMAL_QUANTILE if in_band.size >= 100 else overall
        factors[index] = factor if factor > 0 else 1.0
    return factors


def _result(mean: np.ndarray, spread: np.ndarray, scale: np.ndarray, history: np.ndarray) -> Forecast:
    """Undo the scaling, shape the flat ``[S * horizon]`` rows, and zero series with no history at all."""
    n_series = history.shape[0]
    unscale = scale[:, None] * np.isfinite(history).any(axis=1)[:, None]
    return Forecast(
        mean=mean.reshape(n_series, -1) * unscale,
        std=spread.reshape(n_series, -1) * unscale,
    )
