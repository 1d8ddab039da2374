"""The compose stack's configs through the real tools, and the runner guard's probe on a real API.

- ``amtool check-config`` on the Alertmanager config compose mounts;
- ``promtool check config`` on the Prometheus config compose mounts (read from the resolved
  compose file, so a change of mount or path is followed);
- the scheduler's guard probe (``LAMBDAS_DEPLOYED`` in docker-compose.yml) against a real Lambda
  API (moto server): "absent" before deploy's functions exist, "deployed" after one does;
- scripts/observability.sh, the Pushgateway + Prometheus + Alertmanager of the compose file run on
  the host: real servers on free ports, a push seen through Prometheus, the rules, the listeners,
  the stop on SIGTERM.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from jobs.deploy import function_names
from tests.support import servers

ROOT = Path(__file__).resolve().parents[2]
SECRET_KEYS = {
    "auth_password",
    "auth_secret",
    "api_url",
    "api_key",
    "routing_key",
    "service_key",
    "token",
    "bot_token",
    "client_secret",
    "password",
    "webhook_url",
}


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    env_file = tmp_path_factory.mktemp("compose") / "empty.env"
    env_file.write_text("")
    binary = servers.find_binary("docker-compose", debian_package="docker-compose")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "STOCKPULSE_"))}
    proc = subprocess.run(
        [binary, "--env-file", str(env_file), "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


def mounted_config(service: dict[str, Any], flag: str = "--config.file=") -> Path:
    """The host file behind a ``--config.file=`` argument, through the service's bind mounts."""
    (inside,) = [a.removeprefix(flag) for a in service["command"] if a.startswith(flag)]
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        if inside.startswith(target.rstrip("/") + "/"):
            return Path(source) / inside[len(target.rstrip("/")) + 1 :]
    raise AssertionError(f"{inside} is not in a bind mount of {service['volumes']}")


def test_amtool_accepts_the_alertmanager_config_compose_mounts(compose_config):
    path = mounted_config(compose_config["services"]["alertmanager"])
    assert path == ROOT / "infra" / "alertmanager" / "alertmanager.yml"
    amtool = servers.find_binary("amtool", debian_package="prometheus-alertmanager")
    proc = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_alertmanager_config_holds_no_secret_and_routes_to_a_defined_receiver():
    config = yaml.safe_load((ROOT / "infra" / "alertmanager" / "alertmanager.yml").read_text())

    def keys(node: Any) -> set[str]:
        if isinstance(node, dict):
            return set(node) | {k for v in node.values() for k in keys(v)}
        if isinstance(node, list):
            return {k for v in node for k in keys(v)}
        return set()

    assert not keys(config) & SECRET_KEYS
    names = {r["name"] for r in config["receivers"]}

    def routes(route: dict[str, Any]) -> list[dict[str, Any]]:
        return [route] + [r for child in route.get("routes", []) for r in routes(child)]

    assert all(r.get("receiver", config["route"]["receiver"]) in names for r in routes(config["route"]))


def test_promtool_accepts_the_prometheus_config_compose_mounts(compose_config):
    path = mounted_config(compose_config["services"]["prometheus"])
    assert path == ROOT / "infra" / "prometheus" / "prometheus.yml"
    promtool = servers.find_binary("promtool", debian_package="prometheus")
    proc = subprocess.run([promtool, "check", "config", path.name], capture_output=True, text=True, cwd=path.parent, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _tiny_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handlers/__init__.py", "")
    return buffer.getvalue()


def test_guard_probe_sees_deploys_functions_on_a_real_lambda_api(compose_config, moto_server):
    """GIVEN the scheduler's probe WHEN no stockpulse function exists THEN it prints "absent";
    WHEN deploy's order_tick function exists THEN "deployed" (an unrelated function changes nothing)."""
    probe = compose_config["services"]["scheduler"]["environment"]["LAMBDAS_DEPLOYED"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=moto_server.endpoint_url,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
        NO_PROXY="127.0.0.1,localhost",
    )

    def ask() -> str:
        proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    iam = session.client("iam", endpoint_url=moto_server.endpoint_url)
    lambda_ = session.client("lambda", endpoint_url=moto_server.endpoint_url)
    for name in [f["FunctionName"] for f in lambda_.list_functions()["Functions"]]:
        lambda_.delete_function(FunctionName=name)  # the session's server is shared
    role = iam.create_role(RoleName="compose-guard-probe", AssumeRolePolicyDocument="{}")["Role"]["Arn"]

    def create(name: str) -> None:
        lambda_.create_function(
            FunctionName=name, Runtime="python3.12", Role=role, Handler="handlers.x.handler", Code={"ZipFile": _tiny_zip()}
        )

    assert ask() == "absent"
    create("someone-else")
    assert ask() == "absent"
    create(function_names()["order_tick"])
    assert ask() == "deployed"
    for name in ("someone-else", function_names()["order_tick"]):
        lambda_.delete_function(FunctionName=name)


# -- scripts/observability.sh: the metrics stack on the host, without Docker -------------------------

OBSERVABILITY = ROOT / "scripts" / "observability.sh"
RULES_FILE = ROOT / "infra" / "prometheus" / "rules" / "stockpulse.rules.yml"


def _http_json(url: str) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as answer:
        return json.load(answer)


def _answers(url: str) -> bool:
    """True when GET ``url`` answers 2xx (errors raise OSError: "not yet")."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as answer:
        return 200 <= answer.status < 300


def _until(what: str, check: Callable[[], Any], *, proc: subprocess.Popen, deadline: float = 60.0) -> Any:
    """Poll ``check()`` until it returns something truthy; fail (with the script's output) when the
    script exits or the deadline passes. Connection errors count as "not yet"."""
    end = time.monotonic() + deadline
    while True:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        if proc.poll() is not None:
            raise AssertionError(
                f"observability.sh exited ({proc.returncode}) while waiting for {what}: {proc.stdout.read() if proc.stdout else ''}"
            )
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {deadline:g} s")
        time.sleep(0.2)


def children(pid: int) -> dict[int, str]:
    """pid -> command name of every process whose parent is ``pid`` (/proc/<pid>/stat)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
            if int(rest[1]) == pid:
                found[int(entry.name)] = name
    return found


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    return socket.inet_ntop(socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))


def listeners(pids: Iterable[int]) -> list[tuple[int, str, str, int]]:
    """(pid, protocol, address, port) of every listening TCP and every bound UDP socket the processes
    hold: their socket inodes (/proc/<pid>/fd) looked up in /proc/net/{tcp,tcp6,udp,udp6}."""
    owner = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                match = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd))
            except OSError:
                continue
            if match:
                owner[match[1]] = pid
    found = []
    for protocol, state in (("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07")):
        for line in Path(f"/proc/net/{protocol}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in owner and fields[3] == state:
                address, port = fields[1].split(":")
                found.append((owner[fields[9]], protocol, _address(address), int(port, 16)))
    return found


def test_control_listeners_sees_a_socket_on_every_interface():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert (os.getpid(), "tcp", "0.0.0.0", port) in listeners([os.getpid()])


@pytest.mark.integration
def test_observability_script_runs_the_metrics_stack_on_loopback_and_stops_it(tmp_path):
    """GIVEN scripts/observability.sh on free ports and a data dir WHEN the three are ready THEN a
    metric pushed to its Pushgateway comes back from its Prometheus with the pushed job label
    (honor_labels), the project's rules are loaded, alerts go to its Alertmanager, every listener
    is on 127.0.0.1 and the printed --pushgateway flag is one `python -m jobs run` accepts; WHEN it
    gets SIGTERM THEN it exits 0 and all three processes are gone."""
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    from jobs.cli import build_parser

    ports = {name: servers.free_port() for name in ("pushgateway", "prometheus", "alertmanager")}
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_PORT")}
    env["NO_PROXY"] = "127.0.0.1,localhost"
    argv = [
        "bash",
        str(OBSERVABILITY),
        "--data-dir",
        str(data),
        "--scrape-interval",
        "1s",
        *(a for name, port in ports.items() for a in (f"--{name}-port", str(port))),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    started: dict[int, str] = {}
    try:
        url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        for name in ports:
            _until(f"{name} ready", lambda name=name: _answers(url[name] + "/-/ready"), proc=proc)

        def three_children() -> dict[int, str] | None:
            found = children(proc.pid)
            return found if len(found) == 3 else None

        started = _until("three children", three_children, proc=proc)
        assert sorted(started.values()) == sorted(["prometheus", "prometheus-push", "prometheus-aler"])

        registry = CollectorRegistry()
        Gauge("stockpulse_observability_probe", "test probe", registry=registry).set(42)
        push_to_gateway(f"127.0.0.1:{ports['pushgateway']}", job="observability_probe", registry=registry)
        query = url["prometheus"] + "/api/v1/query?query=stockpulse_observability_probe"
        (sample,) = _until("the pushed metric in Prometheus", lambda: _http_json(query)["data"]["result"], proc=proc)
        assert sample["metric"]["job"] == "observability_probe" and sample["value"][1] == "42"

        groups = _http_json(url["prometheus"] + "/api/v1/rules")["data"]["groups"]
        wanted = yaml.safe_load(RULES_FILE.read_text())["groups"]
        assert {(g["name"], r["name"]) for g in groups for r in g["rules"]} == {
            (g["name"], r.get("alert") or r["record"]) for g in wanted for r in g["rules"]
        }
        managers = _until(
            "an active Alertmanager",
            lambda: _http_json(url["prometheus"] + "/api/v1/alertmanagers")["data"]["activeAlertmanagers"],
            proc=proc,
        )
        assert [m["url"] for m in managers] == [f"{url['alertmanager']}/api/v2/alerts"]

        bound = listeners(started)
        assert {port for _, _, _, port in bound} == set(ports.values())
        assert {(address, protocol) for _, protocol, address, _ in bound} == {("127.0.0.1", "tcp")}, bound
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert started and not [pid for pid in started if Path(f"/proc/{pid}").exists()], started
    (flag_line,) = [line for line in output.splitlines() if "--pushgateway" in line]
    args = build_parser().parse_args(flag_line.split("-m jobs ", 1)[1].split())
    assert (args.command, args.pushgateway_url) == ("run", f"http://127.0.0.1:{ports['pushgateway']}")
    assert (data / "pushgateway" / "metrics.db").is_file()  # its persistence file, in the given dir
