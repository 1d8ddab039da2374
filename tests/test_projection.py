"""Projecting stock hour by hour: exact stockout times, inbound arrivals, probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from handlers.model.projection import demand_path, stockout_hours, stockout_probability
from handlers.model.purchasing import Arrivals
from tests.support.paths import flat_path

NOW = 20_000 * 86400.0  # midnight UTC


def orders(*rows: tuple[int, float, float]) -> Arrivals:
    series, quantity, eta = zip(*rows) if rows else ((), (), ())
    return Arrivals(np.array(series, dtype=np.int64), np.array(quantity, dtype=float), np.array(eta, dtype=float))


def test_stockout_time_is_exact_inside_an_hour():
    """GIVEN 2 units/hour and 5 on hand THEN stock runs out at 2.5 h."""
    assert stockout_hours(flat_path(2), np.array([5]), orders()) == pytest.approx([2.5])


def test_an_order_arriving_in_time_extends_the_runway():
    """GIVEN 5 on hand and 10 arriving at 1 h THEN stock runs out at (5 + 10) / 2 = 7.5 h."""
    assert stockout_hours(flat_path(2), np.array([5]), orders((0, 10, 1.0))) == pytest.approx([7.5])


def test_an_order_arriving_too_late_does_not_prevent_the_stockout():
    """GIVEN 5 on hand and 10 arriving at 4 h THEN stock still runs out at 2.5 h."""
    assert stockout_hours(flat_path(2), np.array([5]), orders((0, 10, 4.0))) == pytest.approx([2.5])


def test_several_orders_are_added_in_due_order():
    """GIVEN 4 on hand, +4 at 1.5 h and +10 at 5 h (listed out of order) THEN stock runs out at
    4 h: the first order lands in time, the second too late."""
    result = stockout_hours(flat_path(2), np.array([4]), orders((0, 10, 5.0), (0, 4, 1.5)))
    assert result == pytest.approx([4.0])


def test_no_stockout_within_the_horizon_is_nan_not_a_sentinel():
    """GIVEN 1000 on hand and 1 unit/hour THEN there is no stockout within 168 h: NaN."""
    assert np.isnan(stockout_hours(flat_path(1), np.array([1000]), orders()))[0]


def test_nothing_on_hand_is_a_stockout_now_unless_an_order_is_due():
    """GIVEN 0 on hand THEN 0 h; with 6 units due now THEN they count as stock: 3 h."""
    path = flat_path(2, series=2)
    result = stockout_hours(path, np.array([0, 0]), orders((1, 6, -0.5)))
    assert result == pytest.approx([0.0, 3.0])


def test_series_are_independent_and_vectorised():
    path = flat_path(2, series=3)
    result = stockout_hours(path, np.array([2, 4, 6]), orders((1, 100, 0.5)))
    assert result == pytest.approx([1.0, 52.0, 3.0])


def test_hour_of_day_shape_moves_the_stockout():
    """GIVEN all of a day's demand in one UTC hour (10:00-11:00) THEN stock lasts until that hour."""
    share = np.zeros((1, 24))
    share[0, 10] = 1.0
    path = demand_path(np.full((1, 8), 24.0), np.zeros((1, 8)), share, 20_000, NOW)
    assert stockout_hours(path, np.array([12]), orders()) == pytest.approx([10.5])


def test_stockout_probability_grows_as_stock_shrinks_and_orders_help():
    """GIVEN uncertain demand (24 +- 6 a day) THEN P(stockout within 24 h) falls with more stock,
    is ~0.5 when stock equals expected demand, and an order arriving in time lowers it."""
    path = flat_path(1, series=4, std_per_day=6.0)
    p = stockout_probability(path, np.array([10, 24, 40, 10]), orders((3, 30, 2.0)), 24)
    assert p[0] > 0.99 and 0.4 < p[1] < 0.6 and p[2] < 0.01
    assert p[3] < p[0]


def test_probability_counts_the_gap_before_a_late_order():
    """GIVEN 2 on hand, a big order at 10 h THEN running out before it lands is near certain."""
    path = flat_path(1, std_per_day=2.0)
    assert stockout_probability(path, np.array([2]), orders((0, 500, 10.0)), 24)[0] > 0.99
