"""The compose stack's configs through the real tools, and the runner guard's probe on a real API.

- ``amtool check-config`` on the Alertmanager config compose mounts;
- ``promtool check config`` on the Prometheus config compose mounts (read from the resolved
  compose file, so a change of mount or path is followed);
- the scheduler's guard probe (``LAMBDAS_DEPLOYED`` in docker-compose.yml) against a real Lambda
  API (moto server): "absent" before deploy's functions exist, "deployed" after one does.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
import servers
import yaml

from jobs.deploy import function_names

ROOT = Path(__file__).resolve().parents[2]
SECRET_KEYS = {"auth_password", "auth_secret", "api_url", "api_key", "routing_key", "service_key",
               "token", "bot_token", "client_secret", "password", "webhook_url"}


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    env_file = tmp_path_factory.mktemp("compose") / "empty.env"
    env_file.write_text("")
    binary = servers.find_binary("docker-compose", debian_package="docker-compose")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "STOCKPULSE_"))}
    proc = subprocess.run([binary, "--env-file", str(env_file), "-f", str(ROOT / "docker-compose.yml"), "config"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


def mounted_config(service: dict[str, Any], flag: str = "--config.file=") -> Path:
    """The host file behind a ``--config.file=`` argument, through the service's bind mounts."""
    (inside,) = [a.removeprefix(flag) for a in service["command"] if a.startswith(flag)]
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        if inside.startswith(target.rstrip("/") + "/"):
            return Path(source) / inside[len(target.rstrip("/")) + 1:]
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
    proc = subprocess.run([promtool, "check", "config", path.name], capture_output=True, text=True,
                          cwd=path.parent, timeout=60)
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
    env.update(AWS_ENDPOINT_URL=moto_server.endpoint_url, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_DEFAULT_REGION="us-east-1", NO_PROXY="127.0.0.1,localhost")

    def ask() -> str:
        proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                              cwd=ROOT, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    iam = session.client("iam", endpoint_url=moto_server.endpoint_url)
    lambda_ = session.client("lambda", endpoint_url=moto_server.endpoint_url)
    for name in [f["FunctionName"] for f in lambda_.list_functions()["Functions"]]:
        lambda_.delete_function(FunctionName=name)  # the session's server is shared
    role = iam.create_role(RoleName="compose-guard-probe", AssumeRolePolicyDocument="{}")["Role"]["Arn"]

    def create(name: str) -> None:
        lambda_.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="handlers.x.handler",
                                Code={"ZipFile": _tiny_zip()})

    assert ask() == "absent"
    create("someone-else")
    assert ask() == "absent"
    create(function_names()["order_tick"])
    assert ask() == "deployed"
    for name in ("someone-else", function_names()["order_tick"]):
        lambda_.delete_function(FunctionName=name)
