"""Simulated customer demand: deterministic from (catalog seed, business minute).

Units ordered in the minute ending at ``t`` for series ``i`` are Poisson with rate

    base_demand_per_day[i] / 1440 * DIURNAL[local hour] * WEEKLY[local weekday]
        * exp(trend_per_year[i] * years since TREND_ORIGIN) * promotion lift

where local time is the warehouse's time zone and a promotion is a whole UTC day on which a
product's demand is lifted in every warehouse. Every draw is counter-based (handlers/model/streams.py):
the units of series ``i`` in minute ``m`` come from the stream (key of (seed, product id,
warehouse id), m) alone, and a product's promotion on day ``d`` from (key of (seed, product id),
d). So the demand of a series is the same however the minutes are split into ticks, whichever
other series the catalog holds and in whatever order (a shard draws what the whole catalog
draws), and a replay is identical.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from handlers.model.catalog import Catalog
from handlers.model.streams import poisson, uniforms, word

__all__ = ["DIURNAL", "WEEKLY", "minute_rates", "minute_demand", "demand_block", "promotion_lift", "promotion_calendar"]

# Relative demand by local hour of day (mean 1): quiet nights, a lunch peak, an evening peak.
# fmt: off
_DIURNAL_RAW = np.array([0.25, 0.15, 0.10, 0.08, 0.08, 0.12, 0.30, 0.60, 0.90, 1.10, 1.25, 1.40,
                         1.55, 1.50, 1.35, 1.30, 1.35, 1.50, 1.75, 1.95, 1.90, 1.60, 1.05, 0.55])
# fmt: on
DIURNAL = _DIURNAL_RAW / _DIURNAL_RAW.mean()
# Relative demand by local weekday, Monday first (mean 1).
_WEEKLY_RAW = np.array([0.92, 0.95, 0.97, 1.00, 1.08, 1.12, 0.96])
WEEKLY = _WEEKLY_RAW / _WEEKLY_RAW.mean()
TREND_ORIGIN = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
_YEAR = 365.25 * 86400
_DEMAND_STREAM = 0xD3AD  # stream ids keep the demand and promotion draws independent
_PROMO_STREAM = 0x9207
_BLOCK_ELEMENTS = 1 << 18  # minutes x series drawn at once: the draw's temporaries stay a few MB


def _local_hour_weekday(catalog: Catalog, moments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local hour [M, W] and weekday [M, W] of each moment in each warehouse."""
    hours = np.empty((len(moments), len(catalog.warehouses)), dtype=np.int64)
    weekdays = np.empty_like(hours)
    for w, zone in enumerate(catalog.zones):
        for m, moment in enumerate(moments):
            local = datetime.fromtimestamp(float(moment), zone)
            hours[m, w] = local.hour
            weekdays[m, w] = local.weekday()
    return hours, weekdays


def promotion_lift(catalog: Catalog, day: int) -> np.ndarray:
    """Demand multiplier of every product on UTC day number ``day`` [P]."""
    draws = uniforms(catalog.product_keys, np.array([word(_PROMO_STREAM, day)], dtype=np.uint64), 0)
    probability = np.array([p.promo_probability_per_day for p in catalog.products])
    lift = np.array([p.promo_lift for p in catalog.products])
    return np.where(draws < probability, lift, 1.0)


def promotion_calendar(catalog: Catalog, first_day: int, days: int) -> np.ndarray:
    """Planned promotion lift of every series on each UTC day from ``first_day`` [S, days].

    Promotions are planned: the simulation draws them from the seed, and the forecast reads the
    same calendar, as a shop's forecasting reads its marketing calendar.
    """
    lifts = np.stack([promotion_lift(catalog, day) for day in range(first_day, first_day + days)], axis=1)
    return np.asarray(lifts[catalog.product_index])


#: Demand saturates at this many expected units per minute and series: a trend compounded over
#: decades cannot overflow the Poisson draws or the int64 counters (a real shop is far below it).
MAX_RATE_PER_MINUTE = 1e6


def minute_rates(catalog: Catalog, minute_ends: np.ndarray) -> np.ndarray:
    """Expected units [M, S] in each minute (given by its end, epoch seconds) for each series."""
    starts = np.asarray(minute_ends, dtype=float) - 60.0
    hours, weekdays = _local_hour_weekday(catalog, starts)
    wh = catalog.warehouse_index
    shape = DIURNAL[hours[:, wh]] * WEEKLY[weekdays[:, wh]]  # [M, S]
    years = (starts - TREND_ORIGIN) / _YEAR
    with np.errstate(over="ignore"):  # decades of a steep trend overflow: saturated below
        trend = np.exp(np.outer(years, catalog.trend_per_year))
    days = (starts // 86400).astype(np.int64)
    unique_days, which = np.unique(days, return_inverse=True)
    lifts = np.stack([promotion_lift(catalog, int(d)) for d in unique_days])
    promo = lifts[which][:, catalog.product_index]
    with np.errstate(over="ignore", invalid="ignore"):
        rates = (catalog.base_demand_per_day / 1440.0) * shape * trend * promo
    return np.asarray(np.minimum(np.nan_to_num(rates, nan=MAX_RATE_PER_MINUTE, posinf=MAX_RATE_PER_MINUTE), MAX_RATE_PER_MINUTE))


def demand_block(catalog: Catalog, minute_ends: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Units ordered [M, S] in each minute (given by its end, epoch seconds) for each series, drawn
    with the expected units ``rates`` [M, S]: exact Poisson draws from each series' own stream."""
    minutes = (np.asarray(minute_ends, dtype=float) // 60).astype(np.int64)
    words = np.array([word(_DEMAND_STREAM, int(m)) for m in minutes], dtype=np.uint64)
    out = np.empty(rates.shape, dtype=np.int64)
    step = max(1, _BLOCK_ELEMENTS // max(1, catalog.num_series))
    for first in range(0, len(minutes), step):
        out[first : first + step] = poisson(rates[first : first + step], catalog.series_keys, words[first : first + step])
    return out


def minute_demand(catalog: Catalog, minute_end: float, rates: np.ndarray) -> np.ndarray:
    """Units ordered in one minute [S]: the row of :func:`demand_block` for that minute."""
    return np.asarray(demand_block(catalog, np.array([minute_end]), np.asarray(rates)[None, :])[0])
