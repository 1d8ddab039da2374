"""The Lambda entry points, configured only by the environment as Lambda configures them:
state and logs on S3 (a real moto server, endpoint from the standard AWS_ENDPOINT_URL)."""

from __future__ import annotations

import importlib

import pytest

import handlers.app as app
from handlers.model.logs import decode_events
from handlers.model.state import HANDLERS
from handlers.storage.location import open_store
from tests.support.ticks import START, event_at


@pytest.fixture
def lambda_env(moto_s3, monkeypatch):
    url = moto_s3.bucket_url("shop/")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_s3.endpoint_url)
    monkeypatch.setenv("STOCKPULSE_STORE_URL", url)
    monkeypatch.delenv("STOCKPULSE_PUSHGATEWAY_URL", raising=False)
    monkeypatch.setattr(app, "_cached", {})  # a cold start
    yield url
    monkeypatch.setattr(app, "_cached", {})


def test_each_handler_module_runs_on_s3_from_the_environment(lambda_env):
    """GIVEN only STOCKPULSE_STORE_URL=s3://... and AWS_ENDPOINT_URL WHEN each handler module's
    handler(event, context) runs THEN it applies, and state, logs and metrics land in the bucket."""
    results = {}
    for minute, name in enumerate(("restock", "order_tick", "forecast", "alert"), start=1):
        module = importlib.import_module(f"handlers.{name}")
        results[name] = module.handler(event_at(START.replace(hour=9, minute=minute)), None)
    assert {r["status"] for r in results.values()} == {"applied"}
    store = open_store(lambda_env)
    keys = list(store.list(""))
    assert "state/state.bin" in keys
    assert {f"metrics/{name}.prom" for name in HANDLERS} <= set(keys)
    logs = [k for k in keys if k.startswith("logs/")]
    assert len(logs) == 4
    inventory = [e for e in decode_events(store.get(results["forecast"]["log_key"])) if e["type"] == "inventory"]
    assert len(inventory) == 15


def test_a_redelivered_event_is_a_no_op_on_s3(lambda_env):
    from handlers.order_tick import handler

    event = event_at(START.replace(hour=9, minute=1))
    assert handler(event, None)["status"] == "applied"
    assert handler({**event, "id": "another-delivery"}, None)["status"] == "skipped"
    assert len(list(open_store(lambda_env).list("logs/"))) == 1


def test_bad_configuration_fails_at_start_naming_the_variable(monkeypatch):
    """GIVEN an invalid setting WHEN the first invocation builds its clients THEN it names the variable."""
    from handlers.errors import ConfigError
    from handlers.order_tick import handler

    monkeypatch.setattr(app, "_cached", {})
    monkeypatch.setenv("STOCKPULSE_SERVICE_LEVEL", "high")
    with pytest.raises(ConfigError, match="STOCKPULSE_SERVICE_LEVEL"):
        handler(event_at(START), None)
    monkeypatch.setattr(app, "_cached", {})
