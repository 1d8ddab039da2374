"""The push against real local HTTP servers that hang, dribble, refuse, demand basic auth or speak
TLS: it gives up when its budget is spent, is counted as a failure and never fails the handler;
credentials authenticate and are never shown."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from handlers.errors import ConfigError, StorageError
from handlers.runtime import shards
from handlers.runtime.invoke import Runtime, invoke, load_state
from handlers.runtime.settings import Settings
from handlers.storage.deadline import Deadline
from handlers.storage.file import FileStore
from handlers.telemetry.metrics import metrics_key
from handlers.telemetry.publisher import publisher
from jobs.cli import main
from tests.support.ticks import START, event_at

SECRET = "s3cr3t-pw"


class Gateway(BaseHTTPRequestHandler):
    """``mode``: ok | hang | dribble | auth (demands user:SECRET)."""

    mode = "ok"
    requests: list[dict] = []
    dribbled: list[int] = []
    dribble_bytes = 400  # 20 s at one byte per 50 ms, if nobody gives up

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # an S3 endpoint that never answers
        self.requests.append({"path": self.path})
        time.sleep(5)

    do_HEAD = do_GET

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if self.mode == "hang":
            time.sleep(20)
            return
        if self.mode == "dribble":
            sent = 0
            try:
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * self.dribble_bytes:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    sent += 1
                    time.sleep(0.05)
            except OSError:
                pass
            self.dribbled.append(sent)
            self.close_connection = True
            return
        if self.mode == "auth" and self.headers.get("Authorization") != "Basic dXNlcjpzM2NyM3QtcHc=":
            self.send_response(401)
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextlib.contextmanager
def gateway(mode: str, *, tls: ssl.SSLContext | None = None) -> Iterator[tuple[int, type]]:
    handler = type("G", (Gateway,), {"mode": mode, "requests": [], "dribbled": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


def runtime_for(tmp_path: Path, catalog, url: str, **settings) -> tuple[Runtime, FileStore]:
    store = FileStore(tmp_path / "s")
    config = Settings(store_url=f"file://{store.root}", pushgateway_url=url, **settings)
    return Runtime(store=store, catalog=catalog, publish=publisher(config, store=store)), store


@pytest.mark.parametrize("mode", ["hang", "dribble"])
def test_a_slow_pushgateway_is_given_up_on_counted_and_the_handler_succeeds(mode, tmp_path, small_catalog):
    """GIVEN a Pushgateway that never answers, or answers a byte every 50 ms for 20 s WHEN a handler
    pushes with a 1 s push budget THEN the push gives up ("push budget"), the handler is applied,
    the failure is counted in the state, and the dribbling server sees the client leave early."""
    with gateway(mode) as (port, server):
        runtime, store = runtime_for(tmp_path, small_catalog, f"http://127.0.0.1:{port}", push_timeout_seconds=1)
        result = invoke("order_tick", event_at(START + timedelta(minutes=1)), runtime)
        assert result["status"] == "applied"
        assert "PushTimeout" in result["metrics_error"] and "push budget of 1 s" in result["metrics_error"]
        assert load_state(store)[0].push_failures.tolist() == [1, 0, 0, 0]
        assert len(server.requests) == 1
        if mode == "dribble":
            for _ in range(400):  # the server notices the closed connection at its next write
                if server.dribbled:
                    break
                time.sleep(0.05)
            assert server.dribbled and server.dribbled[0] < server.dribble_bytes


class LambdaContext:
    def __init__(self, millis: int) -> None:
        self.millis = millis

    def get_remaining_time_in_millis(self) -> int:
        return self.millis


def test_the_lambda_deadline_caps_the_push_budget(tmp_path, small_catalog):
    """GIVEN a Lambda with 1.6 s left (1 s kept back) and a 300 s push timeout WHEN the Pushgateway
    dribbles THEN the push budget is the function's time left, not the push timeout."""
    with gateway("dribble") as (port, _):
        runtime, store = runtime_for(tmp_path, small_catalog, f"http://127.0.0.1:{port}", push_timeout_seconds=300)
        result = invoke("order_tick", event_at(START + timedelta(minutes=1)), runtime, deadline=Deadline.from_context(LambdaContext(1600)))
    assert result["status"] == "applied"
    budget = float(result["metrics_error"].split("push budget of ")[1].split(" s")[0])
    assert 0 < budget <= 0.6


def test_a_spent_deadline_stops_before_the_next_storage_call_with_nothing_written(tmp_path, small_catalog):
    """GIVEN an invocation whose Lambda time is already spent WHEN it runs THEN a StorageError names
    the key and the time budget, and the store stays empty."""
    store = FileStore(tmp_path / "s")
    shards.forget_checks()  # a new process: its first storage call is the shard manifest's check
    with pytest.raises(StorageError, match=r"^state/shards.json: the invocation's time budget"):
        invoke(
            "order_tick", event_at(START), Runtime(store=store, catalog=small_catalog), deadline=Deadline.from_context(LambdaContext(500))
        )
    assert not (tmp_path / "s").exists()


def test_a_refusing_pushgateway_is_a_counted_failure(tmp_path, small_catalog):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    runtime, store = runtime_for(tmp_path, small_catalog, f"http://127.0.0.1:{port}")
    result = invoke("order_tick", event_at(START + timedelta(minutes=1)), runtime)
    assert result["status"] == "applied" and "ConnectionRefusedError" in result["metrics_error"]
    assert load_state(store)[0].push_failures.tolist() == [1, 0, 0, 0]


def test_credentials_in_the_url_authenticate_and_are_never_shown(tmp_path, small_catalog):
    """GIVEN --pushgateway http://user:PW@host WHEN a handler runs THEN the push carries basic auth and
    succeeds; Settings' repr and the printed result do not contain the password."""
    with gateway("auth") as (port, server):
        url = f"http://user:{SECRET}@127.0.0.1:{port}"
        runtime, _ = runtime_for(tmp_path, small_catalog, url)
        result = invoke("order_tick", event_at(START + timedelta(minutes=1)), runtime)
        assert "metrics_error" not in result and server.requests[0]["path"] == "/metrics/job/order_tick"
        assert SECRET not in repr(Settings(pushgateway_url=url, pushgateway_password=SECRET))


def test_credentials_from_the_environment_authenticate(tmp_path, small_catalog):
    with gateway("auth") as (port, server):
        runtime, _ = runtime_for(
            tmp_path, small_catalog, f"http://127.0.0.1:{port}", pushgateway_username="user", pushgateway_password=SECRET
        )
        assert "metrics_error" not in invoke("order_tick", event_at(START + timedelta(minutes=1)), runtime)
        assert server.requests[0]["auth"] == "Basic dXNlcjpzM2NyM3QtcHc="


def test_a_rejected_password_is_redacted_from_result_warning_and_cli_output(tmp_path, small_catalog, caplog, capsys):
    """GIVEN a wrong password in the URL WHEN pushing (library and CLI) THEN the failure is reported
    with the URL as http://***@host and the password appears in no result, warning or output."""
    with gateway("auth") as (port, _):
        url = f"http://user:wrong-{SECRET}@127.0.0.1:{port}"
        runtime, _ = runtime_for(tmp_path, small_catalog, url)
        with caplog.at_level(logging.WARNING, logger="stockpulse"):
            result = invoke("order_tick", event_at(START + timedelta(minutes=1)), runtime)
        assert "401" in result["metrics_error"] and f"http://***@127.0.0.1:{port}" in result["metrics_error"]
        assert SECRET not in json.dumps(result) and SECRET not in caplog.text
        code = main(["invoke", "order_tick", "--time", "2026-01-05T00:02:00Z", "--store", f"file://{tmp_path}/c", "--pushgateway", url])
        out = capsys.readouterr()
        assert code == 0 and "401" in out.out
        assert SECRET not in out.out + out.err + caplog.text


def test_a_bad_pushgateway_url_is_refused_without_echoing_its_password():
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"STOCKPULSE_PUSHGATEWAY_URL": f"ftp://user:{SECRET}@host"})
    assert "STOCKPULSE_PUSHGATEWAY_URL" in str(refused.value) and SECRET not in str(refused.value)


def test_an_https_pushgateway_with_its_own_ca_is_trusted_through_the_setting(tmp_path, small_catalog):
    """GIVEN a Pushgateway behind TLS with a self-signed certificate WHEN its CA file is configured
    THEN the push succeeds; without it the push fails certificate verification."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with gateway("auth", tls=tls) as (port, server):
        url = f"https://user:{SECRET}@127.0.0.1:{port}"
        runtime, _ = runtime_for(tmp_path / "a", small_catalog, url, pushgateway_ca_file=str(cert))
        assert "metrics_error" not in invoke("order_tick", event_at(START + timedelta(minutes=1)), runtime)
        untrusted, _ = runtime_for(tmp_path / "b", small_catalog, url)
        failed = invoke("order_tick", event_at(START + timedelta(minutes=1)), untrusted)
        assert "CERTIFICATE_VERIFY_FAILED" in failed["metrics_error"] and SECRET not in failed["metrics_error"]


def test_an_s3_call_that_hangs_ends_at_the_invocation_deadline(tmp_path, small_catalog):
    """GIVEN an S3 endpoint that accepts the request and never answers (botocore would wait 30 s per
    read) WHEN a Lambda invocation with 1 s left reads the state THEN it fails at the deadline with
    one StorageError line naming the key and the time budget."""
    import boto3
    from botocore.config import Config

    from handlers.storage.s3 import S3Store

    with gateway("hang") as (port, server):
        client = boto3.session.Session().client(
            "s3",
            region_name="us-east-1",
            endpoint_url=f"http://127.0.0.1:{port}",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"max_attempts": 1}, read_timeout=30),
        )
        runtime = Runtime(store=S3Store("bucket", client=client), catalog=small_catalog)
        shards.forget_checks()  # a new process: its first storage call is the shard manifest's check
        with pytest.raises(
            StorageError,
            match=r"^state/shards.json: no answer from s3://bucket/ within the "
            r"invocation's time budget \(1.0 s\)",
        ):
            invoke("order_tick", event_at(START), runtime, deadline=Deadline(1.0))
        assert server.requests  # the request really reached the server


def test_outside_lambda_an_s3_store_gets_the_invocation_budget(monkeypatch, capsys):
    """GIVEN an S3 endpoint that never answers and no Lambda context WHEN `invoke` runs with
    --invocation-budget 1 THEN it ends at that budget with one line naming the key and the budget
    (botocore alone would wait 30 s per read, five times)."""
    with gateway("hang") as (port, server):
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        shards.forget_checks()
        code = main(["invoke", "order_tick", "--time", "2026-01-05T00:01:00Z", "--store", "s3://bucket", "--invocation-budget", "1"])
        assert server.requests
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("stockpulse: error: state/shards.json: no answer from s3://bucket")
    assert "time budget (1.0 s)" in err[-1]


def test_a_shards_group_is_pushed_under_its_shard(tmp_path, small_catalog):
    """GIVEN a real HTTP server as the Pushgateway WHEN a publisher publishes shard 3's metrics THEN
    the PUT goes to /metrics/job/<handler>/shard/3; without a shard to /metrics/job/<handler>."""
    runtime, store = runtime_for(tmp_path, small_catalog, "http://127.0.0.1:9")
    invoke("order_tick", event_at(START + timedelta(minutes=1)), replace(runtime, publish=None))
    state, _ = load_state(store)
    with gateway("ok") as (port, handler):
        publish = publisher(Settings(store_url=f"file://{store.root}", pushgateway_url=f"http://127.0.0.1:{port}"), store=store)
        assert publish("order_tick", state, small_catalog, shard=3) is None
        assert publish("order_tick", state, small_catalog) is None
    assert [r["path"] for r in handler.requests] == ["/metrics/job/order_tick/shard/3", "/metrics/job/order_tick"]
    assert b"inventory_level_units{" in handler.requests[0]["body"]


def test_without_a_pushgateway_a_shards_group_is_a_file_of_its_own(tmp_path, small_catalog):
    """GIVEN no Pushgateway WHEN shard 1 publishes THEN metrics/<handler>/shard/1.prom holds its group."""
    runtime, store = runtime_for(tmp_path, small_catalog, None)
    invoke("order_tick", event_at(START + timedelta(minutes=1)), replace(runtime, publish=None))
    state, _ = load_state(store)
    publish = publisher(Settings(store_url=f"file://{store.root}"), store=store)
    assert publish("order_tick", state, small_catalog, shard=1) is None
    assert metrics_key("order_tick", 1) == "metrics/order_tick/shard/1.prom"
    assert b"inventory_level_units{" in store.get("metrics/order_tick/shard/1.prom")
