"""The ``status`` report: where every product x warehouse stands, from the stored state."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from handlers.errors import InputError, StorageError
from handlers.model.catalog import Catalog
from handlers.model.events import format_epoch
from handlers.model.purchasing import order_ids
from handlers.model.state import FEED_OUTCOMES, HANDLERS, State
from handlers.storage.base import Store

__all__ = ["WATCH_SECONDS", "check_watch", "feed_report", "risk_of", "show_status", "status_extras", "status_report", "status_screen"]

#: ``status --watch SECONDS`` accepts (SECONDS redraws a second at most: each one reads the state)
WATCH_SECONDS = (0.2, 3600.0)


def _time(epoch: float) -> str | None:
    return format_epoch(epoch) if math.isfinite(epoch) else None


def status_report(state: State, catalog: Catalog, store: Store) -> dict[str, Any]:
    """Everything ``status --json`` prints; key names are a contract (tests and users read them)."""
    ids = order_ids(catalog, state.po_series, state.po_number)
    orders: list[list[dict[str, Any]]] = [[] for _ in range(state.num_series)]
    for row, i in enumerate(state.po_series.tolist()):
        orders[i].append(
            {
                "id": ids[row],
                "product_id": catalog.series_product_ids[i],
                "warehouse_id": catalog.series_warehouse_ids[i],
                "quantity": int(state.po_quantity[row]),
                "placed": _time(state.po_placed[row]),
                "due": _time(state.po_due[row]),
            }
        )
    series = []
    for i in range(state.num_series):
        series.append(
            {
                "product_id": catalog.series_product_ids[i],
                "warehouse_id": catalog.series_warehouse_ids[i],
                "on_hand": int(state.on_hand[i]),
                "initial": int(state.initial[i]),
                "received": int(state.received[i]),
                "shipped": int(state.shipped[i]),
                "lost_sales": int(state.lost_sales[i]),
                "reorders": int(state.reorders[i]),
                "backorder": int(state.backorder[i]),
                "backordered": int(state.backordered[i]),
                "returned": int(state.returned[i]),
                "adjusted": int(state.adjusted[i]),
                "open_purchase_orders": orders[i],
            }
        )
    shipped_by_product = np.bincount(catalog.product_index, weights=state.shipped, minlength=len(catalog.products))
    return {
        "store": store.url,
        "catalog": {
            "source": catalog.source,
            "fingerprint": catalog.fingerprint,
            "products": len(catalog.products),
            "warehouses": len(catalog.warehouses),
        },
        "created_at": _time(state.created_at),
        "orders_through": _time(state.orders_through),
        "last_applied": {name: _time(state.applied[name]) for name in HANDLERS},
        "series": series,
        "purchase_orders_open": [order for group in orders for order in group],
        "counters": {
            "orders_total": {p.id: int(v) for p, v in zip(catalog.products, shipped_by_product.tolist())},
            "shipped_total": int(state.shipped.sum()),
            "received_total": int(state.received.sum()),
            "lost_sales_total": int(state.lost_sales.sum()),
            "reorder_events_total": int(state.reorders.sum()),
            "backorder_units": int(state.backorder.sum()),
            "backordered_total": int(state.backordered.sum()),
            "returned_total": int(state.returned.sum()),
            "adjusted_total": int(state.adjusted.sum()),
            "invocations": {name: int(state.invocations[h]) for h, name in enumerate(HANDLERS)},
            "metrics_push_failures": {name: int(state.push_failures[h]) for h, name in enumerate(HANDLERS)},
        },
        "feeds": feed_report(state),
        "pending_log_objects": sum(not store.exists(key) for key, _ in state.outbox),
    }


def feed_report(state: State) -> dict[str, dict[str, Any]]:
    """Per feed the shop gave (handlers/runtime/feeds.py): its lines by outcome, the business time of
    the newest line applied and how far it is behind the order clock (``feed_lag_seconds``)."""
    found: dict[str, dict[str, Any]] = {}
    for feed, counters in sorted(state.feed_counters.items()):
        newest = counters.get("newest")
        found[feed] = {
            "lines": {outcome: int(counters.get(outcome, 0)) for outcome in FEED_OUTCOMES},
            "newest_line": None if newest is None else _time(newest),
            "lag_seconds": None if newest is None or not math.isfinite(state.orders_through) else state.orders_through - newest,
        }
    return found


def risk_of(on_hand: int, cover_days: float, restock_in_days: float) -> str:
    """``out`` (nothing on the shelf), ``high`` (runs out before stock can arrive: the open purchase
    order's due time, or the lead time of one placed now), ``watch`` (within a day of that), else ``ok``."""
    if on_hand <= 0:
        return "out"
    if cover_days < restock_in_days:
        return "high"
    if cover_days < restock_in_days + 1.0:
        return "watch"
    return "ok"


def _last_success(store: Store, handler: str, applied: float) -> float | None:
    """Wall-clock time of the handler's last success from ``metrics/<handler>.prom`` — sharded, the
    oldest of ``metrics/<handler>/shard/<k>.prom`` (the shard furthest behind) — or None when it is
    not known: the metrics were never written, or they are older than the state's last applied tick
    ``applied`` (the metrics go to a Pushgateway now, and these files are from an earlier run; or a
    commit whose metrics are being written at this moment)."""
    keys = [f"metrics/{handler}.prom"] if store.exists(f"metrics/{handler}.prom") else list(store.list(f"metrics/{handler}/shard/"))
    found = [_read_metrics(store, key) for key in keys]
    if not found or any(f is None for f in found):
        return None
    successes, ticks = zip(*(f for f in found if f is not None))
    return min(successes) if min(ticks) >= applied else None


_WANTED = ("handler_last_success_timestamp_seconds", "handler_business_time_seconds")


def _read_metrics(store: Store, key: str) -> tuple[float, float] | None:
    """(last success, business time of the tick it published) from a metrics file, or None."""
    try:
        text = store.get(key).decode(errors="replace")
    except StorageError:
        return None
    values: dict[str, float] = {}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in _WANTED:
            try:
                values[name] = float(line.rsplit(" ", 1)[1])
            except ValueError:
                return None
    return (values[_WANTED[0]], values[_WANTED[1]]) if len(values) == 2 else None


def status_extras(state: State, catalog: Catalog, store: Store) -> dict[str, Any]:
    """What the terminal view adds to :func:`status_report` (never part of ``status --json``):
    days of cover and risk per series, and each handler's last success (wall clock)."""
    if math.isfinite(state.forecast_at):
        daily = state.forecast_mean.mean(axis=1)  # forecast demand per day over the coming days
        basis = "forecast"
    else:
        daily = state.order_rate_now() * 1440.0
        basis = "recent orders"
    restock_in = catalog.lead_time_hours / 24.0  # no open order: one placed now
    for i, due in zip(state.po_series.tolist(), state.po_due.tolist()):
        restock_in[i] = min(restock_in[i], max(0.0, (due - state.orders_through) / 86400.0))
    rows = []
    for i in range(state.num_series):
        cover = float(state.on_hand[i] / daily[i]) if daily[i] > 0 else math.inf
        rows.append(
            {
                "days_of_cover": cover,
                "daily_demand": float(daily[i]),
                "lead_time_days": float(catalog.lead_time_hours[i] / 24.0),
                "restock_in_days": float(restock_in[i]),
                "risk": risk_of(int(state.on_hand[i]), cover, float(restock_in[i])),
            }
        )
    return {
        "series": rows,
        "cover_basis": basis,
        "last_success": {name: _last_success(store, name, state.applied[name]) for name in HANDLERS},
    }


def status_screen(store: Store, catalog: Catalog, *, now: float | None = None) -> Any:
    """The terminal view of the store as it is now (a rich renderable)."""
    from rich.text import Text

    from handlers.runtime.invoke import load_state

    from .console import status_view

    state, _ = load_state(store, catalog)
    if state is None:
        return Text(f"{store.url} holds no state yet — waiting for the first tick (`run` or `simulate`)")
    return status_view(status_report(state, catalog, store), status_extras(state, catalog, store), now=time.time() if now is None else now)


def check_watch(seconds: float) -> float:
    """``--watch SECONDS`` within WATCH_SECONDS: a redraw reads the state, and 1e-9 would spin."""
    low, high = WATCH_SECONDS
    if not low <= seconds <= high:
        raise InputError(f"--watch: must be a number of seconds in [{low:g}, {high:g}], got {seconds:g}")
    return seconds


def show_status(store: Store, catalog: Catalog, *, watch: float | None = None) -> int:
    """``status`` without ``--json``: print the view once, or redraw it every ``watch`` seconds
    until Ctrl-C (exit 0)."""
    from .console import out, watch_status

    if watch is None:
        out.print(status_screen(store, catalog))
        return 0
    check_watch(watch)
    try:
        watch_status(lambda: status_screen(store, catalog), watch)
    except KeyboardInterrupt:
        pass
    return 0
