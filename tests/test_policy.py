"""The reorder policy: reorder point, pack rounding, at most one open order."""

from __future__ import annotations

import numpy as np
import pytest

from handlers.model.policy import Policy, plan_reorders, round_up_to_pack
from tests.support.paths import flat_path


def plan(on_hand, inbound=0, open_orders=0, lead=24.0, pack=10, stockout_in=np.nan, std=6.0, policy=Policy()):
    path = flat_path(2, std_per_day=std)  # 48 units a day
    return plan_reorders(
        policy,
        path,
        on_hand=np.array([on_hand]),
        inbound=np.array([inbound]),
        open_orders=np.array([open_orders]),
        lead_time_hours=np.array([lead]),
        pack_size=np.array([pack]),
        stockout_in_hours=np.array([stockout_in]),
    )


@pytest.mark.parametrize(
    ("units", "pack", "expected"), [(1, 10, 10), (10, 10, 10), (10.01, 10, 20), (0, 25, 25), (-5, 5, 5), (99, 50, 100)]
)
def test_order_quantity_is_whole_packs_and_at_least_one(units, pack, expected):
    assert round_up_to_pack(np.array([units]), np.array([pack]))[0] == expected


def test_reorder_point_is_lead_time_demand_plus_z_sigma():
    """GIVEN 48 units/day +- 6 and a 24 h lead time THEN ROP = 48 + z(0.98) * 6."""
    p = plan(on_hand=500)
    assert p.lead_time_demand[0] == pytest.approx(48)
    assert p.reorder_point[0] == pytest.approx(48 + 2.0537489106318225 * 6)
    assert not p.order[0]


def test_below_the_reorder_point_orders_up_to_target_in_packs():
    """GIVEN a position under the ROP and no open order THEN one order, a whole number of packs,
    bringing the position to at least ROP + the demand of the cover period."""
    p = plan(on_hand=40, pack=25)
    assert p.order[0] and p.below_reorder_point[0]
    assert p.quantity[0] % 25 == 0
    assert 40 + p.quantity[0] >= p.reorder_point[0] + max(Policy().cover_days, 1.0) * 48


def test_at_most_one_open_order_per_series():
    """GIVEN an open order THEN no second order, however low the stock."""
    p = plan(on_hand=0, inbound=30, open_orders=1, stockout_in=0.0)
    assert not p.order[0] and p.quantity[0] == 0


def test_inbound_counts_in_the_inventory_position():
    """GIVEN stock under the ROP but enough inbound THEN the position is above the ROP: no order
    (the open order already covers it)."""
    p = plan(on_hand=10, inbound=200, open_orders=0)
    assert p.inventory_position[0] == 210 and not p.below_reorder_point[0]


def test_projected_stockout_within_threshold_orders_even_above_the_rop():
    """GIVEN a short lead time (ROP low) but a stockout projected within 24 h THEN order anyway."""
    p = plan(on_hand=30, lead=1.0, stockout_in=15.0)
    assert p.order[0] and p.stockout_soon[0] and not p.below_reorder_point[0]


def test_higher_service_level_means_more_safety_stock():
    low, high = plan(500, policy=Policy(service_level=0.9)), plan(500, policy=Policy(service_level=0.995))
    assert high.safety_stock[0] > low.safety_stock[0] > 0
