"""``report`` on an S3 store (a real moto server): the same figures as on the file backend, with
the log objects fetched concurrently."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from handlers.app import build_runtime
from handlers.model.catalog import parse_catalog
from handlers.model.events import parse_time
from handlers.runtime.settings import Settings
from handlers.storage.location import open_store
from handlers.storage.s3 import S3Store
from jobs.report import load_run, summary_rows
from jobs.schedule import Schedule
from jobs.simulate import simulate
from tests.support.ticks import SMALL_CATALOG

pytestmark = pytest.mark.integration


class _TwoAtOnce(S3Store):
    """Its first two GETs of log objects each wait until the other has started: sequential reads never
    get past."""

    def __init__(self, inner: S3Store) -> None:
        super().__init__(inner.bucket, inner.prefix, client=inner.client, url=inner.url)
        self._meet = threading.Barrier(2, timeout=60)
        self._calls = 0
        self._count = threading.Lock()

    def get(self, key: str) -> bytes:
        if not key.startswith("logs/"):  # the state's history object is read before the logs, alone
            return super().get(key)
        with self._count:
            self._calls += 1
            first_two = self._calls <= 2
        if first_two:
            self._meet.wait()  # BrokenBarrierError if the other never comes
        return super().get(key)


def _replay(store, catalog) -> None:
    runtime = replace(build_runtime(Settings(store_url="file:///unused")), store=store, catalog=catalog, publish=None)
    simulate(runtime, start=parse_time("2026-01-05T00:00:00Z"), days=0.25, schedule=Schedule.parse())


def test_s3_report_equals_the_file_report_and_reads_concurrently(moto_s3, tmp_path):
    """GIVEN the same replay on S3 and on files WHEN the report data is read THEN every summary row is
    the same, and the S3 objects were fetched with at least two GETs in flight at once."""
    catalog = parse_catalog(SMALL_CATALOG, source="small")
    s3 = open_store(moto_s3.bucket_url("shop/"), s3_client=moto_s3.client)
    files = open_store(f"file://{tmp_path}/store")
    _replay(s3, catalog)
    _replay(files, catalog)
    from_s3 = load_run(_TwoAtOnce(s3), catalog)
    from_files = load_run(files, catalog)
    assert from_s3.objects_read == from_files.objects_read > 100
    assert summary_rows(from_s3) == summary_rows(from_files)
    assert summary_rows(from_s3)[-1]["units_sold"] > 0
