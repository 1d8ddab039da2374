"""The real-server harness (tests/support/servers.py) against the real binaries, and
scripts/localstack.sh, which the harness runs LocalStack with."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import zipfile
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from tests.support import servers


def _error_code(error: ClientError) -> str:
    return error.response["Error"]["Code"]


def _push_probe(address: str, value: float, *, job: str = "harness") -> None:
    registry = CollectorRegistry()
    gauge = Gauge("stockpulse_harness_probe", "Set by the harness tests.", ["sku"], registry=registry)
    gauge.labels(sku="A-1").set(value)
    push_to_gateway(address, job=job, registry=registry, grouping_key={"instance": "run-1"}, timeout=5)


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
        moto_s3.client.put_object(Bucket=bucket, Key="state.json", Body=b"v2", IfMatch='"0123456789abcdef0123456789abcdef"')

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


def test_pushed_gauge_is_queryable_in_prometheus_with_pushed_labels(pushgateway, prometheus_factory):
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
    assert 'stockpulse_harness_probe{instance="run-1",job="harness",sku="A-1"} 2' in (pushgateway.metrics_text())


def test_pushgateway_with_persistence_file_keeps_metrics_across_restart(tmp_path):
    with servers.pushgateway(tmp_path / "pushgateway.db") as gateway:
        _push_probe(gateway.address, 7)
        gateway.stop()
        gateway.start()

        assert 'stockpulse_harness_probe{instance="run-1",job="harness",sku="A-1"} 7' in (gateway.metrics_text())


def test_query_error_carries_prometheus_error_text(pushgateway, prometheus_factory):
    prom = prometheus_factory(servers.prometheus_config(pushgateway.address))

    with pytest.raises(servers.PromQLError, match="bad_data.*parse error"):
        prom.query("sum(")


def test_rule_files_are_loaded_beside_the_config(pushgateway, prometheus_factory):
    rules = "groups:\n  - name: harness\n    rules:\n      - alert: HarnessProbeHigh\n        expr: stockpulse_harness_probe > 10\n"
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


# --- every server listens on 127.0.0.1 only ------------------------------------------------


@pytest.mark.parametrize("kind", ["moto", "pushgateway", "prometheus", "localstack"])
def test_every_server_listens_on_127_0_0_1_only(kind, request):
    # GIVEN a server as the tests start it (Alertmanager: test_compose_tools.py, through
    # scripts/observability.sh, the only way the tests start one)
    if kind == "prometheus":
        gateway = request.getfixturevalue("pushgateway")
        server = request.getfixturevalue("prometheus_factory")(servers.prometheus_config(gateway.address))
    else:
        server = request.getfixturevalue({"moto": "moto_server", "pushgateway": "pushgateway", "localstack": "localstack"}[kind])
    # WHEN we read what it and every process below it listen on
    bound = servers.listeners(server.processes())
    # THEN it serves its port, and every socket it holds is on 127.0.0.1
    assert ("127.0.0.1", server.port) in {(b.address, b.port) for b in bound}
    assert {(b.protocol, b.address) for b in bound} == {("tcp", "127.0.0.1")}, bound


def test_control_listeners_see_every_interface_below_a_process_even_in_another_session():
    # GIVEN a grandchild in a session of its own, listening on every IPv4 and every IPv6 interface
    code = (
        "import os, socket, sys\n"
        "os.setsid()\n"
        "v4, v6 = socket.create_server(('0.0.0.0', 0)), socket.create_server(('::', 0), family=socket.AF_INET6)\n"
        "print(v4.getsockname()[1], v6.getsockname()[1], flush=True)\n"
        "sys.stdin.read()\n"
    )
    with subprocess.Popen(
        ["sh", "-c", '"$0" -c "$1"; :', sys.executable, code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as shell:
        assert shell.stdout is not None and shell.stdin is not None
        v4, v6 = map(int, shell.stdout.readline().split())
        # WHEN we read what the shell and every process below it listen on
        bound = servers.listeners(servers.descendants(shell.pid))
        shell.stdin.close()
    # THEN both listeners are seen, with their wildcard addresses
    assert {("tcp", "0.0.0.0", v4), ("tcp6", "::", v6)} <= {(b.protocol, b.address, b.port) for b in bound}, bound


# --- scripts/localstack.sh: LocalStack without Docker ---------------------------------------

PROBE = "import os\n\n\ndef handler(event, context):\n    return {'pid': os.getpid()}\n"


def _invoke_probe(endpoint: str) -> int:
    """Create a python3.12 function answering with its process id, invoke it, return that id."""
    lam = boto3.session.Session().client(
        "lambda", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test"
    )
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("probe.py", PROBE)
    lam.create_function(
        FunctionName="probe",
        Runtime="python3.12",
        Role="arn:aws:iam::000000000000:role/probe",
        Handler="probe.handler",
        Code={"ZipFile": code.getvalue()},
    )
    lam.get_waiter("function_active_v2").wait(FunctionName="probe")
    answer = lam.invoke(FunctionName="probe", Payload=b"{}")
    assert "FunctionError" not in answer, answer["Payload"].read()
    return int(json.loads(answer["Payload"].read())["pid"])


def _gone(pids: set[int], *, within: float = 30.0) -> set[int]:
    """Those of ``pids`` still alive (not zombies) after waiting up to ``within`` seconds for them to end."""

    def alive() -> set[int]:
        left = set()
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                left.add(pid)
        return left

    deadline = time.monotonic() + within
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive()


ENDINGS = {
    # name: (what ends it, the script's exit status, a line its output must hold)
    "ctrl-c": (lambda script, localstack: os.killpg(script, signal.SIGINT), 0, "stopping LocalStack"),
    "sigterm, no grace": (lambda script, localstack: os.kill(script, signal.SIGTERM), 0, "killed"),
    "script killed": (lambda script, localstack: os.kill(script, signal.SIGKILL), -signal.SIGKILL, None),
    "localstack died": (lambda script, localstack: os.kill(localstack, signal.SIGKILL), 1, "exited on its own"),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_localstack_script_runs_functions_on_loopback_and_leaves_no_process_however_it_ends(ending, tmp_path):
    """GIVEN scripts/localstack.sh run on a free port, as a user runs it, and a function invoked
    through it WHEN the script gets Ctrl-C (SIGINT to its process group, as a terminal sends it) or
    SIGTERM with no grace (--stop-timeout 0: the SIGKILL path), or is killed outright, or LocalStack
    dies THEN LocalStack, the function's process and everything else it started are gone, and the
    --data-dir given is kept."""
    port = servers.free_port()
    stop_timeout = "0" if ending == "sigterm, no grace" else "20"
    argv = [
        "bash",
        str(servers.LOCALSTACK_SCRIPT),
        "run",
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path / "data"),
        "--stop-timeout",
        stop_timeout,
    ]
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    script = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    assert script.stdout is not None
    output: list[str] = []
    started: set[int] = set()
    try:
        while not output or "Ctrl-C stops" not in output[-1]:
            line = script.stdout.readline()
            assert line, f"the script ended before LocalStack was ready:\n{''.join(output)}"
            output.append(line)
        assert f"ready on http://127.0.0.1:{port}" in "".join(output)

        function = _invoke_probe(f"http://127.0.0.1:{port}")
        started = servers.descendants(script.pid)
        (localstack,) = [pid for pid in started if Path(f"/proc/{pid}/cmdline").read_bytes().endswith(b"-m\0localstack.runtime.main\0")]
        assert function in started
        bound = servers.listeners(started)
        assert {b.pid for b in bound} >= {localstack, function}  # the gateway; the function's invoke port
        assert {(b.protocol, b.address) for b in bound} == {("tcp", "127.0.0.1")}, bound

        end, status, said = ENDINGS[ending]
        end(script.pid, localstack)
        rest, _ = script.communicate(timeout=120)
    finally:
        if script.poll() is None:
            os.killpg(script.pid, signal.SIGKILL)
            script.wait()
    output.append(rest)
    assert script.returncode == status, "".join(output)
    assert said is None or said in "".join(output), "".join(output)
    assert not _gone(started - {script.pid}), "".join(output)
    assert (tmp_path / "data" / "localstack.log").is_file()  # --data-dir is the user's: kept


def test_localstack_script_refuses_a_taken_port_in_one_line(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run(
            ["bash", str(servers.LOCALSTACK_SCRIPT), "run", "--port", str(port)], capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"localstack: --port: 127.0.0.1:{port}: address already in use"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--port", "70000"], "localstack: --port: not a port: 70000"),
        (["run", "--stop-timeout", "soon"], "localstack: --stop-timeout: not a whole number of seconds: soon"),
        (["run", "--verbose"], "localstack: unknown argument --verbose (see --help)"),
        (["start"], "localstack: unknown command start (install or run; see --help)"),
    ],
)
def test_localstack_script_refuses_bad_arguments_in_one_line(argv, message):
    done = subprocess.run(["bash", str(servers.LOCALSTACK_SCRIPT), *argv], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr.splitlines()) == (2, [message])
