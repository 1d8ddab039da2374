"""The pooled fit over shards (handlers/runtime/pool.py, handlers/forecasting/model.py): statistics that add up
bit for bit however the series are split, their objects, and what a forecast does without them."""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from handlers.forecasting import model as forecasting
from handlers.forecasting.model import Stats, exact_cross, fit, pooled_forecast
from handlers.forecasting.pooled import Pool, max_bytes, own
from handlers.model.streams import mix
from handlers.runtime import pool
from handlers.runtime.invoke import Runtime, invoke
from handlers.storage.file import FileStore
from tests.support.crash import BUSY_CATALOG
from tests.support.ticks import START, event_at, zero_clock


def history(n_series: int = 300, days: int = 112, *, seed: int = 0) -> np.ndarray:
    """Weekly-seasonal counts over four orders of magnitude, intermittent series, late starters."""
    rng = np.random.default_rng(seed)
    level = rng.lognormal(0.0, 1.6, size=(n_series, 1))
    weekly = 1.0 + 0.4 * np.sin(2 * np.pi * (np.arange(days) % 7) / 7)
    values = rng.poisson(level * weekly).astype(float)
    starts = rng.integers(0, days, size=n_series) * (rng.random(n_series) < 0.2)
    values[np.arange(days)[None, :] < starts[:, None]] = np.nan
    values[:3] = np.nan  # never started
    values[3] = 5000.0 + rng.integers(0, 2, size=days)  # a huge level next to a tiny day-to-day change
    return values


def keys(n_series: int) -> np.ndarray:
    return mix(np.arange(n_series, dtype=np.uint64) + np.uint64(77))


def split_sum(
    values: np.ndarray, params: forecasting.Params | None, parts: np.ndarray, first_day: int = 3, series_keys: np.ndarray | None = None
) -> Stats:
    series_keys = keys(len(values)) if series_keys is None else series_keys
    total: Stats | None = None
    for part in np.unique(parts):
        rows = np.flatnonzero(parts == part)
        _, stats, _ = pooled_forecast(values[rows], 8, params, keys=series_keys[rows], first_day=first_day)
        total = stats if total is None else total + stats
    assert total is not None
    return total


@pytest.mark.parametrize("pieces", [2, 5, 17])
def test_statistics_of_any_split_add_up_to_the_whole_bit_for_bit(pieces: int):
    values = history()
    _, _, params = pooled_forecast(values, 8, None, keys=keys(len(values)), first_day=3)  # a complete fit
    assert params.coef is not None and params.variance_coef is not None and params.tails is not None
    whole = pooled_forecast(values, 8, params, keys=keys(len(values)), first_day=3)[1]
    parts = np.random.default_rng(pieces).integers(0, pieces, size=len(values))
    assert split_sum(values, params, parts) == whole
    # and in another order of the series inside each part
    shuffled = np.random.default_rng(1).permutation(len(values))
    assert split_sum(values[shuffled], params, parts[shuffled], series_keys=keys(len(values))[shuffled]) == whole


def test_a_series_forecasts_the_same_in_any_part_under_the_same_parameters():
    values = history()
    params = fit(pooled_forecast(values, 8, None, keys=keys(len(values)))[1])
    whole = pooled_forecast(values, 8, params, keys=keys(len(values)))[0]
    rows = np.arange(0, len(values), 7)
    part = pooled_forecast(values[rows], 8, params, keys=keys(len(values))[rows])[0]
    np.testing.assert_array_equal(part.mean, whole.mean[rows])
    np.testing.assert_array_equal(part.std, whole.std[rows])


def test_many_series_sample_their_own_training_rows():
    """Beyond MAX_TRAIN_ROWS rows, each series draws about its share from its own stream: the
    statistics of a split still add up, and about MAX_TRAIN_ROWS rows are fitted."""
    values = history(2000, seed=4)
    params = forecasting.Params(series=20_000)  # a catalog ten times larger: 5 rows per series
    params = fit(pooled_forecast(values, 8, params, keys=keys(2000))[1])
    params = forecasting.dataclasses.replace(params, series=20_000)
    whole = pooled_forecast(values, 8, params, keys=keys(2000))[1]
    parts = np.random.default_rng(0).integers(0, 3, size=2000)
    assert split_sum(values, params, parts, first_day=0) == whole
    assert whole.regression is not None
    rows = whole.regression[-1][-1] >> (2 * forecasting.FIXED_BITS)
    assert 2000 * 4 <= rows <= 2000 * 6


def test_exact_cross_products_are_exact_and_close_to_floating_point():
    rng = np.random.default_rng(2)
    left = rng.normal(0, 100, size=(5000, 3))
    left[0, 0] = 8e6  # near the largest magnitude kept exactly
    right = rng.lognormal(0, 2, size=(5000, 2))
    got = np.array(exact_cross(left, right), dtype=float) / 2.0**32
    # each value is rounded to 2**-16: a product is off by at most |a| 2**-17 + |b| 2**-17 + 2**-34
    bound = (np.abs(left).T @ np.ones_like(right) + np.ones_like(left).T @ np.abs(right)) * 2.0**-17 + 5000 * 2.0**-34
    assert (np.abs(got - left.T @ right) <= bound + 1e-9 * np.abs(left.T @ right)).all()
    # integers in units of 2**-16 are summed without any rounding, in any order
    fixed = np.round(left * 2**16) / 2**16
    first = exact_cross(fixed[:2500], right[:2500])
    second = exact_cross(fixed[2500:], right[2500:])
    assert (np.array(first, dtype=object) + np.array(second, dtype=object)).tolist() == exact_cross(fixed, right)


def test_the_staged_fit_on_one_history_is_the_plain_forecast():
    values = history()
    plain = forecasting.forecast(values, 8)
    staged, _, params = pooled_forecast(values, 8, None)
    np.testing.assert_array_equal(plain.mean, staged.mean)
    again = pooled_forecast(values, 8, params)[0]
    np.testing.assert_array_equal(plain.mean, again.mean)
    np.testing.assert_array_equal(plain.std, again.std)


def test_without_a_stage_the_forecast_falls_back_and_grows_a_stage_a_day():
    values = history()
    stats = Stats(series=len(values))
    stages = []
    for _ in range(5):  # what five days of a new store give, on the same history
        params = fit(stats)
        stages.append(tuple(getattr(params, name) is not None for name in ("profile", "coef", "variance_coef", "tails")))
        result, stats, _ = pooled_forecast(values, 8, params)
        assert np.isfinite(result.mean).all() and (result.std >= 0).all()
    assert stages == [
        (False, False, False, False),
        (True, True, False, False),
        (True, True, True, False),
        (True, True, True, True),
        (True, True, True, True),
    ]


# -- the objects --------------------------------------------------------------------------------


def one_pool(day: int = 100) -> Pool:
    values = history(40)
    stats = pooled_forecast(values, 8, None)[1]
    hours = np.random.default_rng(0).random((40, 24)) * 30
    return own(day, stats, hours, ["W-A", "W-B"], np.arange(40) % 2)


def test_a_pool_round_trips_and_refuses_damage():
    found = one_pool()
    assert Pool.from_bytes(found.to_bytes(), "k") == found
    for damaged in (
        b"{",
        b"[]",
        found.to_bytes().replace(b'"version":1', b'"version":2'),
        found.to_bytes().replace(b'"hours":{', b'"hours":{"W-X":[1],'),
    ):
        with pytest.raises(ValueError, match="k: damaged forecast statistics"):
            Pool.from_bytes(damaged, "k")


def test_hours_add_up_by_warehouse_name():
    a = Pool(5, Stats(series=1), {"W-A": [1] * 24})
    b = Pool(5, Stats(series=2), {"W-A": [2] * 24, "W-B": [3] * 24})
    total = a + b
    assert total.hours == {"W-A": [3] * 24, "W-B": [3] * 24} and total.shards == 2 and total.model.series == 3
    with pytest.raises(ValueError, match="days 5 and 6"):
        a + Pool(6, Stats(), {})


def test_gather_adds_every_shard_and_leaves_out_shards_without_a_state(tmp_path: Path, caplog):
    store = FileStore(tmp_path)
    one = one_pool()
    for k in (0, 2):
        store.put_once(f"shards/{k}/{pool.key(100)}", one.to_bytes())
        store.write(f"shards/{k}/state/state.bin", b"x", etag=None)
    total = pool.gather(store, 3, 100, warehouses=["W-A", "W-B"])  # shard 1 holds no state: no series
    assert total is not None and total.shards == 2 and total.model == one.model + one.model
    store.write("shards/1/state/state.bin", b"x", etag=None)
    assert pool.gather(store, 3, 100, warehouses=["W-A", "W-B"]) is None  # shard 1 now has series but no statistics
    store.put_once(f"shards/1/{pool.key(100)}", b"{damaged")
    with caplog.at_level(logging.WARNING, logger="stockpulse"):
        assert pool.gather(store, 3, 100, warehouses=["W-A", "W-B"]) is None
    assert "shards/1/state/pool/100.json: damaged forecast statistics" in caplog.text
    assert pool.gather(store, 3, 99, warehouses=["W-A", "W-B"]) is None


def test_publish_writes_a_day_once_and_keeps_two_days(tmp_path: Path):
    store = FileStore(tmp_path)
    for day in (97, 98, 99):
        store.put_once(pool.key(day), b"old")
    first, second = one_pool(100), Pool(100, Stats(series=9), {})
    assert pool.publish(store, first) == 1
    assert pool.publish(store, second) == 0  # the first publication stands
    assert Pool.from_bytes(store.get(pool.key(100)), "k") == first
    assert set(store.list(pool.PREFIX)) == {pool.key(98), pool.key(99), pool.key(100)}  # a shard a day behind reads 98


def test_a_shard_without_history_adds_no_stage_and_the_others_stand():
    full = one_pool().model
    assert full + Stats(series=7) == dataclasses.replace(full, series=full.series + 7)
    assert Stats(series=7) + full == dataclasses.replace(full, series=full.series + 7)


def test_statistics_of_another_day_or_another_model_are_refused(tmp_path: Path, caplog):
    found = one_pool(100)
    with pytest.raises(ValueError, match="of day 100, not 101"):
        Pool.from_bytes(found.to_bytes(), "k", 101)
    other_model = json.loads(found.to_bytes())
    other_model["model"]["regression"] = [row[:-1] for row in other_model["model"]["regression"][:-1]]
    with pytest.raises(ValueError, match="regression: not a table of integers of 22 rows"):
        Pool.from_bytes(json.dumps(other_model).encode(), "k")
    store = FileStore(tmp_path)
    store.put_once(pool.key(100), found.to_bytes())
    assert pool.gather(store, 1, 100, warehouses=["W-A", "W-B"]) == found
    store.delete(pool.key(100))
    store.put_once(pool.key(100), json.dumps(other_model).encode())
    with caplog.at_level(logging.WARNING, logger="stockpulse"):
        assert pool.gather(store, 1, 100, warehouses=["W-A", "W-B"]) is None
    assert "regression" in caplog.text


# -- statistics from another shard are bounded by what a real catalog can produce ------------------


def _three_days(store: FileStore) -> str:
    """Order ticks and forecasts on three business days; returns the key of the statistics the
    fourth day's forecast reads (its history day's eve)."""
    runtime = Runtime(store=store, catalog=BUSY_CATALOG, clock=zero_clock)
    for day in range(3):
        invoke("order_tick", event_at(START + timedelta(days=day, minutes=1)), runtime)
        invoke("forecast", event_at(START + timedelta(days=day, minutes=1)), runtime)
    return pool.key(int((START + timedelta(days=3)).timestamp() // 86400) - 1)


def _rewrite(store: FileStore, key: str, change) -> None:
    doc = json.loads(store.get(key))
    change(doc)
    store.delete(key)
    store.put_once(key, json.dumps(doc).encode())


@pytest.mark.parametrize(
    ("name", "value"),
    [("regression", 10**400), ("regression", 10**300), ("profile", -(10**300)), ("series", 10**6), ("hours", 10**100)],
    ids=["regression-1e400", "regression-1e300", "profile-1e300", "series-1e6", "hours-1e100"],
)
def test_statistics_beyond_what_a_catalog_can_produce_are_damage_and_the_forecast_fits_its_own(
    tmp_path: Path, caplog, name: str, value: int
):
    """GIVEN the statistics a forecast pools WHEN one integer is beyond what 120,000 series can give
    THEN that forecast warns naming the key and fits on its own series (was: 10**400 raised
    OverflowError in every shard's forecast, 10**300 silently changed every forecast); control: as
    published, the same forecast pools them."""
    store = FileStore(tmp_path / "s")
    key = _three_days(store)
    control = FileStore(tmp_path / "control")
    _three_days(control)
    runtime = Runtime(store=store, catalog=BUSY_CATALOG, clock=zero_clock)
    fourth = START + timedelta(days=3, minutes=1)
    for target in (store, control):
        invoke("order_tick", event_at(fourth), Runtime(store=target, catalog=BUSY_CATALOG, clock=zero_clock))

    def change(doc: dict) -> None:
        if name == "series":
            doc["model"]["series"] = value
        elif name == "hours":
            doc["hours"]["W1"][0] = value
        else:
            doc["model"][name][0][0] = value

    _rewrite(store, key, change)
    assert invoke("forecast", event_at(fourth), Runtime(store=control, catalog=BUSY_CATALOG, clock=zero_clock))["pool"] == "catalog"
    with caplog.at_level(logging.WARNING, logger="stockpulse"):
        result = invoke("forecast", event_at(fourth), runtime)
    assert result["status"] == "applied" and result["pool"] == "own"
    assert f"{key}: damaged forecast statistics" in caplog.text


class _CountingReads:
    """Counts the bytes every read of the store it wraps returns."""

    def __init__(self, inner) -> None:
        self.inner, self.url, self.read_bytes = inner, inner.url, 0

    def __getattr__(self, name: str):
        method = getattr(self.inner, name)
        if name not in ("get", "get_prefix", "read"):
            return method

        def counted(*args, **kwargs):
            found = method(*args, **kwargs)
            data = found.data if hasattr(found, "data") else found
            self.read_bytes += len(data or b"")
            return found

        return counted


def test_a_400_mb_statistics_object_is_never_read_whole(tmp_path: Path, caplog):
    """GIVEN a statistics object of 400 MB (sparse: no disk used) WHEN the forecast statistics are
    gathered THEN it is refused as damaged after reading at most the bound (the size of the largest
    object this catalog's statistics can take, ~60 KB) — not 400 MB."""
    store = FileStore(tmp_path)
    path = tmp_path / pool.key(100)
    path.parent.mkdir(parents=True)
    with path.open("wb") as handle:
        handle.truncate(400 * 2**20)
    counting = _CountingReads(store)
    with caplog.at_level(logging.WARNING, logger="stockpulse"):
        assert pool.gather(counting, 1, 100, warehouses=["W-A", "W-B"]) is None
    limit = max_bytes(["W-A", "W-B"])
    assert 0 < counting.read_bytes <= limit + 1 < 100_000
    assert f"more than the {limit} bytes" in caplog.text


def test_the_bounds_hold_for_statistics_at_the_catalog_limits():
    """Control: GIVEN statistics whose every integer is at the bound a shard of 120,000 series can
    reach THEN they are accepted, their object is within max_bytes, and 256 of them add up to floats
    a fit takes; one step beyond any bound is refused."""
    from handlers.forecasting.pooled import PHASE_DAYS, ROWS_PER_SERIES, VALUE, check_bounds
    from handlers.model.bounds import MAX_SERIES

    rows = MAX_SERIES * ROWS_PER_SERIES
    row = [VALUE if i % 2 else -VALUE for i in range(21)] + [1 << 16]  # every feature at the clip, then the 1
    regression = [[rows * a * b for b in row] for a in row]  # what that row, repeated, sums to
    stats = Stats(
        series=MAX_SERIES,
        profile=[[PHASE_DAYS * MAX_SERIES * VALUE] * 7, [PHASE_DAYS * MAX_SERIES] * 7],
        regression=regression,
        variance=None,
        tails=None,
    )
    edge = Pool(100, stats, {"W-A": [MAX_SERIES * VALUE] * 24, "W-B": [-MAX_SERIES * VALUE] * 24})
    check_bounds(edge)
    assert len(edge.to_bytes()) <= max_bytes(["W-A", "W-B"])
    assert Pool.from_bytes(edge.to_bytes(), "k", 100, warehouses=["W-A", "W-B"]) == edge
    assert all(abs(float(x * 256)) < 1e40 for row in regression for x in row)
    for beyond in (
        dataclasses.replace(stats, series=MAX_SERIES + 1),
        dataclasses.replace(stats, profile=[[PHASE_DAYS * MAX_SERIES * VALUE + 1] * 7, stats.profile[1]]),
    ):
        with pytest.raises(ValueError):
            check_bounds(Pool(100, beyond, edge.hours))
    with pytest.raises(ValueError, match="hours"):
        check_bounds(Pool(100, stats, {"W-A": [MAX_SERIES * VALUE + 1] * 24}))
