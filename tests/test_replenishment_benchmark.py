"""The replenishment benchmark's yardsticks: the realised stockout time, the oracle's exact probability,
and the scores of predictions and alerts against them."""

import numpy as np
import pytest
from scipy.stats import poisson

from benchmarks.yardsticks import (
    RunStats,
    alert_episodes,
    alert_scores,
    cumulate,
    oracle_probability,
    realised_hours,
    score,
)
from handlers.model.purchasing import Arrivals


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


def test_score_pools_the_runs_and_breaks_them_down() -> None:
    """Two runs, one series each time, one unit of demand a minute: the shelf of 600 lasts 10 h, of
    3000 50 h. Precision and recall come out per run and pooled, counted by hand."""
    cumulative = cumulate(np.ones((60 * 24 * 10, 1)))
    none = _arrivals([], [], [])
    close = RunStats(
        "close",
        snapshots=[(0.0, np.array([600]), none), (3600.0, np.array([3000]), none)],
        predictions=[(0.0, 0, 9.0, 999.0, 0.9), (3600.0, 0, 20.0, 999.0, 0.6)],
    )  # 1 TP, 1 FP
    calm = RunStats("calm", snapshots=[(0.0, np.array([600]), none)], predictions=[(0.0, 0, float("nan"), 5.0, 0.1)])  # a miss
    out = score([close, calm], cumulative, cumulative, 0.0)
    assert out["stockpulse"]["positives"] == 2
    assert (out["stockpulse"]["precision"], out["stockpulse"]["recall"]) == (0.5, 0.5)
    assert (out["original"]["precision"], out["original"]["recall"]) == (1.0, 0.5)  # only "5 h" said soon
    assert out["by run"]["close"] == {"predictions": 2, "positives": 1, "said": 2, "precision": 0.5, "recall": 1.0, "ceiling": 1.0}
    by_calm = out["by run"]["calm"]
    assert (by_calm["predictions"], by_calm["positives"], by_calm["precision"], by_calm["recall"]) == (1, 1, 0.0, 0.0)
    assert by_calm["ceiling"] == 1.0  # the oracle is certain: 600 units, 1440 expected in 24 h
    assert out["stockpulse"]["mae_hours"] == pytest.approx((abs(9 - 10) + abs(20 - 50) + abs(168 - 10)) / 3)


def test_alerts_are_runs_of_soon_predictions_scored_against_the_stockouts_of_the_run() -> None:
    hour, nan = 3600.0, float("nan")
    # series 0: "soon" at hour 1 (an alert), then calm, then "soon" again from hour 5 to the end
    # series 1: "soon" at hour 2 only; the heuristic (column 3) says "soon" at hour 0 for series 1
    predictions = [(h * hour, 0, hours, 999.0, 0.0) for h, hours in enumerate([nan, 3.0, nan, 100.0, 30.0, 1.0, 2.0])]
    predictions += [(h * hour, 1, hours, 5.0 if h == 0 else 999.0, 0.0) for h, hours in enumerate([nan, 50.0, 24.0, nan])]
    assert sorted(alert_episodes(predictions, 2)) == [(0, hour, 2 * hour), (0, 5 * hour, 7 * hour), (1, 2 * hour, 3 * hour)]
    assert alert_episodes(predictions, 3) == [(1, 0.0, hour)]

    # the shelf of series 0 empties at 1.5 h (warned 0.5 h ahead only: not in time) and at 6.5 h. Series 1
    # holds 2000 units against one a minute (33 h): its alert at hour 2 is wrong while an order is due at
    # 12 h (an order landed first); the heuristic's at hour 0 is wrong with no order due
    cumulative = cumulate(np.ones((60 * 48, 2)))
    due = _arrivals([1], [50], [10.0])
    snapshots = [(h * hour, np.array([100, 2000]), due if h == 2 else _arrivals([], [], [])) for h in range(7)]
    # the first stockout lasts until the refill at 3.5 h (2 h), the second until the run ends (hour 6 + 1)
    stats = RunStats(
        "run",
        predictions=predictions,
        snapshots=snapshots,
        stockouts=[(1.5 * hour, 0), (6.5 * hour, 0)],
        refills=[(0.5 * hour, 0), (3.5 * hour, 0), (4 * hour, 0)],
    )
    assert alert_scores(stats, 2, cumulative, 0.0) == {
        "alerts": 3,
        "precision": 2 / 3,
        "wrong, an order landed first": 1,
        "stockouts": 2,
        "warned": 0.5,
        "median hours empty": 1.25,
    }
    assert alert_scores(stats, 2, cumulative, 0.0, lead_hours=0.25)["warned"] == 1.0
    assert alert_scores(stats, 3, cumulative, 0.0) == {
        "alerts": 1,
        "precision": 0.0,
        "wrong, an order landed first": 0,
        "stockouts": 2,
        "warned": 0.0,
        "median hours empty": 1.25,
    }
    # at hour 0 the shelf of 100 empties in 100 minutes with no order known: had the alert been wrong,
    # an order placed later would have been why
    stats.stockouts = []
    assert alert_scores(stats, 2, cumulative, 0.0)["wrong, an order landed first"] == 3
