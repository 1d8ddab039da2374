"""The reorder policy: when to raise a reorder alert and how much to order.

Continuous review with one open purchase order per product x warehouse:

* reorder point = expected lead-time demand + safety stock, safety stock = z * sigma over the lead
  time, z from the service level (default 98 %);
* an alert is raised when no purchase order is open and either the inventory position (on hand +
  inbound) is at or below the reorder point, or the projected stockout is within the alert
  threshold (default 24 h);
* the order brings the inventory position up to the reorder point plus the expected demand of
  ``cover_days`` after the lead time (at least the lead-time demand, so the next order can still
  be placed in time), rounded up to whole packs.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from handlers.model.projection import DemandPath

__all__ = ["Policy", "ReorderPlan", "plan_reorders", "round_up_to_pack"]


@dataclass(frozen=True)
class Policy:
    alert_threshold_hours: float = 24.0
    service_level: float = 0.98
    cover_days: float = 1.0

    @property
    def z(self) -> float:
        return NormalDist().inv_cdf(self.service_level)


@dataclass(frozen=True)
class ReorderPlan:
    reorder_point: np.ndarray  # [S] units
    safety_stock: np.ndarray
    lead_time_demand: np.ndarray
    inventory_position: np.ndarray
    below_reorder_point: np.ndarray  # bool [S]
    stockout_soon: np.ndarray  # bool [S]
    order: np.ndarray  # bool [S]: raise an alert and place a purchase order
    quantity: np.ndarray  # [S] units (multiples of the pack size) where ``order``


def round_up_to_pack(units: np.ndarray, pack_size: np.ndarray) -> np.ndarray:
    """Whole packs covering ``units`` (at least one pack)."""
    packs = np.maximum(np.ceil(np.asarray(units, dtype=float) / pack_size), 1.0)
    return np.asarray(packs * pack_size, dtype=np.int64)


def plan_reorders(
    policy: Policy,
    path: DemandPath,
    *,
    on_hand: np.ndarray,
    inbound: np.ndarray,
    open_orders: np.ndarray,
    lead_time_hours: np.ndarray,
    pack_size: np.ndarray,
    stockout_in_hours: np.ndarray,
) -> ReorderPlan:
    lead_mean, lead_var = path.at(lead_time_hours)
    safety = policy.z * np.sqrt(lead_var)
    reorder_point = lead_mean + safety
    position = on_hand + inbound
    below = position <= reorder_point
    soon = np.nan_to_num(stockout_in_hours, nan=np.inf) <= policy.alert_threshold_hours
    order = (open_orders == 0) & (below | soon)
    cover_mean, _ = path.at(lead_time_hours + policy.cover_days * 24.0)
    cycle = np.maximum(cover_mean - lead_mean, lead_mean)
    quantity = np.where(order, round_up_to_pack(reorder_point + cycle - position, pack_size), 0)
    return ReorderPlan(
        reorder_point=reorder_point,
        safety_stock=safety,
        lead_time_demand=lead_mean,
        inventory_position=position,
        below_reorder_point=below,
        stockout_soon=soon,
        order=order,
        quantity=quantity,
    )
