"""The storage contract on the in-memory store shipped as the test double (handlers/storage/memory.py)."""

from __future__ import annotations

import pytest

from handlers.storage.memory import MemoryStore
from tests.support.storage_contract import *  # noqa: F403 - the shared contract suite


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def store_factory():
    shared = MemoryStore()
    return lambda: shared  # one process's memory: every handle is the same store


def test_two_stores_never_share_a_url():
    """GIVEN two in-memory stores THEN their URLs differ: what a process materialised of one store's
    state (keyed by URL) is never taken for the other's."""
    assert MemoryStore().url != MemoryStore().url
