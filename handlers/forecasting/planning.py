"""The pure core of the forecast and alert handlers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from handlers.forecasting import model as forecasting
from handlers.forecasting import pooled as pooled_stats
from handlers.forecasting.pooled import Pool
from handlers.model.catalog import Catalog
from handlers.model.demand import promotion_calendar
from handlers.model.events import Tick, format_time
from handlers.model.logs import series_events
from handlers.model.outcome import Inputs, Outcome
from handlers.model.policy import Policy, ReorderPlan, plan_reorders
from handlers.model.projection import HORIZON_HOURS, DemandPath, demand_path, stockout_hours, stockout_probability
from handlers.model.purchasing import arrivals, inbound_units, open_count, order_ids, place_orders
from handlers.model.state import FORECAST_DAYS, State

__all__ = ["forecast", "alert", "Outlook", "outlook", "reorder_plan", "hour_shares", "daily_forecast"]

PRIOR_DAYS = 7.0  # days of history after which the catalog's declared demand no longer counts
INTRADAY_PSEUDO_DAYS = 1.0  # weight of today's forecast against today's observed demand
_SHARE_PSEUDO_UNITS = 24.0  # shrinkage of a series' hour-of-day profile to its warehouse's


def hour_shares(state: State, catalog: Catalog, pooled: Pool | None = None) -> np.ndarray:
    """Share of a day's demand in each UTC hour [S, 24], shrunk towards the warehouse profile: that
    of the catalog's series in ``pooled`` (every shard's, handlers/runtime/pool.py), else of these series."""
    profile = state.hour_profile
    if pooled is None:
        summed = np.zeros((len(catalog.warehouses), 24))
        np.add.at(summed, catalog.warehouse_index, profile)
    else:
        summed = np.array([[float(x) for x in pooled.hours.get(w.id, [0] * 24)] for w in catalog.warehouses])
        summed = summed.reshape(len(catalog.warehouses), 24) / 2.0**forecasting.FIXED_BITS
    totals = summed.sum(axis=1, keepdims=True)
    shrink = np.where(totals > 0, (summed + 1.0) / (totals + 24.0), 1 / 24)[catalog.warehouse_index]
    own = profile.sum(axis=1, keepdims=True)
    return np.asarray((profile + _SHARE_PSEUDO_UNITS * shrink) / (own + _SHARE_PSEUDO_UNITS))


def daily_forecast(
    state: State, catalog: Catalog, now: float, pooled: Pool | None = None
) -> tuple[np.ndarray, np.ndarray, forecasting.Stats]:
    """Mean and std of demand for today and the next 7 UTC days [S, FORECAST_DAYS], and the
    statistics of these series for the next day's fit (handlers/runtime/pool.py).

    The model sees the complete days of history with planned promotions taken out (divided by
    their lift), and its forecast gets the planned promotions of the coming days put back in: a
    shop knows its own promotion calendar (``handlers.model.demand.promotion_calendar``). While there
    are fewer than PRIOR_DAYS days of history, the catalog's declared base demand is blended in as
    a prior. ``pooled``: the catalog's statistics of the day before, which the model's pooled
    parameters are fitted from; ``None``: fitted on these series alone.
    """
    today = int(now // 86400)
    history = state.daily_demand[:, -forecasting.HISTORY_DAYS :]
    first_day = state.history_day - history.shape[1]
    history = history / promotion_calendar(catalog, first_day, history.shape[1])
    ahead = promotion_calendar(catalog, today, FORECAST_DAYS)
    observed = np.isfinite(history).sum(axis=1)
    prior_mean = np.repeat(catalog.base_demand_per_day[:, None], FORECAST_DAYS, axis=1)
    prior_std = 1.5 * np.sqrt(prior_mean)
    if history.shape[1] == 0:
        return prior_mean * ahead, prior_std * ahead, forecasting.Stats(series=state.num_series)
    skip = max(today - state.history_day, 0)  # days between the last complete day and today
    params = None if pooled is None else forecasting.fit(pooled.model)
    model, stats, _ = forecasting.pooled_forecast(
        history, FORECAST_DAYS + skip, params, season=7, keys=catalog.series_keys, first_day=first_day
    )
    weight = np.minimum(observed / PRIOR_DAYS, 1.0)[:, None]
    mean = weight * model.mean[:, skip:] + (1 - weight) * prior_mean
    var = weight * model.std[:, skip:] ** 2 + (1 - weight) * prior_std**2
    std = np.sqrt(np.maximum(var, mean))  # demand is counted: never less spread than Poisson
    return mean * ahead, std * ahead, stats


def intraday_update(state: State, mean: np.ndarray, shares: np.ndarray, now: float) -> np.ndarray:
    """Scale today's forecast by how today is going so far (a promotion, a surge, a lull).

    ratio = (demand so far today + k) / (expected so far + k), with k = INTRADAY_PSEUDO_DAYS of
    the day's forecast: ordinary noise moves it little (planned promotions are already in the
    forecast), an unplanned surge that lasts all morning moves the rest of the day a good part
    of the way. (Measured on the simulator: k = 0.15 day chased noise and widened the errors.)
    """
    today = int(now // 86400)
    if state.history_day != today:
        return mean
    hour = int(now % 86400 // 3600)
    elapsed = shares[:, :hour].sum(axis=1) + shares[:, hour] * (now % 3600) / 3600
    expected = mean[:, 0] * elapsed
    pseudo = INTRADAY_PSEUDO_DAYS * mean[:, 0] + 1.0
    ratio = (state.today_hours.sum(axis=1) + pseudo) / (expected + pseudo)
    adjusted = mean.copy()
    adjusted[:, 0] = mean[:, 0] * ratio
    return adjusted


@dataclass(frozen=True)
class Outlook:
    """Where every series stands at one moment, from the stored forecast."""

    path: DemandPath
    inbound: np.ndarray  # units on open orders [S]
    open_orders: np.ndarray  # count [S]
    stockout_in: np.ndarray  # hours, NaN = not within the horizon
    probability: np.ndarray  # of a stockout within the alert threshold


def outlook(state: State, now: float, policy: Policy) -> Outlook:
    path = demand_path(state.forecast_mean, state.forecast_std, state.hour_share, int(state.forecast_at // 86400), now, HORIZON_HOURS)
    inbound = arrivals(state, now)
    hours = stockout_hours(path, state.on_hand, inbound)
    probability = stockout_probability(path, state.on_hand, inbound, policy.alert_threshold_hours)
    return Outlook(path=path, inbound=inbound_units(state), open_orders=open_count(state), stockout_in=hours, probability=probability)


def reorder_plan(state: State, view: Outlook, catalog: Catalog, policy: Policy) -> ReorderPlan:
    return plan_reorders(
        policy,
        view.path,
        on_hand=state.on_hand,
        inbound=view.inbound,
        open_orders=view.open_orders,
        lead_time_hours=catalog.lead_time_hours,
        pack_size=catalog.pack_size,
        stockout_in_hours=view.stockout_in,
    )


def score_forecasts(
    state: State, tick: Tick, catalog: Catalog, today_forecast: np.ndarray, today_std: np.ndarray
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score the pending day's forecast once that day is complete; start a new pending day.

    Returns the state changes and one ``forecast_score`` event per series scored.
    """
    changes: dict[str, Any] = {}
    events: list[dict[str, Any]] = []
    day, today = state.score_day, int(tick.epoch // 86400)
    if day >= 0 and state.history_day > day:  # the scored day is closed: its actual is history
        back = state.history_day - day
        actual = state.daily_demand[:, -back] if back <= state.daily_demand.shape[1] else np.full(state.num_series, np.nan)
        naive = state.daily_demand[:, -back - 7] if back + 7 <= state.daily_demand.shape[1] else np.full(state.num_series, np.nan)
        ok = np.isfinite(actual)
        paired = ok & np.isfinite(naive)
        error = np.where(ok, np.abs(state.score_forecast - actual), 0.0)
        naive_error = np.where(paired, np.abs(naive - actual), 0.0)
        changes.update(
            score_abs_error=state.score_abs_error + error,
            score_actual=state.score_actual + np.where(ok, actual, 0.0),
            score_days=state.score_days + ok,
            score_paired_abs_error=state.score_paired_abs_error + np.where(paired, error, 0.0),
            score_naive_abs_error=state.score_naive_abs_error + naive_error,
            score_day=-1,
        )
        moment = datetime.fromtimestamp((day + 1) * 86400, timezone.utc)
        events = series_events(
            "forecast_score",
            "forecast",
            moment,
            catalog,
            np.flatnonzero(ok),
            {
                "day": np.full(state.num_series, format_time(datetime.fromtimestamp(day * 86400, timezone.utc))[:10]),
                "forecast_units": np.round(state.score_forecast, 2),
                "forecast_std_units": np.round(state.score_forecast_std, 2),
                "actual_units": actual,
                "abs_error": np.round(error, 2),
                "seasonal_naive_abs_error": np.where(paired, naive_error, np.nan),
            },
        )
        day = -1
    if day < 0:  # nothing pending: today's forecast (from complete history) is scored next
        changes.update(score_day=today, score_forecast=today_forecast, score_forecast_std=today_std)
    return changes, events


def forecast(state: State, tick: Tick, catalog: Catalog, inputs: Inputs = Inputs()) -> Outcome:
    """Forecast demand, project stock, emit one ``inventory`` event per series, and score the
    previous day's forecast once that day is complete.

    ``inputs.pooled``: every shard's statistics of the day before (handlers/runtime/pool.py), which the pooled
    parameters are fitted from (``None``: fitted on this state's series). The outcome publishes
    this state's statistics of today."""
    policy, pooled = inputs.policy, inputs.pooled
    mean, std, stats = daily_forecast(state, catalog, tick.epoch, pooled)
    scoring, score_events = score_forecasts(state, tick, catalog, mean[:, 0], std[:, 0])  # day-ahead, unadjusted
    shares = hour_shares(state, catalog, pooled)
    published = pooled_stats.own(state.history_day, stats, state.hour_profile, [w.id for w in catalog.warehouses], catalog.warehouse_index)
    new_state = state.replace(
        forecast_at=tick.epoch,
        forecast_mean=intraday_update(state, mean, shares, tick.epoch),
        forecast_std=std,
        hour_share=shares,
        **scoring,
    )
    view = outlook(new_state, tick.epoch, policy)
    plan = reorder_plan(new_state, view, catalog, policy)
    within = np.isfinite(view.stockout_in)
    events = series_events(
        "inventory",
        "forecast",
        tick.time,
        catalog,
        np.arange(state.num_series),
        {
            "inventory_units": state.on_hand,
            "orders_per_hour": np.round(state.order_rate_now() * 60.0, 3),
            "predicted_stockout_hours": np.round(view.stockout_in, 2),
            "low_stock_warning": plan.stockout_soon | plan.below_reorder_point,
            "stockout_within_horizon": within,
            "stockout_probability": np.round(view.probability, 4),
            "inbound_units": view.inbound,
            "forecast_7d_units": np.round(view.path.cum_mean[:, -1], 2),
            "reorder_point": np.round(plan.reorder_point, 2),
        },
    )
    summary = {
        "series": state.num_series,
        "low_stock": int((plan.stockout_soon | plan.below_reorder_point).sum()),
        "stockout_within_threshold": int(plan.stockout_soon.sum()),
        "forecasts_scored": len(score_events),
    }
    exposed = {
        "stockout_hours": view.stockout_in,
        "stockout_probability": view.probability,
        "forecast_7d_units": view.path.cum_mean[:, -1],
        "reorder_point": plan.reorder_point,
    }
    return Outcome(new_state, events + score_events, {**summary, **pooled_stats.describe(pooled)}, exposed, statistics=published)


def _reason(
    plan_below: bool, position: float, rop: float, lead: float, safety: float, service: float, hours: float, threshold: float
) -> str:
    parts = []
    if plan_below:
        parts.append(
            f"inventory position {position:.0f} <= reorder point {rop:.1f} "
            f"(lead-time demand {lead:.1f} + safety stock {safety:.1f} at {service:.0%} service)"
        )
    if math.isfinite(hours) and hours <= threshold:
        parts.append(f"projected stockout in {hours:.1f} h <= {threshold:g} h threshold")
    return "; ".join(parts)


def alert(state: State, tick: Tick, catalog: Catalog, inputs: Inputs = Inputs()) -> Outcome:
    """Raise a reorder alert and place a purchase order where the policy says so."""
    policy = inputs.policy
    if math.isnan(state.forecast_at):
        return Outcome(state, [], {"alerts": 0, "skipped": "no forecast yet"})
    view = outlook(state, tick.epoch, policy)
    plan = reorder_plan(state, view, catalog, policy)
    index = np.flatnonzero(plan.order)
    due = tick.epoch + catalog.lead_time_hours * 3600.0
    changes, numbers = place_orders(state, index, plan.quantity[index], due[index], tick.epoch)
    reasons = np.full(state.num_series, "", dtype=object)
    arrival = np.full(state.num_series, "", dtype=object)
    for i in index.tolist():
        reasons[i] = _reason(
            bool(plan.below_reorder_point[i]),
            float(plan.inventory_position[i]),
            float(plan.reorder_point[i]),
            float(plan.lead_time_demand[i]),
            float(plan.safety_stock[i]),
            policy.service_level,
            float(view.stockout_in[i]),
            policy.alert_threshold_hours,
        )
        arrival[i] = format_time(datetime.fromtimestamp(float(due[i]), timezone.utc))
    ids = np.full(state.num_series, "", dtype=object)
    ids[index] = order_ids(catalog, index, numbers)
    events = series_events(
        "reorder_alert",
        "alert",
        tick.time,
        catalog,
        index,
        {
            "current_inventory": state.on_hand,
            "predicted_stockout_hours": np.round(view.stockout_in, 2),
            "recommended_reorder_quantity": plan.quantity,
            "reason": reasons,
            "reorder_point": np.round(plan.reorder_point, 2),
            "inventory_position": plan.inventory_position,
            "service_level": np.full(state.num_series, policy.service_level),
            "stockout_probability": np.round(view.probability, 4),
            "purchase_order_id": ids,
            "expected_arrival": arrival,
        },
    )
    reorders = state.reorders.copy()
    reorders[index] += 1
    new_state = state.replace(reorders=reorders, **changes)
    return Outcome(new_state, events, {"alerts": len(index), "units_ordered": int(plan.quantity[index].sum())})
