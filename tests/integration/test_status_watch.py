"""``status --watch`` in a real terminal (tmux) while ``run --speed`` moves business time."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TMUX = shutil.which("tmux") or "/usr/bin/tmux"
CLOCK = re.compile(r"business time (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")


_last = [""]  # the last screen seen, for the failure message


def _pane(socket: str, session: str) -> str:
    _last[0] = subprocess.run(
        [TMUX, "-L", socket, "capture-pane", "-p", "-J", "-t", session], capture_output=True, text=True, check=True
    ).stdout
    return _last[0]


def _wait_for(predicate, what: str, *, limit: float = 90.0) -> None:
    deadline = time.monotonic() + limit  # a bound on waiting, not a timing assertion
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}: {_last[0]!r}")
        time.sleep(0.2)


def test_status_watch_follows_a_running_scheduler(tmp_path):
    """GIVEN `status --watch` in tmux on an empty store WHEN `run --speed 600` starts on that store
    THEN the pane first says it waits, then shows business time moving forward, redrawn in place."""
    store = f"file://{tmp_path}/store"
    socket, session = f"sp-{tmp_path.name}"[:60], "watch"
    # the pane's size, not COLUMNS/LINES a test runner may have exported (80x24)
    watch = (
        f"cd {shlex.quote(str(REPO))} && env -u COLUMNS -u LINES {shlex.quote(sys.executable)} -m jobs status --store {store} --watch 0.3"
    )
    subprocess.run([TMUX, "-L", socket, "-f", "/dev/null", "new-session", "-d", "-s", session, "-x", "200", "-y", "70", watch], check=True)
    run = None
    try:
        _wait_for(lambda: "waiting for the first tick" in _pane(socket, session), "the waiting line")
        run = subprocess.Popen(
            [sys.executable, "-m", "jobs", "run", "--store", store, "--speed", "600", "--for", "60s", "--start", "2026-01-05T00:00:00Z"],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        seen: list[str] = []

        def clock_moved() -> bool:
            screen = _pane(socket, session)
            clocks = CLOCK.findall(screen)
            assert len(clocks) <= 1, screen  # redrawn in place, not printed again below
            if clocks and (not seen or clocks[0] != seen[-1]):
                seen.append(clocks[0])
            return len(seen) >= 3

        _wait_for(clock_moved, "three different business times")
        assert seen == sorted(seen) and len(set(seen)) == len(seen)
        screen = _pane(socket, session)
        for text in ("Inventory", "days of cover", "Open purchase orders", "Handlers", "order_tick", "shipped"):
            assert text in screen, screen
    finally:
        if run is not None:
            run.terminate()
            run.wait(timeout=30)
        subprocess.run([TMUX, "-L", socket, "kill-server"], capture_output=True, check=False)


def test_last_success_is_not_taken_from_metrics_files_once_the_metrics_go_to_a_pushgateway(tmp_path):
    """GIVEN a store simulated with its metrics in files WHEN the next ticks push to a real Pushgateway
    THEN `status` shows — as the last success of the handlers that pushed (it showed the stale time
    of the old files), and still the files' time for the handler that has not run since."""
    from jobs.cli import main
    from tests.support import servers

    store = f"file://{tmp_path}/store"
    assert main(["simulate", "--days", "0.25", "-q", "--json", "--store", store]) == 0
    with servers.pushgateway() as gateway:
        for name in ("restock", "order_tick"):
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "jobs",
                    "invoke",
                    name,
                    "--time",
                    "2026-01-05T06:05:00Z",
                    "--store",
                    store,
                    "--pushgateway",
                    gateway.url,
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert proc.returncode == 0, proc.stderr
        assert 'handler_last_success_timestamp_seconds{handler="order_tick"' in gateway.metrics_text()
    proc = subprocess.run(
        [sys.executable, "-m", "jobs", "status", "--store", store],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr
    success = {
        line.split("│")[1].strip(): line.split("│")[4].strip()
        for line in proc.stdout.splitlines()
        if line.count("│") > 5 and line.split("│")[1].strip() in ("restock", "order_tick", "forecast", "alert")
    }
    assert success["restock"] == success["order_tick"] == "—", proc.stdout
    assert re.fullmatch(r"\d\d:\d\d:\d\d \(.* ago\)", success["forecast"]), proc.stdout
