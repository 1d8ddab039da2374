"""Demand is a property of each series: the draws of a series depend on (seed, product id,
warehouse id, minute, its own rate) alone — never on which other series the catalog holds or
their order — and they are exact Poisson draws."""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from scipy import stats

from handlers.model.catalog import Catalog, parse_catalog
from handlers.model.demand import demand_block, minute_demand, minute_rates, promotion_lift
from handlers.model.events import Tick
from handlers.model.ordering import order_tick
from handlers.model.state import initial_state
from handlers.model.streams import INVERSION_MAX_RATE, poisson, string_keys
from handlers.runtime.catalogs import default_catalog

START = datetime(2026, 1, 5, tzinfo=timezone.utc)  # a Monday
LONG_ID = "BUNDLE-" + "X" * 80  # longer than the 64 bytes hashed word by word
# ids of many lengths (one long, one not ASCII); demand from a fraction of a unit a day to ~100
# units a minute (drawn by PTRS, not inversion); promotions on a third of the days
CATALOG = f"""
seed: 1234
products:
  - {{id: A, base_demand_per_day: 3, lead_time_hours: 24, pack_size: 1, promo_probability_per_day: 0.3}}
  - {{id: PHONE-002, base_demand_per_day: 48, lead_time_hours: 48, pack_size: 10, promo_probability_per_day: 0.3}}
  - {{id: {LONG_ID}, base_demand_per_day: 700, lead_time_hours: 36, pack_size: 5, promo_probability_per_day: 0.3}}
  - {{id: CAFÉ-CRÈME-07, base_demand_per_day: 0.5, lead_time_hours: 12, pack_size: 1, promo_probability_per_day: 0.3}}
  - {{id: BULK-9, base_demand_per_day: 150000, lead_time_hours: 24, pack_size: 1000, promo_probability_per_day: 0.3}}
  - {{id: MOUSE-004, base_demand_per_day: 60, lead_time_hours: 24, pack_size: 50, promo_probability_per_day: 0.3}}
  - {{id: K, base_demand_per_day: 9000, lead_time_hours: 24, pack_size: 100, promo_probability_per_day: 0.3}}
warehouses:
  - {{id: WH-NYC, timezone: America/New_York, demand_factor: 1.2}}
  - {{id: WH-LDN, timezone: Europe/London}}
  - {{id: WH-TYO, timezone: Asia/Tokyo, demand_factor: 0.8}}
initial_stock: 500
"""
MINUTES = 2 * 1440


def full_catalog() -> Catalog:
    return parse_catalog(CATALOG, source="streams.yaml")


def sub_catalog(catalog: Catalog, products: list[int], warehouses: list[int] | None = None) -> Catalog:
    """The catalog of some of its products (and warehouses), in the order given."""
    warehouses = list(range(len(catalog.warehouses))) if warehouses is None else warehouses
    table = tuple(tuple(catalog.initial_stock_table[p][w] for w in warehouses) for p in products)
    return replace(
        catalog,
        products=tuple(catalog.products[p] for p in products),
        warehouses=tuple(catalog.warehouses[w] for w in warehouses),
        initial_stock_table=table,
    )


def series_rows(full: Catalog, part: Catalog) -> np.ndarray:
    """The series number in ``full`` of every series of ``part``."""
    where = {(p, w): i for i, (p, w) in enumerate(zip(full.series_product_ids, full.series_warehouse_ids))}
    return np.array([where[pw] for pw in zip(part.series_product_ids, part.series_warehouse_ids)])


def demand(catalog: Catalog, minutes: int = MINUTES) -> np.ndarray:
    """Units demanded [M, S] minute by minute, from the first minute of START."""
    ends = START.timestamp() + 60.0 * np.arange(1, minutes + 1)
    rates = minute_rates(catalog, ends)
    return np.stack([minute_demand(catalog, float(end), rates[j]) for j, end in enumerate(ends)])


RULES = {
    "every other product": ([0, 2, 4, 6], None),
    "one product": ([5], None),
    "without the long and the non-ASCII ids": ([0, 1, 4, 5, 6], None),
    "some products in some warehouses": ([1, 2, 4], [2, 0]),
}


@pytest.mark.parametrize("rule", RULES)
def test_a_sub_catalog_draws_exactly_the_full_catalogs_rows(rule: str) -> None:
    """GIVEN a catalog and a sub-catalog of some of its products (a shard, by any rule)
    WHEN the demand of two days is drawn minute by minute for both
    THEN every series of the sub-catalog has exactly the demand it has in the full catalog."""
    full = full_catalog()
    part = sub_catalog(full, *RULES[rule])
    whole = demand(full)
    assert whole[:, full.series_product_ids.index("BULK-9")].min() > 0  # the PTRS path is in it
    assert np.array_equal(demand(part), whole[:, series_rows(full, part)])


def test_promotions_of_a_sub_catalog_are_the_full_catalogs() -> None:
    """GIVEN a catalog and a sub-catalog of some of its products
    WHEN the promotions of a year of days are drawn for both
    THEN every product has the same promotion days in both (and some days are promoted, some not)."""
    full = full_catalog()
    picked = [1, 3, 6]
    part = sub_catalog(full, picked)
    days = range(int(START.timestamp() // 86400), int(START.timestamp() // 86400) + 365)
    lifts_full = np.array([promotion_lift(full, d) for d in days])
    lifts_part = np.array([promotion_lift(part, d) for d in days])
    assert np.array_equal(lifts_part, lifts_full[:, picked])
    promoted = (lifts_full > 1).mean()
    assert 0.25 < promoted < 0.35


def test_the_order_of_products_and_warehouses_does_not_matter() -> None:
    """GIVEN a catalog and the same catalog with its products and warehouses shuffled
    WHEN the demand of two days is drawn for both
    THEN each (product, warehouse) series has the same demand in both."""
    full = full_catalog()
    rng = np.random.default_rng(3)
    shuffled = sub_catalog(full, list(rng.permutation(len(full.products))), list(rng.permutation(len(full.warehouses))))
    assert shuffled.series_product_ids != full.series_product_ids
    assert np.array_equal(demand(shuffled), demand(full)[:, series_rows(full, shuffled)])


def test_an_order_tick_of_a_shard_ends_where_the_full_catalog_does() -> None:
    """GIVEN a catalog and a shard of it (two of its products), both from their initial stock
    WHEN order ticks simulate the same two days for both
    THEN the shard's series sold, lost and hold exactly what they do in the full catalog."""
    full = full_catalog()
    shard = sub_catalog(full, [4, 1])
    ends = {}
    for name, catalog in (("full", full), ("shard", shard)):
        state = initial_state(catalog, START.timestamp())
        for day in (1, 2):
            moment = START + timedelta(days=day)
            state = order_tick(state, Tick(moment, f"tick-{day}"), catalog).state
        ends[name] = np.stack([state.on_hand, state.shipped, state.lost_sales])
    assert ends["full"][1].sum() > 0 and ends["full"][2].sum() > 0
    assert np.array_equal(ends["shard"], ends["full"][:, series_rows(full, shard)])


def test_a_block_of_minutes_draws_what_minute_by_minute_draws() -> None:
    """GIVEN a day of minutes and their rates
    WHEN they are drawn as one block, in uneven pieces and minute by minute
    THEN the draws are the same."""
    catalog = full_catalog()
    ends = START.timestamp() + 60.0 * np.arange(1, 1441)
    rates = minute_rates(catalog, ends)
    block = demand_block(catalog, ends, rates)
    pieces = np.concatenate([demand_block(catalog, ends[a:b], rates[a:b]) for a, b in ((0, 7), (7, 1000), (1000, 1440))])
    assert np.array_equal(block, pieces)
    assert np.array_equal(block, demand(catalog, 1440))


def test_a_texts_key_does_not_depend_on_the_others() -> None:
    """GIVEN texts of different lengths (one long, one not ASCII)
    WHEN their keys are made together and one by one
    THEN each text has the same key, and different texts or seeds have different keys."""
    texts = ["A", LONG_ID, "CAFÉ-CRÈME-07", "A\x00", "PHONE-002"]
    together = string_keys(1234, 1, texts)
    alone = np.concatenate([string_keys(1234, 1, [t]) for t in texts])
    assert np.array_equal(together, alone)
    assert len(set(together.tolist())) == len(texts)
    assert not np.array_equal(string_keys(1235, 1, texts), together)


def test_the_same_inputs_draw_the_same_demand() -> None:
    """GIVEN the default catalog parsed twice
    WHEN the demand of its first day is drawn from each
    THEN the draws are identical, and equal to the pinned ones (integer streams: any platform)."""
    first, second = demand(default_catalog(), 1440), demand(default_catalog(), 1440)
    assert np.array_equal(first, second)
    assert first.sum() > 0
    digest = hashlib.sha256(first.astype("<i8").tobytes()).hexdigest()[:16]
    assert digest == PINNED_DEFAULT_DAY


PINNED_DEFAULT_DAY = "4a4513891fdcbe2c"


# -- the draws are Poisson ----------------------------------------------------------------------


def draws(rate: float, n: int = 200_000) -> np.ndarray:
    """``n`` draws at ``rate``: 2,000 series x 100 minutes."""
    keys = string_keys(99, 1, [f"series-{i}" for i in range(2_000)])
    words = np.arange(1_000, 1_100, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return poisson(np.full((100, 2_000), rate), keys, words).reshape(-1)[:n]


@pytest.mark.parametrize("rate", [0.003, 0.05, 0.7, 3.0, 9.99, INVERSION_MAX_RATE, 37.5, 1_000.0, 1e6])
def test_draws_have_the_mean_and_variance_of_their_rate(rate: float) -> None:
    """GIVEN a rate (inversion below 10, PTRS from 10 up to the largest rate a minute may have)
    WHEN 200,000 series-minutes are drawn at it
    THEN their mean and variance are the rate's within 5 standard errors."""
    x = draws(rate).astype(float)
    n = x.size
    assert x.min() >= 0 and np.array_equal(x, np.round(x))
    assert abs(x.mean() - rate) < 5 * math.sqrt(rate / n)
    assert abs(x.var(ddof=1) - rate) < 5 * math.sqrt((rate + 2 * rate**2) / n)


@pytest.mark.parametrize("rate", [3.0, 30.0])
def test_draws_fit_the_poisson_distribution(rate: float) -> None:
    """GIVEN a rate drawn by inversion (3) or by PTRS (30)
    WHEN 200,000 series-minutes are drawn at it
    THEN the counts of each value pass a chi-square goodness-of-fit test against Poisson (p > 0.001)."""
    x = draws(rate)
    n = x.size
    low, high = int(stats.poisson.ppf(1e-4, rate)), int(stats.poisson.isf(1e-4, rate))
    observed = np.array([(x <= low).sum()] + [(x == k).sum() for k in range(low + 1, high)] + [(x >= high).sum()])
    expected = n * np.array(
        [stats.poisson.cdf(low, rate)] + [stats.poisson.pmf(k, rate) for k in range(low + 1, high)] + [stats.poisson.sf(high - 1, rate)]
    )
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < stats.chi2.isf(0.001, len(observed) - 1)
