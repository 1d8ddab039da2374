"""The ``status`` report: where every product x warehouse stands, from the stored state."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from handlers import HANDLERS
from handlers.catalog import Catalog
from handlers.purchasing import order_ids
from handlers.events import format_epoch
from handlers.state import State
from handlers.storage import Store

__all__ = ["status_report"]


def _time(epoch: float) -> str | None:
    return format_epoch(epoch) if math.isfinite(epoch) else None


def status_report(state: State, catalog: Catalog, store: Store) -> dict[str, Any]:
    """Everything ``status --json`` prints; key names are a contract (tests and users read them)."""
    ids = order_ids(catalog, state.po_series, state.po_number)
    orders: list[list[dict[str, Any]]] = [[] for _ in range(state.num_series)]
    for row, i in enumerate(state.po_series.tolist()):
        orders[i].append({"id": ids[row], "product_id": catalog.series_product_ids[i],
                          "warehouse_id": catalog.series_warehouse_ids[i], "quantity": int(state.po_quantity[row]),
                          "placed": _time(state.po_placed[row]), "due": _time(state.po_due[row])})
    series = []
    for i in range(state.num_series):
        series.append({
            "product_id": catalog.series_product_ids[i], "warehouse_id": catalog.series_warehouse_ids[i],
            "on_hand": int(state.on_hand[i]), "initial": int(state.initial[i]),
            "received": int(state.received[i]), "shipped": int(state.shipped[i]),
            "lost_sales": int(state.lost_sales[i]), "reorders": int(state.reorders[i]),
            "open_purchase_orders": orders[i],
        })
    shipped_by_product = np.bincount(catalog.product_index, weights=state.shipped, minlength=len(catalog.products))
    return {
        "store": store.url,
        "catalog": {"source": catalog.source, "fingerprint": catalog.fingerprint,
                    "products": len(catalog.products), "warehouses": len(catalog.warehouses)},
        "created_at": _time(state.created_at),
        "orders_through": _time(state.orders_through),
        "last_applied": {name: _time(state.applied[name]) for name in HANDLERS},
        "series": series,
        "purchase_orders_open": [order for group in orders for order in group],
        "counters": {
            "orders_total": {p.id: int(v) for p, v in zip(catalog.products, shipped_by_product.tolist())},
            "shipped_total": int(state.shipped.sum()), "received_total": int(state.received.sum()),
            "lost_sales_total": int(state.lost_sales.sum()),
            "reorder_events_total": int(state.reorders.sum()),
            "invocations": {name: int(state.invocations[h]) for h, name in enumerate(HANDLERS)},
            "metrics_push_failures": {name: int(state.push_failures[h]) for h, name in enumerate(HANDLERS)},
        },
        "pending_log_objects": sum(not store.exists(key) for key, _ in state.outbox),
    }
