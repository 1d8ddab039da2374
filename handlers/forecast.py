"""Lambda entry point `handlers.forecast.handler`: Forecast demand, project stock, emit one inventory event per product x warehouse."""

from __future__ import annotations

from typing import Any

from .declaration import Declaration

DECLARED = Declaration(
    name="forecast",
    core="handlers.planning:forecast",
    every_seconds=3600,
    takes_policy=True,
    pools=True,
    metrics=(
        "predicted_stockout_hours",
        "stockout_within_horizon",
        "stockout_probability",
        "demand_forecast_units",
        "reorder_point_units",
        "series_at_risk",
        "series_low_cover",
        "forecast_abs_error_units_total",
        "forecast_actual_units_total",
        "forecast_paired_abs_error_units_total",
        "forecast_seasonal_naive_abs_error_units_total",
        "forecast_wape",
        "forecast_skill_vs_seasonal_naive",
    ),
    summary="Forecast demand, project stock, emit one inventory event per product x warehouse.",
)


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    from .app import handle  # imported on the first call: the package's registry imports this module

    return handle(DECLARED.name, event, context)
