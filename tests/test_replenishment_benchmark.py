"""The replenishment benchmark's yardsticks: the realised stockout time and the oracle's exact probability."""

import numpy as np
import pytest
from scipy.stats import poisson

from benchmarks.replenishment import cumulate, oracle_probability, realised_hours
from handlers.purchasing import Arrivals


def _arrivals(series, quantity, eta_hours) -> Arrivals:
    return Arrivals(np.array(series, dtype=np.int64), np.array(quantity, dtype=float), np.array(eta_hours, dtype=float))


def test_realised_hours_counts_arrivals_and_both_stockout_definitions() -> None:
    cumulative = cumulate(np.ones((600, 2)))  # one unit a minute
    on_hand = np.array([90, 30])
    inbound = _arrivals([0], [100], [1.0])  # series 0 gets 100 units after 60 minutes
    last_unit = realised_hours(cumulative, 0.0, 0.0, on_hand, inbound)
    first_unmet = realised_hours(cumulative, 0.0, 0.0, on_hand, inbound, unmet=True)
    assert last_unit.tolist() == [190 / 60, 30 / 60]
    assert first_unmet.tolist() == [191 / 60, 31 / 60]


def test_realised_hours_is_nan_when_the_shelf_outlasts_the_data() -> None:
    cumulative = cumulate(np.ones((120, 1)))
    assert np.isnan(realised_hours(cumulative, 0.0, 0.0, np.array([500]), _arrivals([], [], []))[0])


def test_oracle_probability_without_arrivals_is_the_poisson_tail() -> None:
    rate = 0.02  # units a minute: 28.8 expected in 24 h
    expected = cumulate(np.full((2000, 3), rate))
    on_hand = np.array([20, 29, 45])
    p = oracle_probability(expected, 0.0, 0.0, on_hand, _arrivals([], [], []), 24.0)
    np.testing.assert_allclose(p, poisson.sf(on_hand - 1, rate * 1440))
    assert oracle_probability(expected, 0.0, 0.0, np.array([0]), _arrivals([], [], []), 24.0)[0] == 1.0


@pytest.mark.parametrize(("eta_hours", "stock"), [(3.0, 8), (10.5, 12), (23.9, 20)])
def test_oracle_probability_matches_simulated_paths_with_an_arrival(eta_hours: float, stock: int) -> None:
    """Exact probability against the realised stockout of many seeded Poisson paths."""
    rate, paths, minutes, quantity = 0.015, 4000, 1500, 15  # 21.6 expected a day
    rng = np.random.default_rng(7)
    cumulative = cumulate(rng.poisson(rate, (minutes, paths)).astype(float))
    on_hand = np.full(paths, stock)
    inbound = _arrivals(np.arange(paths), np.full(paths, quantity), np.full(paths, eta_hours))
    realised = realised_hours(cumulative, 0.0, 0.0, on_hand, inbound)
    observed = float((np.nan_to_num(realised, nan=np.inf) <= 24.0).mean())

    expected = cumulate(np.full((minutes, 1), rate))
    exact = oracle_probability(expected, 0.0, 0.0, np.array([stock]), _arrivals([0], [quantity], [eta_hours]), 24.0)[0]
    assert 0.05 < exact < 0.95
    assert abs(observed - exact) < 4 * np.sqrt(exact * (1 - exact) / paths)
    # a union of "out before the arrival" and "out after it": at least as likely as either
    before = poisson.sf(stock - 1, rate * (np.ceil(eta_hours * 60) - 1))
    after = poisson.sf(stock + quantity - 1, rate * 1440)
    assert exact >= max(before, after) - 1e-12


def test_oracle_probability_ignores_stock_no_demand_can_reach() -> None:
    """A flood of huge orders (the original policy's every-alert run) leaves only the first stretch
    reachable: the answer is its Poisson tail, computed without a convolution the size of the stock."""
    rate, stock = 0.015, 5
    expected = cumulate(np.full((2000, 1), rate))
    etas = np.arange(1, 97) * 0.25  # an order every 15 minutes, 100 000 units each
    inbound = _arrivals(np.zeros(96, dtype=np.int64), np.full(96, 100_000), etas)
    p = oracle_probability(expected, 0.0, 0.0, np.array([stock]), inbound, 24.0)[0]
    assert p == pytest.approx(poisson.sf(stock - 1, rate * 14))  # out within the first 14 whole minutes
