"""Generated catalogs: many products over a few warehouses, for sharding and compiled-catalog tests."""

from __future__ import annotations

import numpy as np

from handlers.model.catalog import Catalog, parse_catalog


def catalog_text(products: int = 24, *, seed: int = 3) -> str:
    """A shop whose shelves run low within hours: reorders, purchase orders, restocks and lost sales
    all happen on the first day."""
    rng = np.random.default_rng(seed)
    lines = [f"seed: {seed}", "products:"]
    for i in range(products):
        lines.append(
            f"  - {{id: SKU-{i:03d}, base_demand_per_day: {int(rng.integers(60, 400))}, "
            f"lead_time_hours: {int(rng.choice([4, 6, 8]))}, pack_size: {int(rng.choice([1, 5, 10]))}}}"
        )
    lines += [
        "warehouses:",
        "  - {id: W-A, timezone: America/New_York}",
        "  - {id: W-B, timezone: Europe/Berlin, demand_factor: 0.6}",
        "initial_stock: 25",
    ]
    return "\n".join(lines) + "\n"


def make_catalog(products: int = 24, *, seed: int = 3) -> Catalog:
    return parse_catalog(catalog_text(products, seed=seed), source="shards.yaml")
