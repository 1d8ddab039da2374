"""RMSSE and WAPE on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from handlers.forecasting.scores import mean_rmsse, naive_scale, rmsse, wape


def test_scale_counts_from_the_first_non_zero_value() -> None:
    """GIVEN a history with two leading zeros, then 1, 3, 2
    WHEN the naive scale is computed
    THEN only the differences from the first sale on count: (2² + 1²) / 2 = 2.5."""
    assert naive_scale(np.array([[0.0, 0.0, 1.0, 3.0, 2.0]]))[0] == pytest.approx(2.5)


def test_leading_nans_are_ignored_like_leading_zeros() -> None:
    """GIVEN a series that had not started (NaN) for two periods
    WHEN the naive scale is computed
    THEN it equals the scale of the same series with leading zeros."""
    with_nan = naive_scale(np.array([[np.nan, np.nan, 1.0, 3.0, 2.0]]))
    assert with_nan[0] == pytest.approx(2.5)


def test_rmsse_of_a_hand_computed_case() -> None:
    """GIVEN scale 2.5 and forecast errors (+1, -1) over a two-period horizon
    WHEN RMSSE is computed
    THEN it is sqrt(1 / 2.5)."""
    train = np.array([[0.0, 0.0, 1.0, 3.0, 2.0]])
    score = rmsse(train, np.array([[2.0, 4.0]]), np.array([[3.0, 3.0]]))
    assert score[0] == pytest.approx(math.sqrt(1 / 2.5))


def test_a_perfect_forecast_scores_zero() -> None:
    """GIVEN a forecast equal to the actuals
    WHEN RMSSE is computed
    THEN it is exactly 0."""
    train = np.array([[1.0, 2.0, 1.0, 2.0]])
    assert rmsse(train, np.array([[1.0, 2.0]]), np.array([[1.0, 2.0]]))[0] == 0.0


@pytest.mark.parametrize(
    "train",
    [[0.0, 5.0, 5.0, 5.0], [0.0, 0.0, 0.0, 0.0], [np.nan, np.nan, np.nan, 4.0]],
    ids=["constant-after-start", "never-sold", "one-point"],
)
def test_series_without_a_scale_score_nan(train: list[float]) -> None:
    """GIVEN a history whose naive differences are all zero or absent
    WHEN RMSSE is computed
    THEN the series scores NaN instead of dividing by zero."""
    score = rmsse(np.array([train]), np.array([[1.0]]), np.array([[0.0]]))
    assert np.isnan(score[0])


def test_mean_rmsse_skips_series_without_a_scale() -> None:
    """GIVEN one scorable series (RMSSE sqrt(0.4)) and one constant series
    WHEN the mean RMSSE is computed
    THEN it is the scorable series' RMSSE alone."""
    train = np.array([[0.0, 0.0, 1.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0, 5.0]])
    test = np.array([[2.0, 4.0], [5.0, 5.0]])
    pred = np.array([[3.0, 3.0], [0.0, 0.0]])
    assert mean_rmsse(train, test, pred) == pytest.approx(math.sqrt(0.4))


def test_mean_rmsse_is_nan_when_no_series_has_a_scale() -> None:
    """GIVEN only constant histories
    WHEN the mean RMSSE is computed
    THEN it is NaN, not a warning or a crash."""
    assert math.isnan(mean_rmsse(np.ones((2, 3)), np.ones((2, 1)), np.zeros((2, 1))))


def test_rmsse_is_vectorised_over_series() -> None:
    """GIVEN two series with different scales
    WHEN RMSSE is computed
    THEN each gets its own score."""
    train = np.array([[1.0, 3.0, 1.0], [0.0, 1.0, 2.0]])  # scales 4 and 1
    scores = rmsse(train, np.array([[2.0], [2.0]]), np.array([[0.0], [0.0]]))
    np.testing.assert_allclose(scores, [1.0, 2.0])


def test_wape_of_a_hand_computed_case() -> None:
    """GIVEN absolute errors 1, 0, 2, 0 against total actual demand 6
    WHEN WAPE is computed
    THEN it is 3 / 6."""
    assert wape(np.array([[1.0, 2.0], [3.0, 0.0]]), np.array([[2.0, 2.0], [1.0, 0.0]])) == pytest.approx(0.5)


def test_wape_without_demand_is_nan() -> None:
    """GIVEN no demand at all in the holdout
    WHEN WAPE is computed
    THEN it is NaN."""
    assert math.isnan(wape(np.zeros((2, 2)), np.ones((2, 2))))


def test_mismatched_shapes_are_rejected() -> None:
    """GIVEN a forecast with a different horizon than the actuals
    WHEN RMSSE is computed
    THEN a ValueError names both shapes."""
    with pytest.raises(ValueError, match=r"\(1, 2\).*\(1, 3\)"):
        rmsse(np.ones((1, 4)), np.ones((1, 2)), np.ones((1, 3)))
