"""The metrics docs/observability.md lists for each handler's group, read from its table, and which of
them an exposition carries (Prometheus text: a metrics file, or a Pushgateway's /metrics)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from handlers.model.state import HANDLERS
from handlers.telemetry.metrics import ONLY_WITH_FEEDS

DOC = Path(__file__).resolve().parent.parent.parent / "docs" / "observability.md"


def documented(feeds: bool = False) -> dict[str, set[str]]:
    """handler -> every metric the table says its group pushes (its own and every handler's); without
    ``feeds``, not those only a store on a shop's feeds exposes (ONLY_WITH_FEEDS)."""
    owned: dict[str, set[str]] = {name: set() for name in HANDLERS}
    for line in DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not cells[0].startswith("`"):
            continue
        names = set(re.findall(r"`([a-z_]+)`", cells[0]))
        for handler in HANDLERS if cells[3] == "every handler" else [cells[3]]:
            owned[handler] |= names if feeds else names - ONLY_WITH_FEEDS
    return owned


def with_samples(text: str, **labels: str) -> set[str]:
    """The metrics of an exposition that carry at least one sample (whose labels include ``labels``):
    a histogram by its ``_bucket`` samples, everything else by a sample of its own name."""
    found = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if all(sample.labels.get(k) == v for k, v in labels.items()):
                found.add(sample.name.removesuffix("_bucket") if family.type == "histogram" else sample.name)
    return found


#: A catalog where every documented metric has data within days: stock runs out within hours, so
#: stockouts are projected inside the horizon, and ten days score forecasts against seasonal naive.
BUSY = """seed: 11
products:
  - {id: FAST, base_demand_per_day: 2000, lead_time_hours: 0.1, pack_size: 5}
  - {id: SLOW, base_demand_per_day: 300, lead_time_hours: 0.1, pack_size: 5}
warehouses: [{id: W1, timezone: Europe/Berlin}, {id: W2, timezone: America/Chicago}]
initial_stock: 8
"""
EVERY = ("--every", "order_tick=15m", "--every", "restock=1h", "--every", "forecast=6h", "--every", "alert=1h")


def simulate_run_skip(root: Path, *options: str) -> Iterator[str]:
    """The commands whose publishes must never expose less than the last committed invocations did:
    ``simulate --days 10`` (which publishes every group once at the end), ``run`` (every applied
    invocation publishes) and an ``invoke`` of a tick already applied (skipped). Yields each step's
    name once it ran (``options``: the store, a Pushgateway)."""
    from tests.support.cli import cli

    catalog = root / "busy.yaml"
    catalog.write_text(BUSY)
    common = ("--catalog", str(catalog), *options)
    steps = {
        "simulate": ("simulate", "--days", "10", "--quiet", *EVERY),
        "run": ("run", "--speed", "10800", "--for", "3s", *EVERY),
        "skipped invoke": ("invoke", "forecast", "--time", "2026-01-15T00:00:00Z"),
    }
    for name, args in steps.items():
        proc = cli(*args, *common)
        assert proc.returncode == 0, (name, proc.stderr[-2000:])
        if name == "skipped invoke":
            assert '"status": "skipped"' in proc.stdout, proc.stdout
        yield name
