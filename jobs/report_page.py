"""The report's page: Bokeh figures and a summary table in one self-contained HTML file.

BokehJS is inlined (``bokeh.resources.INLINE``; only the core bundle, about 1.3 MB: no widget or
table models are used) and numpy columns travel as base64 binary, so a week of the default
catalog is about 1.5 MB and opens with no network. When every chart's view exists and has drawn,
a script writes the rendered titles and series into ``#render-check`` (the tests read it), and any
script error lands in ``#page-errors``.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd
from bokeh.core.templates import get_env
from bokeh.document import Document
from bokeh.embed import file_html
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, CustomJS, FactorRange, HoverTool, Range1d
from bokeh.models.annotations import Label, Legend
from bokeh.palettes import Category10
from bokeh.plotting import figure
from bokeh.resources import INLINE
from bokeh.transform import dodge

from handlers.model.events import format_epoch

from .report_data import RunData

__all__ = ["SECTIONS", "render_page", "daily_band", "BAND_Z"]

HORIZON_HOURS = 168
BAND_Z = 1.2816  # the standard normal's 90th percentile: mean +- BAND_Z sigma holds 80 %
#: (root name, heading, what it shows) in page order; the tests look for these headings.
SECTIONS = (
    (
        "inventory",
        "Inventory on hand",
        (
            "On hand per warehouse after every change, purchase orders placed "
            "(reorder_alert) and arrived (restock), and the minutes the shelf was "
            "empty (shaded)."
        ),
    ),
    (
        "demand",
        "Demand vs day-ahead forecast",
        (
            "Daily units demanded (sold + lost) against the forecast made at "
            "that day's first forecast run, summed over the warehouses, with its "
            "80 % band (mean ± 1.2816 σ, σ = √Σσ² over the warehouses, "
            "clipped at 0); and the forecast's error beside seasonal naive."
        ),
    ),
    (
        "stockout",
        "Predicted hours to stockout",
        (
            "What the hourly forecast run projected (inventory events; gaps: "
            "no stockout within the 7-day horizon) against the hours until the "
            "shelf really emptied (lost sales / on hand 0); the projection could "
            "not know of purchase orders placed later."
        ),
    ),
    ("products", "Alerts, lost sales and fill rate per product", "Over the span, summed over the warehouses."),
)
_CHECK_JS = """
const out = document.getElementById("render-check");
const lines = [];
let missing = 0;
for (const plot of plots) {
  const view = Bokeh.index.find_one(plot);
  const box = view == null ? null : view.el.getBoundingClientRect();
  if (view == null || box.width <= 0 || box.height <= 0) { missing += 1; continue; }
  lines.push("chart: " + plot.title.text);
  const panels = [...plot.left, ...plot.right, ...plot.above, ...plot.below, ...plot.center];
  for (const legend of panels.filter((m) => Array.isArray(m.items))) {
    for (const item of legend.items) {
      if (item.renderers.every((r) => view.views.find_one(r) != null)) lines.push("series: " + item.label.value);
    }
  }
}
for (const line of lines) { const li = document.createElement("li"); li.textContent = line; out.appendChild(li); }
out.dataset.charts = String(plots.length - missing);
out.dataset.status = missing == 0 ? "rendered" : "missing " + missing;
"""
_PAGE = get_env().from_string("""{% from macros import embed %}<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title | e }}</title>
<script>
window.__pageErrors = [];
function __pageError(text) {
  window.__pageErrors.push(text);
  const box = document.getElementById("page-errors");
  if (box) { box.textContent = window.__pageErrors.join("\\n"); box.hidden = false; }
}
window.addEventListener("error", (e) => __pageError("error: " + e.message));
window.addEventListener("unhandledrejection", (e) => __pageError("unhandled: " + e.reason));
const __consoleError = console.error;
console.error = function (...args) { __pageError("console.error: " + args.join(" ")); __consoleError.apply(console, args); };
</script>
{{ bokeh_css if bokeh_css }}
{{ bokeh_js if bokeh_js }}
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em 2em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.2em; margin: 1.6em 0 .2em; }
p.meta, p.note { color: #555; margin: .2em 0 .8em; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 9px; border-bottom: 1px solid #ddd; text-align: right; }
th:nth-child(-n+2), td:nth-child(-n+2) { text-align: left; }
tr.product td { background: #f4f6f8; font-weight: 600; } tr.total td { background: #e8ecf0; font-weight: 700; }
td.bad { color: #b00020; }
#page-errors { color: #b00020; white-space: pre-wrap; }
p.damaged { color: #b00020; font-weight: 600; }
#render-check { display: none; }
</style>
</head>
<body>
<h1>{{ title | e }}</h1>
<p class="meta">{{ meta | e }}</p>
<pre id="page-errors" hidden></pre>
{% if damaged %}<p class="damaged" id="damaged-objects">{{ damaged | e }}</p>{% endif %}
<h2 id="summary">Summary</h2>
<p class="note">Sums of the log events with {{ span | e }} — the same figures as the difference of
<code>status --json</code> at the two ends of the span (at the store's start every counter is 0).
Mean on hand is the average over the span's business minutes; forecast WAPE is &Sigma;|forecast &minus; actual| /
&Sigma; actual over the days scored in the span; skill is 1 &minus; model error / seasonal-naive error on the days
seasonal naive can be scored (it needs a week of history).</p>
{{ table }}
{% for name, heading, note in sections %}
<h2 id="{{ name }}">{{ heading | e }}</h2>
<p class="note">{{ note | e }}</p>
{{ embed(roots[name]) }}
{% endfor %}
<ul id="render-check" data-status="pending"></ul>
{{ plot_script }}
</body>
</html>
""")


def _ms(seconds: Any) -> np.ndarray:
    return np.asarray(seconds, dtype=np.float64) * 1000.0


def _time_figure(title: str, x_range: Range1d, y_label: str, height: int = 240) -> Any:
    fig = figure(
        title=title,
        x_axis_type="datetime",
        x_range=x_range,
        height=height,
        sizing_mode="stretch_width",
        tools="xpan,xwheel_zoom,box_zoom,reset,save",
        toolbar_location="right",
    )
    fig.yaxis.axis_label = y_label
    fig.add_layout(Legend(click_policy="hide", location="top_left"), "right")
    return fig


def _colors(data: RunData) -> dict[str, str]:
    warehouses = list(dict.fromkeys(data.catalog.series_warehouse_ids))
    palette = Category10[10]
    return {w: palette[k % len(palette)] for k, w in enumerate(warehouses)}


def _zero_runs(minutes: np.ndarray, units: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) minute end of every run of on hand 0."""
    empty = np.concatenate([[False], units <= 0, [False]])
    edges = np.flatnonzero(np.diff(empty.astype(np.int8)))
    return [(int(minutes[a]), int(minutes[b - 1])) for a, b in zip(edges[::2], edges[1::2])]


def _series_of(data: RunData, product: str) -> list[tuple[int, int, str]]:
    """(row in data.series, catalog index, warehouse id) of a product's series."""
    cat = data.catalog
    return [(r, i, cat.series_warehouse_ids[i]) for r, i in enumerate(data.series.tolist()) if cat.series_product_ids[i] == product]


def _source(frames: list[pd.DataFrame]) -> ColumnDataSource:
    """Columns as arrays (a DataFrame straight into Bokeh trips a pandas deprecation)."""
    frame = pd.concat(frames, ignore_index=True)
    return ColumnDataSource({name: frame[name].to_numpy() for name in frame.columns})


def _inventory(data: RunData, x_range: Range1d) -> list[Any]:
    colors, figs = _colors(data), []
    alerts, restocks = data.events["reorder_alert"], data.events["restock"]
    for product in data.product_ids:
        fig = _time_figure(f"Inventory on hand — {product}", x_range, "units")
        runs: dict[str, list[Any]] = {"left": [], "right": [], "warehouse": []}
        placed, arrived = [], []
        top = 1
        for r, i, wh in _series_of(data, product):
            units = data.on_hand[r]
            keep = np.concatenate([[True], units[1:] != units[:-1]]) if len(units) else np.zeros(0, bool)
            xs, ys = np.append(data.minutes[keep], data.minutes[-1:]), np.append(units[keep], units[-1:])
            fig.step(_ms(xs), ys, mode="after", color=colors[wh], line_width=1.6, legend_label=f"{wh} on hand")
            top = max(top, int(units.max()) if len(units) else 1)
            for a, b in _zero_runs(data.minutes, units):
                runs["left"].append(a - 60)
                runs["right"].append(b)
                runs["warehouse"].append(wh)
            mine = alerts[alerts["series"] == i]
            placed.append(
                pd.DataFrame(
                    {
                        "x": _ms(mine["time"]),
                        "y": mine["current_inventory"],
                        "color": colors[wh],
                        "warehouse": wh,
                        "po": mine["purchase_order_id"],
                        "quantity": mine["recommended_reorder_quantity"],
                        "reason": mine["reason"],
                    }
                )
            )
            mine = restocks[restocks["series"] == i]
            arrived.append(
                pd.DataFrame(
                    {
                        "x": _ms(mine["time"]),
                        "y": mine["new_inventory"],
                        "color": colors[wh],
                        "warehouse": wh,
                        "po": mine["purchase_order_id"],
                        "quantity": mine["restocked_quantity"],
                    }
                )
            )
        runs_src = ColumnDataSource({"left": _ms(runs["left"]), "right": _ms(runs["right"]), "warehouse": runs["warehouse"]})
        fig.quad(
            left="left",
            right="right",
            bottom=0,
            top=top * 1.05,
            source=runs_src,
            color="#d62728",
            alpha=0.18,
            line_alpha=0,
            legend_label="stockout (on hand 0)",
        )
        placed_src, arrived_src = _source(placed), _source(arrived)
        p = fig.scatter(
            "x",
            "y",
            source=placed_src,
            marker="triangle",
            size=10,
            fill_color="color",
            line_color="black",
            legend_label="purchase order placed",
        )
        a = fig.scatter(
            "x",
            "y",
            source=arrived_src,
            marker="circle",
            size=8,
            fill_color="color",
            line_color="black",
            legend_label="purchase order arrived",
        )
        fig.add_tools(
            HoverTool(
                renderers=[p],
                tooltips=[("placed", "@x{%F %H:%M}"), ("", "@warehouse @po"), ("quantity", "@quantity"), ("why", "@reason")],
                formatters={"@x": "datetime"},
            )
        )
        fig.add_tools(
            HoverTool(
                renderers=[a],
                tooltips=[("arrived", "@x{%F %H:%M}"), ("", "@warehouse @po"), ("quantity", "@quantity")],
                formatters={"@x": "datetime"},
            )
        )
        figs.append(fig)
    return figs


def daily_band(scores: pd.DataFrame) -> pd.DataFrame:
    """Per day: actual and forecast units summed over the rows (warehouses) and the forecast's 80 %
    band, mean +- BAND_Z * sqrt(sum of variances), clipped at 0; NaN (no band) on a day where a
    row's spread is unknown (logs written before ``forecast_std_units``)."""
    variance = scores.assign(forecast_var=scores["forecast_std_units"].astype(float) ** 2)
    daily = variance.groupby("day")[["actual_units", "forecast_units"]].sum()
    spread = np.sqrt(variance.groupby("day")["forecast_var"].agg(lambda v: v.sum(skipna=False)))
    middle = daily["forecast_units"].astype(float)
    return daily.assign(band_low=np.maximum(middle - BAND_Z * spread, 0.0), band_high=middle + BAND_Z * spread).reset_index()


def _demand(data: RunData) -> list[Any]:
    scores, cat, figs = data.events["forecast_score"], data.catalog, []
    products = np.array(cat.series_product_ids)
    days = sorted(scores["day"].unique().tolist()) if len(scores) else []
    lo, hi = (
        _ms([pd.Timestamp(days[0]).timestamp() - 43200, pd.Timestamp(days[-1]).timestamp() + 43200])
        if days
        else _ms([data.start, data.end])
    )
    x_range = Range1d(start=float(lo), end=float(hi))
    for product in data.product_ids:
        mine = scores[products[scores["series"].to_numpy()] == product] if len(scores) else scores
        daily = daily_band(mine)
        fig = _time_figure(f"Daily demand vs day-ahead forecast — {product}", x_range, "units per day", 220)
        x = _ms([pd.Timestamp(d).timestamp() + 43200 for d in daily["day"]])
        fig.varea(
            x=x,
            y1=daily["band_low"].to_numpy(dtype=float),
            y2=daily["band_high"].to_numpy(dtype=float),
            color="#d95f02",
            fill_alpha=0.18,
            legend_label="80% band",
        )
        fig.vbar(x=x, top=daily["actual_units"].to_numpy(dtype=float), width=0.7 * 86400000, color="#9ecae1", legend_label="actual demand")
        fig.line(x, daily["forecast_units"].to_numpy(dtype=float), color="#d95f02", line_width=2, legend_label="day-ahead forecast")
        fig.scatter(x, daily["forecast_units"].to_numpy(dtype=float), color="#d95f02", size=6, legend_label="day-ahead forecast")
        figs.append(fig)
    figs.append(_skill(data))
    return figs


def _skill(data: RunData) -> Any:
    scores, products = data.events["forecast_score"], np.array(data.catalog.series_product_ids)
    names, model, naive = [], [], []
    for product in data.product_ids:
        mine = scores[products[scores["series"].to_numpy()] == product] if len(scores) else scores
        paired = mine[mine["seasonal_naive_abs_error"].notna()]
        actual, paired_actual = float(mine["actual_units"].sum()), float(paired["actual_units"].sum())
        names.append(product)
        model.append(float(mine["abs_error"].sum()) / actual if actual else np.nan)
        naive.append(float(paired["seasonal_naive_abs_error"].sum()) / paired_actual if paired_actual else np.nan)
    src = ColumnDataSource({"product": names, "model": model, "naive": naive})
    fig = figure(
        title="Forecast error (WAPE) per product: model vs seasonal naive",
        x_range=FactorRange(factors=names),
        height=240,
        sizing_mode="stretch_width",
        tools="save",
        toolbar_location="right",
    )
    fig.add_layout(Legend(location="top_left"), "right")
    fig.vbar(
        x=dodge("product", -0.17, range=fig.x_range),
        top="model",
        width=0.3,
        source=src,
        color="#d95f02",
        legend_label="day-ahead forecast (all scored days)",
    )
    fig.vbar(
        x=dodge("product", 0.17, range=fig.x_range),
        top="naive",
        width=0.3,
        source=src,
        color="#7570b3",
        legend_label="seasonal naive (days with a week of history)",
    )
    fig.yaxis.axis_label = "WAPE"
    if not np.isfinite(naive).any():
        fig.add_layout(
            Label(
                x=10,
                y=10,
                x_units="screen",
                y_units="screen",
                text_font_size="10pt",
                text="seasonal naive needs a week of history: no day of this span can be scored against it, so no skill yet",
            )
        )
    fig.add_tools(HoverTool(tooltips=[("product", "@product"), ("model WAPE", "@model{0.000}"), ("seasonal naive WAPE", "@naive{0.000}")]))
    return fig


def _stockout(data: RunData, x_range: Range1d) -> list[Any]:
    colors, inventory, figs = _colors(data), data.events["inventory"], []
    for product in data.product_ids:
        fig = _time_figure(f"Predicted hours to stockout — {product}", x_range, "hours")
        for r, i, wh in _series_of(data, product):
            mine = inventory[inventory["series"] == i]
            t = mine["time"].to_numpy(dtype=float)
            predicted = mine["predicted_stockout_hours"].to_numpy(dtype=float)  # None -> NaN: a gap
            onsets = np.array([a - 60 for a, _ in _zero_runs(data.minutes, data.on_hand[r])], dtype=float)
            nxt = np.searchsorted(onsets, t, side="left")
            actual = np.full(len(t), np.nan)
            has = nxt < len(onsets)
            actual[has] = (onsets[nxt[has]] - t[has]) / 3600.0
            actual[actual > HORIZON_HOURS] = np.nan
            fig.line(_ms(t), predicted, color=colors[wh], line_width=1.8, legend_label=f"{wh} predicted")
            fig.line(_ms(t), actual, color=colors[wh], line_width=1.4, line_dash="dashed", legend_label=f"{wh} actually emptied in")
            if len(onsets):
                fig.scatter(
                    _ms(onsets),
                    np.zeros(len(onsets)),
                    marker="inverted_triangle",
                    size=11,
                    color=colors[wh],
                    line_color="black",
                    legend_label=f"{wh} shelf emptied",
                )
        figs.append(fig)
    return figs


def _per_product(data: RunData, rows: list[dict[str, Any]]) -> Any:
    products = [r for r in rows if r["level"] == "product"]
    names = [r["product_id"] for r in products]
    src = ColumnDataSource(
        {
            "product": names,
            "reorders": [r["reorders"] for r in products],
            "lost": [r["lost_sales"] for r in products],
            "fill": [np.nan if r["fill_rate"] is None else r["fill_rate"] for r in products],
        }
    )
    figs = []
    for title, column_name, color, label in (
        ("Reorder alerts per product", "reorders", "#1f77b4", "reorder alerts"),
        ("Lost sales per product (units)", "lost", "#d62728", "lost sales"),
        ("Fill rate per product", "fill", "#2ca02c", "fill rate"),
    ):
        fig = figure(
            title=title, x_range=FactorRange(factors=names), height=260, sizing_mode="stretch_width", tools="save", toolbar_location=None
        )
        fig.add_layout(Legend(location="top_left"), "below")
        fig.vbar(x="product", top=column_name, width=0.7, source=src, color=color, legend_label=label)
        fig.xaxis.major_label_orientation = 0.6
        fig.add_tools(HoverTool(tooltips=[("product", "@product"), (label, f"@{column_name}")]))
        if column_name == "fill":
            fig.y_range = Range1d(start=min(0.8, float(np.nanmin(src.data["fill"])) - 0.02) if names else 0.8, end=1.01)
        figs.append(fig)
    return row(*figs, sizing_mode="stretch_width")


def _cell(value: Any, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "pct":
        return f"{value:.1%}"
    if kind == "ratio":
        return f"{value:.3f}"
    if kind == "float":
        return f"{value:,.1f}"
    return f"{value:,}"


def _table(rows: list[dict[str, Any]]) -> str:
    columns: tuple[tuple[str, str, str], ...] = (
        ("product", "product_id", "text"),
        ("warehouse", "warehouse_id", "text"),
        ("units sold", "units_sold", "int"),
        ("lost sales", "lost_sales", "int"),
        ("fill rate", "fill_rate", "pct"),
        ("reorders", "reorders", "int"),
        ("received", "received", "int"),
        ("mean on hand", "mean_on_hand", "float"),
        ("end on hand", "end_on_hand", "int"),
        ("stockout minutes", "stockout_minutes", "int"),
        ("forecast WAPE", "forecast_wape", "ratio"),
        ("skill vs seasonal naive", "forecast_skill", "ratio"),
    )
    if any(r["backordered"] or r["returned"] or r["adjusted"] for r in rows):  # a shop's feeds
        columns = (
            *columns[:4],
            ("backordered", "backordered", "int"),
            *columns[4:7],
            ("returned", "returned", "int"),
            ("stock counts adjusted", "adjusted", "int"),
            *columns[7:],
        )
    head = "".join(f"<th>{html.escape(label)}</th>" for label, _, _ in columns)
    body = []
    for r in rows:
        cells = []
        for _, key, kind in columns:
            text = html.escape(str(r[key])) if kind == "text" else _cell(r[key], kind)
            bad = ' class="bad"' if key in ("lost_sales", "backordered") and r[key] else ""
            cells.append(f'<td data-key="{key}"{bad}>{text}</td>')
        body.append(
            f'<tr class="{r["level"]}" data-product="{html.escape(r["product_id"])}" '
            f'data-warehouse="{html.escape(r["warehouse_id"])}">{"".join(cells)}</tr>'
        )
    return f'<table id="summary-table"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def render_page(data: RunData, rows: list[dict[str, Any]]) -> str:
    x_range = Range1d(start=float(data.start) * 1000, end=float(data.end) * 1000)
    groups = {
        "inventory": _inventory(data, x_range),
        "demand": _demand(data),
        "stockout": _stockout(data, x_range),
        "products": [_per_product(data, rows)],
    }
    doc = Document()
    plots = []
    for name, figs in groups.items():
        root = column(*figs, sizing_mode="stretch_width", name=name)
        doc.add_root(root)
        plots += [p for f in figs for p in ([f] if isinstance(f, figure) else f.children)]
    doc.js_on_event("document_ready", CustomJS(args={"plots": plots}, code=_CHECK_JS))
    span = f"{format_epoch(data.start)} < @timestamp <= {format_epoch(data.end)}"
    products = ", ".join(data.product_ids)
    meta = (
        f"{data.store_url} · business time {format_epoch(data.start)} .. {format_epoch(data.end)} · "
        f"{products} · catalog {data.catalog.fingerprint} · {data.objects_note()}"
    )
    return file_html(
        doc,
        resources=INLINE,
        title="stockpulse report",
        template=_PAGE,
        template_variables={
            "title": "stockpulse report",
            "meta": meta,
            "span": span,
            "damaged": data.damaged_note(),
            "table": _table(rows),
            "sections": SECTIONS,
        },
    )
