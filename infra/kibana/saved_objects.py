"""Builds saved_objects.ndjson: the data views, Lens visualisations and dashboard Kibana imports.

    python3 infra/kibana/saved_objects.py > infra/kibana/saved_objects.ndjson

Stdlib only. The NDJSON is committed (kibana-setup imports it as it is); the tests check that it is
this script's output, that every field and reference in it resolves, and that every field is one
the handlers emit or Metricbeat produces from a metric they push.

Every panel is a Lens object (``type: "lens"``, ``formBased`` datasource): aggregation-based
``visualization`` objects and TSVB still render in Kibana 9 but can no longer be created there
(kibana #197045) and are to be removed in 10 (#198136). The object shape follows Kibana's own
exports of the 8.x/9.x line:

- ``x-pack/test/functional/fixtures/kbn_archiver/lens/legend_statistics.json`` (a Lens ``lnsXY``
  saved object: columns, ``columnOrder``, ``incompleteColumns``, the XY ``layers``, the reference
  ``indexpattern-datasource-layer-<layerId>`` per layer);
- ``src/platform/plugins/shared/home/server/services/sample_data/data_sets/ecommerce/saved_objects.ts``
  (a formula column with its hidden ``<id>X<n>`` parts and the ``math`` column's ``tinymathAst``,
  multi-column XY layers).

Versions written (what a 9.x export writes; Kibana migrates an older one forward, refuses a newer
one): ``coreMigrationVersion`` 8.8.0; ``typeMigrationVersion`` ``lens`` 10.1.0 (model version 1 of
the ``lens`` type, ``x-pack/platform/plugins/shared/lens/server/saved_objects.ts``, kibana #229534,
9.2+), ``index-pattern`` 8.0.0, ``dashboard`` 10.2.0 (model version 2; 9.x adds 3 and 4, mapping
additions only: ``.../dashboard/server/dashboard_saved_object/dashboard_saved_object.ts``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["build", "render", "LOGS_VIEW", "METRICS_VIEW", "DASHBOARD_ID", "FILL_RATE_FORMULA"]

LOGS_VIEW = "app-logs"  # data view id and name; title (the index pattern) filebeat-*
METRICS_VIEW = "prom-metrics"  # metricbeat-*
DASHBOARD_ID = "stockpulse-overview"
CORE_MIGRATION_VERSION = "8.8.0"
TYPE_MIGRATION_VERSION = {"index-pattern": "8.0.0", "lens": "10.1.0", "dashboard": "10.2.0"}
RECORDS = "___records___"  # Lens' document-count pseudo field (count columns)
FILL_RATE_FORMULA = "sum(quantity) / (sum(quantity) + sum(lost_quantity))"


def _saved(kind: str, ident: str, attributes: dict[str, Any], references: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "id": ident,
        "type": kind,
        "attributes": attributes,
        "references": references,
        "coreMigrationVersion": CORE_MIGRATION_VERSION,
        "typeMigrationVersion": TYPE_MIGRATION_VERSION[kind],
        "managed": False,
    }


def data_view(ident: str, pattern: str) -> dict[str, Any]:
    return _saved(
        "index-pattern",
        ident,
        {
            "title": pattern,
            "name": ident,
            "timeFieldName": "@timestamp",
            "allowHidden": False,
            "fields": "[]",
            "fieldAttrs": "{}",
            "fieldFormatMap": "{}",
            "runtimeFieldMap": "{}",
            "sourceFilters": "[]",
        },
        [],
    )


# --- Lens columns (formBased datasource) -----------------------------------------------------------


def date_column() -> dict[str, Any]:
    return {
        "label": "@timestamp",
        "dataType": "date",
        "operationType": "date_histogram",
        "sourceField": "@timestamp",
        "isBucketed": True,
        "scale": "interval",
        "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False},
    }


def metric_column(operation: str, field: str | None, label: str) -> dict[str, Any]:
    """average / sum / count (``field`` None: Lens' count of records)."""
    return {
        "label": label,
        "customLabel": True,
        "dataType": "number",
        "operationType": operation,
        "sourceField": field or RECORDS,
        "isBucketed": False,
        "scale": "ratio",
        "params": {"emptyAsNull": True},
    }


def terms_column(field: str, *, size: int, order_by: str | None, also: tuple[str, ...] = ()) -> dict[str, Any]:
    """Top ``size`` values of ``field`` (with ``also``: of the field combinations, Lens multi terms),
    ordered by the metric column ``order_by``, else alphabetically."""
    order = {"type": "column", "columnId": order_by} if order_by else {"type": "alphabetical", "fallback": False}
    params: dict[str, Any] = {
        "size": size,
        "orderBy": order,
        "orderDirection": "desc" if order_by else "asc",
        "otherBucket": True,
        "missingBucket": False,
        "include": [],
        "exclude": [],
        "includeIsRegex": False,
        "excludeIsRegex": False,
        "parentFormat": {"id": "multi_terms" if also else "terms"},
    }
    if also:
        params["secondaryFields"] = list(also)
    label = f"Top {size} values of {', '.join((field, *also))}"
    return {
        "label": label,
        "dataType": "string",
        "operationType": "terms",
        "sourceField": field,
        "isBucketed": True,
        "scale": "ordinal",
        "params": params,
    }


def fill_rate_columns(ident: str, label: str) -> dict[str, dict[str, Any]]:
    """FILL_RATE_FORMULA as Lens stores a formula: the visible ``formula`` column, one hidden column
    per function call (``<id>X0``..), and the ``math`` column that combines them (``tinymathAst``)."""
    part = {
        "label": f"Part of {label}",
        "customLabel": True,
        "dataType": "number",
        "isBucketed": False,
        "scale": "ratio",
        "params": {"emptyAsNull": False},
    }
    x0, x1, x2, x3 = (f"{ident}X{n}" for n in range(4))
    inner = "sum(quantity) + sum(lost_quantity)"
    start = FILL_RATE_FORMULA.index("(" + inner) + 1
    ast = {
        "type": "function",
        "name": "divide",
        "args": [
            x0,
            {"type": "function", "name": "add", "args": [x1, x2], "location": {"min": start, "max": start + len(inner)}, "text": inner},
        ],
        "location": {"min": 0, "max": len(FILL_RATE_FORMULA)},
        "text": FILL_RATE_FORMULA,
    }
    return {
        ident: {
            "label": label,
            "customLabel": True,
            "dataType": "number",
            "operationType": "formula",
            "isBucketed": False,
            "scale": "ratio",
            "references": [x3],
            "params": {"formula": FILL_RATE_FORMULA, "isFormulaBroken": False, "format": {"id": "percent", "params": {"decimals": 0}}},
        },
        x0: {**part, "operationType": "sum", "sourceField": "quantity"},
        x1: {**part, "operationType": "sum", "sourceField": "quantity"},
        x2: {**part, "operationType": "sum", "sourceField": "lost_quantity"},
        x3: {**part, "operationType": "math", "references": [x0, x1, x2], "params": {"tinymathAst": ast}},
    }


# --- Lens XY objects ----------------------------------------------------------------------------------


def lens_xy(
    ident: str,
    title: str,
    view: str,
    *,
    description: str,
    query: str,
    series: str,
    columns: dict[str, dict[str, Any]],
    x: str,
    y: list[str],
    split: str | None = None,
    y_title: str = "",
    extent: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One Lens XY chart of one data layer on ``view``; ``columns`` in display order (buckets first)."""
    layer_id = f"{ident}-layer"
    layer: dict[str, Any] = {
        "layerId": layer_id,
        "layerType": "data",
        "seriesType": series,
        "xAccessor": x,
        "accessors": y,
        "position": "top",
        "showGridlines": False,
        "palette": {"type": "palette", "name": "default"},
    }
    if split:
        layer["splitAccessor"] = split
    visualization = {
        "legend": {"isVisible": True, "position": "right"},
        "valueLabels": "hide",
        "fittingFunction": "None",
        "preferredSeriesType": series,
        "layers": [layer],
        "yTitle": y_title,
        "axisTitlesVisibilitySettings": {"x": True, "yLeft": True, "yRight": True},
        "tickLabelsVisibilitySettings": {"x": True, "yLeft": True, "yRight": True},
        "gridlinesVisibilitySettings": {"x": True, "yLeft": True, "yRight": True},
        "labelsOrientation": {"x": 0, "yLeft": 0, "yRight": 0},
        "yLeftExtent": extent or {"mode": "full"},
    }
    state = {
        "datasourceStates": {
            "formBased": {"layers": {layer_id: {"columns": columns, "columnOrder": list(columns), "incompleteColumns": {}, "sampling": 1}}}
        },
        "visualization": visualization,
        "query": {"query": query, "language": "kuery"},
        "filters": [],
        "internalReferences": [],
        "adHocDataViews": {},
    }
    return _saved(
        "lens",
        ident,
        {"title": title, "description": description, "visualizationType": "lnsXY", "state": state},
        [{"type": "index-pattern", "id": view, "name": f"indexpattern-datasource-layer-{layer_id}"}],
    )


def over_time(
    ident: str, title: str, view: str, field: str, split: tuple[str, ...], query: str, *, description: str, y_title: str
) -> dict[str, Any]:
    """Average of ``field`` per date bucket, one line per value of ``split`` (one field or a combination)."""
    columns = {
        "split": terms_column(split[0], size=20, order_by="y", also=split[1:]),
        "x": date_column(),
        "y": metric_column("average", field, f"Average {field}"),
    }
    return lens_xy(
        ident,
        title,
        view,
        description=description,
        query=query,
        series="line",
        columns=columns,
        x="x",
        y=["y"],
        split="split",
        y_title=y_title,
    )


def by_product(
    ident: str, title: str, metrics: list[tuple[str, str | None, str]], query: str, *, description: str, y_title: str
) -> dict[str, Any]:
    """Bars per product_id (app-logs): one bar per (operation, field, label) of ``metrics``."""
    ys = [f"y{n}" for n in range(len(metrics))]
    columns = {
        "x": terms_column("product_id", size=20, order_by=ys[0]),
        **{y: metric_column(op, field, label) for y, (op, field, label) in zip(ys, metrics, strict=True)},
    }
    return lens_xy(
        ident, title, LOGS_VIEW, description=description, query=query, series="bar", columns=columns, x="x", y=ys, y_title=y_title
    )


def visualisations() -> list[dict[str, Any]]:
    inventory = 'type : "inventory"'
    fill = {"split": terms_column("product_id", size=20, order_by=None), "x": date_column(), **fill_rate_columns("fill", "Fill rate")}
    return [
        over_time(
            "stockpulse-inventory-by-warehouse",
            "Inventory Levels by Warehouse",
            LOGS_VIEW,
            "inventory_units",
            ("warehouse_id",),
            inventory,
            y_title="units on hand",
            description="Average inventory_units of the hourly inventory events, per warehouse.",
        ),
        over_time(
            "stockpulse-order-rates-by-product",
            "Order Rates by Product",
            LOGS_VIEW,
            "orders_per_hour",
            ("product_id",),
            inventory,
            y_title="units per hour",
            description="Average orders_per_hour (1 h exponential average) per product.",
        ),
        over_time(
            "stockpulse-predicted-stockout-hours",
            "Predicted Stockout Hours",
            LOGS_VIEW,
            "predicted_stockout_hours",
            ("product_id",),
            inventory,
            y_title="hours",
            description="Average predicted_stockout_hours per product; null (no stockout within the 7-day "
            "horizon) is ignored by the average.",
        ),
        by_product(
            "stockpulse-reorder-alerts-by-product",
            "Reorder Alerts by Product",
            [("count", None, "Reorder alerts")],
            'type : "reorder_alert"',
            y_title="alerts",
            description="Count of reorder_alert events per product.",
        ),
        over_time(
            "stockpulse-demand-forecast",
            "7-Day Demand Forecast",
            METRICS_VIEW,
            "prometheus.demand_forecast_units.value",
            ("prometheus.labels.product_id",),
            "prometheus.demand_forecast_units.value : *",
            y_title="units over the next 7 days",
            description="demand_forecast_units (pushed by the forecast handler), per product.",
        ),
        over_time(
            "stockpulse-inventory-prometheus",
            "Inventory Levels (Prometheus Metrics)",
            METRICS_VIEW,
            "prometheus.inventory_level_units.value",
            ("prometheus.labels.product_id", "prometheus.labels.warehouse_id"),
            "prometheus.inventory_level_units.value : *",
            y_title="units on hand",
            description="inventory_level_units (pushed by the order_tick handler), per product and warehouse.",
        ),
        by_product(
            "stockpulse-lost-sales-by-product",
            "Lost Sales by Product",
            [("sum", "lost_quantity", "Units lost")],
            'type : "lost_sale"',
            y_title="units demanded while out of stock",
            description="Sum of lost_quantity of lost_sale events per product.",
        ),
        lens_xy(
            "stockpulse-fill-rate",
            "Fill Rate by Product",
            LOGS_VIEW,
            series="line",
            columns=fill,
            x="x",
            y=["fill"],
            split="split",
            y_title="fill rate",
            extent={"mode": "custom", "lowerBound": 0, "upperBound": 1},
            query='type : "order" or type : "lost_sale"',
            description="Units shipped / (shipped + lost) per product: sum(quantity) of order events, "
            "sum(lost_quantity) of lost_sale events (a Lens formula).",
        ),
        by_product(
            "stockpulse-forecast-error",
            "Forecast Error vs Seasonal Naive",
            [("sum", "abs_error", "Forecast |error|"), ("sum", "seasonal_naive_abs_error", "Seasonal naive |error|")],
            'type : "forecast_score" and seasonal_naive_abs_error : *',
            y_title="units (sum of |error|)",
            description="Day-ahead forecast absolute error beside seasonal naive's, summed per product over "
            "the days both exist (lower is better).",
        ),
        # a shop's own feeds (docs/feeds.md)
        by_product(
            "stockpulse-backorders-by-product",
            "Backorders by Product",
            [("sum", "backordered", "Units backordered")],
            'type : "order" and backordered > 0',
            y_title="units sold beyond on hand",
            description="Sum of backordered of a feed's order events per product: units sold beyond on hand, shipped later from a receipt.",
        ),
        over_time(
            "stockpulse-stock-adjustments",
            "Stock Adjustments by Warehouse",
            LOGS_VIEW,
            "difference",
            ("warehouse_id",),
            'type : "adjustment"',
            y_title="units (counted - expected)",
            description="Average difference of the adjustment events (stock counts) per warehouse: negative is shrinkage.",
        ),
        lens_xy(
            "stockpulse-feed-lines-refused",
            "Feed Lines Refused by Outcome",
            LOGS_VIEW,
            series="bar",
            columns={
                "split": terms_column("outcome", size=10, order_by="y"),
                "x": date_column(),
                "y": metric_column("count", None, "Refused lines"),
            },
            x="x",
            y=["y"],
            split="split",
            y_title="lines",
            query='type : "feed_rejected"',
            description="feed_rejected events per outcome (bad, duplicate, too_late, not_in_catalog, "
            "objects_damaged) over time: what a shop's feeds sent that stockpulse refused.",
        ),
    ]


def dashboard(panels: list[dict[str, Any]]) -> dict[str, Any]:
    """Panels by reference: ``panelRefName: panel_<i>`` and a reference named ``<i>:panel_<i>``, as the
    dashboard's own extract code writes them (``dashboard_container_references.ts``)."""
    entries, references = [], []
    for n, vis in enumerate(panels):
        index = str(n + 1)
        entries.append(
            {
                "type": vis["type"],
                "panelIndex": index,
                "panelRefName": f"panel_{index}",
                "gridData": {"x": 24 * (n % 2), "y": 15 * (n // 2), "w": 24, "h": 15, "i": index},
                "embeddableConfig": {},
            }
        )
        references.append({"name": f"{index}:panel_{index}", "type": vis["type"], "id": vis["id"]})
    return _saved(
        "dashboard",
        DASHBOARD_ID,
        {
            "title": "stockpulse",
            "version": 1,
            "timeRestore": False,
            "description": "Inventory, orders, stockout predictions, reorders, lost sales, fill rate and forecast "
            "quality: the handlers' logs (app-logs) and metrics (prom-metrics).",
            "panelsJSON": json.dumps(entries),
            "optionsJSON": json.dumps(
                {"useMargins": True, "syncColors": False, "syncCursor": True, "syncTooltips": False, "hidePanelTitles": False}
            ),
            "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps({"query": {"query": "", "language": "kuery"}, "filter": []})},
        },
        references,
    )


def build() -> list[dict[str, Any]]:
    panels = visualisations()
    return [data_view(LOGS_VIEW, "filebeat-*"), data_view(METRICS_VIEW, "metricbeat-*"), *panels, dashboard(panels)]


def render(objects: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(o, sort_keys=True) + "\n" for o in objects)


if __name__ == "__main__":
    sys.stdout.write(render(build()))
