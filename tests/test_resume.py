"""Replays that resume exactly: `simulate` killed with SIGKILL at seeded random points, then the
same command again, equals one uninterrupted run of the same span.

Processing times are measured with the wall clock, so the latency histogram (``latency_sum``,
``latency_buckets``) and ``job_run.duration_ms`` differ between any two runs; everything else
— every other state field, the set of log objects and every event in them — must be identical.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from handlers.model.logs import decode_events
from handlers.model.state import State
from handlers.runtime.invoke import Runtime, invoke, load_state
from handlers.storage.file import FileStore
from jobs.schedule import Schedule
from jobs.simulate import DEFAULT_START, simulate
from tests.support.crash import BUSY_CATALOG
from tests.support.ticks import START, zero_clock

REPO = Path(__file__).resolve().parent.parent
DAYS = "0.25"  # 6 business hours: 462 invocations, a few seconds
INVOCATIONS = 462
TRIALS = 3
TIMING = {"latency_sum", "latency_buckets"}


def command(store: Path, *, start: bool = True) -> list[str]:
    return [
        sys.executable,
        "-m",
        "jobs",
        "simulate",
        "--days",
        DAYS,
        "-q",
        "--json",
        "--store",
        f"file://{store}",
        *(["--start", DEFAULT_START] if start else []),
    ]


def run(store: Path, *, start: bool = True) -> None:
    proc = subprocess.run(
        command(store, start=start), capture_output=True, text=True, timeout=300, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    assert proc.returncode == 0, proc.stderr


def newest_version(store: Path) -> int:
    versions = store / "state" / "state.bin.versions"
    try:
        return max((int(p.name) for p in versions.iterdir() if p.name.isdigit()), default=0)
    except FileNotFoundError:
        return 0


def kill_after(store: Path, commits: int, *, start: bool) -> int:
    """Start the replay, SIGKILL it once ``commits`` state versions exist; its return code."""
    proc = subprocess.Popen(
        command(store, start=start),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        while proc.poll() is None and newest_version(store) < commits:
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    return proc.returncode


def comparable(store: Path) -> tuple[dict, dict]:
    """State fields (timings aside) and every log object's events (durations aside)."""
    state, _ = load_state(FileStore(store))
    fields = {}
    for f in dataclasses.fields(State):
        if f.name in TIMING:
            continue
        value = getattr(state, f.name)
        if f.name == "outbox":
            value = tuple((key, _events(payload)) for key, payload in value)
        fields[f.name] = value.tobytes() + str(value.shape).encode() if isinstance(value, np.ndarray) else value
    logs = {key: _events(FileStore(store).get(key)) for key in FileStore(store).list("logs/")}
    return fields, logs


def _events(payload: bytes) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "duration_ms"} for e in decode_events(payload)]


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[dict, dict]:
    store = tmp_path_factory.mktemp("clean") / "s"
    run(store)
    return comparable(store)


def test_the_clean_replay_has_every_invocation(clean):
    assert len(clean[1]) == INVOCATIONS
    assert sum(e["type"] == "job_run" for events in clean[1].values() for e in events) == INVOCATIONS


KILL_POINTS = random.Random(20261201).sample(range(1, INVOCATIONS - 150), TRIALS)


@pytest.mark.parametrize("trial", range(TRIALS))
def test_simulate_killed_and_resumed_equals_a_clean_run(trial: int, clean, tmp_path: Path):
    """GIVEN `simulate` SIGKILLed after a seeded random number of commits WHEN the same command runs
    again THEN state and log events equal those of a run that was never interrupted."""
    store = tmp_path / "s"
    # the first trial's interrupted command continued an empty store instead of naming --start
    assert kill_after(store, KILL_POINTS[trial], start=trial != 0) == -signal.SIGKILL
    assert 0 < newest_version(store) < INVOCATIONS + 1  # killed mid-replay
    run(store)
    state, logs = comparable(store)
    assert sorted(logs) == sorted(clean[1])
    assert logs == clean[1]
    assert state == clean[0]


def test_continuing_after_a_death_between_two_handlers_of_one_minute_runs_the_lost_ticks(tmp_path: Path):
    """GIVEN a replay that died after the order tick of 01:00 but before its forecast and alert
    WHEN `simulate` continues the store's clock THEN the forecast and alert of 01:00 run first."""
    store = FileStore(tmp_path)
    runtime = Runtime(store=store, catalog=BUSY_CATALOG, clock=zero_clock)
    simulate(runtime, start=START, days=1 / 24 - 1 / 1440, schedule=Schedule.parse())
    one = START.replace(hour=1)
    for name in ("restock", "order_tick"):
        invoke(name, {"time": one.isoformat(), "id": f"sim-{name}-{one.timestamp():.0f}"}, runtime)
    result = simulate(runtime, start=None, days=1 / 24, schedule=Schedule.parse())
    assert result.start == one.timestamp()
    assert result.invocations == {"order_tick": 60, "restock": 12, "forecast": 2, "alert": 5}
    state, _ = load_state(store)
    assert state.applied["forecast"] == state.applied["alert"] == state.orders_through == one.timestamp() + 3600


def test_run_continuing_the_store_clock_first_runs_the_lost_ticks(tmp_path: Path):
    """GIVEN the same death between the order tick and the forecast of 01:00 WHEN `run` continues the
    store's clock THEN the forecast and alert of 01:00 are applied before anything else."""
    from jobs.runner import run_scheduler

    store = FileStore(tmp_path)
    runtime = Runtime(store=store, catalog=BUSY_CATALOG, clock=zero_clock)
    simulate(runtime, start=START, days=1 / 24 - 1 / 1440, schedule=Schedule.parse())
    one = START.replace(hour=1)
    for name in ("restock", "order_tick"):
        invoke(name, {"time": one.isoformat(), "id": f"sim-{name}"}, runtime)
    report = run_scheduler(runtime, Schedule.parse(), speed=1, duration=0.01)
    assert report.applied == {"forecast": 1, "alert": 1}
    state, _ = load_state(store)
    assert state.applied["forecast"] == state.applied["alert"] == one.timestamp()
