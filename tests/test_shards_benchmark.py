"""benchmarks/shards.py --quick: the smoke run of the sharding benchmark, its JSON, and its controls:
one shard is the whole catalog; the lag chain without a lag is the plain fit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("shards_benchmark")]  # runs the benchmark script once, on one worker


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("shards-benchmark") / "quick.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/shards.py", "--quick", "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert '## Accuracy of the "own" fallback' in done.stdout and "## The one-day lag" in done.stdout
    assert "| `forecast` |" in done.stdout
    return json.loads(out.read_text())


def test_the_report_names_the_machine_and_the_commit(quick: dict) -> None:
    assert quick["quick"] is True and quick["cores"] >= 1 and quick["commit"]
    assert quick["horizon_days"] == 7


def test_one_shard_is_the_whole_catalog_and_two_are_not(quick: dict) -> None:
    """GIVEN the rows of the "own" fallback WHEN N = 1 THEN every difference is zero and the scores
    equal the whole fit; N = 2 (a real split) differs, so the comparison can see a difference."""
    result = quick["accuracy"][0]
    rows = {row["num_shards"]: row for row in result["rows"]}
    assert sorted(rows) == [1, 2, 4]
    one, two = rows[1], rows[2]
    assert one["shard_series"] == {"min": result["series"], "median": result["series"], "max": result["series"]}
    for part in ("forecast_7d", "spread_7d", "hour_shares"):
        assert one[part]["counted"] > 0
        assert (one[part]["p50"], one[part]["p95"], one[part]["p99"]) == (0.0, 0.0, 0.0), part
    assert (one["rmsse"], one["wape"]) == (result["whole"]["rmsse"], result["whole"]["wape"])
    assert two["forecast_7d"]["p99"] > 0 and two["shard_series"]["max"] < result["series"]
    assert set(result["control_other_sample"]) >= {"forecast_7d", "spread_7d", "rmsse", "wape"}


def test_the_lag_is_measured_against_the_same_day_fit_and_its_chain_is_checked(quick: dict) -> None:
    """GIVEN the lag figures WHEN the chain runs with no lag THEN it is the same-day fit bit for bit, and
    a longer chain gives the same parameters (the steady state); with the lag the forecasts move (so the
    comparison can see the lag) but stay scored; the statistics object has a size."""
    result = quick["accuracy"][0]
    lag = result["lag"]
    assert lag["lag_0_is_the_plain_fit"] is True and lag["longer_chain_is_the_same"] is True
    assert lag["forecast_7d"]["counted"] == result["rows"][0]["forecast_7d"]["counted"] > 0
    assert lag["forecast_7d"]["p99"] > 0
    assert lag["rmsse"] != result["whole"]["rmsse"] and 0 < lag["wape"] < 1 and 0.5 < lag["coverage_95"] <= 1
    assert 1_000 < lag["pool_object_bytes"] < 100_000


def test_the_sharded_catalog_is_timed_per_shard_and_its_catalog_cost_apart(quick: dict) -> None:
    sharded = quick["sharded"]
    assert sharded["num_shards"] == 2 and sum(sharded["shard_series"]) == sharded["series"]
    figures = sharded["shards"]["0"]
    for handler in ("order_tick", "forecast", "alert"):
        assert figures[handler]["failures"] == 0 and figures[handler]["wall_s"] > 0 and figures[handler]["rss_mb"] > 0
    whole, own = sharded["catalog_whole"], sharded["catalog_own"]
    assert whole["series"] == sharded["series"] and whole["shard_series"] == sharded["shard_series"][0]
    assert own["series"] == own["shard_series"] == sharded["shard_series"][0]
    assert quick["baseline"] is None  # --quick runs no 100k baseline
    # the shard's statistics of its day (published by its forecasts, under its prefix), and the copy
    # standing in for the day before, which the timed forecasts fitted from (scale.stand_in_yesterday)
    objects = sharded["pool_objects"]
    days = sorted(int(k.rsplit("/", 1)[1].split(".")[0]) for k in objects)
    assert len(days) == 2 and days[1] == days[0] + 1
    assert all(k.startswith("shards/0/state/pool/") and v > 1_000 for k, v in objects.items())
