"""A seeded shop whose shelf hides demand during stockouts, where the truth is known (pure).

What tests/test_censored.py, tests/test_backtest.py and benchmarks/censoring.py measure
handlers/forecasting/censored.py on. The intraday mechanics: hourly demand counts; the stock on hand
arrives before the day opens; the shelf empties at the arrival of the unit that takes the last item
(units arrive uniformly within their hour, so the moment inside the hour is the r-th of d uniform
arrivals, Beta(r, d - r + 1)) and stays empty until the next delivery; unmet demand is lost.

:func:`fresh_shop` is fresh retail: each morning the shelf gets a noisy plan of the day's demand, what
is left in the evening is thrown away, and demand peaks after work, so the shelf empties late in the
day on the high-demand days (stockouts depend on demand: the hard case). The other shops of the
benchmark (a periodic-review shop, a FreshRetailNet-like grocer, M5 with an imposed shelf) are in
benchmarks/censored_shops.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CensoredShop", "FRESH_DIURNAL", "WEEKLY", "fresh_shop", "sell_through"]

# Relative demand by weekday, Monday first (the simulator's: handlers/model/demand.py), mean 1.
_WEEKLY_RAW = np.array([0.92, 0.95, 0.97, 1.00, 1.08, 1.12, 0.96])
WEEKLY = _WEEKLY_RAW / _WEEKLY_RAW.mean()
# Fresh retail, by hour of day: open 06-22, a small lunch peak and a large after-work peak; mean 1.
_FRESH_RAW = np.array(
    [0, 0, 0, 0, 0, 0, 0.3, 0.6, 0.9, 1.0, 1.0, 1.2, 1.3, 1.0, 0.8, 0.8, 1.1, 1.7, 2.3, 2.4, 1.9, 1.2, 0.5, 0], dtype=float
)
FRESH_DIURNAL = _FRESH_RAW / _FRESH_RAW.mean()


@dataclass(frozen=True)
class CensoredShop:
    """A shop's hourly truth and what its feed shows, ``[S, days * 24]``, oldest hour first.

    ``day_flag`` ``[S, days]``: the stockout flag of a day as the shop's export states it; None: a day
    is flagged when any of its hours was out of stock at some moment."""

    hourly_demand: np.ndarray  # true demand per hour
    hourly_sales: np.ndarray  # sold per hour (= demand while in stock)
    hourly_minutes: np.ndarray  # minutes in stock per hour, 0..60
    day_flag: np.ndarray | None = None

    def _days(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values.reshape(values.shape[0], -1, 24).sum(axis=2))

    @property
    def demand(self) -> np.ndarray:
        """``[S, days]`` true daily demand."""
        return self._days(self.hourly_demand)

    @property
    def sales(self) -> np.ndarray:
        """``[S, days]`` daily sales."""
        return self._days(self.hourly_sales)

    @property
    def in_stock(self) -> np.ndarray:
        """``[S, days]`` share of each day in stock, in [0, 1]."""
        return np.asarray(self._days(self.hourly_minutes) / 1440.0)

    @property
    def flags(self) -> np.ndarray:
        """``[S, days]`` bool: the day's stockout flag (what a backtest CSV carries)."""
        return self.in_stock < 1.0 if self.day_flag is None else self.day_flag

    @property
    def hour_flags(self) -> np.ndarray:
        """``[S, days * 24]`` bool: the hour was out of stock at some moment."""
        return np.asarray(self.hourly_minutes < 60.0)


def sell_through(hourly_demand: np.ndarray, stock: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One day at the shelf: hourly sales and in-stock minutes ``[S, 24]`` for whole-number hourly
    demand ``[S, 24]`` and the stock on hand at opening ``[S]``. The shelf empties at the arrival of
    the unit that takes the last item and stays empty for the rest of the day."""
    before = np.cumsum(hourly_demand, axis=1) - hourly_demand  # demand before each hour
    left = np.maximum(stock[:, None] - before, 0)  # stock at the start of each hour
    sales = np.minimum(hourly_demand, left)
    minutes = np.where(left > 0, 60.0, 0.0)
    runs_out = (left > 0) & (hourly_demand >= left)  # the last item goes in this hour
    r = np.where(runs_out, left, 1)
    d = np.where(runs_out, hourly_demand, 1)
    moment = rng.beta(np.maximum(r, 1), np.maximum(d - r + 1, 1))  # the r-th of d uniform arrivals
    minutes = np.where(runs_out, 60.0 * moment, minutes)
    return sales.astype(float), minutes


def fresh_shop(series: int = 2000, days: int = 63, seed: int = 1, cover_low: float = 0.75, cover_high: float = 1.35) -> CensoredShop:
    """Fresh retail: each morning the shelf gets cover_i x (the day's planned demand) x noise units and
    sells out late on the days demand beats it; nothing carries over.

    Day rate: base_i x weekly_i x g_it, g_it ~ Gamma(k_i, 1/k_i), k_i ~ U(4, 15) (weather: the day-level
    swings that make the sold-out days the high-demand days). Stock: round(cover_i x base_i x weekly_i x
    lognormal(0.15)), cover_i ~ U(cover_low, cover_high). With the defaults about 45 % of the days and
    11 % of the hours have a stockout, and 15 % of demand is lost.
    """
    rng = np.random.default_rng(seed)
    base = np.exp(rng.normal(2.8, 0.9, series)).clip(2, 400)  # units per day (median ~16)
    weekly = WEEKLY[None, :] * np.exp(rng.normal(0, 0.1, (series, 7)))
    weekly /= weekly.mean(axis=1, keepdims=True)
    diurnal = FRESH_DIURNAL[None, :] * np.exp(rng.normal(0, 0.15, (series, 24)))
    diurnal = diurnal / diurnal.mean(axis=1, keepdims=True)
    shape = rng.uniform(4, 15, series)
    cover = rng.uniform(cover_low, cover_high, series)
    demand, sales, minutes = (np.zeros((series, days, 24)) for _ in range(3))
    for t in range(days):  # days, not series
        plan = base * weekly[:, t % 7]
        rate = plan * rng.gamma(shape, 1.0 / shape)
        demand[:, t] = rng.poisson(rate[:, None] * diurnal / 24.0)
        stock = np.round(cover * plan * np.exp(rng.normal(0, 0.15, series))).astype(np.int64)
        sales[:, t], minutes[:, t] = sell_through(demand[:, t], stock, rng)
    return CensoredShop(demand.reshape(series, -1), sales.reshape(series, -1), minutes.reshape(series, -1))
