"""Shared fixtures: catalogs and stores. Helpers live in tests/support/ (no test module imports another)."""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.model.catalog import Catalog, parse_catalog
from handlers.runtime.catalogs import default_catalog
from handlers.storage.file import FileStore
from tests.support.ticks import SMALL_CATALOG


@pytest.fixture
def small_catalog() -> Catalog:
    return parse_catalog(SMALL_CATALOG, source="small.yaml")


@pytest.fixture
def catalog() -> Catalog:
    return default_catalog()


@pytest.fixture
def file_store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "store")
