"""Builds saved_objects.ndjson: the data views, visualisations and dashboard Kibana imports.

    python3 infra/kibana/saved_objects.py > infra/kibana/saved_objects.ndjson

Stdlib only. The NDJSON is committed (kibana-setup imports it as it is); the tests check that it is
this script's output, that every field and reference in it resolves, and that every field is one
the handlers emit or Metricbeat produces from a metric they push.

Legacy aggregation-based visualisations (``visualization`` with a ``visState``) and one TSVB panel
(the fill-rate ratio), not Lens: their saved-object shape has been stable since 8.5 and Kibana
migrates them forward on import (``typeMigrationVersion`` below is what an 8.x/9.x export writes).
"""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["build", "render", "LOGS_VIEW", "METRICS_VIEW", "DASHBOARD_ID"]

LOGS_VIEW = "app-logs"  # data view id and name; title (the index pattern) filebeat-*
METRICS_VIEW = "prom-metrics"  # metricbeat-*
DASHBOARD_ID = "stockpulse-overview"
CORE_MIGRATION_VERSION = "8.8.0"
TYPE_MIGRATION_VERSION = {"index-pattern": "8.0.0", "visualization": "8.5.0", "dashboard": "10.2.0"}
INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"


def _saved(kind: str, ident: str, attributes: dict[str, Any], references: list[dict[str, str]]) -> dict[str, Any]:
    return {"id": ident, "type": kind, "attributes": attributes, "references": references,
            "coreMigrationVersion": CORE_MIGRATION_VERSION, "typeMigrationVersion": TYPE_MIGRATION_VERSION[kind],
            "managed": False}


def data_view(ident: str, pattern: str) -> dict[str, Any]:
    return _saved("index-pattern", ident, {
        "title": pattern, "name": ident, "timeFieldName": "@timestamp", "allowHidden": False,
        "fields": "[]", "fieldAttrs": "{}", "fieldFormatMap": "{}", "runtimeFieldMap": "{}", "sourceFilters": "[]",
    }, [])


def _search_source(query: str, *, with_index: bool = True) -> str:
    source: dict[str, Any] = {"query": {"query": query, "language": "kuery"}, "filter": []}
    if with_index:
        source["indexRefName"] = INDEX_REF
    return json.dumps(source)


def _metric(agg_id: str, kind: str, field: str | None = None) -> dict[str, Any]:
    params = {"field": field} if field else {}
    return {"id": agg_id, "enabled": True, "type": kind, "params": params, "schema": "metric"}


def _date_histogram(agg_id: str) -> dict[str, Any]:
    return {"id": agg_id, "enabled": True, "type": "date_histogram", "schema": "segment",
            "params": {"field": "@timestamp", "useNormalizedEsInterval": True, "scaleMetricValues": False,
                       "interval": "auto", "drop_partials": False, "min_doc_count": 1, "extended_bounds": {}}}


def _terms(agg_id: str, field: str, schema: str, order_by: str = "1", size: int = 20) -> dict[str, Any]:
    return {"id": agg_id, "enabled": True, "type": "terms", "schema": schema,
            "params": {"field": field, "orderBy": order_by, "order": "desc", "size": size, "otherBucket": False,
                       "otherBucketLabel": "Other", "missingBucket": False, "missingBucketLabel": "Missing"}}


def _xy_params(chart: str, metrics: list[tuple[str, str]], *, mode: str, y_title: str) -> dict[str, Any]:
    """The params of Kibana's legacy line/histogram vis types (vis_types/xy defaults)."""
    return {
        "type": chart,
        "grid": {"categoryLines": False},
        "categoryAxes": [{"id": "CategoryAxis-1", "type": "category", "position": "bottom", "show": True,
                          "scale": {"type": "linear"}, "labels": {"show": True, "filter": True, "truncate": 100},
                          "title": {}, "style": {}}],
        "valueAxes": [{"id": "ValueAxis-1", "name": "LeftAxis-1", "type": "value", "position": "left", "show": True,
                       "scale": {"type": "linear", "mode": "normal"},
                       "labels": {"show": True, "rotate": 0, "filter": False, "truncate": 100},
                       "title": {"text": y_title}, "style": {}}],
        "seriesParams": [{"show": True, "type": chart, "mode": mode, "data": {"label": label, "id": agg_id},
                          "valueAxis": "ValueAxis-1", "drawLinesBetweenPoints": True, "lineWidth": 2,
                          "interpolate": "linear", "showCircles": True, "circlesRadius": 1}
                         for agg_id, label in metrics],
        "addTooltip": True, "detailedTooltip": True, "palette": {"type": "palette", "name": "default"},
        "addLegend": True, "legendPosition": "right", "fittingFunction": "linear", "times": [],
        "addTimeMarker": False, "truncateLegend": True, "maxLegendLines": 1, "labels": {}, "radiusRatio": 9,
        "thresholdLine": {"show": False, "value": 10, "width": 1, "style": "full", "color": "#E7664C"},
    }


def aggregation_vis(ident: str, title: str, view: str, chart: str, aggs: list[dict[str, Any]], query: str,
                    *, description: str, mode: str = "normal", y_title: str = "") -> dict[str, Any]:
    metrics = [(a["id"], a.get("params", {}).get("field") or a["type"]) for a in aggs if a["schema"] == "metric"]
    vis_state = {"title": title, "type": chart, "aggs": aggs,
                 "params": _xy_params(chart, metrics, mode=mode, y_title=y_title)}
    return _saved("visualization", ident, {
        "title": title, "description": description, "version": 1, "uiStateJSON": "{}",
        "visState": json.dumps(vis_state),
        "kibanaSavedObjectMeta": {"searchSourceJSON": _search_source(query)},
    }, [{"name": INDEX_REF, "type": "index-pattern", "id": view}])


def fill_rate_vis(ident: str) -> dict[str, Any]:
    """TSVB: per product, shipped / (shipped + lost) units in each interval (order and lost_sale events)."""
    title = "Fill Rate by Product"
    ref = "metrics_0_index_pattern"
    params = {
        "id": "stockpulse-fill-rate", "type": "timeseries", "time_field": "@timestamp",
        "index_pattern_ref_name": ref, "use_kibana_indexes": True, "interval": "", "drop_last_bucket": 0,
        "axis_position": "left", "axis_formatter": "percent", "axis_scale": "normal", "axis_min": "0", "axis_max": "1",
        "show_legend": 1, "show_grid": 1, "tooltip_mode": "show_all", "isModelInvalid": False, "annotations": [],
        "series": [{
            "id": "fill-rate", "label": "Fill rate", "color": "#54B399", "split_mode": "terms",
            "terms_field": "product_id", "terms_size": "20", "terms_order_by": "_count",
            "split_color_mode": "kibana", "palette": {"type": "palette", "name": "default"},
            "filter": {"query": 'type : "order" or type : "lost_sale"', "language": "kuery"},
            "metrics": [
                {"id": "shipped", "type": "sum", "field": "quantity"},
                {"id": "lost", "type": "sum", "field": "lost_quantity"},
                {"id": "fill", "type": "math", "script": "params.shipped / (params.shipped + params.lost)",
                 "variables": [{"id": "v-shipped", "name": "shipped", "field": "shipped"},
                               {"id": "v-lost", "name": "lost", "field": "lost"}]},
            ],
            "chart_type": "line", "line_width": 2, "point_size": 1, "fill": 0, "stacked": "none",
            "formatter": "percent", "separate_axis": 0, "axis_position": "right", "override_index_pattern": 0,
        }],
    }
    vis_state = {"title": title, "type": "metrics", "aggs": [], "params": params}
    return _saved("visualization", ident, {
        "title": title, "version": 1, "uiStateJSON": "{}", "visState": json.dumps(vis_state),
        "description": "Units shipped / (shipped + lost) per product: sum(quantity) of order events, "
                       "sum(lost_quantity) of lost_sale events.",
        "kibanaSavedObjectMeta": {"searchSourceJSON": _search_source("", with_index=False)},
    }, [{"name": ref, "type": "index-pattern", "id": LOGS_VIEW}])


def visualisations() -> list[dict[str, Any]]:
    avg_over_time = [_date_histogram("2")]
    return [
        aggregation_vis("stockpulse-inventory-by-warehouse", "Inventory Levels by Warehouse", LOGS_VIEW, "line",
                        [_metric("1", "avg", "inventory_units"), *avg_over_time, _terms("3", "warehouse_id", "group")],
                        'type : "inventory"', y_title="units on hand",
                        description="Average inventory_units of the hourly inventory events, per warehouse."),
        aggregation_vis("stockpulse-order-rates-by-product", "Order Rates by Product", LOGS_VIEW, "line",
                        [_metric("1", "avg", "orders_per_hour"), *avg_over_time, _terms("3", "product_id", "group")],
                        'type : "inventory"', y_title="units per hour",
                        description="Average orders_per_hour (1 h exponential average) per product."),
        aggregation_vis("stockpulse-predicted-stockout-hours", "Predicted Stockout Hours", LOGS_VIEW, "line",
                        [_metric("1", "avg", "predicted_stockout_hours"), *avg_over_time,
                         _terms("3", "product_id", "group")],
                        'type : "inventory"', y_title="hours",
                        description="Average predicted_stockout_hours per product; null (no stockout within "
                                    "the 7-day horizon) is ignored by the average."),
        aggregation_vis("stockpulse-reorder-alerts-by-product", "Reorder Alerts by Product", LOGS_VIEW, "histogram",
                        [_metric("1", "count"), _terms("2", "product_id", "segment")],
                        'type : "reorder_alert"', y_title="alerts",
                        description="Count of reorder_alert events per product."),
        aggregation_vis("stockpulse-demand-forecast", "7-Day Demand Forecast", METRICS_VIEW, "line",
                        [_metric("1", "avg", "prometheus.demand_forecast_units.value"), *avg_over_time,
                         _terms("3", "prometheus.labels.product_id", "group")],
                        "prometheus.demand_forecast_units.value : *", y_title="units over the next 7 days",
                        description="demand_forecast_units (pushed by the forecast handler), per product."),
        aggregation_vis("stockpulse-inventory-prometheus", "Inventory Levels (Prometheus Metrics)", METRICS_VIEW,
                        "line",
                        [_metric("1", "avg", "prometheus.inventory_level_units.value"), *avg_over_time,
                         _terms("3", "prometheus.labels.product_id", "group"),
                         _terms("4", "prometheus.labels.warehouse_id", "group")],
                        "prometheus.inventory_level_units.value : *", y_title="units on hand",
                        description="inventory_level_units (pushed by the order_tick handler), per product and "
                                    "warehouse."),
        aggregation_vis("stockpulse-lost-sales-by-product", "Lost Sales by Product", LOGS_VIEW, "histogram",
                        [_metric("1", "sum", "lost_quantity"), _terms("2", "product_id", "segment")],
                        'type : "lost_sale"', y_title="units demanded while out of stock",
                        description="Sum of lost_quantity of lost_sale events per product."),
        fill_rate_vis("stockpulse-fill-rate"),
        aggregation_vis("stockpulse-forecast-error", "Forecast Error vs Seasonal Naive", LOGS_VIEW, "histogram",
                        [_metric("1", "sum", "abs_error"), _metric("2", "sum", "seasonal_naive_abs_error"),
                         _terms("3", "product_id", "segment")],
                        'type : "forecast_score" and seasonal_naive_abs_error : *', y_title="units (sum of |error|)",
                        description="Day-ahead forecast absolute error beside seasonal naive's, summed per product "
                                    "over the days both exist (lower is better)."),
    ]


def dashboard(panels: list[dict[str, Any]]) -> dict[str, Any]:
    entries, references = [], []
    for n, vis in enumerate(panels):
        index = str(n + 1)
        entries.append({"type": "visualization", "panelIndex": index, "panelRefName": f"panel_{index}",
                        "gridData": {"x": 24 * (n % 2), "y": 15 * (n // 2), "w": 24, "h": 15, "i": index},
                        "embeddableConfig": {}})
        references.append({"name": f"{index}:panel_{index}", "type": "visualization", "id": vis["id"]})
    return _saved("dashboard", DASHBOARD_ID, {
        "title": "stockpulse", "version": 1, "timeRestore": False,
        "description": "Inventory, orders, stockout predictions, reorders, lost sales, fill rate and forecast "
                       "quality: the handlers' logs (app-logs) and metrics (prom-metrics).",
        "panelsJSON": json.dumps(entries),
        "optionsJSON": json.dumps({"useMargins": True, "syncColors": False, "syncCursor": True,
                                   "syncTooltips": False, "hidePanelTitles": False}),
        "kibanaSavedObjectMeta": {"searchSourceJSON": _search_source("", with_index=False)},
    }, references)


def build() -> list[dict[str, Any]]:
    panels = visualisations()
    return [data_view(LOGS_VIEW, "filebeat-*"), data_view(METRICS_VIEW, "metricbeat-*"), *panels, dashboard(panels)]


def render(objects: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(o, sort_keys=True) + "\n" for o in objects)


if __name__ == "__main__":
    sys.stdout.write(render(build()))
