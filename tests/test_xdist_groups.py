"""The test command's parallel runs keep each xdist_group on one worker (one LocalStack, one set of
Lambda zips, module replays made once): pytest 9.2 silently broke ``--dist loadgroup``
(pytest-xdist#1386), and nothing else would notice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

GROUPED = """
import os
import pytest

pytestmark = pytest.mark.xdist_group("one")


@pytest.mark.parametrize("i", range(8))
def test_grouped(i):
    with open(os.environ["WORKERS_LOG"], "a") as log:
        log.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")
"""
SPREAD = """
import pytest


@pytest.mark.parametrize("i", range(8))
def test_spread(i):
    pass
"""


@pytest.mark.slow  # a pytest run of its own with two workers: the full suite's guard
def test_a_group_runs_on_one_worker_of_two(tmp_path: Path):
    """GIVEN a module marked xdist_group and another module WHEN run as scripts/test.sh runs the suite
    (-n 2 --dist loadgroup) THEN every test of the group ran on the same worker."""
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    (tmp_path / "test_spread.py").write_text(SPREAD)
    log = tmp_path / "workers.log"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "WORKERS_LOG": str(log)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    workers = log.read_text().split()
    assert len(workers) == 8 and len(set(workers)) == 1, workers
