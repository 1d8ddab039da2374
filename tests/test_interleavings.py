"""Random interleavings of the four handlers on file://: whatever the order and the times within
the accepted leads, every object the hot part references exists and a cold process reads the state
(tests/support/interleavings.py; the same walk runs on s3:// in tests/integration/test_storage_s3.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.runtime import layout
from handlers.storage.file import FileStore
from tests.support.crash import BUSY_CATALOG
from tests.support.interleavings import missing_references, referenced, walk


@pytest.mark.parametrize("seed", [6, 11, 18])
def test_random_interleavings_never_lose_a_referenced_object(tmp_path: Path, seed: int):
    """GIVEN a seeded random walk of 300 invocations (ticks anywhere within each handler's lead,
    cold processes between them) THEN after every step state.bin's history, base and deltas exist;
    and the walk reached new bases, closed days and forecasts ahead of the order clock."""
    walked = walk(lambda: FileStore(tmp_path / "s"), BUSY_CATALOG, seed=seed, steps=300)
    assert len(walked.bases) >= 5 and len(walked.history) >= 2, walked  # new bases; at least one day closed
    assert walked.forecast_ahead >= 10 and walked.applied["alert"] >= 30 and walked.hot_pruned > 0, walked


def test_the_reference_check_finds_a_deleted_object(tmp_path: Path):
    """Control: GIVEN a walked store WHEN one object state.bin references is deleted THEN the check
    names it."""
    store = FileStore(tmp_path / "s")
    walk(lambda: store, BUSY_CATALOG, seed=9, steps=40)
    assert missing_references(store) == []
    victim = [key for key in referenced(store) if key.startswith(layout.HOT_PREFIX)][-1]
    store.delete(victim)
    assert missing_references(store) == [victim]
