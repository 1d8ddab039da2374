"""The deployed roles allow what each function really does — checked against every storage call of
a two-day run of the real handlers, not against a list kept by hand, unsharded, with the catalog
in 3 shards, and with it in 3 shards kept in the store (``STOCKPULSE_CATALOG=store:...``, each
process loading its shard's catalog from there). (LocalStack's free edition does not enforce IAM,
so this is where a missing permission shows before AWS refuses it.)

Each function is its own process on Lambda, and a process's first invocation reads the shard
manifest (the first sharded invocation of a store writes it): the runs below start a "new
process" at each handler's first invocation, and each handler also runs first on an empty store."""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from handlers.errors import ConfigError
from handlers.model.catalog import Catalog, parse_catalog
from handlers.model.state import HANDLERS
from handlers.runtime import layout, shards
from handlers.runtime.catalogs import compiled_key, default_catalog, load_compiled, source_key, store_reference
from handlers.runtime.invoke import Runtime, invoke, invoke_all
from handlers.runtime.settings import Settings
from handlers.storage.location import open_store
from handlers.telemetry.publisher import publisher
from jobs.deploy import Target, role_policy
from jobs.schedule import Schedule
from tests.support.crash import BUSY_CATALOG
from tests.support.ticks import event_at

pytestmark = [
    pytest.mark.xdist_group("deploy_policy"),  # one worker records the runs once
    pytest.mark.slow,
]  # hours of every handler, each call recorded

NUM_SHARDS = 3
#: 12 products: every one of 3 shards holds some (checked below)
SHARDED_CATALOG = (
    "seed: 7\nproducts:\n"
    + "".join(
        f"  - {{id: SKU-{n:03d}, base_demand_per_day: {20 + 5 * n}, lead_time_hours: {12 + 6 * (n % 4)}, pack_size: 10}}\n"
        for n in range(12)
    )
    + "warehouses:\n  - {id: WH-A, timezone: Europe/Berlin}\n  - {id: WH-B, timezone: America/Chicago}\n"
)

#: the S3 action each Store method needs (storage_s3.py: HEAD for exists/matches, conditional PUTs)
ACTIONS = {
    "read": "s3:GetObject",
    "get": "s3:GetObject",
    "get_prefix": "s3:GetObject",
    "exists": "s3:GetObject",
    "matches": "s3:GetObject",
    "write": "s3:PutObject",
    "put_once": "s3:PutObject",
    "replace": "s3:PutObject",
    "list": "s3:ListBucket",
    "scan": "s3:ListBucket",
    "delete": "s3:DeleteObject",
}
FEED = "feed:"  # a recorded key of a feed's store: feed:<kind>:<key>


class RecordingStore:
    """Passes every call to the store it wraps and records (handler, S3 action, key)."""

    def __init__(
        self, inner: Any, *, feed: str | None = None, calls: set[tuple[str, str, str]] | None = None, handler: list[str] | None = None
    ) -> None:
        self.inner, self.url, self.feed = inner, inner.url, feed
        self.calls: set[tuple[str, str, str]] = set() if calls is None else calls
        self._handler = handler if handler is not None else [""]

    @property
    def handler(self) -> str:
        return self._handler[0]

    @handler.setter
    def handler(self, value: str) -> None:
        self._handler[0] = value

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if name not in ACTIONS:
            return method

        def recorded(key: str, *args: Any, **kwargs: Any) -> Any:
            self.calls.add((self.handler, ACTIONS[name], key if self.feed is None else f"{FEED}{self.feed}:{key}"))
            result = method(key, *args, **kwargs)
            return list(result) if isinstance(result, Iterator) else result

        return recorded


def allowed(policy: dict[str, Any], action: str, arn: str, listed: str | None = None) -> bool:
    """Whether ``policy`` allows ``action`` on ``arn`` (a ``ListBucket`` of prefix ``listed``: within the
    statement's ``s3:prefix`` condition, when it has one)."""

    def condition(statement: dict[str, Any]) -> bool:
        prefixes = statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
        return prefixes is None or (listed is not None and any(fnmatch.fnmatchcase(listed, p) for p in prefixes))

    return any(
        statement["Effect"] == "Allow"
        and action in statement["Action"]
        and any(fnmatch.fnmatchcase(arn, pattern) for pattern in statement["Resource"])
        and condition(statement)
        for statement in policy["Statement"]
    )


#: The runs' schedule: every handler at least every 15 minutes. An order tick then catches up 15 minutes
#: at once, which makes the same kinds of storage calls as one a minute (the same objects, deltas, bases,
#: prunes), in a sixth of the invocations.
SPARSE = Schedule.parse(["order_tick=15m", "restock=15m"])


def new_process() -> None:
    """What a new Lambda process has not done yet: its first invocation's manifest check."""
    shards.forget_checks()
    layout.forget()


def cold() -> None:
    """Before each invocation: each function is a process of its own (it has not materialised the
    hot part another function committed) — the calls of the coldest process."""
    layout.forget()


def run(url: str, catalog: Catalog, num_shards: int, *, start: datetime, hours: int) -> set[tuple[str, str, str]]:
    """Every handler on its schedule for ``hours`` from ``start``, every shard of each tick,
    metrics written to the store as a function without a Pushgateway does; and, on an empty store
    of its own, each handler as the very first invocation."""
    store = RecordingStore(open_store(url))
    runtime = Runtime(
        store=store, catalog=catalog, num_shards=num_shards, publish=publisher(Settings(store_url=url, num_shards=num_shards), store=store)
    )
    schedule = SPARSE
    started: set[str] = set()
    for minute in range(1, hours * 60 + 1):
        moment = start + timedelta(minutes=minute)
        for handler in schedule.due(int(moment.timestamp())):
            if handler not in started:
                started.add(handler)
                new_process()
            store.handler = handler
            cold()
            results = invoke_all(handler, event_at(moment), runtime)
            assert {result["status"] for result in results} == {"applied"}
    for handler in HANDLERS:
        first = RecordingStore(open_store(f"{url}-first-{handler}"))
        first.handler = handler
        new_process()
        invoke_all(handler, event_at(start), Runtime(store=first, catalog=catalog, num_shards=num_shards))
        store.calls |= first.calls
    return store.calls


def days_closing(url: str, catalog: Catalog, num_shards: int) -> set[tuple[str, str, str]]:
    """Order ticks every 3 hours for 4 days: the third day to close deletes the first history
    object (handlers/runtime/layout.py ``prune_history``), which the runs above are too short to reach."""
    store = RecordingStore(open_store(url))
    store.handler = "order_tick"
    runtime = Runtime(store=store, catalog=catalog, num_shards=num_shards)
    start = datetime(2026, 1, 5, tzinfo=timezone.utc)
    for hours in range(1, 4 * 24 + 1, 3):
        cold()
        results = invoke_all("order_tick", event_at(start + timedelta(hours=hours)), runtime)
        assert {result["status"] for result in results} == {"applied"}
    assert any(action == "s3:DeleteObject" for _, action, _ in store.calls)
    return store.calls


@pytest.fixture(scope="module")
def calls(tmp_path_factory) -> set[tuple[str, str, str]]:
    """Two business days (a day closes, forecasts are scored), and four days of order ticks."""
    return run(
        f"file://{tmp_path_factory.mktemp('store')}", default_catalog(), 1, start=datetime(2026, 1, 5, tzinfo=timezone.utc), hours=48
    ) | days_closing(f"file://{tmp_path_factory.mktemp('closing')}", default_catalog(), 1)


@pytest.fixture(scope="module")
def sharded_calls(tmp_path_factory) -> set[tuple[str, str, str]]:
    catalog = parse_catalog(SHARDED_CATALOG, source="sharded.yaml")
    assert not [part for part in shards.split(catalog, NUM_SHARDS) if part.empty]
    # 12 hours across midnight (a day closes in every shard): each shard is a store of its own
    return run(
        f"file://{tmp_path_factory.mktemp('sharded')}", catalog, NUM_SHARDS, start=datetime(2026, 1, 5, 18, tzinfo=timezone.utc), hours=12
    ) | days_closing(f"file://{tmp_path_factory.mktemp('sharded-closing')}", catalog, NUM_SHARDS)


def run_store_catalog(url: str, text: str, num_shards: int, *, start: datetime, hours: int) -> set[tuple[str, str, str]]:
    """As the deployed functions run with ``STOCKPULSE_CATALOG=store:catalogs/source/<sha>.yaml``
    (handlers/app.py): each handler's process per shard loads its catalog through ``load_compiled``
    from the store, then handles its shard's ticks. The store starts with the source object only
    (someone uploaded the YAML alone), so the first process compiles and stores every form and
    the later ones read their shard's; and on an empty store of its own, each handler first."""
    data = text.encode()
    reference = store_reference(data)

    def process(store: RecordingStore, handler: str, k: int) -> Runtime:
        new_process()
        store.handler = handler
        catalog = load_compiled(reference, store, shard=(k, num_shards))
        return Runtime(
            store=store,
            catalog=catalog,
            num_shards=num_shards,
            shard=k,
            publish=publisher(Settings(store_url=store.url, num_shards=num_shards), store=store),
        )

    store = RecordingStore(open_store(url))
    store.inner.put_once(source_key(data), data)
    schedule = Schedule.parse()  # two hours: a minute apart, enough commits to prune a base
    runtimes: dict[tuple[str, int], Runtime] = {}
    for minute in range(1, hours * 60 + 1):
        moment = start + timedelta(minutes=minute)
        for handler in schedule.due(int(moment.timestamp())):
            for k in range(num_shards):
                if (handler, k) not in runtimes:
                    runtimes[handler, k] = process(store, handler, k)
                store.handler = handler
                cold()
                result = invoke(handler, event_at(moment, detail={"shard": k}), runtimes[handler, k])
                assert result["status"] == "applied", result
    for handler in HANDLERS:
        first = RecordingStore(open_store(f"{url}-first-{handler}"))
        first.inner.put_once(source_key(data), data)
        invoke(handler, event_at(start, detail={"shard": 0}), process(first, handler, 0))
        store.calls |= first.calls
    return store.calls


@pytest.fixture(scope="module")
def store_catalog_calls(tmp_path_factory) -> set[tuple[str, str, str]]:
    """The sharded catalog kept in the store: 2 hours across midnight."""
    return run_store_catalog(
        f"file://{tmp_path_factory.mktemp('referenced')}",
        SHARDED_CATALOG,
        NUM_SHARDS,
        start=datetime(2026, 1, 5, 23, tzinfo=timezone.utc),
        hours=2,
    ) | days_closing(f"file://{tmp_path_factory.mktemp('referenced-closing')}", parse_catalog(SHARDED_CATALOG), NUM_SHARDS)


def store_catalog_target(prefix: str = "") -> Target:
    return Target(
        name="shop",
        bucket="shop-store",
        prefix=prefix,
        environment={"STOCKPULSE_NUM_SHARDS": str(NUM_SHARDS), "STOCKPULSE_CATALOG": store_reference(SHARDED_CATALOG.encode())},
    )


def refused_calls(calls: set[tuple[str, str, str]], target: Target, policy_of: Any = role_policy) -> dict[str, set[tuple[str, str]]]:
    refused = defaultdict(set)
    for handler, action, key in calls:
        where, prefix, name = f"arn:aws:s3:::{target.bucket}", target.key_prefix, key
        if key.startswith(FEED):  # a feed's object, in the feed's own bucket and prefix
            kind, name = key[len(FEED) :].split(":", 1)
            if kind not in target.feeds:
                refused[handler].add((action, key))
                continue
            where, prefix = f"arn:aws:s3:::{target.feeds[kind][0]}", target.feeds[kind][1]
        arn = where if action == "s3:ListBucket" else f"{where}/{prefix}{name}"
        if not allowed(policy_of(target, handler, account="123456789012"), action, arn, listed=prefix + name):
            refused[handler].add((action, key))
    return dict(refused)


def test_the_run_exercised_every_handler_and_every_kind_of_object(calls):
    assert {handler for handler, _, _ in calls} == set(HANDLERS)
    keys = {key for _, _, key in calls}
    assert {"state/state.bin", "state/forecast.bin"} <= keys
    assert [key for key in keys if key.startswith("state/history/")]
    assert [key for key in keys if key.startswith("logs/")]
    assert {f"metrics/{handler}.prom" for handler in HANDLERS} <= keys


@pytest.mark.parametrize("prefix", ["", "shop/"])
def test_each_role_allows_every_call_its_function_made(calls, prefix):
    assert not refused_calls(calls, Target(name="shop", bucket="shop-store", prefix=prefix))


def test_the_sharded_run_exercised_every_shard_and_every_kind_of_object(sharded_calls):
    assert {handler for handler, _, _ in sharded_calls} == set(HANDLERS)
    keys = {key for _, _, key in sharded_calls}
    for k in range(NUM_SHARDS):
        assert {f"shards/{k}/state/state.bin", f"shards/{k}/state/forecast.bin"} <= keys
        assert [key for key in keys if key.startswith(f"shards/{k}/state/history/")]
        assert [key for key in keys if key.startswith("logs/") and key.endswith(f"-shard-{k}.ndjson.gz")]
        assert {f"metrics/{handler}/shard/{k}.prom" for handler in HANDLERS} <= keys
    assert {(handler, "s3:PutObject", "state/shards.json") for handler in HANDLERS} <= sharded_calls
    assert {(handler, "s3:GetObject", "state/shards.json") for handler in HANDLERS} <= sharded_calls
    # of the unsharded keys only the manifest, and the state the manifest's first check looks for
    assert {key for key in keys if key.startswith("state/")} == {"state/shards.json", "state/state.bin"}


@pytest.mark.parametrize("prefix", ["", "shop/"])
def test_each_sharded_role_allows_every_call_its_function_made(sharded_calls, prefix):
    target = Target(name="shop", bucket="shop-store", prefix=prefix, environment={"STOCKPULSE_NUM_SHARDS": str(NUM_SHARDS)})
    assert not refused_calls(sharded_calls, target)


def test_the_store_catalog_run_read_the_source_once_then_the_compiled_forms(store_catalog_calls):
    data = SHARDED_CATALOG.encode()
    catalog_calls = {(handler, action, key) for handler, action, key in store_catalog_calls if key.startswith("catalogs/")}
    assert {handler for handler, _, _ in catalog_calls} == set(HANDLERS)
    assert {(handler, "s3:GetObject", source_key(data)) for handler in HANDLERS} <= catalog_calls  # the misses
    for k in range(NUM_SHARDS):
        assert ("order_tick", "s3:PutObject", compiled_key(data, (k, NUM_SHARDS))) in catalog_calls
        assert ("alert", "s3:GetObject", compiled_key(data, (k, NUM_SHARDS))) in catalog_calls
    assert ("order_tick", "s3:PutObject", compiled_key(data)) in catalog_calls


@pytest.mark.parametrize("prefix", ["", "shop/"])
def test_each_role_allows_every_call_its_function_made_with_the_catalog_in_the_store(store_catalog_calls, prefix):
    assert not refused_calls(store_catalog_calls, store_catalog_target(prefix))


def test_without_the_catalog_statements_the_store_catalog_calls_are_refused(store_catalog_calls):
    """The check above can fail: the same calls against roles lacking either catalog statement
    (or made for the built-in catalog) are refused."""
    target = store_catalog_target()
    for sid in ("CatalogSource", "CompiledCatalog"):

        def lacking(target: Target, handler: str, *, account: str, _sid: str = sid) -> dict[str, Any]:
            policy = role_policy(target, handler, account=account)
            return {**policy, "Statement": [s for s in policy["Statement"] if s["Sid"] != _sid]}

        refused = refused_calls(store_catalog_calls, target, lacking)
        assert set(refused) == set(HANDLERS)
        assert all(key.startswith("catalogs/") for keys in refused.values() for _, key in keys)
    builtin = Target(name="shop", bucket="shop-store", environment={"STOCKPULSE_NUM_SHARDS": str(NUM_SHARDS)})
    assert set(refused_calls(store_catalog_calls, builtin)) == set(HANDLERS)


def without(policy: dict[str, Any], sid: str, action: str, resource: str) -> dict[str, Any]:
    """``policy`` with ``action`` on ``resource`` taken out of statement ``sid``."""
    statements = []
    for statement in policy["Statement"]:
        if statement["Sid"] != sid:
            statements.append(statement)
            continue
        rest = [r for r in statement["Resource"] if r != resource]
        others = [a for a in statement["Action"] if a != action]
        statements += [{**statement, "Resource": rest}] if rest else []
        statements += [{**statement, "Action": others, "Resource": [resource]}] if others else []
    return {**policy, "Statement": statements}


@pytest.mark.parametrize("run", ["unsharded", "sharded", "store catalog"])
def test_every_s3_grant_of_the_roles_is_needed_by_some_call(calls, sharded_calls, store_catalog_calls, run):
    """GIVEN the roles with one S3 action on one resource taken out WHEN the recorded calls are
    checked against them THEN some call is refused: no grant is there for nothing, and the check
    above fails when a needed statement is missing."""
    recorded = {"unsharded": calls, "sharded": sharded_calls, "store catalog": store_catalog_calls}[run]
    target = (
        store_catalog_target()
        if run == "store catalog"
        else Target(name="shop", bucket="shop-store", environment={"STOCKPULSE_NUM_SHARDS": str(1 if run == "unsharded" else NUM_SHARDS)})
    )
    unneeded = []
    for statement in role_policy(target, "order_tick", account="123456789012")["Statement"]:
        if statement["Sid"] in ("OwnLogGroup", "NotFoundIsNotForbidden"):
            continue  # CloudWatch Logs, and 404 rather than 403: no storage call of their own
        for resource in statement["Resource"]:
            for action in statement["Action"]:

                def reduced(
                    target: Target, handler: str, *, account: str, _s: str = statement["Sid"], _a: str = action, _r: str = resource
                ) -> dict[str, Any]:
                    policy = role_policy(target, handler, account=account)
                    if _s == "Metrics":  # each role's own metrics key
                        _r = next(s for s in policy["Statement"] if s["Sid"] == "Metrics")["Resource"][0]
                    return without(policy, _s, _a, _r)

                if not refused_calls(recorded, target, reduced):
                    unneeded.append((statement["Sid"], action, resource))
    assert not unneeded


def test_no_role_may_write_another_functions_metrics(calls):
    target = Target(name="shop", bucket="shop-store")
    for handler in HANDLERS:
        policy = role_policy(target, handler, account="123456789012")
        for other in HANDLERS:
            arn = f"arn:aws:s3:::shop-store/metrics/{other}.prom"
            assert allowed(policy, "s3:PutObject", arn) is (other == handler)


# -- a shop's feeds (handlers/runtime/feeds.py) --------------------------------------------------------

FEED_TARGET_ENV = {
    "STOCKPULSE_ORDERS_URL": "s3://shop-feeds/orders",
    "STOCKPULSE_RECEIPTS_URL": "s3://shop-feeds/in",
    "STOCKPULSE_COUNTS_URL": "s3://shop-counts",
}


@pytest.fixture(scope="module")
def feed_calls(tmp_path_factory) -> set[tuple[str, str, str]]:
    """Six hours on a shop's three feeds (orders, a receipt, a count), journals kept and pruned, every
    handler's calls recorded — the feeds' as ``feed:<kind>:<key>``."""
    from handlers.runtime.feeds import Feeds
    from tests.support.feeds import line, ndjson, put

    root = tmp_path_factory.mktemp("feeds")
    url = f"file://{root / 'store'}"
    handler = [""]
    store = RecordingStore(open_store(url), handler=handler)
    feeds = {
        kind: RecordingStore(open_store(f"file://{root / kind}"), feed=kind, calls=store.calls, handler=handler)
        for kind in ("orders", "receipts", "counts")
    }
    start = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)
    catalog = BUSY_CATALOG  # purchase orders land within minutes: restock moves stock, and journals it
    for hour in range(6):
        at = start + timedelta(hours=hour)
        put(
            feeds["orders"].inner,
            at,
            f"o{hour}.ndjson",
            ndjson([line(f"o{hour}-{n}", at + timedelta(minutes=n), product="FAST", warehouse="W1", quantity=3) for n in range(0, 60, 7)]),
        )
    put(
        feeds["receipts"].inner,
        start,
        "r.ndjson",
        ndjson([line("r1", start + timedelta(minutes=30), product="FAST", warehouse="W1", quantity=5)]),
    )
    count = {k: v for k, v in line("c1", start + timedelta(hours=2), product="SLOW", warehouse="W2").items() if k != "quantity"}
    put(feeds["counts"].inner, start + timedelta(hours=3), "c.ndjson", ndjson([{**count, "on_hand": 50}]))
    runtime = Runtime(store=store, catalog=catalog, feeds=Feeds(feeds), publish=publisher(Settings(store_url=url), store=store))
    schedule = Schedule.parse(["order_tick=5m"])
    started: set[str] = set()
    for minute in range(1, 6 * 60 + 1):
        moment = start + timedelta(minutes=minute)
        for name in schedule.due(int(moment.timestamp())):
            if name not in started:
                started.add(name)
                new_process()
            store.handler = name
            cold()
            assert invoke(name, event_at(moment), runtime)["status"] == "applied"
    assert any(action == "s3:DeleteObject" and key.startswith("state/feed/") for _, action, key in store.calls)
    return store.calls


def feed_target(prefix: str = "") -> Target:
    return Target(name="shop", bucket="shop-store", prefix=prefix, environment=FEED_TARGET_ENV)


def test_the_feed_run_read_every_feed_and_kept_journals(feed_calls):
    keys = {(handler, key.split(":")[1]) for handler, _, key in feed_calls if key.startswith(FEED)}
    assert keys == {("order_tick", "orders"), ("order_tick", "receipts"), ("order_tick", "counts")}
    assert {handler for handler, _, key in feed_calls if key.startswith("state/feed/")} >= {"order_tick", "restock"}


@pytest.mark.parametrize("prefix", ["", "shop/"])
def test_each_role_allows_every_call_its_function_made_on_feeds(feed_calls, prefix):
    assert not refused_calls(feed_calls, feed_target(prefix))


def test_only_the_order_tick_may_read_the_feeds_and_none_may_write_them():
    """GIVEN feeds WHEN the roles are made THEN only order_tick's may read them, listing only their
    prefixes; no role may write or delete a feed's object; without feeds no role names them."""
    target = feed_target()
    for handler in HANDLERS:
        policy = role_policy(target, handler, account="123456789012")
        for bucket, prefix in target.feeds.values():
            arn = f"arn:aws:s3:::{bucket}/{prefix}2026/01/05/09/o.ndjson"
            assert allowed(policy, "s3:GetObject", arn) is (handler == "order_tick")
            assert not allowed(policy, "s3:PutObject", arn) and not allowed(policy, "s3:DeleteObject", arn)
            assert allowed(policy, "s3:ListBucket", f"arn:aws:s3:::{bucket}", f"{prefix}2026/") is (handler == "order_tick")
        assert not allowed(policy, "s3:ListBucket", "arn:aws:s3:::shop-feeds", "elsewhere/")
    plain = Target(name="shop", bucket="shop-store")
    assert not any("Feed" in s["Sid"] for h in HANDLERS for s in role_policy(plain, h, account="123456789012")["Statement"])


@pytest.mark.parametrize("url", ["file:///tmp/orders", "s3://shop-feeds/or*ders", "s3://Bad_Bucket/x"])
def test_a_feed_a_function_cannot_read_or_that_would_widen_an_arn_is_refused(url):
    with pytest.raises(ConfigError, match="STOCKPULSE_ORDERS_URL"):
        Target(name="shop", bucket="shop-store", environment={"STOCKPULSE_ORDERS_URL": url})


def test_every_feed_grant_is_needed_by_some_call(feed_calls):
    """The check above can fail: without any one of the feed statements, some recorded call is refused."""
    target = feed_target()
    for handler in ("order_tick", "restock"):
        for statement in role_policy(target, handler, account="123456789012")["Statement"]:
            if "Feed" not in statement["Sid"]:
                continue

            def lacking(target: Target, name: str, *, account: str, _sid: str = statement["Sid"]) -> dict[str, Any]:
                policy = role_policy(target, name, account=account)
                return {**policy, "Statement": [s for s in policy["Statement"] if s["Sid"] != _sid]}

            assert refused_calls(feed_calls, target, lacking), statement["Sid"]
