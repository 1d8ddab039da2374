"""Sharding (handlers/runtime/shards.py): the split, the keys a shard uses, the store's manifest, and the
promise that a sharded run gives the same per-series results and log events as an unsharded one."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from handlers.errors import ConfigError, InputError
from handlers.forecasting import model as forecasting
from handlers.model.catalog import Catalog
from handlers.model.logs import decode_events
from handlers.model.state import State
from handlers.runtime import pool, shards
from handlers.runtime.invoke import Runtime, invoke, invoke_all, load_state
from handlers.storage.file import FileStore
from tests.support.catalogs import catalog_text, make_catalog
from tests.support.ticks import START, event_at, schedule, zero_clock

EVERY = {"order_tick": 5, "restock": 10, "forecast": 60, "alert": 15}
# The replays of several days: every forecast (hourly, the pooled fit's input), a sixth of the order ticks.
DAYS_EVERY = {"order_tick": 30, "restock": 30, "forecast": 60, "alert": 30}
# The command line's simulate: the scheduler's own --every, a tenth of the default order ticks.
CLI_EVERY = ("--every", "order_tick=10m", "--every", "restock=10m", "--every", "alert=30m")


def replay(store: FileStore, catalog: Catalog, num_shards: int, minutes: int, every: dict[str, int] = EVERY) -> Runtime:
    runtime = Runtime(store=store, catalog=catalog, clock=zero_clock, num_shards=num_shards)
    for name, moment in schedule(START, minutes, every):
        for result in invoke_all(name, event_at(moment, id=f"t-{name}-{moment:%s}"), runtime):
            assert result["status"] in ("applied", "skipped"), result
    return runtime


def logged(store: FileStore) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(per-series events sorted by id, job_run events) of every log object in the store."""
    events = [e for key in store.list("logs/") for e in decode_events(store.get(key))]
    series = sorted((e for e in events if e["type"] != "job_run"), key=lambda e: e["event_id"])
    return series, [e for e in events if e["type"] == "job_run"]


def per_series(state: State) -> dict[str, Any]:
    """What a state says about each series: per-series arrays, and the open purchase orders as a
    set keyed by series (not by row order)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(State):
        value = getattr(state, f.name)
        if isinstance(value, np.ndarray) and value.shape[:1] == (state.num_series,):
            out[f.name] = value
    out["purchase_orders"] = sorted(
        zip(state.po_series.tolist(), state.po_number.tolist(), state.po_quantity.tolist(), state.po_due.tolist(), state.po_placed.tolist())
    )
    return out


def assert_same_series(sharded: State, whole: State) -> None:
    a, b = per_series(sharded), per_series(whole)
    assert a.keys() == b.keys()
    for name in a:
        if name == "purchase_orders":
            assert a[name] == b[name]
        else:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def sharded_and_whole(tmp_path: Path, catalog: Catalog, num_shards: int, minutes: int, every: dict[str, int] = EVERY):
    sharded, whole = FileStore(tmp_path / "sharded"), FileStore(tmp_path / "whole")
    replay(sharded, catalog, num_shards, minutes, every)
    replay(whole, catalog, 1, minutes, every)
    return sharded, whole


# -- the split ----------------------------------------------------------------------------------


def test_a_products_shard_is_a_stable_hash_of_its_id():
    """Pinned: a different hash would move every product's state to another shard."""
    assert [shards.shard_of(f"SKU-{i:03d}", 7) for i in range(8)] == [6, 1, 6, 6, 5, 5, 1, 1]
    assert shards.shard_of("P-1", 16) == int.from_bytes(__import__("hashlib").blake2b(b"P-1", digest_size=8).digest(), "big") % 16
    assert {shards.shard_of(f"P-{i}", 4) for i in range(200)} == {0, 1, 2, 3}


def test_the_split_partitions_products_with_every_warehouse():
    catalog = make_catalog(40)
    parts = shards.split(catalog, 3)
    ids = [p.id for part in parts for p in part.catalog.products]
    assert sorted(ids) == sorted(p.id for p in catalog.products) and len(ids) == len(set(ids))
    covered = np.concatenate([part.series for part in parts])
    assert sorted(covered.tolist()) == list(range(catalog.num_series))
    for part in parts:
        assert part.catalog.warehouses == catalog.warehouses and part.catalog.seed == catalog.seed
        # series j of the shard is series part.series[j] of the whole catalog
        assert [catalog.series_product_ids[i] for i in part.series] == part.catalog.series_product_ids
        assert [catalog.series_warehouse_ids[i] for i in part.series] == part.catalog.series_warehouse_ids
        np.testing.assert_array_equal(catalog.initial_stock[part.series], part.catalog.initial_stock)
        np.testing.assert_array_equal(catalog.base_demand_per_day[part.series], part.catalog.base_demand_per_day)


def test_a_product_keeps_its_shard_when_the_catalog_grows():
    small, big = make_catalog(10), make_catalog(60)
    owner = {p.id: part.number for part in shards.split(big, 5) for p in part.catalog.products}
    for part in shards.split(small, 5):
        assert all(owner[p.id] == part.number for p in part.catalog.products)


@pytest.mark.parametrize(
    ("shard", "count", "configured", "message"),
    [
        (None, None, 3, "event.detail.shard: missing"),
        (3, None, 3, "event.detail.shard: 3 is not a shard of 3"),
        (1, None, 1, "not sharded"),
        (0, 4, 3, "event.detail.num_shards: 4"),
    ],
)
def test_an_event_must_name_a_shard_of_the_deployment(shard, count, configured, message):
    with pytest.raises(InputError, match=message):
        shards.resolve(shard, count, configured)


def test_an_unsharded_deployment_accepts_shard_zero_and_no_shard():
    assert shards.resolve(None, None, 1) is None and shards.resolve(0, 1, 1) is None
    assert shards.resolve(2, 3, 3) == 2


# -- keys ---------------------------------------------------------------------------------------


def test_a_shard_keeps_its_state_under_its_prefix_and_its_logs_beside_the_others(tmp_path: Path):
    store = FileStore(tmp_path)
    catalog = make_catalog(24)
    runtime = Runtime(store=store, catalog=catalog, clock=zero_clock, num_shards=3)
    results = invoke_all("order_tick", event_at(START + timedelta(hours=10)), runtime)
    assert [r["shard"] for r in results] == [0, 1, 2] and {r["status"] for r in results} == {"applied"}
    assert json.loads(store.get(shards.MANIFEST_KEY))["num_shards"] == 3
    assert store.read("state/state.bin") is None
    for k in range(3):
        assert store.read(f"shards/{k}/state/state.bin") is not None
    keys = sorted(store.list("logs/order_tick/"))
    assert keys == [f"logs/order_tick/2026/01/05/10/order_tick-20260105T100000Z-shard-{k}.ndjson.gz" for k in range(3)]
    runs = [e for key in keys for e in decode_events(store.get(key)) if e["type"] == "job_run"]
    assert [e["shard"] for e in runs] == [0, 1, 2]
    assert len({e["event_id"] for e in runs}) == 3  # Elasticsearch keeps one document per event_id


def test_each_shard_is_idempotent_on_its_own(tmp_path: Path):
    store = FileStore(tmp_path)
    runtime = Runtime(store=store, catalog=make_catalog(24), clock=zero_clock, num_shards=3)
    moment = START + timedelta(hours=1)
    assert invoke("order_tick", event_at(moment, detail={"shard": 1}), runtime)["status"] == "applied"
    again = invoke_all("order_tick", event_at(moment, id="a redelivery"), runtime)
    assert [r["status"] for r in again] == ["applied", "skipped", "applied"]


def test_an_empty_shard_is_skipped_and_writes_nothing(tmp_path: Path):
    catalog = make_catalog(2)
    empty = next(part.number for part in shards.split(catalog, 8) if part.empty)
    store = FileStore(tmp_path)
    result = invoke(
        "alert", event_at(START + timedelta(hours=1), detail={"shard": empty}), Runtime(store=store, catalog=catalog, num_shards=8)
    )
    assert result["status"] == "skipped" and "holds no product" in result["reason"]
    assert not list(store.list(f"shards/{empty}/")) and not list(store.list("logs/"))


# -- the manifest -------------------------------------------------------------------------------


def test_a_store_refuses_another_split(tmp_path: Path):
    catalog = make_catalog(24)
    store = FileStore(tmp_path / "a")
    invoke_all("order_tick", event_at(START + timedelta(hours=1)), Runtime(store=store, catalog=catalog, num_shards=3))
    fresh = FileStore(tmp_path / "a")  # a new process would meet the store like this
    for count in (2, 1):
        with pytest.raises(ConfigError, match="split into 3 shards, got " + str(count)):
            shards.forget_checks()
            invoke_all("order_tick", event_at(START + timedelta(hours=2)), Runtime(store=fresh, catalog=catalog, num_shards=count))


def test_a_sharded_invocation_refuses_an_unsharded_state(tmp_path: Path):
    catalog = make_catalog(24)
    store = FileStore(tmp_path)
    invoke("order_tick", event_at(START + timedelta(hours=1)), Runtime(store=store, catalog=catalog))
    shards.forget_checks()
    with pytest.raises(ConfigError, match="holds an unsharded state"):
        invoke_all("order_tick", event_at(START + timedelta(hours=2)), Runtime(store=store, catalog=catalog, num_shards=2))
    assert not store.exists(shards.MANIFEST_KEY)


# -- sharded == unsharded -----------------------------------------------------------------------


def test_the_first_day_sharded_equals_unsharded_with_the_real_handlers(tmp_path: Path):
    """Until the first business day closes the forecast has no history to pool over (it is each
    series' declared demand), so the real handlers give identical per-series results and events."""
    catalog = make_catalog(24)
    sharded, whole = sharded_and_whole(tmp_path, catalog, 3, minutes=20 * 60)
    state, _ = load_state(sharded, catalog)
    expected, _ = load_state(whole, catalog)
    assert state is not None and expected is not None
    assert_same_series(state, expected)
    events, runs = logged(sharded)
    expected_events, expected_runs = logged(whole)
    assert events == expected_events
    kinds = {e["type"] for e in events}
    assert {"order", "lost_sale", "inventory", "reorder_alert", "restock"} <= kinds, kinds
    assert len(runs) == 3 * len(expected_runs) and {e["shard"] for e in runs} == {0, 1, 2}
    assert {e["shard"] for e in expected_runs} == {None}


@pytest.mark.slow
def test_days_of_a_sharded_run_equal_unsharded_with_the_real_handlers(tmp_path: Path):
    """The model pools over the whole catalog however it is sharded (handlers/runtime/pool.py): over six days,
    long enough for every stage of the pooled fit (profile, regression, variance, tails) to come from
    every shard's statistics, a sharded run equals the unsharded run series by series — stock,
    purchase orders, restocks, alerts, forecasts, scores — and event by event."""
    catalog = make_catalog(24)
    sharded, whole = sharded_and_whole(tmp_path, catalog, 4, minutes=6 * 24 * 60 + 90, every=DAYS_EVERY)
    state, _ = load_state(sharded, catalog)
    expected, _ = load_state(whole, catalog)
    assert state is not None and expected is not None
    assert state.history_day == expected.history_day and np.isfinite(state.daily_demand).sum() > 0
    assert_same_series(state, expected)
    events, _ = logged(sharded)
    expected_events, _ = logged(whole)
    assert events == expected_events
    assert {"forecast_score", "restock", "reorder_alert"} <= {e["type"] for e in events}
    # the forecasts compared came from a complete pooled model fitted over every shard
    summed = pool.gather(sharded, 4, state.history_day - 1, warehouses=[w.id for w in catalog.warehouses])
    assert summed is not None and summed.shards == 4
    params = forecasting.fit(summed.model)
    assert params.coef is not None and params.variance_coef is not None and params.tails is not None


@pytest.mark.slow
def test_a_shard_that_misses_the_statistics_fits_on_its_own_series(tmp_path: Path, monkeypatch):
    """The control for the test above: when the shards' statistics of the day before are not all
    there, each shard fits on its own series — and the same comparison catches the difference."""
    monkeypatch.setattr(pool, "gather", lambda store, num_shards, day, warehouses: None)
    catalog = make_catalog(24)
    sharded, whole = sharded_and_whole(tmp_path, catalog, 4, minutes=2 * 24 * 60 + 90, every=DAYS_EVERY)
    state, _ = load_state(sharded, catalog)
    expected, _ = load_state(whole, catalog)
    assert state is not None and expected is not None
    assert not np.array_equal(state.forecast_mean, expected.forecast_mean)


# -- the command line ---------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_command_line_runs_and_reads_a_sharded_store(tmp_path: Path):
    path = tmp_path / "catalog.yaml"
    path.write_text(catalog_text(24))
    store = f"file://{tmp_path / 'store'}"
    common = ["--store", store, "--catalog", str(path)]
    done = cli("simulate", "--days", "0.25", "--start", "2026-01-05T00:00:00Z", "-q", "--json", *CLI_EVERY, "--num-shards", "3", *common)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    whole = cli(
        "simulate",
        "--days",
        "0.25",
        "--start",
        "2026-01-05T00:00:00Z",
        "-q",
        "--json",
        *CLI_EVERY,
        "--store",
        f"file://{tmp_path / 'whole'}",
        "--catalog",
        str(path),
    )
    assert whole.returncode == 0, whole.stderr
    assert summary["series"] == json.loads(whole.stdout)["series"]
    one = cli("invoke", "order_tick", "--time", "2026-01-05T06:01:00Z", "--num-shards", "3", *common)
    assert one.returncode == 0, one.stderr
    assert [r["shard"] for r in json.loads(one.stdout)] == [0, 1, 2]
    status = cli("status", "--json", *common)
    assert status.returncode == 0, status.stderr
    from jobs.status import status_extras

    sharded_store = FileStore(tmp_path / "store")
    merged, _ = load_state(sharded_store, make_catalog(24))
    assert merged is not None
    last = status_extras(merged, make_catalog(24), sharded_store)["last_success"]
    assert all(last[name] is not None for name in last), last  # from each shard's metrics file, the oldest
    # the report of two products of each shard (its charts take most of its time: 3 figures a product)
    chosen = [["--product", p] for k in range(3) for p in [p.id for p in make_catalog(24).products if shards.shard_of(p.id, 3) == k][:2]]
    assert len(chosen) == 6
    pages = [
        cli(
            "report",
            "--store",
            url,
            "--catalog",
            str(path),
            "--out",
            str(tmp_path / f"{name}.html"),
            "--to",
            "2026-01-05T06:00:00Z",
            *[arg for pair in chosen for arg in pair],
        )
        for name, url in (("sharded", store), ("whole", f"file://{tmp_path / 'whole'}"))
    ]
    assert all(page.returncode == 0 for page in pages), [page.stderr for page in pages]
    assert pages[0].stdout.split("; ", 1)[1] == pages[1].stdout.split("; ", 1)[1]  # fill rate, lost sales, reorders
    wrong = cli("invoke", "order_tick", "--time", "2026-01-05T06:02:00Z", *common)
    assert wrong.returncode == 2 and len(wrong.stderr.strip().splitlines()) == 1
    assert "split into 3 shards, got 1" in wrong.stderr


def test_the_lambda_adapter_serves_each_shard_from_its_own_sub_catalog(tmp_path: Path, monkeypatch):
    from handlers import app

    monkeypatch.setattr(app, "_cached", {})
    path = tmp_path / "catalog.yaml"
    path.write_text(catalog_text(24))
    environ = {"STOCKPULSE_STORE_URL": f"file://{tmp_path / 'store'}", "STOCKPULSE_CATALOG": str(path), "STOCKPULSE_NUM_SHARDS": "3"}
    moment = START + timedelta(hours=2)
    for k in (1, 2, 1):
        result = app.handle("order_tick", event_at(moment, detail={"shard": k}), environ=environ)
        assert result["shard"] == k and result["status"] in ("applied", "skipped")
    assert set(app._cached) == {1, 2}
    expected = shards.split(make_catalog(24), 3)
    for k in (1, 2):
        assert app._cached[k].shard == k and app._cached[k].catalog.products == expected[k].catalog.products
    with pytest.raises(InputError, match="event.detail.shard: missing"):
        app.handle("order_tick", event_at(moment), environ=environ)
    with pytest.raises(InputError, match="serves shard 2"):
        invoke("order_tick", event_at(moment, detail={"shard": 0}), app._cached[2])


def test_a_merge_over_shards_of_which_one_has_closed_a_recovered_day_and_another_not():
    """GIVEN a censored shop's shards, one of which has closed a day with its lost sales recovered
    (censor_live kept) and another not yet (none kept: 0 columns) WHEN merged for status or report THEN
    each series has its shard's columns, zeros where none is kept (it used to fail on the shapes)."""
    from handlers.model.state import initial_state

    catalog = make_catalog(24)
    parts = [part for part in shards.split(catalog, 2)]
    states = [initial_state(part.catalog, START.timestamp()) for part in parts]
    states[0] = dataclasses.replace(states[0], censor_live=np.arange(states[0].num_series * 68.0).reshape(-1, 68))
    merged = shards.merge(catalog, [(part, state) for part, state in zip(parts, states)])
    assert merged.censor_live.shape == (catalog.num_series, 68)
    np.testing.assert_array_equal(merged.censor_live[parts[0].series], states[0].censor_live)
    assert not merged.censor_live[parts[1].series].any()
