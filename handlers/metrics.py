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

import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest, push_to_gateway
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from . import HANDLERS
from .catalog import Catalog
from .deadline import Deadline
from .planning import outlook
from .purchasing import inbound_units, open_count
from .policy import Policy
from .settings import Settings
from .state import LATENCY_BUCKETS, State
from .push import pushgateway_handler, redact, split_credentials
from .storage import Store, open_store

__all__ = ["StateCollector", "build_registry", "publisher", "METRICS", "metrics_key"]

#: name -> (type, labels, owning handler or "*" for every handler's group, help)
METRICS: dict[str, tuple[str, tuple[str, ...], str, str]] = {
    "inventory_level_units": ("gauge", ("product_id", "warehouse_id"), "order_tick", "On-hand units"),
    "orders_per_minute": ("gauge", ("product_id",), "order_tick",
                          "Recent rate of units shipped per minute (1 h exponential average)"),
    "orders_total": ("counter", ("product_id",), "order_tick", "Units ordered and shipped, cumulative"),
    "lost_sales_units_total": ("counter", ("product_id", "warehouse_id"), "order_tick",
                               "Units demanded while out of stock, cumulative"),
    "received_units_total": ("counter", ("product_id", "warehouse_id"), "restock",
                             "Units received from purchase orders, cumulative"),
    "predicted_stockout_hours": ("gauge", ("product_id", "warehouse_id"), "forecast",
                                 "Hours until projected on-hand reaches zero; absent when not within "
                                 "the forecast horizon"),
    "stockout_within_horizon": ("gauge", ("product_id", "warehouse_id"), "forecast",
                                "1 if a stockout is projected within the forecast horizon, else 0"),
    "stockout_probability": ("gauge", ("product_id", "warehouse_id"), "forecast",
                             "Probability of a stockout within the alert threshold"),
    "demand_forecast_units": ("gauge", ("product_id",), "forecast", "Forecast demand over the next 7 days"),
    "reorder_point_units": ("gauge", ("product_id", "warehouse_id"), "forecast",
                            "Reorder point: lead-time demand + safety stock"),
    "forecast_abs_error_units_total": ("counter", ("product_id",), "forecast",
                                       "Sum of |forecast - actual| of scored days (day-ahead daily forecasts)"),
    "forecast_actual_units_total": ("counter", ("product_id",), "forecast", "Actual demand of the scored days"),
    "forecast_paired_abs_error_units_total": ("counter", ("product_id",), "forecast",
                                              "Sum of |forecast - actual| on days seasonal naive could forecast"),
    "forecast_seasonal_naive_abs_error_units_total": ("counter", ("product_id",), "forecast",
                                                      "Sum of |seasonal naive - actual| on those days"),
    "forecast_wape": ("gauge", ("product_id",), "forecast",
                      "Weighted absolute percentage error of the day-ahead forecasts so far"),
    "forecast_skill_vs_seasonal_naive": ("gauge", ("product_id",), "forecast",
                                         "1 - model error / seasonal naive error so far (> 0: better)"),
    "reorder_events_total": ("counter", ("product_id", "warehouse_id"), "alert",
                             "Reorder alerts raised, cumulative"),
    "purchase_orders_open": ("gauge", ("product_id", "warehouse_id"), "alert",
                             "Open purchase orders"),
    "inbound_units": ("gauge", ("product_id", "warehouse_id"), "alert", "Units on open purchase orders"),
    "processing_latency_seconds": ("histogram", ("handler",), "*", "Handler processing time"),
    "handler_invocations_total": ("counter", ("handler",), "*", "Applied invocations, cumulative"),
    "handler_last_success_timestamp_seconds": ("gauge", ("handler",), "*",
                                               "Wall-clock time of the last successful invocation"),
    "handler_business_time_seconds": ("gauge", ("handler",), "*", "Business time of the last applied tick"),
    "metrics_push_failures_total": ("counter", ("handler",), "*",
                                    "Failed metric pushes to the Pushgateway, cumulative"),
}


def metrics_key(handler: str) -> str:
    return f"metrics/{handler}.prom"


class StateCollector:
    """Exposes one handler's metrics from a committed state (absolute values only)."""

    def __init__(self, handler: str, state: State, catalog: Catalog, policy: Policy, *, wall_time: float) -> None:
        self.handler, self.state, self.catalog, self.policy = handler, state, catalog, policy
        self.wall_time = wall_time

    def _family(self, name: str) -> Metric:
        kind, labels, _, text = METRICS[name]
        factory = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily}[kind]
        return factory(name, text, labels=list(labels))

    def _series(self, name: str, values: np.ndarray, *, where: np.ndarray | None = None) -> Metric:
        family = self._family(name)
        products, warehouses = self.catalog.series_product_ids, self.catalog.series_warehouse_ids
        for i, value in enumerate(np.asarray(values, dtype=float).tolist()):
            if where is None or where[i]:
                family.add_metric([products[i], warehouses[i]], value)
        return family

    def _products(self, name: str, values: np.ndarray) -> Metric:
        family = self._family(name)
        totals = np.bincount(self.catalog.product_index, weights=values, minlength=len(self.catalog.products))
        for product, value in zip(self.catalog.products, totals.tolist()):
            family.add_metric([product.id], value)
        return family

    def _owned(self) -> Iterator[Metric]:
        s = self.state
        if self.handler == "order_tick":
            yield self._series("inventory_level_units", s.on_hand)
            yield self._products("orders_per_minute", s.order_rate)
            yield self._products("orders_total", s.shipped.astype(float))
            yield self._series("lost_sales_units_total", s.lost_sales)
        elif self.handler == "restock":
            yield self._series("received_units_total", s.received)
        elif self.handler == "forecast" and np.isfinite(s.forecast_at):
            view = outlook(s, s.forecast_at, self.policy)
            lead_mean, lead_var = view.path.at(self.catalog.lead_time_hours)
            within = np.isfinite(view.stockout_in)
            yield self._series("predicted_stockout_hours", np.nan_to_num(view.stockout_in), where=within)
            yield self._series("stockout_within_horizon", within.astype(float))
            yield self._series("stockout_probability", view.probability)
            yield self._products("demand_forecast_units", view.path.cum_mean[:, -1])
            yield self._series("reorder_point_units", lead_mean + self.policy.z * np.sqrt(lead_var))
            yield from self._forecast_quality()
        elif self.handler == "alert":
            yield self._series("reorder_events_total", s.reorders)
            yield self._series("purchase_orders_open", open_count(s))
            yield self._series("inbound_units", inbound_units(s))

    def _forecast_quality(self) -> Iterator[Metric]:
        s, index, n = self.state, self.catalog.product_index, len(self.catalog.products)
        error = np.bincount(index, weights=s.score_abs_error, minlength=n)
        actual = np.bincount(index, weights=s.score_actual, minlength=n)
        paired = np.bincount(index, weights=s.score_paired_abs_error, minlength=n)
        naive = np.bincount(index, weights=s.score_naive_abs_error, minlength=n)
        yield self._products("forecast_abs_error_units_total", s.score_abs_error)
        yield self._products("forecast_actual_units_total", s.score_actual)
        yield self._products("forecast_paired_abs_error_units_total", s.score_paired_abs_error)
        yield self._products("forecast_seasonal_naive_abs_error_units_total", s.score_naive_abs_error)
        for name, numerator, denominator, offset in (("forecast_wape", error, actual, 0.0),
                                                      ("forecast_skill_vs_seasonal_naive", -paired, naive, 1.0)):
            family = self._family(name)
            for p, product in enumerate(self.catalog.products):
                if denominator[p] > 0:  # no value before a day was scored: absent, not 0
                    family.add_metric([product.id], offset + numerator[p] / denominator[p])
            yield family

    def _operations(self) -> Iterator[Metric]:
        h = HANDLERS.index(self.handler)
        s = self.state
        latency = HistogramMetricFamily("processing_latency_seconds", METRICS["processing_latency_seconds"][3],
                                        labels=["handler"])
        bounds = [*(f"{b:g}" for b in LATENCY_BUCKETS), "+Inf"]
        latency.add_metric([self.handler], list(zip(bounds, s.latency_buckets[h].astype(float).tolist())),
                           sum_value=float(s.latency_sum[h]))
        yield latency
        for name, value in (("handler_invocations_total", s.invocations[h]),
                            ("handler_last_success_timestamp_seconds", self.wall_time),
                            ("handler_business_time_seconds", s.applied[self.handler]),
                            ("metrics_push_failures_total", s.push_failures[h])):
            family = self._family(name)
            family.add_metric([self.handler], float(value))
            yield family

    def collect(self) -> Iterator[Metric]:
        yield from self._owned()
        yield from self._operations()


def build_registry(handler: str, state: State, catalog: Catalog, policy: Policy, *,
                   wall_time: float | None = None) -> CollectorRegistry:
    """A fresh registry holding one handler's group (never the global registry)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(handler, state, catalog, policy,
                                     wall_time=time.time() if wall_time is None else wall_time))
    return registry


def _push(url: str, timeout: float, handler: str, registry: CollectorRegistry, *,
          username: str | None = None, password: str | None = None, ca_file: str | None = None) -> None:
    """PUT the group within ``timeout`` seconds in total (handlers/push.py)."""
    target, user, secret = split_credentials(url)
    push_to_gateway(target, job=handler, registry=registry, timeout=timeout,
                    handler=pushgateway_handler(timeout, username=user if user is not None else username,
                                                password=secret if user is not None else password,
                                                ca_file=ca_file))


def publisher(settings: Settings, *, store: Store | None = None,
              push: Callable[[str, float, str, CollectorRegistry], None] = _push,
              wall_clock: Callable[[], float] = time.time) -> Callable[[str, State, Catalog], str | None]:
    """The runtime's metrics publisher: push to the Pushgateway, or write ``metrics/<handler>.prom``."""
    policy = settings.policy
    target = store

    if push is _push:
        push = partial(_push, username=settings.pushgateway_username, password=settings.pushgateway_password,
                       ca_file=settings.pushgateway_ca_file)

    def publish(handler: str, state: State, catalog: Catalog, *, deadline: Deadline | None = None,
                exposed: Any = None) -> str | None:
        nonlocal target
        registry = build_registry(handler, state, catalog, policy, wall_time=wall_clock())
        try:
            if settings.pushgateway_url:
                budget = settings.push_timeout_seconds
                if deadline is not None:
                    budget = min(budget, deadline.remaining())
                    if budget <= 0:
                        raise TimeoutError("the invocation's time budget is spent")
                push(settings.pushgateway_url, budget, handler, registry)
            else:
                target = target or open_store(settings.store_url)
                target.replace(metrics_key(handler), generate_latest(registry))
        except Exception as exc:  # noqa: BLE001 - metrics must never fail the handler
            where = settings.pushgateway_url or settings.store_url
            text = f"{where}: {type(exc).__name__}: {exc}"
            for secret in (settings.pushgateway_password, split_credentials(where)[2]):
                if secret:
                    text = text.replace(secret, "***")
            return redact(text)
        return None

    return publish
