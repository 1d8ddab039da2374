"""The pooled demand model and the baselines it is compared with (seeded synthetic data only)."""

from __future__ import annotations

import numpy as np
import pytest

from handlers.forecasting.baselines import BASELINES, baselines_for, linear_trend, moving_average, seasonal_naive
from handlers.forecasting.model import HISTORY_DAYS, MODEL_NAME, Forecast, forecast
from handlers.forecasting.scores import mean_rmsse

WEEKLY = np.array([1.0, 0.6, 0.6, 0.8, 1.2, 2.0, 1.8])


def weekly_demand(n_series: int, n_days: int, *, seed: int) -> np.ndarray:
    """Poisson demand with a strong shared weekly pattern and series levels from 0.5 to 20 a day."""
    rng = np.random.default_rng(seed)
    level = np.exp(rng.uniform(np.log(0.5), np.log(20.0), n_series))[:, None]
    return rng.poisson(level * WEEKLY[np.arange(n_days) % 7]).astype(float)


def test_the_model_is_named_and_keeps_at_most_112_days() -> None:
    """GIVEN the module constants the live handler reads
    WHEN they are inspected
    THEN the model is "stockpulse" and asks for no more than 112 days of history."""
    assert MODEL_NAME == "stockpulse"
    assert 1 <= HISTORY_DAYS <= 112


@pytest.mark.parametrize(("n_series", "n_days", "horizon"), [(1, 112, 8), (50, 60, 28), (300, 112, 1)])
def test_forecast_has_one_row_per_series_and_one_column_per_step(n_series: int, n_days: int, horizon: int) -> None:
    """GIVEN histories of various sizes
    WHEN the model forecasts
    THEN mean and std are [series, horizon], finite and non-negative."""
    result = forecast(weekly_demand(n_series, n_days, seed=1), horizon)
    assert isinstance(result, Forecast)
    for part in (result.mean, result.std):
        assert part.shape == (n_series, horizon)
        assert np.isfinite(part).all() and (part >= 0).all()


def test_forecast_is_deterministic() -> None:
    """GIVEN the same history twice, large enough for the training rows to be sampled
    WHEN the model forecasts both
    THEN the results are identical to the bit."""
    history = weekly_demand(3000, 112, seed=2)
    first, second = forecast(history, 8), forecast(history.copy(), 8)
    np.testing.assert_array_equal(first.mean, second.mean)
    np.testing.assert_array_equal(first.std, second.std)


@pytest.mark.parametrize("n_days", [1, 2, 3, 6])
def test_histories_shorter_than_a_season_still_forecast(n_days: int) -> None:
    """GIVEN only a few days of history (fewer than one week)
    WHEN the model forecasts a week ahead
    THEN it returns finite, non-negative values near the observed level."""
    history = np.full((4, n_days), 5.0)
    result = forecast(history, 7)
    assert np.isfinite(result.mean).all() and (result.std >= 0).all()
    np.testing.assert_allclose(result.mean, 5.0, rtol=0.35)


def test_leading_nans_mark_series_that_started_late() -> None:
    """GIVEN one series launched 20 days before the end (NaN before) among established ones
    WHEN the model forecasts
    THEN the new series gets a finite forecast near its own level, not dragged down by the NaNs."""
    history = weekly_demand(100, 112, seed=3)
    history[0, :92] = np.nan
    history[0, 92:] = 10.0 * WEEKLY[np.arange(92, 112) % 7]
    result = forecast(history, 8)
    assert np.isfinite(result.mean[0]).all()
    assert 6.0 < result.mean[0].mean() < 16.0


def test_a_series_with_no_history_at_all_forecasts_zero() -> None:
    """GIVEN a series that is NaN throughout (not launched yet)
    WHEN the model forecasts
    THEN its mean and std are zero and the other series are unaffected."""
    history = weekly_demand(20, 112, seed=4)
    history[5] = np.nan
    result = forecast(history, 8)
    assert (result.mean[5] == 0).all() and (result.std[5] == 0).all()
    assert (result.mean[np.arange(20) != 5].sum(axis=1) > 0).all()


def test_a_known_weekly_pattern_is_recovered_better_than_a_moving_average() -> None:
    """GIVEN 200 Poisson series with a strong shared weekly pattern
    WHEN the model and the 28-day moving average forecast the last 28 days
    THEN the model's mean RMSSE is clearly lower."""
    demand = weekly_demand(200, 140, seed=5)
    train, test = demand[:, :-28], demand[:, -28:]
    model = mean_rmsse(train, test, forecast(train, 28).mean)
    average = mean_rmsse(train, test, moving_average(train, 28).mean)
    assert model < 0.9 * average


def test_std_covers_about_95_percent_of_held_out_demand() -> None:
    """GIVEN seeded Poisson demand with a weekly pattern
    WHEN the model forecasts the last 14 days
    THEN mean ± 1.96·std contains roughly 95 % of the actual values."""
    demand = weekly_demand(400, 126, seed=6)
    train, test = demand[:, :-14], demand[:, -14:]
    result = forecast(train, 14)
    coverage = (np.abs(test - result.mean) <= 1.96 * result.std).mean()
    assert 0.90 <= coverage <= 0.99


def test_hourly_data_with_a_daily_season_is_supported() -> None:
    """GIVEN hourly demand with a 24-hour cycle
    WHEN the model forecasts the next 24 hours with season 24
    THEN the forecast follows the cycle (busy hours above quiet hours)."""
    rng = np.random.default_rng(7)
    hours = np.arange(24 * 21)
    cycle = np.where((hours % 24 >= 9) & (hours % 24 < 18), 6.0, 0.5)
    history = rng.poisson(np.tile(cycle, (30, 1))).astype(float)
    result = forecast(history, 24, season=24)
    busy = (np.arange(24) >= 9) & (np.arange(24) < 18)
    assert result.mean[:, busy].mean() > 3 * result.mean[:, ~busy].mean()


def test_malformed_history_is_rejected() -> None:
    """GIVEN a one-dimensional history
    WHEN the model is called
    THEN a ValueError says what shape it needs."""
    with pytest.raises(ValueError, match="series, periods"):
        forecast(np.ones(10), 8)


def test_the_registry_names_every_baseline() -> None:
    """GIVEN the baseline registry
    WHEN its names are listed
    THEN it holds the four comparison models, the seasonal one named after its season."""
    assert set(BASELINES) == {"naive", "seasonal_naive_7", "moving_average_28", "linear_trend_7"}
    assert "seasonal_naive_24" in baselines_for(24)


def test_linear_trend_extrapolates_the_last_seven_points_and_clips_at_zero() -> None:
    """GIVEN one rising and one falling straight line
    WHEN the original system's 7-point linear trend forecasts
    THEN the rising line continues exactly and the falling one stops at 0."""
    rising = np.arange(10, dtype=float)
    falling = 6.0 - np.arange(10, dtype=float)
    result = linear_trend(np.vstack([rising, falling]), 3)
    np.testing.assert_allclose(result.mean[0], [10.0, 11.0, 12.0])
    np.testing.assert_allclose(result.mean[1], [0.0, 0.0, 0.0])


def test_seasonal_naive_repeats_the_last_season() -> None:
    """GIVEN two weeks of a repeating weekly pattern
    WHEN the seasonal naive forecasts ten days
    THEN it repeats the last week and wraps around."""
    history = np.tile(WEEKLY, 2)[None, :]
    np.testing.assert_allclose(seasonal_naive(history, 10).mean[0], WEEKLY[np.arange(10) % 7])


def test_moving_average_ignores_periods_before_the_start() -> None:
    """GIVEN a series with NaN before its first sale and 4, 6 after
    WHEN the 28-point moving average forecasts
    THEN it is the mean of the observed points, 5."""
    history = np.array([[np.nan] * 30 + [4.0, 6.0]])
    np.testing.assert_allclose(moving_average(history, 2).mean, 5.0)
