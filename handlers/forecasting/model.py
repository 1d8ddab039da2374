"""The stockpulse demand model: one pooled regression over scaled window features of every series.

What it does, for a history ``[S, T]`` and a horizon ``h``:

1. Keep the last ``LOOKBACK_SEASONS`` seasons (112 days for daily data) and divide each series by its
   scale (root mean squared one-step difference, the RMSSE denominator), so that every series speaks
   the same units and a single model can be fitted over all of them.
2. Describe "series *i* seen up to origin *o*, target *o + h*" by a few window statistics: the mean of
   the last 1, 2, 4, 8 and 16 seasons; the mean of the last 4, 8 and 16 values in the target's phase
   (own weekday profile); the 4- and 16-season means times the pooled seasonal profile of all series
   by absolute phase (the shrinkage target for short or noisy profiles). Each statistic appears twice,
   multiplied by the series' share of non-zero periods ``p`` and by ``1 - p``, so intermittent and
   smooth series get their own weights (long windows for sparse series, recent ones for fast movers).
3. Fit ONE non-negative least-squares regression (``scipy.optimize.nnls``, what scikit-learn's
   ``LinearRegression(positive=True)`` calls, run on the Cholesky factor of the normal equations) on
   rolling origins inside the history, pooled over series. Beyond ``MAX_TRAIN_ROWS`` rows each series
   contributes about its share, drawn from its own stream (its key). Non-negative weights on
   non-negative features keep forecasts ``>= 0``; one weight vector serves every step ahead.
4. The predictive variance is a second pooled regression: squared scaled residuals of the training rows
   on ``[1, ŷ, ŷ², ŷ·step/season]`` (non-negative). Demand is heavy-tailed (many small errors, a few
   large ones), so the result is then scaled, per band of non-zero share, by the factor that makes
   ``mean ± 1.96·std`` hold 95 % of the training residuals (from a histogram of ``|residual| / std``
   in bins of 0.01): ``std`` is a normal-equivalent spread, calibrated at the 95 % level that safety
   stock uses. Multiplied back by the series scale.

Every pooled step is fitted from :class:`Stats`, exact integer sums (fixed point at ``2**-16``), so
the statistics of any split of the series add up to those of the whole bit for bit, and a series'
contribution never depends on the others: a sharded catalog fits the same model as the whole one
(handlers/runtime/pool.py). :func:`forecast` fits the stages one after the other on the history it is given;
:func:`pooled_forecast` forecasts with parameters fitted elsewhere (the sum of every shard's
statistics) and returns this history's statistics under them.

Histories too short to hold 30 training rows fall back to the mean of what is there.
No loop over series and no seeded sample: the same history forecasts the same anywhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from handlers.forecasting.scores import naive_scale
from handlers.model.streams import mix, uniforms, word

__all__ = ["MODEL_NAME", "HISTORY_DAYS", "Forecast", "forecast"]

_T = TypeVar("_T")
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
        self.values, self.finite = np.where(finite, scaled, 0.0), finite
        self.sum = _prefix(self.values)
        self.count = _prefix(finite)
        self.nonzero = _prefix(self.values != 0)
        # same-phase prefix sums over blocks of one season; the front is padded to whole blocks
        self.pad = (-length) % season
        self.phase_sum = _block_prefix(self.values, season, self.pad)
        self.phase_count = _block_prefix(finite, season, self.pad)

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
    win: _Windows, series: np.ndarray, origin: np.ndarray, step: np.ndarray, profile: np.ndarray, first_day: int
) -> tuple[np.ndarray, np.ndarray]:
    """Window features ``[n, m, F]`` and non-zero share ``[n, 1, 1]`` for ``n`` (series, origin) pairs.

    ``origin`` counts the observed periods (the forecast starts at index ``origin``); ``step`` ``[n, m]``
    holds the steps ahead (>= 1); ``profile`` is the pooled seasonal profile by absolute phase
    (``(first_day + index) % season``). The regression sees ``[features * share, features * (1 - share)]``.
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
    pooled = profile[(first_day + target) % season]
    columns.extend(levels[k] * pooled for k in PROFILE_SEASONS)
    share = win.nonzero_share(series, origin, LOOKBACK_SEASONS * season)[:, None, None]
    return np.stack(columns, axis=-1), share


def _dot(features: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``features @ coef`` summed row by row (a row's result never depends on the other rows, as a
    BLAS call's blocking may: a series forecasts the same in any shard)."""
    return np.asarray((features * coef).sum(axis=-1))


def _predict(features: np.ndarray, share: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``[features * share, features * (1 - share)] @ coef`` without building the wide matrix."""
    width = features.shape[-1]
    return np.asarray(_dot(features, coef[:width]) * share[..., 0] + _dot(features, coef[width:]) * (1.0 - share[..., 0]))


def _training_rows(
    keys: np.ndarray, length: int, horizon: int, season: int, per_series: float | None, starts: np.ndarray
) -> tuple[np.ndarray, ...]:
    """(series, origin, step) of the rolling-origin training rows.

    Every row when there are at most ``per_series`` per series (``None``: no limit); otherwise about
    ``per_series`` rows of each series, drawn from that series' own stream (its ``key``): which rows a
    series contributes never depends on which other series are in the fit (handlers/runtime/shards.py). A
    series contributes only origins that have at least its own ``first`` periods before them from its
    start (``starts``: its first observed period): before that its windows would be empty.
    """
    series, origin, step = _candidate_rows(keys, length, horizon, season, per_series)
    seen = length - starts[series]  # the series' periods from its start
    keep = origin - starts[series] >= np.minimum(2 * season, np.maximum(1, seen // 2))
    return series[keep], origin[keep], step[keep]


def _candidate_rows(keys: np.ndarray, length: int, horizon: int, season: int, per_series: float | None) -> tuple[np.ndarray, ...]:
    first = int(min(2 * season, max(1, length // 2)))
    max_step = min(horizon, length - first)
    n_series = len(keys)
    if max_step < 1 or n_series == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    steps = np.arange(1, max_step + 1)
    per_step = length - first - steps + 1  # origins first .. length - step
    candidates = int(per_step.sum())
    if per_series is None or per_series >= candidates:
        step = np.repeat(steps, per_step)
        origin = np.concatenate([np.arange(first, length - s + 1) for s in steps])
        series = np.repeat(np.arange(n_series), len(step))
        return series, np.tile(origin, n_series), np.tile(step, n_series)
    whole = int(per_series)
    count = whole + (uniforms(keys, _ROW_WORD, 0) < per_series - whole)
    draws = np.stack([uniforms(keys, _ROW_WORD, j + 1) for j in range(whole + 1)], axis=1)  # [S, whole + 1]
    taken = np.arange(whole + 1)[None, :] < count[:, None]
    series = np.broadcast_to(np.arange(n_series)[:, None], draws.shape)[taken]
    pick = np.minimum((draws[taken] * candidates).astype(np.int64), candidates - 1)
    ends = np.cumsum(per_step)
    index = np.searchsorted(ends, pick, side="right")
    origin = first + pick - (ends[index] - per_step[index])
    return series, origin, steps[index]


def _series_scale(history: np.ndarray) -> np.ndarray:
    """RMS one-step difference per series, falling back to the mean absolute value, then 1."""
    with np.errstate(invalid="ignore"):
        scale = np.sqrt(naive_scale(history))
    finite = np.isfinite(history)
    level = np.where(finite, np.abs(history), 0.0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1)
    fallback = np.where(level > 0, level, 1.0)
    return np.where(np.isfinite(scale) & (scale > 0), scale, fallback)


# -- exact sums: what the pooled fit needs, in fixed point, so any split adds up to the same integers --

FIXED_BITS = 16  # values are summed as integers in units of 2**-16
_LIMB_BITS, _LIMBS = 20, 2  # |value| * 2**16 < 2**40: two 20-bit limbs, whose products BLAS sums exactly
FIXED_LIMIT = 2.0 ** (_LIMB_BITS * _LIMBS - FIXED_BITS) - 1.0  # larger magnitudes are clipped (never met)
_EXACT_ROWS = 1 << 13  # limb products < 2**40: a float64 sum of 2**13 of them stays an exact integer
_FLUSH_CHUNKS = 1 << 9  # int64 holds the sum of this many chunks (each < 2**53)
_SUM_ROWS = 1 << 24


def _fixed(values: np.ndarray) -> np.ndarray:
    return np.asarray(np.rint(np.clip(np.nan_to_num(values), -FIXED_LIMIT, FIXED_LIMIT) * 2.0**FIXED_BITS), dtype=np.int64)


def _limbs(fixed: np.ndarray) -> list[np.ndarray]:
    """Signed limbs of ``_LIMB_BITS`` bits, as floats: ``fixed == sum(limb_k * 2**(k * _LIMB_BITS))``."""
    magnitude, sign = np.abs(fixed), np.sign(fixed)
    mask = (1 << _LIMB_BITS) - 1
    return [(sign * ((magnitude >> (_LIMB_BITS * k)) & mask)).astype(np.float64) for k in range(_LIMBS)]


def exact_cross(left: np.ndarray, right: np.ndarray) -> list[list[int]]:
    """``left' @ right`` of ``[n, p]`` and ``[n, q]`` in units of ``2**-32``, exactly (Python ints).

    Each value is rounded to ``2**-16`` and split into signed 20-bit limbs; every limb product is
    below ``2**40``, so BLAS adds ``2**13`` rows of them without rounding, in any order, and the
    chunks' sums are added as integers. The result is the same integers however the rows are split
    and in whatever order the parts are added.
    """
    symmetric = left is right
    fixed_left = _fixed(left)
    fixed_right = fixed_left if symmetric else _fixed(right)
    pairs = [(i, j) for i in range(_LIMBS) for j in range(_LIMBS) if not symmetric or i <= j]
    total = np.zeros((left.shape[1], right.shape[1]), dtype=object)
    sums = {pair: np.zeros_like(total, dtype=np.int64) for pair in pairs}
    for number, begin in enumerate(range(0, len(fixed_left), _EXACT_ROWS)):
        a = _limbs(fixed_left[begin : begin + _EXACT_ROWS])
        b = a if symmetric else _limbs(fixed_right[begin : begin + _EXACT_ROWS])
        for i, j in pairs:
            sums[i, j] += np.rint(a[i].T @ b[j]).astype(np.int64)
        if (number + 1) % _FLUSH_CHUNKS == 0:
            total += _combine(sums, symmetric)
    result: list[list[int]] = (total + _combine(sums, symmetric)).tolist()
    return result


def _combine(sums: dict[tuple[int, int], np.ndarray], symmetric: bool) -> np.ndarray:
    """The limb products' sums weighted by their place, as Python ints; resets them."""
    out = np.zeros(next(iter(sums.values())).shape, dtype=object)
    for (i, j), part in sums.items():
        weighted = part.astype(object) * (1 << (_LIMB_BITS * (i + j)))
        out += weighted + weighted.T if symmetric and i != j else weighted
        part[...] = 0
    return out


def exact_sum(values: np.ndarray) -> list[int]:
    """Column sums of ``values`` ``[n, m]`` in units of ``2**-16``, exactly (Python ints)."""
    fixed = _fixed(values)
    total = np.zeros(fixed.shape[1], dtype=object)
    for begin in range(0, len(fixed), _SUM_ROWS):  # |value| < 2**39: 2**24 of them fit an int64
        total += fixed[begin : begin + _SUM_ROWS].sum(axis=0).astype(object)
    return total.tolist()


def _add(a: Any, b: Any) -> Any:
    """Element-wise sum of nested lists of ints; a stage missing on one side adds nothing (a shard
    with no history yet has no rows to add: the others' stages stand)."""
    if a is None or b is None:
        return b if a is None else a
    if isinstance(a, list):
        return [_add(x, y) for x, y in zip(a, b, strict=True)]
    return a + b


@dataclass(frozen=True)
class Stats:
    """What the pooled fit needs from a set of series, as exact integer sums: the statistics of
    several shards add up to those of their union, bit for bit (handlers/runtime/pool.py).

    A stage is ``None`` when the parameters it was computed under lacked what it needs (the variance
    needs a regression, the tails a variance; the regression takes a flat profile until there is
    one) or there was no history.
    """

    series: int = 0
    profile: list[list[int]] | None = None  # [sums (2**-16), counts] by absolute phase
    regression: list[list[int]] | None = None  # [F + 1, F + 1] cross products of [features, target] (2**-32)
    variance: list[list[int]] | None = None  # [5, 5] the same for [variance features, squared residual]
    tails: list[list[int]] | None = None  # [bands, TAIL_BINS] counts of |residual| / std

    def __add__(self, other: Stats) -> Stats:
        return Stats(
            series=self.series + other.series,
            profile=_add(self.profile, other.profile),
            regression=_add(self.regression, other.regression),
            variance=_add(self.variance, other.variance),
            tails=_add(self.tails, other.tails),
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, doc: Any) -> Stats:
        """Validated: a damaged object is a ``ValueError``."""
        if not isinstance(doc, dict) or set(doc) != {f.name for f in dataclasses.fields(cls)}:
            raise ValueError("not the statistics of a forecast")
        if not isinstance(doc["series"], int) or doc["series"] < 0:
            raise ValueError("series: not a count")
        width = 2 * (len(LEVEL_SEASONS) + len(PHASE_SEASONS) + len(PROFILE_SEASONS))
        shapes = {
            "profile": (2, None),
            "regression": (width + 2, width + 2),
            "variance": (5, 5),
            "tails": (len(SHARE_BANDS) + 1, TAIL_BINS),
        }  # what this version of the model fits
        for name, (rows, columns) in shapes.items():
            value = doc[name]
            if value is None:
                continue
            if not (
                isinstance(value, list)
                and len(value) == rows
                and all(
                    isinstance(row, list)
                    and row
                    and len(row) == len(value[0])
                    and all(isinstance(x, int) and not isinstance(x, bool) for x in row)
                    for row in value
                )
            ):
                raise ValueError(f"{name}: not a table of integers of {rows} rows")
            if columns is not None and len(value[0]) != columns:
                raise ValueError(f"{name}: {len(value[0])} columns, this model has {columns}")
        return cls(**doc)


@dataclass(frozen=True)
class Params:
    """The pooled parameters of the model (:func:`fit`); a missing stage is ``None``."""

    series: int = 0  # series the statistics came from: they set how many training rows each contributes
    profile: np.ndarray | None = None  # [season] by absolute phase
    coef: np.ndarray | None = None  # [2F]
    variance_coef: np.ndarray | None = None  # [4]
    tails: np.ndarray | None = None  # [bands]

    @property
    def rows_per_series(self) -> float | None:
        return MAX_TRAIN_ROWS / self.series if self.series else None


TAIL_BIN = 0.01  # width of a bin of |residual| / std; the last bin holds everything beyond
TAIL_BINS = 1000
_ROW_WORD = np.array([word(0x726F7773, 0)], dtype=np.uint64)  # the training-row stream ("rows")
_SCALE2 = 2.0 ** (2 * FIXED_BITS)


def _solve(cross: list[list[int]], width: int) -> np.ndarray:
    """Non-negative least squares of column ``width`` on the ``width`` columns before it, from the
    exact cross products of the columns."""
    table = np.array([[float(x) for x in row[: width + 1]] for row in cross[:width]]) / _SCALE2
    return _nonnegative_least_squares(table[:, :width], table[:, width])


def fit(stats: Stats, *, season: int = 7) -> Params:
    """The pooled parameters from ``stats`` (of one shard, or the sum of every shard's)."""
    params = Params(series=stats.series)
    if stats.profile is not None:
        sums = np.array([float(x) for x in stats.profile[0]]) / 2.0**FIXED_BITS
        counts = np.array([float(x) for x in stats.profile[1]])
        if len(sums) == season:
            overall = sums.sum() / counts.sum() if counts.sum() > 0 else 0.0
            per_phase = np.where(counts > 0, sums / np.maximum(counts, 1.0), overall)
            params = dataclasses.replace(params, profile=per_phase / overall if overall > 0 else np.ones(season))
    if stats.regression is not None and stats.regression[-1][-1] >> (2 * FIXED_BITS) >= MIN_TRAIN_ROWS:
        params = dataclasses.replace(params, coef=_solve(stats.regression, len(stats.regression) - 2))
    if params.coef is not None and stats.variance is not None and stats.variance[0][0] > 0:
        params = dataclasses.replace(params, variance_coef=_solve(stats.variance, len(stats.variance) - 1))
    if params.variance_coef is not None and stats.tails is not None:
        params = dataclasses.replace(params, tails=_tail_factors(np.array(stats.tails, dtype=np.float64)))
    return params


def _nonnegative_least_squares(gram: np.ndarray, cross: np.ndarray) -> np.ndarray:
    """``argmin ||X w - y||²`` subject to ``w >= 0`` from ``G = X'X`` and ``X'y``.

    With ``G = R'R`` (Cholesky) and ``z = R'⁻¹ X'y``, ``||Rw - z||²`` differs from the original
    objective by a constant, so scikit-learn's NNLS runs on an ``F x F`` problem instead of one row per
    training example (100 000 rows: milliseconds instead of a second).
    """
    # scipy's NNLS, which scikit-learn's LinearRegression(positive=True) calls with these very
    # arguments: the same coefficients for a third of the import time (loaded on first fit)
    from scipy.optimize import nnls

    jitter = 1e-10 * (np.trace(gram) / len(gram) + 1.0)  # collinear windows: keep Cholesky defined
    upper = np.linalg.cholesky(gram + jitter * np.eye(len(gram))).T
    rotated = np.linalg.solve(upper.T, cross)
    return np.asarray(nnls(upper, rotated)[0])


def _variance_features(mean: np.ndarray, step: np.ndarray, season: int) -> np.ndarray:
    return np.stack([np.ones_like(mean), mean, mean**2, mean * step / season], axis=1)


class _Model:
    """One history prepared for the model: scaled, its prefix sums, its training rows."""

    def __init__(
        self, history: np.ndarray, horizon: int, season: int, keys: np.ndarray | None, first_day: int, per_series: float | None
    ) -> None:
        values = np.asarray(history, dtype=float)
        if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 1:
            raise ValueError(f"history must be [series, periods] with both >= 1, got shape {values.shape}")
        if horizon < 1 or season < 1:
            raise ValueError(f"horizon and season must be >= 1, got horizon={horizon}, season={season}")
        kept = min(values.shape[1], LOOKBACK_SEASONS * season)
        self.values = values[:, values.shape[1] - kept :]
        self.first_day = first_day + values.shape[1] - kept  # absolute period of the first kept column
        self.horizon, self.season = horizon, season
        n_series, length = self.values.shape
        self.scale = _series_scale(self.values)
        self.win = _Windows(self.values / self.scale[:, None], season)
        if keys is None:
            keys = mix(np.arange(n_series, dtype=np.uint64) + np.uint64(SEED))
        finite = np.isfinite(self.values)
        starts = np.where(finite.any(axis=1), np.argmax(finite, axis=1), length)
        series, origin, step = _training_rows(np.asarray(keys, dtype=np.uint64), length, horizon, season, per_series, starts)
        target = self.win.sum[series, origin + step] - self.win.sum[series, origin + step - 1]
        observed = self.win.count[series, origin + step] - self.win.count[series, origin + step - 1] > 0
        self.rows = series[observed], origin[observed], step[observed]
        self.target = target[observed]
        self._cache: dict[str, tuple[tuple[Any, ...], Any]] = {}

    def _cached(self, name: str, key: tuple[Any, ...], compute: Callable[[], _T]) -> _T:
        """What ``compute()`` gives, once per ``(name, key)``: the stages fitted on one history one
        after the other reuse what the earlier ones computed."""
        found = self._cache.get(name)
        if found is None or found[0] != key:
            found = (key, compute())
            self._cache[name] = found
        result: _T = found[1]
        return result

    def profile_stats(self) -> list[list[int]]:
        def compute() -> list[list[int]]:
            phase = ((self.first_day + np.arange(self.win.length)) % self.season).tolist()
            columns, counts = exact_sum(self.win.values), self.win.finite.sum(axis=0).tolist()
            by_phase = [[0] * self.season, [0] * self.season]
            for p, total, n in zip(phase, columns, counts):
                by_phase[0][p] += total
                by_phase[1][p] += int(n)
            return by_phase

        return self._cached("profile", (), compute)

    def features(self, profile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The wide training features ``[rows, 2F]`` under ``profile``, and each row's non-zero share."""

        def compute() -> tuple[np.ndarray, np.ndarray]:
            series, origin, step = self.rows
            features, share = _design(self.win, series, origin, step[:, None], profile, self.first_day)
            return np.concatenate([features * share, features * (1.0 - share)], axis=-1)[:, 0], share[:, 0, 0]

        return self._cached("features", (profile.tobytes(),), compute)

    def profile(self, params: Params) -> np.ndarray:
        """The pooled profile of ``params``; flat before there is one (a new store's first days: the
        regression's first statistics need not wait a day for the profile)."""
        return np.ones(self.season) if params.profile is None else params.profile

    def fitted(self, params: Params) -> np.ndarray:
        assert params.coef is not None
        wide, _ = self.features(self.profile(params))
        return np.asarray(np.maximum(_dot(wide, params.coef), 0.0))

    def statistics(self, params: Params) -> Stats:
        """This history's statistics under ``params``: each stage whose inputs ``params`` has."""
        stats = Stats(series=self.values.shape[0], profile=self.profile_stats())
        profile = self.profile(params)
        wide, share = self.features(profile)

        def regression() -> list[list[int]]:
            table = np.hstack([wide, self.target[:, None], np.ones((len(self.target), 1))])
            return exact_cross(table, table)  # its corner counts the rows

        stats = dataclasses.replace(stats, regression=self._cached("regression", (profile.tobytes(),), regression))
        if params.coef is None:
            return stats
        coef = params.coef
        fitted = self.fitted(params)
        inputs = _variance_features(fitted, self.rows[2], self.season)
        key = (profile.tobytes(), coef.tobytes())

        def variance() -> list[list[int]]:
            table = np.hstack([inputs, ((self.target - fitted) ** 2)[:, None]])
            return exact_cross(table, table)  # its corner counts the rows (the first input is 1)

        stats = dataclasses.replace(stats, variance=self._cached("variance", key, variance))
        if params.variance_coef is None:
            return stats
        variance_coef = params.variance_coef

        def tails() -> list[list[int]]:
            spread = np.sqrt(np.maximum(_dot(inputs, variance_coef), 0.0))
            usable = spread > 0
            ratio = np.abs(self.target - fitted)[usable] / spread[usable]
            band = np.digitize(share[usable], SHARE_BANDS)
            bins = np.minimum((ratio / TAIL_BIN).astype(np.int64), TAIL_BINS - 1)
            counts = np.bincount(band * TAIL_BINS + bins, minlength=(len(SHARE_BANDS) + 1) * TAIL_BINS)
            return counts.reshape(len(SHARE_BANDS) + 1, TAIL_BINS).tolist()

        return dataclasses.replace(stats, tails=self._cached("tails", (*key, variance_coef.tobytes()), tails))

    def predict(self, params: Params) -> Forecast:
        n_series, length = self.values.shape
        horizon = self.horizon
        out_series = np.arange(n_series)
        out_origin = np.full(n_series, length)
        if params.coef is None:  # nothing learnt yet: the mean of what is there, ±1 scale
            mean = np.repeat(np.nan_to_num(self.win.mean(out_series, out_origin, length)), horizon)
            return _result(mean, np.ones_like(mean), self.scale, self.values)
        out_step = np.broadcast_to(np.arange(1, horizon + 1), (n_series, horizon))
        out_features, out_share = _design(self.win, out_series, out_origin, out_step, self.profile(params), self.first_day)
        mean = np.maximum(_predict(out_features, out_share, params.coef), 0.0).ravel()
        if params.variance_coef is None:
            return _result(mean, np.ones_like(mean), self.scale, self.values)
        variance_out = _dot(_variance_features(mean, out_step.ravel(), self.season), params.variance_coef)
        tails = np.ones(len(SHARE_BANDS) + 1) if params.tails is None else params.tails
        out_band = np.repeat(np.digitize(out_share[:, 0, 0], SHARE_BANDS), horizon)
        spread = tails[out_band] * np.sqrt(np.maximum(variance_out, 0.0))
        return _result(mean, spread, self.scale, self.values)


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
    return pooled_forecast(history, horizon, None, season=season)[0]


def pooled_forecast(
    history: np.ndarray, horizon: int, params: Params | None, *, season: int = 7, keys: np.ndarray | None = None, first_day: int = 0
) -> tuple[Forecast, Stats, Params]:
    """The forecast of ``history`` under pooled ``params``, and this history's statistics under them.

    ``params`` ``None``: fitted here, stage by stage, on this history alone (the profile, then the
    regression under it, the variance under that, the tails last) — what :func:`forecast` does.
    Otherwise they are the parameters fitted from the summed statistics of every shard of a catalog
    (handlers/runtime/pool.py), and the statistics returned are this history's share of the next fit.
    ``keys``: each series' stream key (which training rows it contributes); ``first_day``: the absolute
    period of ``history``'s first column (the pooled profile is by absolute phase).
    Returns the forecast, the statistics and the parameters used.
    """
    n_series = np.shape(history)[0] if np.ndim(history) == 2 else 0
    per_series = MAX_TRAIN_ROWS / max(n_series, 1) if params is None else params.rows_per_series
    model = _Model(history, horizon, season, keys, first_day, per_series)
    if params is None:
        params = fit(Stats(series=n_series, profile=model.profile_stats()), season=season)
        for _ in range(3):  # the regression, the variance, the tails: each needs the one before
            stats = model.statistics(params)
            params = fit(stats, season=season)
    stats = model.statistics(params)
    return model.predict(params), stats, params


def _tail_factors(counts: np.ndarray) -> np.ndarray:
    """Per non-zero-share band, the factor that makes ``± 1.96 std`` hold 95 % of the training residuals,
    from the histogram of ``|residual| / std`` (``counts`` ``[bands, TAIL_BINS]``).

    Demand is heavy-tailed and more so the sparser it is, hence one factor per band of series.
    """
    overall = _quantile(counts.sum(axis=0), COVERAGE)
    overall = overall / NORMAL_QUANTILE if overall is not None else 1.0
    factors = np.ones(len(counts))
    for index, row in enumerate(counts):  # a handful of bands, not series
        found = _quantile(row, COVERAGE) if row.sum() >= 100 else None
        factor = found / NORMAL_QUANTILE if found is not None else overall
        factors[index] = factor if factor > 0 else 1.0
    return factors


def _quantile(counts: np.ndarray, level: float) -> float | None:
    """The ``level`` quantile of a histogram with bins of ``TAIL_BIN``, linear within its bin."""
    total = counts.sum()
    if total <= 0:
        return None
    cumulative = np.cumsum(counts)
    wanted = level * total
    index = int(np.searchsorted(cumulative, wanted, side="left"))
    before = cumulative[index - 1] if index > 0 else 0.0
    inside = (wanted - before) / counts[index] if counts[index] > 0 else 0.0
    return (index + inside) * TAIL_BIN


def _result(mean: np.ndarray, spread: np.ndarray, scale: np.ndarray, history: np.ndarray) -> Forecast:
    """Undo the scaling, shape the flat ``[S * horizon]`` rows, and zero series with no history at all."""
    n_series = history.shape[0]
    unscale = scale[:, None] * np.isfinite(history).any(axis=1)[:, None]
    return Forecast(
        mean=mean.reshape(n_series, -1) * unscale,
        std=spread.reshape(n_series, -1) * unscale,
    )
