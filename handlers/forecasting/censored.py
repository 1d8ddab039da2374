"""Censored demand: the demand that stockouts hid, recovered before the model is fitted (pure).

While a series is out of stock its sales stop, but its demand does not. A history of sales is a
*censored* history of demand: an out-of-stock period only says "demand >= what sold". Fitting the
model on sales under-forecasts exactly the series that run out, which orders too little, which runs
them out again. The functions here turn sales plus in-stock information into a recovered demand
history ``[S, T]`` on which the unchanged model (``handlers.forecasting.model.forecast``) is fitted.

One model, three entry points by what the input holds:

``close_day``         the live handler: one closed day of hourly sales and in-stock minutes, folded
                      into decayed sums (:class:`LiveState`); O(S x 24), no iteration
``recover_hourly``    a batch of hourly sales and in-stock minutes (or hourly flags): a backtest with
                      ``--freq H``, or a migration (:func:`warm_state`)
``recover_censored``  daily sales and a stockout flag only (a backtest CSV): a censored
                      negative-binomial EM

The model: the demand of a series on day d, hour h is Poisson(A_d P_h). A_d is a day rate with mean
mu_d = local level x weekday factor and coefficient of variation 1/sqrt(k) (weather, events: the
swings that make sold-out days the high-demand days); P is the series' hour profile (sums to 1).
Hour h was in stock a share e_dh of its time, so the share of day d's demand that could be seen is
w_d = sum_h P_h e_dh. The moment a shelf empties is a stopping time, so what sold is still evidence
of Poisson(A_d w_d), and

    E[A_d | data]  = mu_d (tau + Y_d) / (tau + mu_d w_d)          (posterior_rate; tau = phi k)
    E[D_dh | data] = Y_dh + E[A_d | data] P_h (1 - e_dh)          (in-stock hours stay as they sold)

A day that sold out by noon had a high rate and its morning says so: it gets a large imputation.
That is what removes the selection that masking stockout days, or an in-stock hour profile, leave in
(docs/forecasting.md, "Censored demand", has the measurements).

Properties every function keeps: per series (a series' recovery depends on its own rows only, bit for
bit: shard invariant), vectorised (Python loops run over a fixed number of rounds, over the 7 or 24
phases, or over blocks of rows, never over series one by one), deterministic (nothing is drawn), and
a series with no demand recovers exact zeros (never tiny positive values: the model's scale would
collapse on them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DAY_SHAPE",
    "LIVE_WIDTH",
    "LiveState",
    "Recovered",
    "close_day",
    "expected_demand",
    "group_hour_sums",
    "nb_tail_moments",
    "posterior_rate",
    "profile_from_sums",
    "recover_censored",
    "recover_hourly",
    "sales_unit",
    "warm_state",
    "weekday_factors",
]

DAY_SHAPE = 8.0  # prior k of the day rate's gamma (CV 1/sqrt(k) around the day's mean)
ROUNDS = 4  # fixed-point rounds of recover_hourly (level, tau, profile), each O(S x days x 24)
LEVEL_HALF_WIDTH = 14  # the local level is a ratio over the days within +-14 (a 29-day window)
PSEUDO_DAYS = 1.0  # a window's level is shrunk to its series' whole-history ratio with this weight
WEEKDAY_PSEUDO = 7.0  # weekday factors are shrunk to 1 with this many days' weight
PROFILE_PSEUDO = 1.0  # an hour profile is shrunk to its prior with one day's weight
SHAPE_PSEUDO_DAYS = 14.0  # dispersion estimates are shrunk to their prior with this many days' weight
BLOCK_ROWS = 2048  # rows recovered at once (the passes stay in cache); exact, since rows never mix


def _blocks(rows: int, size: int) -> list[slice]:
    """Row blocks of ``size``: every estimator is per series, so recovering block by block is exact."""
    return [slice(i, min(i + size, rows)) for i in range(0, max(rows, 1), size)]


def _matrix(name: str, values: np.ndarray, shape: tuple[int, ...] | None = None, check: bool = True) -> np.ndarray:
    """``values`` as float, checked: the expected ``shape`` (2-d when None) and (``check``) no negative value."""
    array = np.asarray(values, dtype=float)
    if (shape is None and array.ndim != 2) or (shape is not None and array.shape != shape):
        raise ValueError(f"{name}: expected shape {shape or '[series, periods]'}, got {array.shape}")
    if check and (array < 0).any():
        raise ValueError(f"{name}: negative values")
    return array


def _minutes(name: str, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """In-stock minutes per hour, checked finite and within [0, 60]; returned as the share e in [0, 1]."""
    minutes = _matrix(name, values, shape)
    if not (np.isfinite(minutes).all() and (minutes <= 60.0).all()):
        raise ValueError(f"{name}: in-stock minutes must be finite numbers in [0, 60]")
    return minutes / 60.0


# ------------------------------------------------------------------ the day's mean: level x weekday


def _window_sum(values: np.ndarray, half_width: int) -> np.ndarray:
    """Sum of ``values`` over ``[t - half_width, t + half_width]`` (clipped at the ends), per row: one
    cumulative sum and one subtraction of shifted views, O(S T). A window of zeros sums to exactly 0."""
    s, n = values.shape
    total = np.empty((s, n + 2 * half_width + 1))
    total[:, : half_width + 1] = 0.0
    np.cumsum(values, axis=1, out=total[:, half_width + 1 : half_width + 1 + n])
    total[:, half_width + 1 + n :] = total[:, half_width + n : half_width + n + 1]
    return np.asarray(np.subtract(total[:, 2 * half_width + 1 :], total[:, :n], out=np.empty((s, n))))


def _phase_sum(values: np.ndarray, season: int) -> np.ndarray:
    """``[S, season]`` sums of ``values`` by phase (``t % season``)."""
    s, n = values.shape
    pad = (-n) % season
    return np.asarray(np.pad(values, ((0, 0), (0, pad))).reshape(s, -1, season).sum(axis=1))


def _tile(factor: np.ndarray, n: int) -> np.ndarray:
    """``[S, n]`` of a per-phase ``[S, season]`` factor: column t holds phase ``t % season``."""
    s, season = factor.shape
    reps = -(-n // season)
    return np.broadcast_to(factor[:, None, :], (s, reps, season)).reshape(s, reps * season)[:, :n]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.asarray(num / np.maximum(den, 1e-12))


def weekday_factors(sales: np.ndarray, exposure: np.ndarray, weight: np.ndarray, season: int = 7) -> np.ndarray:
    """``[S, season]`` factors (mean 1): each phase's sales over the demand its local level says it
    was exposed to, shrunk to 1 with WEEKDAY_PSEUDO days' weight."""
    yc, wc = sales * weight, exposure * weight
    overall = _ratio(yc.sum(axis=1, keepdims=True), wc.sum(axis=1, keepdims=True))
    level = (_window_sum(yc, LEVEL_HALF_WIDTH) + PSEUDO_DAYS * overall) / (_window_sum(wc, LEVEL_HALF_WIDTH) + PSEUDO_DAYS)
    num = _phase_sum(yc, season)
    den = _phase_sum(wc * level, season)
    typical = np.maximum(_ratio(den.sum(axis=1, keepdims=True), wc.sum(axis=1, keepdims=True)), 1e-12)
    factor = (num + WEEKDAY_PSEUDO * typical) / (den + WEEKDAY_PSEUDO * typical)
    return np.asarray(factor / factor.mean(axis=1, keepdims=True))


def expected_demand(
    sales: np.ndarray, exposure: np.ndarray, weight: np.ndarray, season: int = 7, factor: np.ndarray | None = None
) -> np.ndarray:
    """``mu [S, T]`` = local level x weekday factor, from ``sales`` seen over ``exposure`` (the share
    of each day's demand that was in stock), each day weighted by ``weight``.

    level_t = sum_{|j - t| <= 14} c_j Y_j / sum_{|j - t| <= 14} c_j W_j w_j: sales over exposed demand,
    the Poisson maximum-likelihood estimate with exposure (c = 1) and the negative-binomial one with
    c = tau / (tau + mu w) (a day seen only briefly has a noisy rate; the weights balance it, so the
    high-demand days that sold out early are not under-weighted). A window with little exposure is
    shrunk to the series' whole-history ratio (PSEUDO_DAYS). ``factor`` ``[S, season]``: the weekday
    factors (:func:`weekday_factors` when None). A series that never sold has mu = 0 exactly."""
    n = sales.shape[1]
    if factor is None:
        factor = weekday_factors(sales, exposure, weight, season)
    yc = sales * weight
    f_t = _tile(factor, n)
    wc = exposure * weight * f_t
    overall = _ratio(yc.sum(axis=1, keepdims=True), (exposure * weight).sum(axis=1, keepdims=True))
    level = (_window_sum(yc, LEVEL_HALF_WIDTH) + PSEUDO_DAYS * overall) / (_window_sum(wc, LEVEL_HALF_WIDTH) + PSEUDO_DAYS)
    return np.asarray(level * f_t)


def posterior_rate(y: np.ndarray, w: np.ndarray, mu: np.ndarray, tau: np.ndarray | float) -> np.ndarray:
    """E[A | Y sold over a demand share w] = mu (tau + Y) / (tau + mu w).

    The day rate A has mean mu and variance mu^2 / k; given A, the sales seen over the share w have
    mean A w and variance phi A w (phi = 1 for counts; kilograms or packs make it other than 1). The
    linear-Bayes posterior mean (exact for Poisson counts and a gamma A) depends on phi and k only
    through tau = phi k, in sales units: the day's own sales count as much as tau units of prior.
    Written so that mu = 0 gives exactly 0."""
    return np.asarray(mu * (tau + y) / (tau + mu * w))


def _day_dispersion(y_day: np.ndarray, w: np.ndarray, mu: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """1 / k per series from the day-to-day spread of the sales around mu w (moments):
    E[(Y - mu w)^2] = phi mu w + (mu w)^2 / k, shrunk to 1 / DAY_SHAPE with SHAPE_PSEUDO_DAYS days'
    weight, clipped to [1e-3, 4]."""
    m = mu * w
    num = ((y_day - m) ** 2 - phi[:, None] * m).sum(axis=1)
    den = (m**2).sum(axis=1)
    typical = den / np.maximum((w > 0).sum(axis=1), 1)
    inv = (num + SHAPE_PSEUDO_DAYS * typical / DAY_SHAPE) / np.maximum(den + SHAPE_PSEUDO_DAYS * typical, 1e-300)
    return np.asarray(np.clip(inv, 1e-3, 4.0))


def _hour_dispersion(y: np.ndarray, e: np.ndarray, profile: np.ndarray) -> np.ndarray:
    """phi per series: the spread of a day's fully in-stock hours around the day's total spread by the
    profile (Pearson: Var(Y_dh | Y_d) = phi Y_d pi_dh (1 - pi_dh)). 1 for Poisson counts; it carries
    the unit (0.1 for counts recorded in tenths). ``y``, ``e`` ``[S, days, 24]``."""
    share = e * profile[:, None, :]
    pi = share / np.maximum(share.sum(axis=2, keepdims=True), 1e-12)
    expected = y.sum(axis=2, keepdims=True) * pi
    seen = e >= 1.0  # the hour a shelf empties is a stopped count: left out
    num = np.where(seen, (y - expected) ** 2, 0.0).sum(axis=(1, 2))
    den = np.where(seen, expected * (1 - pi), 0.0).sum(axis=(1, 2))
    return np.asarray(np.where(den > 0, (num + 1.0) / (den + 1.0), 1.0))


# ------------------------------------------------------------------ batch: hourly sales + in-stock minutes


@dataclass(frozen=True)
class Recovered:
    """What :func:`recover_hourly` gives; every array is per series (rows as given)."""

    hourly: np.ndarray  # [S, days * 24] recovered demand per hour (NaN where the sales were NaN)
    daily: np.ndarray  # [S, days] recovered demand per day (NaN for a day with no observed hour)
    profile: np.ndarray  # [S, 24] the demand's hour-of-day shares, censoring accounted for
    exposure: np.ndarray  # [S, days] w: share of each day's demand that was in stock
    mean: np.ndarray  # [S, days] mu: expected demand of each day (local level x weekday)
    tau: np.ndarray  # [S] phi k: the prior weight of a day's mean, in sales units
    phi: np.ndarray  # [S] within-day dispersion of the sales (1 for Poisson counts)


def recover_hourly(
    sales: np.ndarray, minutes: np.ndarray, *, flags: bool = False, prior_profile: np.ndarray | None = None, rounds: int = ROUNDS
) -> Recovered:
    """Hourly and daily demand from hourly ``sales`` and in-stock ``minutes``, both ``[S, days * 24]``,
    whole days, hour 0 first. NaN sales: not observed (before a series started, or a padded hour):
    no exposure, NaN in ``hourly``, and their minutes are not read.

    Starting from the in-stock rate per hour as the profile, ``rounds + 1`` times: w_d = sum_h P_h e_dh;
    mu from :func:`expected_demand` with the negative-binomial weights tau / (tau + mu w); tau = phi / (1/k)
    (phi from the spread of the hours within a day, 1/k from the spread of the days);
    A_d = :func:`posterior_rate`; P_h ~ sum_d Y_dh / sum_d A_d e_dh, shrunk to ``prior_profile``
    (``[24]`` or ``[S, 24]``, e.g. the warehouse's; default the series' own in-stock rate per hour)
    with one day's weight. So a series that sells out every evening keeps its evening peak: P is the
    demand's profile, not the in-stock hours'. Then D_dh = Y_dh + A_d P_h (1 - e_dh).

    ``flags``: ``minutes`` only says in stock (60) or not (0) for each hour. The hour in which the
    shelf emptied is flagged yet holds sales; it counts as half in stock (the last item goes at a
    moment about uniform in that hour).

    Cost: O(S x days x 24) per round, blocks of 256 series.
    """
    sales = _matrix("sales", sales)
    if sales.shape[1] % 24:
        raise ValueError(f"sales: whole days of 24 hours expected, got {sales.shape[1]} hours")
    minutes = _matrix("minutes", minutes, sales.shape, check=False)
    share = _minutes("minutes", np.where(np.isfinite(sales), minutes, 60.0), sales.shape)  # an hour not observed: not read
    s = sales.shape[0]
    prior = None if prior_profile is None else _shares(prior_profile, s, "prior_profile")
    parts = [_recover_hourly(sales[b], share[b], flags, None if prior is None else prior[b], rounds) for b in _blocks(s, BLOCK_ROWS // 8)]
    return Recovered(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(Recovered)))


def _shares(profile: np.ndarray, rows: int, name: str, groups: np.ndarray | None = None) -> np.ndarray:
    """``[rows, 24]`` hour shares (each row sums to 1) from ``[24]``, ``[rows, 24]``, or ``[G, 24]``
    indexed by ``groups`` ``[rows]``."""
    array = np.asarray(profile, dtype=float)
    if groups is not None:
        array = array[np.asarray(groups)]
    if array.shape not in ((24,), (rows, 24)) or not np.isfinite(array).all() or (array < 0).any():
        raise ValueError(f"{name}: expected finite shares >= 0 of shape [24] or [{rows}, 24], got {array.shape}")
    total = array.sum(axis=-1, keepdims=True)
    flat = np.full(array.shape, 1 / 24)
    return np.broadcast_to(np.where(total > 0, array / np.where(total > 0, total, 1.0), flat), (rows, 24))


def _recover_hourly(sales: np.ndarray, share: np.ndarray, flags: bool, prior: np.ndarray | None, rounds: int) -> Recovered:
    """One block of series of :func:`recover_hourly`."""
    s, n = sales.shape
    days = n // 24
    observed = np.isfinite(sales).reshape(s, days, 24)
    y = np.where(observed, sales.reshape(s, days, 24), 0.0)
    e = np.where(observed, share.reshape(s, days, 24), 0.0)
    if flags:
        e = np.where((e < 1) & (y > 0), 0.5, e)
    y_day = y.sum(axis=2)
    y_hour = y.sum(axis=1)
    seen_day = observed.any(axis=2)
    start = (y_hour + 1e-3) / (e.sum(axis=1) + 1e-3)  # sales per in-stock hour, by hour of day
    start /= start.sum(axis=1, keepdims=True)
    prior = start if prior is None else prior
    profile = start
    phi = _hour_dispersion(y, e, profile)
    weight = np.ones((s, days))
    for _ in range(rounds + 1):
        w = np.einsum("sdh,sh->sd", e, profile)
        mu = expected_demand(y_day, w, weight)
        tau = phi / _day_dispersion(y_day, w, mu, phi)
        weight = tau[:, None] / (tau[:, None] + mu * w)
        rate = posterior_rate(y_day, w, mu, tau[:, None])
        exposed = np.einsum("sdh,sd->sh", e, rate)
        typical = np.maximum(_ratio((rate * seen_day).sum(axis=1, keepdims=True), seen_day.sum(axis=1, keepdims=True)), 1e-12)
        profile = (y_hour + PROFILE_PSEUDO * typical * prior) / (exposed + PROFILE_PSEUDO * typical)
        profile /= profile.sum(axis=1, keepdims=True)
        phi = _hour_dispersion(y, e, profile)
    w = np.einsum("sdh,sh->sd", e, profile)
    rate = posterior_rate(y_day, w, mu, tau[:, None])
    hours = np.where(observed, y + rate[:, :, None] * profile[:, None, :] * (1.0 - e), np.nan)
    daily = np.where(seen_day, np.nansum(hours, axis=2), np.nan)
    return Recovered(hourly=hours.reshape(s, n), daily=daily, profile=profile, exposure=w, mean=mu, tau=tau, phi=phi)


# ------------------------------------------------------------------ batch: daily sales + a stockout flag


def sales_unit(sales: np.ndarray) -> np.ndarray:
    """The step of each series' sales ``[S]``: the largest of 1, 1/2, 1/4, 1/5, 1/10, 1/20, 1/100,
    1/1000 of which every value of the series is a multiple (units: 1; tenths of a kilogram: 0.1).
    The flag-only model counts demand in these steps."""
    values = np.nan_to_num(np.asarray(sales, dtype=float))
    step = np.full(values.shape[0], 0.001)
    for candidate in (0.01, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0):  # the largest that fits wins
        scaled = values / candidate
        fits = (np.abs(scaled - np.round(scaled)) < 1e-6).all(axis=1)
        step = np.where(fits, candidate, step)
    return step


def nb_tail_moments(y: np.ndarray, mu: np.ndarray, inv_k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E[D | D >= y] and E[D^2 | D >= y] for D ~ NB(mean mu, shape k = 1 / inv_k), elementwise, for
    whole numbers y >= 1.

    With p = k / (k + mu), q = 1 - p, the recursion d pmf(d) = q (k + d - 1) pmf(d - 1) summed over
    d >= y gives, from P = P(D >= y) (one regularised incomplete beta function, I_q(y, k)) and the pmf
    at y - 1 (one log-beta):
        E[D 1{D >= y}]   = T1 = mu P + (mu / k)(k + y - 1) pmf(y - 1)
        E[D^2 1{D >= y}] = U, from U - T1 = q^2 E[(k + D + 1)(k + D) 1{D >= y - 2}].
    Far in the tail (P underflows) the excess over y is that of the geometric tail there. Costs about
    0.6 us a cell here, half of it the two special functions (benchmarks/censoring.py)."""
    from scipy import special  # loaded on first use (the model's nnls loads it too)

    k = 1.0 / inv_k
    p = k / (k + mu)
    q = 1.0 - p
    tail = special.betainc(y, k, q)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        pmf1 = np.exp(-special.betaln(k, y) - np.log(k + y - 1) + k * np.log(p) + (y - 1) * np.log1p(-p))  # pmf(y-1)
        pmf2 = np.where(y >= 2, pmf1 * (y - 1) / ((k + y - 2) * q), 0.0)  # pmf(y - 2)
        t1 = mu * tail + mu * inv_k * (k + y - 1) * pmf1
        tail2 = tail + pmf1 + pmf2  # P(D >= y - 2)
        t1_2 = t1 + (y - 1) * pmf1 + (y - 2) * pmf2  # E[D 1{D >= y - 2}]
        sq = (y - 1) ** 2 * pmf1 + (y - 2) ** 2 * pmf2  # U(y - 2) - U(y)
        u = (t1 + q**2 * ((k * k + k) * tail2 + (2 * k + 1) * t1_2 + sq)) / (1 - q**2)
        first, second = t1 / tail, u / tail
    far = np.flatnonzero(~((tail > 1e-200) & np.isfinite(first) & np.isfinite(second)))
    if far.size:
        g = np.minimum(q[far] * (y[far] + k[far]) / (y[far] + 1), 0.99)  # the pmf's ratio at y: a geometric tail
        excess = g / (1 - g)
        first[far], second[far] = y[far] + excess, (y[far] + excess) ** 2 + excess * (1 + excess)
    first = np.maximum(first, y)
    return first, np.maximum(second, first**2)


def recover_censored(
    sales: np.ndarray, stockout: np.ndarray, *, season: int = 7, rounds: int = 3, unit: float | None = None, shape: float = DAY_SHAPE
) -> np.ndarray:
    """Daily demand ``[S, T]`` from daily ``sales`` and a ``stockout`` flag ``[S, T]`` (true: the shelf
    was empty at some moment of the period, so demand is only known to be >= the sales). NaN sales:
    not started (stays NaN). Unflagged periods come back exactly as they sold; flagged ones never
    below their sales.

    Censored-likelihood EM. Demand, counted in steps of ``unit`` (:func:`sales_unit` when None), is
    NB(mean mu_t, shape k): mu_t = local level x weekday (:func:`expected_demand`), k per series.
      start   mu from the unflagged days; each flagged day counted at max(sold, that mu); 1/k = 1/shape
      E-step  a flagged day with sales y gets E[D | D >= y] and E[D^2 | D >= y] (:func:`nb_tail_moments`);
              a flagged day with no sale gets mu (it says nothing)
      M-step  mu from the completed history; in every round also 1/k = sum E[(D - mu)^2 - mu] / sum mu^2,
              shrunk to 1/shape with SHAPE_PSEUDO_DAYS days' weight (the moment update of k creeps
              upwards when left to run, so it stops with the rounds)
    After the third M-step each series' level jumps by Aitken's delta-squared (heavy censoring makes
    EM converge slowly). ``rounds`` rounds, then a last E-step. Cost per round: O(S T), plus one
    incomplete beta and one log-beta per flagged day with sales: about 3x the model's fit
    (docs/forecasting.md, "Censored demand", has the figures and the cuts tried).
    """
    sales = _matrix("sales", sales)
    flags = np.asarray(stockout, dtype=bool)
    if flags.shape != sales.shape:
        raise ValueError(f"stockout: expected shape {sales.shape}, got {flags.shape}")
    out = np.empty(sales.shape)
    for b in _blocks(sales.shape[0], BLOCK_ROWS):
        step = sales_unit(sales[b]) if unit is None else np.full(b.stop - b.start, float(unit))
        out[b] = _recover_censored(sales[b], flags[b], season, rounds, step, shape)
    return out


def _recover_censored(sales: np.ndarray, stockout: np.ndarray, season: int, rounds: int, step: np.ndarray, shape: float) -> np.ndarray:
    """One block of series of :func:`recover_censored` (``step`` ``[S]``: each series' unit)."""
    started = np.isfinite(sales)
    y = np.round(np.where(started, sales, 0.0) / step[:, None])
    flag = stockout & started
    seen = (started & ~flag).astype(float)
    ones = started.astype(float)
    inv_k = np.full(y.shape[0], 1.0 / shape)
    cells = np.nonzero(flag & (y > 0))
    empty = flag & (y <= 0)
    mu = expected_demand(y * seen, seen, seen, season)
    demand = np.where(flag, np.maximum(y, mu), y)
    factor = weekday_factors(demand, ones, ones, season)
    level = _Level(ones, factor)
    mu = level(demand)
    second = y**2
    history = []
    for done in range(rounds + 1):
        m1, m2 = nb_tail_moments(y[cells], mu[cells], inv_k[cells[0]])
        demand[cells], second[cells] = m1, m2
        demand[empty] = mu[empty]
        second[empty] = (mu + mu**2 * (1 + inv_k[:, None]))[empty]
        if done == rounds:
            break
        resid = np.where(started, second - 2 * mu * demand + mu**2 - mu, 0.0).sum(axis=1)
        scale = np.where(started, mu**2, 0.0).sum(axis=1)
        typical = scale / np.maximum(started.sum(axis=1), 1)
        inv_k = (resid + SHAPE_PSEUDO_DAYS * typical / shape) / np.maximum(scale + SHAPE_PSEUDO_DAYS * typical, 1e-300)
        inv_k = np.clip(np.where(scale > 0, inv_k, 1.0 / shape), 1e-3, 10.0)
        mu = level(demand)
        history.append(mu.mean(axis=1))
        if len(history) == 3:  # Aitken: m* = m2 + (m2 - m1) r / (1 - r), r = (m2 - m1) / (m1 - m0)
            m0, m1_, m2_ = history
            with np.errstate(divide="ignore", invalid="ignore"):
                r = np.clip(np.nan_to_num((m2_ - m1_) / (m1_ - m0)), 0.0, 0.9)
                jump = np.where(m2_ > 0, 1.0 + (m2_ - m1_) * r / (1 - r) / m2_, 1.0)
            mu *= np.clip(jump, 1.0 / 1.5, 1.5)[:, None]
    recovered = np.maximum(demand * step[:, None], np.where(started, sales, 0.0))
    return np.where(flag, recovered, sales)


class _Level:
    """:func:`expected_demand` with every day fully exposed and weighted 1, for fixed weekday factors:
    the denominator is the same in every round, so it is summed once."""

    def __init__(self, ones: np.ndarray, factor: np.ndarray) -> None:
        self.f_t = _tile(factor, ones.shape[1])
        self.count = np.maximum(ones.sum(axis=1, keepdims=True), 1e-12)
        self.den = _window_sum(ones * self.f_t, LEVEL_HALF_WIDTH) + PSEUDO_DAYS

    def __call__(self, demand: np.ndarray) -> np.ndarray:
        overall = demand.sum(axis=1, keepdims=True) / self.count
        return np.asarray((_window_sum(demand, LEVEL_HALF_WIDTH) + PSEUDO_DAYS * overall) / self.den * self.f_t)


# ------------------------------------------------------------------ live: one day at a time

PROFILE_MEMORY = 0.97  # per-day decay of the hour sums (~33 days: a noisy profile biases A upwards)
SPREAD_MEMORY = 0.98  # per-day decay of the dispersion and weekday sums (~50 days)
LEVEL_MEMORY = 0.93  # per-day decay of the level sums (~14 days, the batch window's half width)
LIVE_WIDTH = 68  # floats per series in LiveState.to_array()


@dataclass(frozen=True)
class LiveState:
    """What the live handler keeps per series to recover each day as it closes: decayed sums, plain
    float arrays with the series on the first axis. ``to_array()`` lays them out as one ``[S, 68]``
    array, in this order:

    ==========  ==========  ========  =====================================================================
    columns     field       decay     sum over the closed days d (c = tau / (tau + mu w): the NB weight)
    ==========  ==========  ========  =====================================================================
    0-23        hour_sales  0.97/day  Y_dh, sales by hour of day
    24-47       hour_exp    0.97/day  A_d e_dh, the demand each hour was exposed to (A_d: the day's rate)
    48-49       within      0.98/day  Pearson sums of the in-stock hours around Y_d pi_dh (phi = [0] / [1])
    50-51       between     0.98/day  (Y - mu w)^2 - phi mu w, (mu w)^2 (1/k = [0] / [1])
    52-53       level       0.93/day  c Y / W, c w (the level is [0] / [1])
    54-67       weekday     0.98/day  [weekday, 2]: c Y, c w level, by weekday (flattened weekday-major)
    ==========  ==========  ========  =====================================================================

    A series with only zeros (:meth:`empty`) has no evidence yet: its first day is recovered from its
    own in-stock rate. The state replaces a plain hour-of-day demand profile: :meth:`profile` is the
    censoring-aware one (what ``hour_shares`` needs)."""

    hour_sales: np.ndarray  # [S, 24]
    hour_exposed: np.ndarray  # [S, 24]
    within: np.ndarray  # [S, 2]
    between: np.ndarray  # [S, 2]
    level: np.ndarray  # [S, 2]
    weekday: np.ndarray  # [S, 7, 2]

    @classmethod
    def empty(cls, series: int) -> LiveState:
        """The state of ``series`` series that have seen no day yet."""
        return cls.from_array(np.zeros((series, LIVE_WIDTH)))

    @classmethod
    def from_array(cls, array: np.ndarray) -> LiveState:
        """The state laid out by :meth:`to_array` (``[S, 68]``; rows are series)."""
        values = np.asarray(array, dtype=float)
        if values.ndim != 2 or values.shape[1] != LIVE_WIDTH:
            raise ValueError(f"live state: expected shape [series, {LIVE_WIDTH}], got {values.shape}")
        return cls(
            values[:, 0:24], values[:, 24:48], values[:, 48:50], values[:, 50:52], values[:, 52:54], values[:, 54:68].reshape(-1, 7, 2)
        )

    def to_array(self) -> np.ndarray:
        """One ``[S, 68]`` float array (the layout in the class docstring)."""
        return np.concatenate(
            [self.hour_sales, self.hour_exposed, self.within, self.between, self.level, self.weekday.reshape(-1, 14)], axis=1
        )

    def profile(self, prior: np.ndarray | None = None, groups: np.ndarray | None = None) -> np.ndarray:
        """``[S, 24]`` hour-of-day shares of demand: sales by hour over the demand each hour was exposed
        to, shrunk to ``prior`` with one day's weight. ``prior``: ``[24]``, ``[S, 24]``, or ``[G, 24]``
        with ``groups`` ``[S]`` (e.g. a profile per warehouse, :func:`profile_from_sums`, and the
        catalog's warehouse index); default flat. Rows need not sum to 1: they are normalised."""
        s = self.hour_sales.shape[0]
        shares = np.full((s, 24), 1 / 24) if prior is None else _shares(prior, s, "prior", groups)
        typical = self.hour_exposed.sum(axis=1, keepdims=True) / 24.0 * (1 - PROFILE_MEMORY)  # ~ a day's rate
        ratio = (self.hour_sales + PROFILE_PSEUDO * typical * shares + 1e-12) / (self.hour_exposed + PROFILE_PSEUDO * typical + 1e-12)
        return np.asarray(ratio / ratio.sum(axis=1, keepdims=True))

    def tau(self) -> np.ndarray:
        """``[S]`` tau = phi k (phi = 1 and k = DAY_SHAPE until there is evidence)."""
        phi = (self.within[:, 0] + 1.0) / (self.within[:, 1] + 1.0)
        den = self.between[:, 1]
        typical = den * (1 - SPREAD_MEMORY)
        inv_k = (self.between[:, 0] + SHAPE_PSEUDO_DAYS * typical / DAY_SHAPE) / np.maximum(den + SHAPE_PSEUDO_DAYS * typical, 1e-300)
        return np.asarray(phi / np.where(den > 0, np.clip(inv_k, 1e-3, 4.0), 1.0 / DAY_SHAPE))

    def factors(self) -> np.ndarray:
        """``[S, 7]`` weekday factors (mean 1), shrunk to 1 with WEEKDAY_PSEUDO days' weight."""
        num, den = self.weekday[:, :, 0], self.weekday[:, :, 1]
        typical = np.maximum(den.sum(axis=1, keepdims=True) / 7.0 * (1 - SPREAD_MEMORY), 1e-12)
        factor = (num + WEEKDAY_PSEUDO * typical) / (den + WEEKDAY_PSEUDO * typical)
        return np.asarray(factor / factor.mean(axis=1, keepdims=True))

    def mean(self, weekday: int) -> np.ndarray:
        """``[S]`` expected demand of a day of ``weekday`` (0..6) from the days before it."""
        level = np.where(self.level[:, 1] > 0, self.level[:, 0] / np.maximum(self.level[:, 1], 1e-12), 0.0)
        return np.asarray(level * self.factors()[:, weekday])


def close_day(
    live: LiveState,
    sales: np.ndarray,
    minutes: np.ndarray,
    weekday: int,
    prior_profile: np.ndarray | None = None,
    *,
    groups: np.ndarray | None = None,
    observed: np.ndarray | bool = True,
) -> tuple[np.ndarray, LiveState]:
    """Recover one closed day of every series and fold it into the state.

    ``sales`` ``[S, 24]`` sold per hour of the day, ``minutes`` ``[S, 24]`` in stock per hour (0..60);
    ``weekday`` the day's phase 0..6 (any fixed numbering, e.g. the UTC day number % 7);
    ``prior_profile`` what a series' hour profile is shrunk to (see :meth:`LiveState.profile`: ``[24]``,
    ``[S, 24]`` or per group with ``groups``); ``observed`` ``[S]`` (or one bool): False for a series
    whose day is not a complete observed day (created during it): its recovered day is NaN, its state
    is left as it was, and its sales and minutes are not read.

        mu = level x weekday factor (from the days before),   w = sum_h P_h e_h,
        A  = mu (tau + Y) / (tau + mu w),                     D = Y + A sum_h P_h (1 - e_h)

    Returns (the recovered demand of the day ``[S]``, the new state). O(S x 24), no iteration: the sums
    carry what the batch EM iterates over. The state never reads the model's forecast, so the model's
    own bias cannot feed back into the history.
    """
    s = live.hour_sales.shape[0]
    if not 0 <= weekday < 7:
        raise ValueError(f"weekday: expected 0..6, got {weekday}")
    keep = np.broadcast_to(np.asarray(observed, dtype=bool), (s,))
    rows = keep[:, None]  # the hours of a day not observed are not read
    y = _matrix("sales", np.where(rows, _matrix("sales", sales, (s, 24), check=False), 0.0), (s, 24))
    e = _minutes("minutes", np.where(rows, _matrix("minutes", minutes, (s, 24), check=False), 60.0), (s, 24))
    if not np.isfinite(y).all():
        raise ValueError("sales: NaN or infinite values (mark a day that is not observed with observed=False)")
    profile = live.profile(prior_profile, groups)
    tau = live.tau()
    y_day = y.sum(axis=1)
    w = (e * profile).sum(axis=1)
    fresh = live.level[:, 1] <= 0  # no level yet: the day's own in-stock rate
    mu = np.where(fresh, y_day / np.maximum(w, 0.25), live.mean(weekday))
    rate = posterior_rate(y_day, w, mu, tau)
    day = y_day + rate * (profile * (1.0 - e)).sum(axis=1)
    return np.where(keep, day, np.nan), _where(keep, _fold(live, y, e, profile, mu, tau, rate, weekday), live)


def _where(keep: np.ndarray, new: LiveState, old: LiveState) -> LiveState:
    """``new`` for the series where ``keep`` ``[S]`` is true, ``old`` for the others."""
    if keep.all():
        return new
    parts = []
    for f in dataclasses.fields(LiveState):
        a, b = getattr(new, f.name), getattr(old, f.name)
        parts.append(np.where(keep.reshape((-1,) + (1,) * (a.ndim - 1)), a, b))
    return LiveState(*parts)


def _fold(
    live: LiveState, y: np.ndarray, e: np.ndarray, profile: np.ndarray, mu: np.ndarray, tau: np.ndarray, rate: np.ndarray, weekday: int
) -> LiveState:
    """The state after one day: every sum decayed and the day added."""
    y_day = y.sum(axis=1)
    share = e * profile
    w = share.sum(axis=1)
    pi = share / np.maximum(w[:, None], 1e-12)
    seen = e >= 1.0
    expected = y_day[:, None] * pi
    within = live.within * SPREAD_MEMORY + np.stack(
        [np.where(seen, (y - expected) ** 2, 0.0).sum(axis=1), np.where(seen, expected * (1 - pi), 0.0).sum(axis=1)], axis=1
    )
    phi = (within[:, 0] + 1.0) / (within[:, 1] + 1.0)
    m = mu * w
    between = live.between * SPREAD_MEMORY + np.stack([(y_day - m) ** 2 - phi * m, m**2], axis=1)
    c = tau / (tau + m)  # the negative-binomial weight of the day (as in expected_demand)
    factor = live.factors()[:, weekday]
    level = live.level * LEVEL_MEMORY + np.stack([c * y_day / factor, c * w], axis=1)
    day_level = level[:, 0] / np.maximum(level[:, 1], 1e-12)
    weekday_sums = live.weekday * SPREAD_MEMORY
    weekday_sums[:, weekday] += np.stack([c * y_day, c * w * day_level], axis=1)
    return LiveState(
        hour_sales=live.hour_sales * PROFILE_MEMORY + y,
        hour_exposed=live.hour_exposed * PROFILE_MEMORY + e * rate[:, None],
        within=within,
        between=between,
        level=level,
        weekday=weekday_sums,
    )


def warm_state(
    sales: np.ndarray, minutes: np.ndarray, first_weekday: int = 0, prior_profile: np.ndarray | None = None
) -> tuple[np.ndarray, LiveState]:
    """A migration: recover whole days of hourly history ``[S, days * 24]`` in one batch
    (:func:`recover_hourly`), then fold them into a state day by day (a loop over days, not series).
    ``first_weekday``: the phase of the first day. Returns (the recovered daily history ``[S, days]``,
    the state as if :func:`close_day` had seen those days)."""
    rec = recover_hourly(sales, minutes, prior_profile=prior_profile)
    s, days = rec.daily.shape
    values = np.asarray(sales, dtype=float).reshape(s, days, 24)
    seen = np.isfinite(values)
    y = np.where(seen, values, 0.0)
    e = np.where(seen, np.asarray(minutes, dtype=float).reshape(s, days, 24) / 60.0, 0.0)
    live = LiveState.empty(s)
    for day in range(days):  # a day with no observed hour (before a series started) leaves its state alone
        rate = posterior_rate(y[:, day].sum(axis=1), rec.exposure[:, day], rec.mean[:, day], rec.tau)
        folded = _fold(live, y[:, day], e[:, day], rec.profile, rec.mean[:, day], rec.tau, rate, (first_weekday + day) % 7)
        live = _where(seen[:, day].any(axis=1), folded, live)
    return rec.daily, live


def group_hour_sums(live: LiveState, groups: np.ndarray, count: int) -> np.ndarray:
    """``[count, 2, 24]``: each group's (e.g. warehouse's) hour sales and exposed demand, summed over its
    series. Sums of shards add up; :func:`profile_from_sums` turns them into a profile per group."""
    index = np.asarray(groups)
    out = np.zeros((count, 2, 24))
    np.add.at(out, index, np.stack([live.hour_sales, live.hour_exposed], axis=1))
    return out


def profile_from_sums(sums: np.ndarray) -> np.ndarray:
    """``[G, 24]`` censoring-aware hour shares of each group from :func:`group_hour_sums` (summed over
    shards); a group with no sales gets a flat profile."""
    sales, exposed = sums[:, 0], sums[:, 1]
    ratio = np.where(exposed > 0, sales / np.where(exposed > 0, exposed, 1.0), 0.0)
    total = ratio.sum(axis=1, keepdims=True)
    return np.asarray(np.where(total > 0, ratio / np.where(total > 0, total, 1.0), 1 / 24))


def close_day_arrays(
    live: np.ndarray, sales: np.ndarray, out_of_stock_minutes: np.ndarray, weekday: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`close_day` as the order tick's history calls it (handlers/model/history.py), on plain arrays:
    ``live`` ``[S, 68]`` (or ``[S, 0]``: nothing kept yet), the day's ``sales`` ``[S, 24]`` and minutes
    out of stock ``[S, 24]``. Returns the recovered demand of the day ``[S]``, the recovered demand by
    hour ``[S, 24]`` (the day's extra spread over its time out of stock by the series' profile, for the
    hour-of-day profile) and the new ``live`` ``[S, 68]``."""
    s = sales.shape[0]
    state = LiveState.from_array(live) if live.shape[1] == LIVE_WIDTH else LiveState.empty(s)
    minutes = np.clip(60.0 - np.asarray(out_of_stock_minutes, dtype=float), 0.0, 60.0)
    day, new = close_day(state, sales, minutes, weekday)
    missing = state.profile() * (1.0 - minutes / 60.0)
    spread = missing.sum(axis=1, keepdims=True)
    extra = (day - sales.sum(axis=1))[:, None]
    hours = sales + np.where(spread > 0, extra * missing / np.where(spread > 0, spread, 1.0), 0.0)
    return day, np.asarray(hours), new.to_array()
