"""The real-server harness (tests/support/servers.py) against the real binaries."""

from __future__ import annotations

import urllib.error

import pytest
from botocore.exceptions import ClientError
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from tests.support import servers


def _error_code(error: ClientError) -> str:
    return error.response["Error"]["Code"]


def _push_probe(address: str, value: float, *, job: str = "harness") -> None:
    registry = CollectorRegistry()
    gauge = Gauge(
        "stockpulse_harness_probe", "Set by the harness tests.", ["sku"], registry=registry
    )
    gauge.labels(sku="A-1").set(value)
    push_to_gateway(
        address, job=job, registry=registry, grouping_key={"instance": "run-1"}, timeout=5
    )


# --- moto: S3 conditional writes ----------------------------------------------------------


def test_put_if_none_match_on_existing_key_is_412(moto_s3):
    # GIVEN an object that exists
    bucket = moto_s3.bucket_url().removeprefix("s3://").rstrip("/")
    moto_s3.client.put_object(Bucket=bucket, Key="state.json", Body=b"v1")
    # WHEN it is written again only-if-absent
    with pytest.raises(ClientError) as caught:
        moto_s3.client.put_object(Bucket=bucket, Key="state.json", Body=b"v2", IfNoneMatch="*")
    # THEN S3 refuses with 412 and the object is unchanged
    assert _error_code(caught.value) == "PreconditionFailed"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert moto_s3.client.get_object(Bucket=bucket, Key="state.json")["Body"].read() == b"v1"


def test_put_if_match_with_wrong_etag_is_412(moto_s3):
    bucket = moto_s3.bucket_url().removeprefix("s3://").rstrip("/")
    moto_s3.client.put_object(Bucket=bucket, Key="state.json", Body=b"v1")

    with pytest.raises(ClientError) as caught:
        moto_s3.client.put_object(
            Bucket=bucket, Key="state.json", Body=b"v2", IfMatch='"0123456789abcdef0123456789abcdef"'
        )

    assert _error_code(caught.value) == "PreconditionFailed"
    assert moto_s3.client.get_object(Bucket=bucket, Key="state.json")["Body"].read() == b"v1"


def test_put_if_match_with_current_etag_succeeds(moto_s3):
    bucket = moto_s3.bucket_url().removeprefix("s3://").rstrip("/")
    etag = moto_s3.client.put_object(Bucket=bucket, Key="state.json", Body=b"v1")["ETag"]

    moto_s3.client.put_object(Bucket=bucket, Key="state.json", Body=b"v2", IfMatch=etag)

    assert moto_s3.client.get_object(Bucket=bucket, Key="state.json")["Body"].read() == b"v2"


def test_bucket_url_makes_a_fresh_bucket_at_each_call(moto_s3):
    first, second = moto_s3.bucket_url("logs/"), moto_s3.bucket_url()

    assert first.startswith("s3://") and first.endswith("/logs/")
    names = {b["Name"] for b in moto_s3.client.list_buckets()["Buckets"]}
    assert {first[5:].split("/")[0], second[5:].split("/")[0]} <= names
    assert first.split("/")[2] != second.split("/")[2]


# --- Pushgateway and Prometheus -----------------------------------------------------------


def test_pushed_gauge_is_queryable_in_prometheus_with_pushed_labels(
    pushgateway, prometheus_factory
):
    # GIVEN Prometheus scraping the Pushgateway every second with honor_labels
    prom = prometheus_factory(servers.prometheus_config(pushgateway.address))
    # WHEN a gauge is pushed from a fresh registry
    _push_probe(pushgateway.address, 42)
    # THEN Prometheus returns it with the pushed labels, not the scrape job's
    result = prom.wait_for("stockpulse_harness_probe", lambda r: len(r) == 1, timeout=20)
    metric, (_, value) = result[0]["metric"], result[0]["value"]
    assert (metric["job"], metric["instance"], metric["sku"]) == ("harness", "run-1", "A-1")
    assert float(value) == 42


def test_push_raises_oserror_while_pushgateway_is_stopped_and_works_after_restart(pushgateway):
    port = pushgateway.port
    pushgateway.stop()
    assert not pushgateway.running

    with pytest.raises(OSError) as caught:  # urllib.error.URLError is an OSError
        _push_probe(pushgateway.address, 1)
    assert isinstance(caught.value, urllib.error.URLError)

    pushgateway.start()
    _push_probe(pushgateway.address, 2)
    assert pushgateway.port == port
    assert 'stockpulse_harness_probe{instance="run-1",job="harness",sku="A-1"} 2' in (
        pushgateway.metrics_text()
    )


def test_pushgateway_with_persistence_file_keeps_metrics_across_restart(tmp_path):
    with servers.pushgateway(tmp_path / "pushgateway.db") as gateway:
        _push_probe(gateway.address, 7)
        gateway.stop()
        gateway.start()

        assert 'stockpulse_harness_probe{instance="run-1",job="harness",sku="A-1"} 7' in (
            gateway.metrics_text()
        )


def test_query_error_carries_prometheus_error_text(pushgateway, prometheus_factory):
    prom = prometheus_factory(servers.prometheus_config(pushgateway.address))

    with pytest.raises(servers.PromQLError, match="bad_data.*parse error"):
        prom.query("sum(")


def test_rule_files_are_loaded_beside_the_config(pushgateway, prometheus_factory):
    rules = (
        "groups:\n"
        "  - name: harness\n"
        "    rules:\n"
        "      - alert: HarnessProbeHigh\n"
        "        expr: stockpulse_harness_probe > 10\n"
    )
    prom = prometheus_factory(
        servers.prometheus_config(pushgateway.address, rule_files=["harness.rules.yml"]),
        rule_files={"harness.rules.yml": rules},
    )
    _push_probe(pushgateway.address, 11)

    prom.wait_for("ALERTS{alertname='HarnessProbeHigh'}", lambda r: len(r) == 1, timeout=20)
    assert [a["labels"]["alertname"] for a in prom.alerts()] == ["HarnessProbeHigh"]


# --- failures name their cause ------------------------------------------------------------


def test_server_that_exits_at_start_raises_with_its_log_tail():
    with pytest.raises(servers.ServerStartError, match="(?s)exited with code.*prometheus.yml"):
        with servers.prometheus("scrape_configs: [this is not a scrape config]\n"):
            pass  # pragma: no cover


def test_missing_binary_names_the_debian_package():
    with pytest.raises(servers.BinaryNotFoundError, match="apt-get install -y some-package"):
        servers.find_binary("stockpulse-no-such-binary", debian_package="some-package")
