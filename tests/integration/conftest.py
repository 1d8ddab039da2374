"""Fixtures that run real servers (tests/support/servers.py) for the tests in this folder.

- ``moto_server`` (session): one moto server for the whole run.
- ``moto_s3`` (function): AWS test credentials in the environment, a boto3 S3 client on that
  server and ``moto_s3.bucket_url(prefix="")``, which makes a fresh bucket at each call.
- ``pushgateway`` (function): a Pushgateway of the test's own; ``.stop()``/``.start()``.
- ``prometheus_factory`` (function): ``prometheus_factory(config_text | config_path=...,
  rule_files=...)`` starts a Prometheus that is stopped when the test ends.

Every test collected under this folder is marked ``integration``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support import servers

AWS_REGION = "us-east-1"
_HERE = Path(__file__).resolve().parent


#: Session fixtures one process should hold for the whole run: with pytest-xdist (scripts/test.sh runs
#: two workers) every test that uses one goes to the same worker (``--dist loadgroup``), so one
#: LocalStack starts and one set of Lambda zips is built, not one per worker.
_SHARED_BY_ONE_WORKER = {"localstack", "lambda_artifacts"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)
            if _SHARED_BY_ONE_WORKER & set(getattr(item, "fixturenames", ())):
                item.add_marker(pytest.mark.xdist_group("localstack"))


@pytest.fixture(scope="session", autouse=True)
def _loopback_bypasses_proxies() -> Iterator[None]:
    """Keep HTTP clients (urllib in prometheus_client, botocore) off any proxy for 127.0.0.1."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("NO_PROXY", "no_proxy"):
            present = [h for h in os.environ.get(name, "").split(",") if h]
            mp.setenv(name, ",".join(present + ["127.0.0.1", "localhost"]))
        yield


@pytest.fixture(scope="session")
def moto_server() -> Iterator[servers.MotoServer]:
    with servers.moto_server() as server:
        yield server


@dataclass(frozen=True)
class MotoS3:
    endpoint_url: str
    region: str
    client: Any  # botocore S3 client

    def bucket_url(self, prefix: str = "") -> str:
        """``s3://<new bucket>/<prefix>``: a bucket made for this call alone."""
        bucket = f"test-{uuid.uuid4().hex[:16]}"
        self.client.create_bucket(Bucket=bucket)
        return f"s3://{bucket}/{prefix.lstrip('/')}"


@pytest.fixture
def moto_s3(moto_server: servers.MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoS3:
    """S3 on the session's moto server; the endpoint is never put in the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", AWS_REGION)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    client = boto3.session.Session().client("s3", region_name=AWS_REGION, endpoint_url=moto_server.endpoint_url)
    return MotoS3(endpoint_url=moto_server.endpoint_url, region=AWS_REGION, client=client)


@pytest.fixture
def pushgateway() -> Iterator[servers.Pushgateway]:
    with servers.pushgateway() as gateway:
        yield gateway


@pytest.fixture
def prometheus_factory() -> Iterator[Callable[..., servers.Prometheus]]:
    """Same arguments as ``servers.prometheus``; each server stops when the test ends."""
    with contextlib.ExitStack() as stack:

        def start(*args: Any, **kwargs: Any) -> servers.Prometheus:
            return stack.enter_context(servers.prometheus(*args, **kwargs))

        yield start


@pytest.fixture(scope="session")
def localstack() -> Iterator[servers.LocalStack]:
    """One LocalStack (host mode) for the run; tests keep apart by deployment name and bucket."""
    with servers.localstack() as server:
        yield server


@pytest.fixture(scope="session")
def lambda_artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``python -m jobs package`` for python3.12, once per run (wheels cached between runs)."""
    from jobs import package

    out = tmp_path_factory.mktemp("lambda")
    return {artifact.name: artifact for artifact in package.build(out, python="3.12")}
