"""The purchase-order book: every open order as one row of parallel arrays.

``po_series[n]`` is the series (product x warehouse) an order is for, with its ``po_quantity``,
``po_due`` and ``po_placed`` (business epoch seconds) and ``po_number`` (the n-th order placed
for that series, which makes its id). The book allows any number of open orders per series; the
project's reorder policy keeps at most one, other policies (the benchmark's replica of the
original system) may keep many.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from handlers.model.catalog import Catalog
from handlers.model.state import State

__all__ = ["Arrivals", "arrivals", "open_count", "inbound_units", "place_orders", "receive_due", "order_ids"]


@dataclass(frozen=True)
class Arrivals:
    """Open orders as seen from ``now``: series, quantity, hours until due (may be <= 0)."""

    series: np.ndarray
    quantity: np.ndarray
    eta_hours: np.ndarray


def arrivals(state: State, now: float) -> Arrivals:
    return Arrivals(state.po_series, state.po_quantity.astype(float), (state.po_due - now) / 3600.0)


def open_count(state: State) -> np.ndarray:
    return np.bincount(state.po_series, minlength=state.num_series)


def inbound_units(state: State) -> np.ndarray:
    return np.bincount(state.po_series, weights=state.po_quantity, minlength=state.num_series).astype(np.int64)


def order_ids(catalog: Catalog, series: np.ndarray, numbers: np.ndarray) -> list[str]:
    """Readable, deterministic ids: PO-<product>-<warehouse>-<n>."""
    products, warehouses = catalog.series_product_ids, catalog.series_warehouse_ids
    return [f"PO-{products[i]}-{warehouses[i]}-{int(n):05d}" for i, n in zip(series.tolist(), numbers.tolist())]


def place_orders(state: State, series: np.ndarray, quantity: np.ndarray, due: np.ndarray, now: float) -> tuple[dict[str, Any], np.ndarray]:
    """Append one order per entry of ``series`` (unique); returns state changes and the order numbers."""
    po_count = state.po_count.copy()
    po_count[series] += 1
    numbers = po_count[series]
    changes = {
        "po_series": np.concatenate([state.po_series, series]),
        "po_quantity": np.concatenate([state.po_quantity, quantity.astype(np.int64)]),
        "po_due": np.concatenate([state.po_due, due.astype(float)]),
        "po_placed": np.concatenate([state.po_placed, np.full(len(series), now)]),
        "po_number": np.concatenate([state.po_number, numbers]),
        "po_count": po_count,
    }
    return changes, numbers


def receive_due(state: State, now: float) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Take every order due by ``now`` into stock.

    What arrives ships the series' backorders first (units a shop's feed sold beyond on hand,
    handlers/model/feeding.py). Returns the state changes and the received orders in (series, due)
    order, each with the on-hand right after it (``new_inventory``) and the backorders it shipped
    (``backorder_filled``), for the restock events.
    """
    due = state.po_due <= now
    rows = np.flatnonzero(due)
    rows = rows[np.lexsort((state.po_due[rows], state.po_series[rows]))]
    series, quantity = state.po_series[rows], state.po_quantity[rows]
    # per receipt: the running total within its series, the backorders shipped so far, on hand after it
    running = np.cumsum(quantity)
    starts = np.r_[0, np.flatnonzero(np.diff(series)) + 1] if len(series) else np.array([], dtype=np.int64)
    group_offset = np.repeat(running[starts] - quantity[starts], np.diff(np.r_[starts, len(series)]))
    cumulative = running - group_offset
    owed = state.backorder[series]
    shipped_so_far = np.minimum(owed, cumulative)
    filled = shipped_so_far - np.minimum(owed, cumulative - quantity)
    after = state.on_hand[series] + cumulative - shipped_so_far
    total = np.bincount(series, weights=quantity, minlength=state.num_series).astype(np.int64)
    ship = np.minimum(state.backorder, total)
    keep = ~due
    changes = {
        "on_hand": state.on_hand + total - ship,
        "backorder": state.backorder - ship,
        "shipped": state.shipped + ship,
        "received": state.received + total,
        "po_series": state.po_series[keep],
        "po_quantity": state.po_quantity[keep],
        "po_due": state.po_due[keep],
        "po_placed": state.po_placed[keep],
        "po_number": state.po_number[keep],
    }
    received = {"series": series, "quantity": quantity, "number": state.po_number[rows], "new_inventory": after, "backorder_filled": filled}
    return changes, received
