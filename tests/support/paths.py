"""Demand paths for the projection and policy tests."""

from __future__ import annotations

import numpy as np

from handlers.model.projection import DemandPath, demand_path

NOW = 20_000 * 86400.0  # midnight UTC


def flat_path(per_hour: float, series: int = 1, std_per_day: float = 0.0) -> DemandPath:
    """Demand of ``per_hour`` units every hour for 8 days."""
    mean = np.full((series, 8), per_hour * 24)
    return demand_path(mean, np.full((series, 8), std_per_day), np.full((series, 24), 1 / 24), 20_000, NOW)
