"""``run``: APScheduler in real time with business time sped up; clean stop; errors reported."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from handlers.model.catalog import parse_catalog
from handlers.runtime.invoke import Runtime, load_state
from handlers.storage.file import FileStore
from jobs.runner import BusinessClock, run_scheduler
from jobs.schedule import DEFAULT_INTERVALS, Schedule
from tests.support.ticks import SMALL_CATALOG

REPO = Path(__file__).resolve().parent.parent


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_business_clock_runs_speed_times_faster():
    clock = BusinessClock(business_start=1000.0, wall_start=50.0, speed=600)
    assert clock.now(51.0) == 1600.0 and clock.wall_at(1600.0) == 51.0


@pytest.mark.slow
def test_run_at_600x_for_10s_invokes_each_handler_as_scheduled(tmp_path: Path):
    """GIVEN `run --speed 600 --for 10s` WHEN it ends THEN it exits 0 and each handler ran once per
    business interval crossed (100 business minutes: 100 order ticks, 20 restocks, 6 alerts, 1 forecast)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs",
            "run",
            "--speed",
            "600",
            "--for",
            "10s",
            "--json",
            "--start",
            "2026-01-05T00:00:00Z",
            "--store",
            f"file://{tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    start, end = epoch(report["business_start"]), epoch(report["business_end"])
    assert 5990 <= end - start <= 6100
    for name, interval in DEFAULT_INTERVALS.items():
        expected = math.floor(end / interval) - math.floor(start / interval)
        assert report["invocations"].get(name, 0) == expected, (name, report)
    assert report["errors"] == []
    state, _ = load_state(FileStore(tmp_path))
    assert state.orders_through >= start + 98 * 60  # every business minute simulated up to the end


def test_sigterm_stops_cleanly_with_exit_0(tmp_path: Path):
    """GIVEN a running scheduler WHEN it gets SIGTERM THEN it finishes the runs in flight and exits 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs", "run", "--speed", "600", "--store", f"file://{tmp_path}", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    time.sleep(4)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(out)["invocations"].get("order_tick", 0) >= 5


def test_job_errors_are_reported_not_swallowed(tmp_path: Path, capsys):
    """GIVEN a store that fails every write WHEN the scheduler runs THEN each failure is printed and returned."""

    class BrokenStore(FileStore):
        def write(self, key, data, *, etag):
            from handlers.errors import StorageError

            raise StorageError(f"{key}: disk on fire")

    runtime = Runtime(store=BrokenStore(tmp_path), catalog=parse_catalog(SMALL_CATALOG))
    stop = threading.Event()
    report = run_scheduler(runtime, Schedule.parse(), speed=600, duration=1.0, business_start=epoch("2026-01-05T00:00:00Z"), stop=stop)
    assert report.errors and "disk on fire" in report.errors[0]
    assert "stockpulse run: error: order_tick failed: StorageError" in capsys.readouterr().err


def test_start_far_ahead_of_the_store_clock_is_refused(tmp_path: Path):
    """GIVEN a store whose clock is in January WHEN `run --start` names November THEN one line says
    to replay the gap with simulate first (one tick would otherwise simulate months at once)."""
    from jobs.cli import main

    store = f"file://{tmp_path}"
    assert main(["invoke", "order_tick", "--time", "2026-01-05T00:01:00Z", "--store", store]) == 0
    proc = subprocess.run(
        [sys.executable, "-m", "jobs", "run", "--for", "1s", "--store", store, "--start", "2026-11-01T00:00:00Z"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 2
    assert "--start: 2026-11-01T00:00:00Z is 300.0 days ahead of the store's clock" in proc.stderr and "simulate --days 300" in proc.stderr


@pytest.mark.slow
def test_run_goes_over_every_shard_on_each_tick(tmp_path: Path):
    """GIVEN `run --num-shards 3` WHEN it ends THEN every handler tick was applied once per shard, and
    every shard's order clock followed the business clock."""
    from handlers.runtime import shards
    from handlers.runtime.catalogs import load_catalog
    from tests.support.catalogs import catalog_text

    path = tmp_path / "catalog.yaml"
    path.write_text(catalog_text(24))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs",
            "run",
            "--speed",
            "600",
            "--for",
            "6s",
            "--json",
            "--num-shards",
            "3",
            "--start",
            "2026-01-05T00:00:00Z",
            "--store",
            f"file://{tmp_path / 'store'}",
            "--catalog",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["errors"] == [] and report["invocations"]["order_tick"] >= 3 * 30
    assert report["invocations"] == report["applied"]
    assert all(count % 3 == 0 for count in report["invocations"].values()), report
    catalog = load_catalog(path)
    store = FileStore(tmp_path / "store")
    clocks = {
        load_state(shards.ShardStore(store, part.number), part.catalog, num_shards=1)[0].orders_through for part in shards.split(catalog, 3)
    }
    assert len(clocks) == 1 and clocks.pop() >= epoch(report["business_start"]) + 30 * 60


def log_objects(root: Path, name: str) -> int:
    return len(list((root / "logs" / name).rglob("*.ndjson.gz")))


def test_at_a_speed_the_machine_cannot_keep_every_tick_is_its_own_invocation(tmp_path: Path):
    """GIVEN `run` at 100,000x (a business minute every 0.6 ms of wall time: no machine here keeps
    up) for half a second WHEN it ends THEN every handler made exactly one invocation and one log
    object per tick of the business span, all applied, and the report says how many came late (the
    scheduler coalesced the runs it could not keep: 1,192 of 1,200 order ticks were made)."""
    from jobs.cli import MAX_SPEED
    from jobs.runner import describe_run

    runtime = Runtime(store=FileStore(tmp_path), catalog=parse_catalog(SMALL_CATALOG))
    start = epoch("2026-01-05T00:00:00Z")
    report = run_scheduler(runtime, Schedule.parse(), speed=MAX_SPEED, duration=0.5, business_start=start)
    assert report.errors == []
    end = report.business_end
    assert end - start >= 0.5 * MAX_SPEED  # half a second of wall time at that speed
    for name, interval in DEFAULT_INTERVALS.items():
        ticks = math.floor(end / interval) - math.floor(start / interval)
        assert report.invocations[name] == report.applied[name] == log_objects(tmp_path, name) == ticks, name
    assert report.late["order_tick"] > 0  # precondition: the scheduler really fell behind
    assert "ticks delivered late (the scheduler fell behind business time: " in describe_run(report, MAX_SPEED)
    state, _ = load_state(FileStore(tmp_path))
    assert state.orders_through == math.floor(end / 60) * 60
