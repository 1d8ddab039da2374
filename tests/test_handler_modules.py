"""Handler modules: one hop from the entry point to its declaration, and cheap to import."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from handlers.runtime.declarations import DECLARATIONS

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
    """GIVEN what a light handler's first call imports (the app and the metrics) THEN no scipy,
    scikit-learn or pandas (nor boto3 for a file:// store) comes with it."""
    loaded = imported_after(f"import handlers.{handler}, handlers.app, handlers.telemetry.metrics")
    assert "numpy" in loaded and "prometheus_client" in loaded  # the check can see what is loaded
    assert not loaded & {"scipy", "sklearn", "pandas", "boto3"}


def test_each_module_declares_its_own_name_and_a_core_that_exists():
    """GIVEN the declarations THEN each names its module, and its core loads as a function."""
    for name, declared in DECLARATIONS.items():
        module = importlib.import_module(f"handlers.{name}")
        assert module.DECLARED is declared and declared.name == name
        assert callable(declared.load_core())
        assert declared.every_seconds % 60 == 0 and declared.metrics
