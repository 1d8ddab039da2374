"""The deployed roles allow what each function really does — checked against every storage call of
a two-day run of the real handlers, not against a list kept by hand. (LocalStack's free edition
does not enforce IAM, so this is where a missing permission shows before AWS refuses it.)"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from handlers import HANDLERS
from handlers.catalog import default_catalog
from handlers.metrics import publisher
from handlers.runtime import Runtime, invoke
from handlers.settings import Settings
from handlers.storage import open_store
from jobs.deploy import Target, role_policy
from jobs.schedule import Schedule
from tests.conftest import event_at

#: the S3 action each Store method needs (storage_s3.py: HEAD for exists/matches, conditional PUTs)
ACTIONS = {"read": "s3:GetObject", "get": "s3:GetObject", "exists": "s3:GetObject", "matches": "s3:GetObject",
           "write": "s3:PutObject", "put_once": "s3:PutObject", "replace": "s3:PutObject", "list": "s3:ListBucket"}


class RecordingStore:
    """Passes every call to the store it wraps and records (handler, S3 action, key)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.url, self.handler = inner, inner.url, ""
        self.calls: set[tuple[str, str, str]] = set()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if name not in ACTIONS:
            return method

        def recorded(key: str, *args: Any, **kwargs: Any) -> Any:
            self.calls.add((self.handler, ACTIONS[name], key))
            result = method(key, *args, **kwargs)
            return list(result) if isinstance(result, Iterator) else result
        return recorded


def allowed(policy: dict[str, Any], action: str, arn: str) -> bool:
    return any(statement["Effect"] == "Allow" and action in statement["Action"]
               and any(fnmatch.fnmatchcase(arn, pattern) for pattern in statement["Resource"])
               for statement in policy["Statement"])


@pytest.fixture(scope="module")
def calls(tmp_path_factory) -> set[tuple[str, str, str]]:
    """Two business days of every handler on its schedule (a day closes, forecasts are scored),
    metrics written to the store as a function without a Pushgateway does."""
    url = f"file://{tmp_path_factory.mktemp('store')}"
    store = RecordingStore(open_store(url))
    runtime = Runtime(store=store, catalog=default_catalog(),
                      publish=publisher(Settings(store_url=url), store=store))
    schedule = Schedule.parse()
    start = datetime(2026, 1, 5, tzinfo=timezone.utc)
    for minute in range(1, 2 * 1440 + 1):
        moment = start + timedelta(minutes=minute)
        for handler in schedule.due(int(moment.timestamp())):
            store.handler = handler
            assert invoke(handler, event_at(moment), runtime)["status"] == "applied"
    return store.calls


def test_the_run_exercised_every_handler_and_every_kind_of_object(calls):
    assert {handler for handler, _, _ in calls} == set(HANDLERS)
    keys = {key for _, _, key in calls}
    assert {"state/state.bin", "state/forecast.bin"} <= keys
    assert [key for key in keys if key.startswith("state/history/")]
    assert [key for key in keys if key.startswith("logs/")]
    assert {f"metrics/{handler}.prom" for handler in HANDLERS} <= keys


@pytest.mark.parametrize("prefix", ["", "shop/"])
def test_each_role_allows_every_call_its_function_made(calls, prefix):
    target = Target(name="shop", bucket="shop-store", prefix=prefix)
    refused = defaultdict(set)
    for handler, action, key in calls:
        arn = "arn:aws:s3:::shop-store" if action == "s3:ListBucket" else f"arn:aws:s3:::shop-store/{prefix}{key}"
        if not allowed(role_policy(target, handler, account="123456789012"), action, arn):
            refused[handler].add((action, key))
    assert not refused, dict(refused)


def test_no_role_may_write_another_functions_metrics(calls):
    target = Target(name="shop", bucket="shop-store")
    for handler in HANDLERS:
        policy = role_policy(target, handler, account="123456789012")
        for other in HANDLERS:
            arn = f"arn:aws:s3:::shop-store/metrics/{other}.prom"
            assert allowed(policy, "s3:PutObject", arn) is (other == handler)
