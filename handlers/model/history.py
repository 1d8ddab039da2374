"""The demand history an order tick accumulates: today by hour, and each complete day (pure).

Every business minute adds its demand to today's hour and, when it began with nothing on hand, one
minute out of stock to that hour (``today_oos``). When a day closes, its demand is appended to the
daily history and folded into the hour-of-day profile. What "demand" is depends on what was
observed: the simulator observes its lost sales (demand = sold + lost), a shop's feed observes its
orders, and a simulation told to censor its lost sales observes only what sold — a stockout then
hides demand, and the minutes out of stock say where (handlers/forecasting/censored.py).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from handlers.model.state import HISTORY_DAYS, State

__all__ = ["DayHistory", "PROFILE_DECAY", "order_window"]

PROFILE_DECAY = 0.9  # per-day decay of the hour-of-day demand profile (~10 days of memory)


def order_window(state: State, tick_epoch: float, catch_up_minutes: int) -> tuple[float, float]:
    """The business minutes an order tick at ``tick_epoch`` covers: ``(start, end]`` as the end of the
    last minute already simulated and the end of the last minute it simulates (at most
    ``catch_up_minutes`` of them; the next ticks do the rest)."""
    due = math.floor(tick_epoch / 60) * 60
    return state.orders_through, min(due, state.orders_through + catch_up_minutes * 60)


class DayHistory:
    """Working copy of the demand history while minutes are added."""

    def __init__(self, state: State, recover_day: Any = None) -> None:
        self.created_at = state.created_at
        self.day = state.history_day
        self.daily = state.daily_demand
        self.today = state.today_hours.copy()
        self.hours = state.hour_profile
        self.oos = state.today_oos.copy()
        self.recover_day = recover_day  # (live, sales, out-of-stock minutes, weekday) -> (day, hours, live)
        self.live = state.censor_live if recover_day is not None else None

    def add(self, minute_start: float, demand: np.ndarray, out_of_stock: np.ndarray | None = None) -> None:
        """One business minute's demand [S]; ``out_of_stock`` [S] bool: the series that began it with
        nothing on hand."""
        day = int(minute_start // 86400)
        if day > self.day:
            self._close_days(day)
        hour = int(minute_start % 86400 // 3600)
        self.today[:, hour] += demand
        if out_of_stock is not None:
            self.oos[:, hour] += out_of_stock

    def add_lines(self, moment: float, series: np.ndarray, quantity: np.ndarray) -> None:
        """Demand of single lines at ``moment`` (a late line of a day already closed counts in today's
        hour of ``moment``)."""
        day = int(moment // 86400)
        if day > self.day:
            self._close_days(day)
        np.add.at(self.today[:, int(moment % 86400 // 3600)], series, quantity)

    def _close_days(self, day: int) -> None:
        gap = day - self.day
        # the day the state was created in is partial: unknown, not a low-demand day
        complete = self.day * 86400 >= self.created_at - 60
        fresh = np.zeros((self.today.shape[0], min(gap, HISTORY_DAYS)))
        hours = self.today
        if complete and self.recover_day is not None:  # demand was censored: recover what stockouts hid
            total, hours, self.live = self.recover_day(self.live, self.today, self.oos, self.day % 7)
            fresh[:, 0] = total
        else:
            fresh[:, 0] = self.today.sum(axis=1) if complete else np.nan
        self.daily = np.concatenate([self.daily, fresh], axis=1)[:, -HISTORY_DAYS:]
        self.hours = self.hours * PROFILE_DECAY**gap + (hours if complete else 0.0)
        self.today = np.zeros_like(self.today)
        self.oos = np.zeros_like(self.oos)
        self.day = day

    def changes(self) -> dict[str, Any]:
        changes = {
            "history_day": self.day,
            "daily_demand": self.daily,
            "today_hours": self.today,
            "hour_profile": self.hours,
            "today_oos": self.oos,
        }
        return changes if self.live is None else {**changes, "censor_live": self.live}
