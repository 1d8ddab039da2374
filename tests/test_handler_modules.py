"""The entry points: each serves its handler's declaration, and importing the package costs nothing."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from handlers import app
from handlers.model.state import HANDLERS
from handlers.runtime.declarations import DECLARATIONS, parts_of
from tests.support.ticks import START, event_at

HEAVY = ("numpy", "yaml", "prometheus_client", "boto3", "scipy", "sklearn", "pandas")


def imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(__import__('json').dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return {name.split(".")[0] for name in json.loads(out)}


def test_importing_the_package_loads_nothing_heavy():
    """GIVEN a fresh interpreter WHEN the package is imported (as every submodule's import does first)
    THEN none of numpy, PyYAML, prometheus_client, boto3, scipy, scikit-learn, pandas is loaded."""
    assert not imported_after("import handlers") & set(HEAVY)


@pytest.mark.parametrize("handler", ["order_tick", "restock", "alert"])
def test_a_light_handlers_first_call_loads_no_scientific_stack(handler):
    """GIVEN what a light handler's entry point imports THEN no scipy, scikit-learn or pandas (nor
    boto3 for a file:// store) comes with it."""
    loaded = imported_after(f"import handlers.{handler}")
    assert "numpy" in loaded and "prometheus_client" in loaded  # the check can see what is loaded
    assert not loaded & {"scipy", "sklearn", "pandas", "boto3"}


@pytest.mark.parametrize("handler", HANDLERS)
def test_each_entry_point_runs_its_own_handler(handler, tmp_path: Path, monkeypatch):
    """GIVEN a store in the environment, as Lambda configures it WHEN an entry point is called with a
    Scheduled Event THEN it serves its module's declaration and applies that handler's tick."""
    module = importlib.import_module(f"handlers.{handler}")
    assert module.DECLARED is DECLARATIONS[handler]
    monkeypatch.setenv("STOCKPULSE_STORE_URL", f"file://{tmp_path}")
    monkeypatch.setattr(app, "_cached", {})
    result = module.handler(event_at(START), None)
    assert (result["handler"], result["status"]) == (handler, "applied")
    assert (tmp_path / result["log_key"]).is_file()


def test_each_part_of_the_state_is_committed_by_the_handlers_that_read_it():
    """GIVEN the declarations THEN the forecast part is committed by the forecast alone, which reads
    it; every other handler commits the hot part, and only the forecast pools over shards."""
    assert parts_of("forecast") == ("forecast",) and parts_of("hot") == ("order_tick", "restock", "alert")
    for declared in DECLARATIONS.values():
        assert declared.reads_forecast or declared.owns == "hot"
        assert declared.every_seconds % 60 == 0 and declared.metrics and declared.max_lead_seconds > 0
    assert [d.name for d in DECLARATIONS.values() if d.pools] == ["forecast"]
