"""The storage contract on the file:// backend, plus what is specific to it."""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.errors import ConfigError, ConflictError
from handlers.storage.file import KEEP_VERSIONS, FileStore
from handlers.storage.location import open_store
from handlers.storage.s3 import S3Store
from tests.support.storage_contract import *  # noqa: F403 - the shared contract suite


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "store")


@pytest.fixture
def store_factory(tmp_path: Path):
    return lambda: FileStore(tmp_path / "store")


def test_old_versions_become_tombstones_and_a_stale_writer_still_loses(tmp_path: Path):
    """GIVEN many versions (old ones emptied by the collector) WHEN a writer holding a very old
    etag writes THEN it loses: an emptied version's name can never be created again."""
    store = FileStore(tmp_path)
    etag = store.write("state/s", b"v1", etag=None)
    stale = etag
    for i in range(2, 20):
        etag = store.write("state/s", f"v{i}".encode(), etag=etag)
    versions = sorted((tmp_path / "state" / "s.versions").glob("0*"))
    assert len(versions) == 19
    assert [p.stat().st_size for p in versions[: 19 - KEEP_VERSIONS - 1]] == [0] * (19 - KEEP_VERSIONS - 1)
    with pytest.raises(ConflictError):
        store.write("state/s", b"stale", etag=stale)
    assert store.read("state/s").data == b"v19"


def test_a_new_handle_finds_the_newest_version(tmp_path: Path):
    """GIVEN 70 versions written by one handle WHEN another process opens the store THEN it reads the newest."""
    etag = None
    writer = FileStore(tmp_path)
    for i in range(70):
        etag = writer.write("state/s", str(i).encode(), etag=etag)
    assert FileStore(tmp_path).read("state/s").data == b"69"


@pytest.mark.parametrize(
    ("url", "kind"), [("file://./data", FileStore), ("file:///tmp/x", FileStore), ("s3://bucket/prefix", S3Store), ("s3://bucket", S3Store)]
)
def test_location_url_selects_the_backend(url, kind):
    """GIVEN a location URL WHEN opened THEN the scheme picks the backend (no I/O yet)."""
    assert isinstance(open_store(url), kind)


def test_relative_file_url_is_relative_to_the_working_directory():
    assert open_store("file://./data").root == Path("./data")


@pytest.mark.parametrize("url", ["ftp://x", "data", "s3://", "file://"])
def test_unsupported_location_names_the_setting(url):
    """GIVEN a bad location WHEN opened THEN ConfigError names the URL and what would work."""
    with pytest.raises(ConfigError, match="store URL"):
        open_store(url)
