"""A replica of the original system's forecast and reorder logic, as handler cores.

The original (one FastAPI loop, in-memory state) forecast demand with a least-squares linear trend
over the last 7 days, predicted hours to stockout as ``inventory / orders_per_hour`` (999 or 9999
when "never"), and on every tick raised a reorder alert for every product x warehouse predicted to
run out within 24 h, recommending a quantity of a third of the 7-day forecast.

Here those rules run through the same runtime, state, demand and restock handler as the project's
policy, so a benchmark compares policies and nothing else. ``every_alert_orders`` says what a shop
does with the alerts: order every one (the alerts literally) or order only when nothing is on
order for that product x warehouse.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np

from handlers.model.catalog import Catalog
from handlers.model.events import Tick
from handlers.model.logs import series_events
from handlers.model.outcome import Inputs, Outcome
from handlers.model.purchasing import open_count, order_ids, place_orders
from handlers.model.state import State
from handlers.runtime.declarations import DECLARATIONS, Declaration

__all__ = ["heuristic_stockout_hours", "linear_trend_7", "original_cores", "THRESHOLD_HOURS"]

THRESHOLD_HOURS = 24.0
NEVER = 9999.0
CAP = 999.0


def heuristic_stockout_hours(state: State) -> np.ndarray:
    """inventory / orders per hour; 9999 with no recent orders, capped at 999."""
    per_hour = state.order_rate_now() * 60.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        hours = np.where(per_hour > 0, np.minimum(state.on_hand / per_hour, CAP), NEVER)
    return hours


def linear_trend_7(daily: np.ndarray, horizon: int = 7) -> np.ndarray:
    """Least-squares line through the last 7 days, extrapolated ``horizon`` days, clipped at 0 [S, h]."""
    window = np.nan_to_num(daily[:, -7:])
    x = np.arange(window.shape[1], dtype=float)
    slope, intercept = np.polyfit(x, window.T, 1)
    ahead = np.arange(window.shape[1], window.shape[1] + horizon, dtype=float)
    return np.asarray(np.clip(intercept[:, None] + slope[:, None] * ahead[None, :], 0.0, None))


def _forecast(state: State, tick: Tick, catalog: Catalog, inputs: Inputs = Inputs()) -> Outcome:
    mean = np.zeros_like(state.forecast_mean)
    mean[:, 1:] = linear_trend_7(state.daily_demand, mean.shape[1] - 1)
    mean[:, 0] = mean[:, 1]
    return Outcome(state.replace(forecast_at=tick.epoch, forecast_mean=mean), [], {})


def _alert(state: State, tick: Tick, catalog: Catalog, inputs: Inputs = Inputs(), *, every_alert_orders: bool) -> Outcome:
    hours = heuristic_stockout_hours(state)
    alerting = hours < THRESHOLD_HOURS
    quantity = np.maximum(np.round(state.forecast_mean[:, 1:].sum(axis=1) / 3.0), 1).astype(np.int64)
    ordering = alerting if every_alert_orders else alerting & (open_count(state) == 0)
    index = np.flatnonzero(ordering)
    due = tick.epoch + catalog.lead_time_hours[index] * 3600.0
    changes, numbers = place_orders(state, index, quantity[index], due, tick.epoch)
    ids = np.full(state.num_series, "", dtype=object)
    ids[index] = order_ids(catalog, index, numbers)
    events = series_events(
        "reorder_alert",
        "alert",
        tick.time,
        catalog,
        np.flatnonzero(alerting),
        {
            "current_inventory": state.on_hand,
            "predicted_stockout_hours": np.round(hours, 2),
            "recommended_reorder_quantity": quantity,
            "purchase_order_id": ids,
        },
    )
    reorders = state.reorders + alerting
    return Outcome(state.replace(reorders=reorders, **changes), events, {"alerts": int(alerting.sum())})


def original_cores(*, every_alert_orders: bool) -> dict[str, Declaration]:
    """The declarations with the original system's forecast and alert cores in place of stockpulse's."""
    return {
        **DECLARATIONS,
        "forecast": replace(DECLARATIONS["forecast"], core=_forecast, pools=False),
        "alert": replace(DECLARATIONS["alert"], core=partial(_alert, every_alert_orders=every_alert_orders)),
    }
