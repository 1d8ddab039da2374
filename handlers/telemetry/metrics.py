"""Metrics that stay right through a Pushgateway.

A Pushgateway is a cache, not an aggregator, and every Lambda invocation may be a fresh process:
so counters and the latency histogram are cumulative values *kept in the state* and exposed as
absolute values by a custom collector in a fresh ``CollectorRegistry`` per invocation. Each
handler pushes one group (``/metrics/job/<handler>``, replaced as a whole with PUT) holding the
metrics it owns, so no metric is reported by two groups; every group also carries the handler's
latency histogram, invocation count, push-failure count and last-success time.

Without a Pushgateway URL the same text is written next to the state as
``metrics/<handler>.prom`` (Prometheus text format), so the embedded default still has metrics.
A failed push never fails the handler: the publisher returns the error text and the runtime logs
and counts it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from handlers.model.catalog import Catalog
from handlers.model.purchasing import inbound_units, open_count
from handlers.model.state import EXPOSED, FEED_OUTCOMES, HANDLERS, LATENCY_BUCKETS, State
from handlers.runtime.declarations import DECLARATIONS
from handlers.runtime.layout import forecast_daily_demand, is_loaded
from handlers.runtime.settings import Settings

__all__ = [
    "StateCollector",
    "build_registry",
    "METRICS",
    "ONLY_WITH_FEEDS",
    "OPERATIONS",
    "Focus",
    "focus_series",
    "metrics_key",
    "grouping_key",
    "cover_days",
    "at_risk",
    "stored_exposed",
]

_SERIES = ("product_id", "warehouse_id")

#: name -> (type, labels, help); which handler's group holds it is declared in handlers/<name>.py
_DEFINED: dict[str, tuple[str, tuple[str, ...], str]] = {
    "inventory_level_units": ("gauge", _SERIES, "On-hand units"),
    "orders_per_minute": ("gauge", ("product_id",), "Recent rate of units shipped per minute (1 h exponential average)"),
    "orders_total": ("counter", ("product_id",), "Units ordered and shipped, cumulative"),
    "lost_sales_units_total": ("counter", _SERIES, "Units demanded while out of stock, cumulative"),
    "inventory_units_by_product": ("gauge", ("product_id",), "On-hand units summed over warehouses"),
    "inventory_units_by_warehouse": ("gauge", ("warehouse_id",), "On-hand units summed over products"),
    "series_out_of_stock": ("gauge", ("warehouse_id",), "Product x warehouse series with nothing on hand"),
    "lost_sales_units_by_warehouse_total": (
        "counter",
        ("warehouse_id",),
        "Units demanded while out of stock, cumulative, summed over products",
    ),
    "catalog_series": ("gauge", (), "Product x warehouse series in the catalog"),
    "received_units_total": ("counter", _SERIES, "Units received from purchase orders, cumulative"),
    "received_units_by_warehouse_total": (
        "counter",
        ("warehouse_id",),
        "Units received from purchase orders, cumulative, summed over products",
    ),
    "predicted_stockout_hours": (
        "gauge",
        _SERIES,
        "Hours until projected on-hand reaches zero; absent when not within the forecast horizon",
    ),
    "stockout_within_horizon": ("gauge", _SERIES, "1 if a stockout is projected within the forecast horizon, else 0"),
    "stockout_probability": ("gauge", _SERIES, "Probability of a stockout within the alert threshold"),
    "demand_forecast_units": ("gauge", ("product_id",), "Forecast demand over the next 7 days"),
    "reorder_point_units": ("gauge", _SERIES, "Reorder point: lead-time demand + safety stock"),
    "series_at_risk": (
        "gauge",
        ("warehouse_id",),
        "Series with a stockout projected within the alert threshold or a stockout probability at or above the risk level",
    ),
    "series_low_cover": ("gauge", ("warehouse_id",), "Series whose on-hand covers fewer days of forecast demand than the low-cover level"),
    "forecast_abs_error_units_total": ("counter", ("product_id",), "Sum of |forecast - actual| of scored days (day-ahead daily forecasts)"),
    "forecast_actual_units_total": ("counter", ("product_id",), "Actual demand of the scored days"),
    "forecast_paired_abs_error_units_total": (
        "counter",
        ("product_id",),
        "Sum of |forecast - actual| on days seasonal naive could forecast",
    ),
    "forecast_seasonal_naive_abs_error_units_total": ("counter", ("product_id",), "Sum of |seasonal naive - actual| on those days"),
    "forecast_wape": ("gauge", ("product_id",), "Weighted absolute percentage error of the day-ahead forecasts so far"),
    "forecast_skill_vs_seasonal_naive": ("gauge", ("product_id",), "1 - model error / seasonal naive error so far (> 0: better)"),
    "reorder_events_total": ("counter", _SERIES, "Reorder alerts raised, cumulative"),
    "purchase_orders_open": ("gauge", _SERIES, "Open purchase orders"),
    "inbound_units": ("gauge", _SERIES, "Units on open purchase orders"),
    "purchase_orders_open_by_warehouse": ("gauge", ("warehouse_id",), "Open purchase orders, summed over products"),
    "inbound_units_by_warehouse": ("gauge", ("warehouse_id",), "Units on open purchase orders, summed over products"),
    # a shop's feeds (handlers/runtime/feeds.py): lines by outcome, how far behind, backorders, counts
    "feed_lines_total": (
        "counter",
        ("feed", "outcome"),
        "Feed lines (objects, for objects_damaged) by outcome: applied, late, too_late, duplicate, bad, not_in_catalog, objects_damaged",
    ),
    "feed_lag_seconds": ("gauge", ("feed",), "Business seconds from the newest feed line applied to the order clock"),
    "feed_newest_line_timestamp_seconds": ("gauge", ("feed",), "Business time of the newest feed line applied"),
    "backorder_units": ("gauge", _SERIES, "Units sold but not shipped yet (a feed's orders beyond on hand)"),
    "backorder_units_by_warehouse": ("gauge", ("warehouse_id",), "Units sold but not shipped yet, summed over products"),
    # by warehouse, not product: a catalog of 10,000 products would add 20,000 samples to every order tick
    "backordered_units_total": ("counter", ("warehouse_id",), "Units that went to backorder, cumulative"),
    "returned_units_total": ("counter", ("warehouse_id",), "Units customers returned (a feed's returns), cumulative"),
    "stock_adjustment_units_total": (
        "counter",
        ("warehouse_id",),
        "Net units stock counts corrected on hand by, cumulative (negative: shrinkage)",
    ),
    # every handler's group:
    "processing_latency_seconds": ("histogram", ("handler",), "Handler processing time"),
    "handler_invocations_total": ("counter", ("handler",), "Applied invocations, cumulative"),
    "handler_last_success_timestamp_seconds": ("gauge", ("handler",), "Wall-clock time of the last successful invocation"),
    "handler_business_time_seconds": ("gauge", ("handler",), "Business time of the last applied tick"),
    "metrics_push_failures_total": ("counter", ("handler",), "Failed metric pushes to the Pushgateway, cumulative"),
    "state_write_conflicts_total": (
        "counter",
        ("handler",),
        "Compare-and-swap state writes that lost to another writer and were retried, cumulative (in invocations that then committed)",
    ),
    "metrics_series_exposed": ("gauge", ("handler",), "Product x warehouse series this group exposes per-series metrics for"),
}
#: The metrics with samples only in a store that reads a shop's feeds (the others are always exposed).
ONLY_WITH_FEEDS = frozenset({"feed_lines_total", "feed_lag_seconds", "feed_newest_line_timestamp_seconds"})
OPERATIONS = (
    "processing_latency_seconds",
    "handler_invocations_total",
    "handler_last_success_timestamp_seconds",
    "handler_business_time_seconds",
    "metrics_push_failures_total",
    "state_write_conflicts_total",
    "metrics_series_exposed",
)


def _owners() -> dict[str, str]:
    owners = dict.fromkeys(OPERATIONS, "*")
    for name, declared in DECLARATIONS.items():
        for metric in declared.metrics:
            if metric in owners:
                raise ValueError(f"{metric}: declared by {owners[metric]} and {name} (one group per metric)")
            owners[metric] = name
    if set(owners) != set(_DEFINED):
        raise ValueError(f"metrics defined but owned by no handler, or declared but not defined: {sorted(set(owners) ^ set(_DEFINED))}")
    return owners


#: name -> (type, labels, owning handler or "*" for every handler's group, help), ownership from the
#: handler modules' declarations
METRICS: dict[str, tuple[str, tuple[str, ...], str, str]] = {
    name: (kind, labels, owner, _DEFINED[name][2]) for name, owner in _owners().items() for kind, labels, _ in [_DEFINED[name]]
}


def metrics_key(handler: str, shard: int | None = None) -> str:
    """Where the group goes without a Pushgateway: the Pushgateway's group path, as a key."""
    return f"metrics/{handler}.prom" if shard is None else f"metrics/{handler}/shard/{shard}.prom"


def grouping_key(shard: int | None) -> dict[str, str]:
    """The Pushgateway grouping key beyond the job: ``/metrics/job/<handler>/shard/<k>`` for a shard."""
    return {} if shard is None else {"shard": str(shard)}


@dataclass(frozen=True)
class Focus:
    """Which series get per-series metrics: every series of a catalog of at most ``cap`` series;
    in a larger catalog only those that matter — at risk (a stockout projected within the alert
    threshold, or its probability at least ``risk_probability``; without a forecast at hand, fewer
    hours of cover than the threshold), low cover (fewer than ``low_cover_days`` days of forecast
    demand on hand) or reordered (a purchase order open) — the least covered first, at most ``cap``."""

    cap: int = 1000
    risk_probability: float = 0.5
    low_cover_days: float = 2.0
    alert_threshold_hours: float = 24.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Focus:
        return cls(
            cap=settings.metrics_series_cap,
            risk_probability=settings.metrics_risk_probability,
            low_cover_days=settings.metrics_low_cover_days,
            alert_threshold_hours=settings.alert_threshold_hours,
        )


def cover_days(state: State) -> np.ndarray:
    """Days the on-hand units last at the last forecast's demand for its first day (before any
    forecast: the recent order rate); inf with no demand, 0 when nothing is on hand. A handler that
    does not read the forecast part uses the hot part's copy of that demand (handlers/runtime/layout.py)."""
    forecast = forecast_daily_demand(state)
    daily = np.where(np.isnan(forecast), state.order_rate_now() * 1440.0, forecast)
    with np.errstate(divide="ignore", invalid="ignore"):
        cover = np.where(daily > 0, state.on_hand / np.where(daily > 0, daily, 1.0), np.inf)
    return np.where(state.on_hand <= 0, 0.0, cover)


def at_risk(state: State, focus: Focus, exposed: Mapping[str, np.ndarray]) -> np.ndarray:
    if "stockout_hours" in exposed and "stockout_probability" in exposed:
        soon = np.nan_to_num(exposed["stockout_hours"], nan=np.inf) <= focus.alert_threshold_hours
        return np.asarray(soon | (exposed["stockout_probability"] >= focus.risk_probability) | (state.on_hand <= 0))
    return cover_days(state) * 24.0 <= focus.alert_threshold_hours


def focus_series(state: State, focus: Focus, exposed: Mapping[str, np.ndarray]) -> np.ndarray:
    """Indices (ascending) of the series whose per-series metrics are exposed."""
    if state.num_series <= focus.cap:
        return np.arange(state.num_series)
    cover = cover_days(state)
    matter = at_risk(state, focus, exposed) | (cover < focus.low_cover_days) | (open_count(state) > 0)
    candidates = np.flatnonzero(matter)
    urgent = candidates[np.argsort(cover[candidates], kind="stable")[: focus.cap]]
    return np.sort(urgent)


def stored_exposed(handler: str, state: State) -> dict[str, np.ndarray]:
    """What the last committed invocation of ``handler`` exposed, as its core computed it, from the
    part it commits (the forecast's: ``State.forecast_exposed``); empty for a handler whose part keeps
    none, a part not read, or before its first invocation."""
    if not DECLARATIONS[handler].keeps_exposed or not is_loaded(state.forecast_at) or math.isnan(state.forecast_at):
        return {}
    return {name: state.forecast_exposed[:, i] for i, name in enumerate(EXPOSED)}


class StateCollector:
    """Exposes one handler's metrics from a committed state and the values its core computed
    (absolute values only; nothing is recomputed here). ``exposed``: what the core of the invocation
    just committed computed; ``None`` (a publish after the fact: ``simulate``'s) takes what the last
    committed invocation exposed, kept in its part (:func:`stored_exposed`), so a publish never
    exposes less than that."""

    def __init__(
        self,
        handler: str,
        state: State,
        catalog: Catalog,
        *,
        wall_time: float,
        exposed: Mapping[str, np.ndarray] | None = None,
        focus: Focus = Focus(),
    ) -> None:
        self.handler, self.state, self.catalog = handler, state, catalog
        self.exposed = dict(exposed) if exposed is not None else stored_exposed(handler, state)
        self.wall_time, self.focus = wall_time, focus
        self.selected = focus_series(state, focus, self.exposed)

    def _family(self, name: str) -> GaugeMetricFamily | CounterMetricFamily:
        kind, labels, _, text = METRICS[name]
        factory = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily}[kind]
        family: GaugeMetricFamily | CounterMetricFamily = factory(name, text, labels=list(labels))
        return family

    def _series(self, name: str, values: np.ndarray) -> Metric:
        """One sample per selected series; a NaN value is an absent sample (``predicted_stockout_hours``
        of a series that does not run out within the horizon), never a sentinel number."""
        family = self._family(name)
        values = np.asarray(values, dtype=float)
        index = self.selected[~np.isnan(values[self.selected])]
        products, warehouses = self.catalog.products, self.catalog.warehouses
        p_index, w_index = self.catalog.product_index[index].tolist(), self.catalog.warehouse_index[index].tolist()
        for p, w, value in zip(p_index, w_index, values[index].tolist()):
            family.add_metric([products[p].id, warehouses[w].id], value)
        return family

    def _products(self, name: str, values: np.ndarray) -> Metric:
        family = self._family(name)
        totals = np.bincount(self.catalog.product_index, weights=values, minlength=len(self.catalog.products))
        for product, value in zip(self.catalog.products, totals.tolist()):
            family.add_metric([product.id], value)
        return family

    def _warehouses(self, name: str, values: np.ndarray) -> Metric:
        family = self._family(name)
        totals = np.bincount(self.catalog.warehouse_index, weights=np.asarray(values, dtype=float), minlength=len(self.catalog.warehouses))
        for warehouse, value in zip(self.catalog.warehouses, totals.tolist()):
            family.add_metric([warehouse.id], value)
        return family

    def _scalar(self, name: str, value: float) -> Metric:
        family = self._family(name)
        family.add_metric([], float(value))
        return family

    def _labelled(self, name: str, rows: list[tuple[list[str], float]]) -> Metric:
        family = self._family(name)
        for labels, value in rows:
            family.add_metric(labels, value)
        return family

    def _ratio(self, name: str, parts: tuple[np.ndarray, np.ndarray, float]) -> Metric:
        """Per product: ``offset + Σ numerator / Σ denominator`` over its series; absent (not 0) while
        the denominator is 0 (no day scored yet)."""
        numerator, denominator, offset = parts
        index, n = self.catalog.product_index, len(self.catalog.products)
        top, bottom = np.bincount(index, weights=numerator, minlength=n), np.bincount(index, weights=denominator, minlength=n)
        family = self._family(name)
        for p, product in enumerate(self.catalog.products):
            if bottom[p] > 0:
                family.add_metric([product.id], offset + top[p] / bottom[p])
        return family

    def _operations(self) -> Iterator[Metric]:
        h = HANDLERS.index(self.handler)
        s = self.state
        latency = HistogramMetricFamily("processing_latency_seconds", METRICS["processing_latency_seconds"][3], labels=["handler"])
        bounds = [*(f"{b:g}" for b in LATENCY_BUCKETS), "+Inf"]
        latency.add_metric(
            [self.handler], list(zip(bounds, s.latency_buckets[h].astype(float).tolist())), sum_value=float(s.latency_sum[h])
        )
        yield latency
        for name, value in (
            ("handler_invocations_total", s.invocations[h]),
            ("handler_last_success_timestamp_seconds", self.wall_time),
            ("handler_business_time_seconds", s.applied[self.handler]),
            ("metrics_push_failures_total", s.push_failures[h]),
            ("state_write_conflicts_total", s.conflicts.get(self.handler, 0)),
            ("metrics_series_exposed", len(self.selected)),
        ):
            family = self._family(name)
            family.add_metric([self.handler], float(value))
            yield family

    def collect(self) -> Iterator[Metric]:
        """The metrics the handler's declaration owns, in its order, then every handler's operations metrics."""
        for name in DECLARATIONS[self.handler].metrics:
            shape, read = VALUES[name]
            value = read(self)
            if value is not None:  # e.g. the forecast's projection when no forecast core computed it
                yield getattr(self, f"_{shape}")(name, value)
        yield from self._operations()


def _exposed(name: str) -> Callable[[StateCollector], np.ndarray | None]:
    return lambda c: c.exposed.get(name)


def _feed_lines(c: StateCollector) -> list[tuple[list[str], float]] | None:
    counters = c.state.feed_counters
    return [([feed, outcome], float(counters[feed].get(outcome, 0))) for feed in sorted(counters) for outcome in FEED_OUTCOMES] or None


def _feed_newest(c: StateCollector, lag: bool) -> list[tuple[list[str], float]] | None:
    clock = c.state.orders_through
    rows = [
        ([feed], clock - values["newest"] if lag else values["newest"])
        for feed, values in sorted(c.state.feed_counters.items())
        if "newest" in values
    ]
    return rows or None


def _scores(
    c: StateCollector, numerator: str, denominator: str, sign: float = 1.0, offset: float = 0.0
) -> tuple[np.ndarray, np.ndarray, float]:
    return sign * getattr(c.state, numerator), getattr(c.state, denominator), offset


#: metric -> (shape, what it reads): every value is read from the committed state or taken as the
#: core computed it (``exposed``); exposition recomputes no policy. Shapes: ``series`` (one sample per
#: selected series), ``products`` / ``warehouses`` (summed), ``scalar``, ``ratio`` (per product).
VALUES: dict[str, tuple[str, Callable[[StateCollector], Any]]] = {
    "inventory_level_units": ("series", lambda c: c.state.on_hand),
    "orders_per_minute": ("products", lambda c: c.state.order_rate_now()),
    "orders_total": ("products", lambda c: c.state.shipped.astype(float)),
    "lost_sales_units_total": ("series", lambda c: c.state.lost_sales),
    "inventory_units_by_product": ("products", lambda c: c.state.on_hand.astype(float)),
    "inventory_units_by_warehouse": ("warehouses", lambda c: c.state.on_hand),
    "series_out_of_stock": ("warehouses", lambda c: c.state.on_hand <= 0),
    "lost_sales_units_by_warehouse_total": ("warehouses", lambda c: c.state.lost_sales),
    "catalog_series": ("scalar", lambda c: c.state.num_series),
    "received_units_total": ("series", lambda c: c.state.received),
    "received_units_by_warehouse_total": ("warehouses", lambda c: c.state.received),
    "predicted_stockout_hours": ("series", _exposed("stockout_hours")),
    "stockout_within_horizon": (
        "series",
        lambda c: None if "stockout_hours" not in c.exposed else np.isfinite(c.exposed["stockout_hours"]).astype(float),
    ),
    "stockout_probability": ("series", _exposed("stockout_probability")),
    "demand_forecast_units": ("products", _exposed("forecast_7d_units")),
    "reorder_point_units": ("series", _exposed("reorder_point")),
    "series_at_risk": ("warehouses", lambda c: at_risk(c.state, c.focus, c.exposed) if "stockout_hours" in c.exposed else None),
    "series_low_cover": ("warehouses", lambda c: cover_days(c.state) < c.focus.low_cover_days),
    "forecast_abs_error_units_total": ("products", lambda c: c.state.score_abs_error),
    "forecast_actual_units_total": ("products", lambda c: c.state.score_actual),
    "forecast_paired_abs_error_units_total": ("products", lambda c: c.state.score_paired_abs_error),
    "forecast_seasonal_naive_abs_error_units_total": ("products", lambda c: c.state.score_naive_abs_error),
    "forecast_wape": ("ratio", lambda c: _scores(c, "score_abs_error", "score_actual")),
    "forecast_skill_vs_seasonal_naive": ("ratio", lambda c: _scores(c, "score_paired_abs_error", "score_naive_abs_error", -1.0, 1.0)),
    "feed_lines_total": ("labelled", _feed_lines),
    "feed_lag_seconds": ("labelled", lambda c: _feed_newest(c, lag=True)),
    "feed_newest_line_timestamp_seconds": ("labelled", lambda c: _feed_newest(c, lag=False)),
    "backorder_units": ("series", lambda c: c.state.backorder),
    "backorder_units_by_warehouse": ("warehouses", lambda c: c.state.backorder),
    "backordered_units_total": ("warehouses", lambda c: c.state.backordered.astype(float)),
    "returned_units_total": ("warehouses", lambda c: c.state.returned.astype(float)),
    "stock_adjustment_units_total": ("warehouses", lambda c: c.state.adjusted),
    "reorder_events_total": ("series", lambda c: c.state.reorders),
    "purchase_orders_open": ("series", lambda c: open_count(c.state)),
    "inbound_units": ("series", lambda c: inbound_units(c.state)),
    "purchase_orders_open_by_warehouse": ("warehouses", lambda c: open_count(c.state)),
    "inbound_units_by_warehouse": ("warehouses", lambda c: inbound_units(c.state)),
}


def build_registry(
    handler: str,
    state: State,
    catalog: Catalog,
    *,
    exposed: Mapping[str, np.ndarray] | None = None,
    focus: Focus = Focus(),
    wall_time: float | None = None,
) -> CollectorRegistry:
    """A fresh registry holding one handler's group (never the global registry)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        StateCollector(handler, state, catalog, exposed=exposed, focus=focus, wall_time=time.time() if wall_time is None else wall_time)
    )
    return registry


assert set(VALUES) == set(METRICS) - set(OPERATIONS), "every metric a handler owns has one definition of its value"
