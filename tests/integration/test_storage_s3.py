"""The storage contract on the s3:// backend, over HTTP to a real moto server
(conditional writes: If-None-Match: * and If-Match answer 412 there as on AWS)."""

from __future__ import annotations

import pytest

from handlers.storage.location import open_store
from handlers.storage.s3 import S3Store
from tests.support.storage_contract import *  # noqa: F403 - the shared contract suite


@pytest.fixture
def store_factory(moto_s3):
    url = moto_s3.bucket_url("shop-1/")
    return lambda: open_store(url, s3_client=moto_s3.client)


@pytest.fixture
def store(store_factory) -> S3Store:
    return store_factory()


def test_keys_live_under_the_prefix(store, moto_s3):
    """GIVEN s3://bucket/shop-1/ WHEN an object is written THEN its S3 key carries the prefix."""
    store.put_once("logs/a", b"x")
    listed = moto_s3.client.list_objects_v2(Bucket=store.bucket)["Contents"]
    assert [o["Key"] for o in listed] == ["shop-1/logs/a"]


def test_missing_bucket_is_a_one_line_storage_error(moto_s3):
    """GIVEN a bucket that does not exist WHEN the store is read THEN the error names the bucket."""
    from handlers.errors import StorageError

    store = open_store("s3://no-such-bucket-here/x", s3_client=moto_s3.client)
    with pytest.raises(StorageError, match="s3://no-such-bucket-here: no such bucket"):
        store.read("state/state.bin")


def test_random_interleavings_never_lose_a_referenced_object_on_s3(moto_s3):
    """GIVEN the seeded random walk of tests/support/interleavings.py on s3:// (a new client handle for
    each cold process) THEN after every step every object state.bin references exists and a cold
    process reads the state; the walk reached new bases and closed days."""
    from tests.support.crash import BUSY_CATALOG
    from tests.support.interleavings import walk

    url = moto_s3.bucket_url("walk/")
    walked = walk(lambda: open_store(url, s3_client=moto_s3.client), BUSY_CATALOG, seed=18, steps=250)
    assert len(walked.bases) >= 5 and len(walked.history) >= 2 and walked.hot_pruned > 0, walked
