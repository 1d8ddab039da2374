"""The censored shops of benchmarks/censoring.py beyond the tests' fresh shop (seeded; truth known).

Each returns a :class:`~handlers.forecasting.censored_shop.CensoredShop` (hourly truth, sales and
in-stock minutes); the intraday shelf is ``sell_through`` of handlers/forecasting/censored_shop.py.

``periodic_review_shop``  Poisson x day-level gamma demand (k in {inf, 20, 6}), weekly pattern, trend;
                          periodic-review order-up-to replenishment whose safety factor varies by series
``frn_like_shop``         FreshRetailNet-like: sales in tenths, refill at 06:00, an empty shelf stays
                          empty overnight, hourly flags, a day flagged by a stockout in 06-22 h;
                          calibrated so that a raw-sales fit is at -14 % on in-stock days (the project
                          saw -13 % on real stockout-annotated data). ``heavy=True``: demand-driven
                          evening sell-outs on top (the variant where an in-stock profile "halves the bias")
``m5_shop``               real M5 units (../shared/data, when present) as the truth, spread over the hours,
                          under a shelf run on a 28-day moving average
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from handlers.forecasting.censored_shop import FRESH_DIURNAL, WEEKLY, CensoredShop, sell_through
from handlers.model.demand import DIURNAL

# Relative demand by hour of day, mean 1: the simulator's (handlers/model/demand.py).
SHOP_DIURNAL = DIURNAL
TINY_M5 = ROOT.parent / "shared" / "data" / "m5_tiny_m5_280series.csv.gz"
HEAVY = {"cover_low": 0.4, "cover_high": 1.0, "stock_noise": 0.3, "shape_low": 5.0, "shape_high": 20.0}


def _shop(demand: np.ndarray, sales: np.ndarray, minutes: np.ndarray, day_flag: np.ndarray | None = None) -> CensoredShop:
    s = demand.shape[0]
    return CensoredShop(demand.reshape(s, -1).astype(float), sales.reshape(s, -1), minutes.reshape(s, -1), day_flag)


def periodic_review_shop(series: int = 3000, days: int = 147, seed: int = 0) -> CensoredShop:
    """Demand rate base_i x weekly_i(t) x exp(trend_i t / 365) x g_it, g_it ~ Gamma(k_i, 1/k_i),
    k_i in {inf, 20, 6}, spread over the hours by SHOP_DIURNAL. Review every R_i in {1, 2, 3, 7} days,
    lead time L_i of 1-3 days, order up to mu_i (R_i + L_i) + z_i sqrt(var_i (R_i + L_i)),
    z_i ~ U(-0.6, 1.8). A 28-day burn-in is dropped. About 17 % of the days have a stockout."""
    rng = np.random.default_rng(seed)
    burn = 28
    total = days + burn
    base = np.exp(rng.normal(1.4, 1.2, series)).clip(0.2, 300)
    weekly = WEEKLY[None, :] * np.exp(rng.normal(0, 0.08, (series, 7)))
    weekly /= weekly.mean(axis=1, keepdims=True)
    trend = rng.normal(0, 0.4, series)  # per year
    shape = rng.choice([np.inf, 20.0, 6.0], series, p=[0.3, 0.4, 0.3])
    review = rng.choice([1, 2, 3, 7], series)
    lead = rng.integers(1, 4, series)
    z = rng.uniform(-0.6, 1.8, series)
    cover = review + lead
    finite = np.isfinite(shape)
    var_day = base + base**2 / np.where(finite, shape, 1e12)
    level = np.maximum(np.round(base * cover + z * np.sqrt(var_day * cover)), 1)
    on_hand = np.round(base * lead).astype(np.int64)
    pipeline = np.zeros((series, total + 8), dtype=np.int64)
    phase = rng.integers(0, 7, series)
    hd, hs, hm = (np.zeros((series, total, 24)) for _ in range(3))
    for t in range(total):
        on_hand = on_hand + pipeline[:, t]
        if t >= 1:  # review at the start of the day, after the delivery
            due = (t + phase) % review == 0
            position = on_hand + pipeline[:, t + 1 :].sum(axis=1)
            qty = np.where(due, np.maximum(level - position, 0), 0)
            pipeline[np.arange(series), t + lead] += qty.astype(np.int64)
        g = np.where(finite, rng.gamma(np.where(finite, shape, 1.0), 1.0 / np.where(finite, shape, 1.0)), 1.0)
        rate = base * weekly[:, t % 7] * np.exp(trend * (t - total) / 365.0) * g
        demand = rng.poisson(rate[:, None] * SHOP_DIURNAL[None, :] / 24.0)
        sold, minutes = sell_through(demand, on_hand, rng)
        on_hand = on_hand - sold.sum(axis=1).astype(np.int64)
        hd[:, t], hs[:, t], hm[:, t] = demand, sold, minutes
    return _shop(hd[:, burn:], hs[:, burn:], hm[:, burn:])


def frn_like_shop(series: int = 2000, days: int = 90, seed: int = 3, unit: float = 0.1, heavy: bool = False) -> CensoredShop:
    """An online fresh grocer's front warehouse: sales in tenths (``unit``), the shelf refilled at 06:00
    with a noisy plan (cover_i ~ U(0.6, 1.4), lognormal noise 0.6; day-level demand k ~ U(20, 80):
    stockouts driven by supply more than demand), what is left written off, an empty shelf empty until
    the next 06:00. A day is flagged when a stockout touches 06:00-22:00 (FRN's ``stock_hour6_22_cnt``).
    ``heavy``: cover U(0.4, 1.0), noise 0.3, k ~ U(5, 20) (demand-driven evening sell-outs)."""
    options = HEAVY if heavy else {}
    cover_low, cover_high = options.get("cover_low", 0.6), options.get("cover_high", 1.4)
    stock_noise = options.get("stock_noise", 0.6)
    shape_low, shape_high = options.get("shape_low", 20.0), options.get("shape_high", 80.0)
    rng = np.random.default_rng(seed)
    base = np.exp(rng.normal(2.6, 0.8, series)).clip(1, 300)  # units (of ``unit``) per day
    weekly = WEEKLY[None, :] * np.exp(rng.normal(0, 0.1, (series, 7)))
    weekly /= weekly.mean(axis=1, keepdims=True)
    diurnal = (FRESH_DIURNAL + 0.05)[None, :] * np.exp(rng.normal(0, 0.15, (series, 24)))
    diurnal = diurnal / diurnal.mean(axis=1, keepdims=True)
    shape = rng.uniform(shape_low, shape_high, series)
    cover = rng.uniform(cover_low, cover_high, series)
    rates = base[:, None] * weekly[:, np.arange(days) % 7] * rng.gamma(shape[:, None], 1.0 / shape[:, None], (series, days))
    hd = rng.poisson(rates[:, :, None] * diurnal[:, None, :] / 24.0).reshape(series, -1)
    hs = hd.astype(float).copy()
    hm = np.full(hd.shape, 60.0)
    for t in range(days - 1):  # the stock window of day t: 06:00 day t .. 06:00 day t + 1
        window = slice(24 * t + 6, 24 * t + 30)
        plan = base * weekly[:, t % 7]
        stock = np.round(cover * plan * np.exp(rng.normal(0, stock_noise, series))).astype(np.int64)
        hs[:, window], hm[:, window] = sell_through(hd[:, window], stock, rng)
    day_flag = (hm < 60).reshape(series, days, 24)[:, :, 6:22].any(axis=2)
    return CensoredShop(unit * hd.astype(float), unit * hs, hm, day_flag)


def m5_units(path: Path = TINY_M5, windows: int = 6, length: int = 147, step: int = 28) -> np.ndarray:
    """M5 daily units ``[280 * windows, length]``: the last ``windows`` windows of ``length`` days,
    ending ``step`` days apart (a multiple of 7: weekdays stay aligned)."""
    import pandas as pd

    frame = pd.read_csv(path, usecols=["item_id", "store_id", "date", "value"])
    wide = frame.pivot_table(index=["item_id", "store_id"], columns="date", values="value", aggfunc="sum")
    values = wide.sort_index(axis=1).to_numpy(dtype=float)
    ends = [values.shape[1] - j * step for j in range(windows)][::-1]
    return np.concatenate([values[:, e - length : e] for e in ends], axis=0)


def m5_shop(path: Path = TINY_M5, windows: int = 6, days: int = 147, seed: int = 2) -> CensoredShop:
    """Real M5 demand under an imposed shelf: review R_i in {1, 2, 3, 7}, lead time 1-2 days, order up to
    ma28_i (R + L) c_i + z_i sqrt(ma28_i (R + L)), ma28 the 28-day moving average of demand (the store's
    own estimate), c_i ~ U(0.8, 1.2), z_i ~ U(-0.5, 2). Daily units spread over the hours
    multinomially by SHOP_DIURNAL. A 28-day burn-in is dropped."""
    rng = np.random.default_rng(seed)
    demand_days = np.nan_to_num(m5_units(path, windows, days + 28))
    series, total = demand_days.shape
    review = rng.choice([1, 2, 3, 7], series)
    lead = rng.integers(1, 3, series)
    scale = rng.uniform(0.8, 1.2, series)
    z = rng.uniform(-0.5, 2.0, series)
    cover = review + lead
    ma = np.maximum(demand_days[:, :28].mean(axis=1), 0.05)
    on_hand = np.round(ma * (lead + review / 2)).astype(np.int64)
    pipeline = np.zeros((series, total + 8), dtype=np.int64)
    phase = rng.integers(0, 7, series)
    hd, hs, hm = (np.zeros((series, total, 24)) for _ in range(3))
    p = SHOP_DIURNAL / SHOP_DIURNAL.sum()
    for t in range(total):
        on_hand = on_hand + pipeline[:, t]
        if t >= 28:
            ma = np.maximum(demand_days[:, t - 28 : t].mean(axis=1), 0.05)
            due = (t + phase) % review == 0
            level = np.round(ma * cover * scale + z * np.sqrt(ma * cover))
            position = on_hand + pipeline[:, t + 1 :].sum(axis=1)
            qty = np.where(due, np.maximum(level - position, 0), 0)
            pipeline[np.arange(series), t + lead] += qty.astype(np.int64)
        demand = rng.multinomial(demand_days[:, t].astype(np.int64), p)
        sold, minutes = sell_through(demand, on_hand, rng)
        on_hand = on_hand - sold.sum(axis=1).astype(np.int64)
        hd[:, t], hs[:, t], hm[:, t] = demand, sold, minutes
    return _shop(hd[:, 28:], hs[:, 28:], hm[:, 28:])
