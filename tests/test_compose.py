"""The compose stack (docker-compose.yml and what it mounts), checked without a Docker engine.

Debian's ``docker-compose`` (1.29) validates and resolves the file offline; the tests read its
resolved output, so interpolation, anchors and defaults are what compose itself makes of them.
The runner commands (deploy, scheduler) are run with ``/bin/sh`` and a stub ``python`` that
records its arguments, which proves the guard that keeps the two runners off one store.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import shlex
import stat
import subprocess
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from handlers.model.state import HANDLERS
from handlers.telemetry.metrics import METRICS
from jobs import deploy as deploy_module
from jobs import package
from jobs.cli import build_parser
from tests.support import servers

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ELASTIC_IMAGES = ("elasticsearch/elasticsearch", "kibana/kibana", "beats/filebeat", "beats/metricbeat")
SERVICES = {
    "localstack",
    "deploy",
    "scheduler",
    "pushgateway",
    "prometheus",
    "alertmanager",
    "elasticsearch",
    "kibana",
    "es-setup",
    "kibana-setup",
    "filebeat",
    "metricbeat",
}
ONE_SHOT = {"deploy", "es-setup", "kibana-setup"}
SEED_EVENT_TYPES = {"order", "inventory", "reorder_alert", "restock"}
SEED_METRICS = {
    "inventory_level_units",
    "orders_per_minute",
    "orders_total",
    "demand_forecast_units",
    "reorder_events_total",
    "processing_latency_seconds",
}


# -- helpers ---------------------------------------------------------------------------------


def _compose_env(**extra: str) -> dict[str, str]:
    """The environment without any variable the compose file reads: its defaults apply."""
    env = {k: v for k, v in os.environ.items() if k not in _variables() and not k.startswith("COMPOSE_")}
    env.update(extra)
    return env


def run_compose(*args: str, env_file: Path, **extra_env: str) -> subprocess.CompletedProcess:
    binary = servers.find_binary("docker-compose", debian_package="docker-compose")
    return subprocess.run(
        [binary, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_compose_env(**extra_env),
        timeout=120,
    )


@pytest.fixture(scope="module")
def empty_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compose") / "empty.env"
    path.write_text("")
    return path


@cache
def _variables() -> dict[str, str | None]:
    """Variable -> default of every ``${VAR}`` / ``${VAR:-default}`` in the compose file."""
    text = COMPOSE_FILE.read_text()
    found: dict[str, str | None] = {}
    for name, default in re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}", text):
        found[name] = default
    return found


def resolved(env_file: Path, **extra_env: str) -> dict[str, Any]:
    proc = run_compose("config", env_file=env_file, **extra_env)
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


@pytest.fixture(scope="module")
def config(empty_env_file: Path) -> dict[str, Any]:
    """docker-compose's resolved configuration with every variable at its default."""
    return resolved(empty_env_file)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def command_text(service: dict[str, Any]) -> str:
    """The shell script a ``sh -c`` service runs, as the container receives it ($$ -> $)."""
    assert service["entrypoint"] == ["/bin/sh", "-c"], service["entrypoint"]
    (script,) = service["command"]
    return script.replace("$$", "$")


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("/") and not source.startswith("/var/run/"):
            mounts.append((Path(source), target))
    return mounts


def env_file_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


# -- the file itself -------------------------------------------------------------------------


def test_docker_compose_validates_the_file_offline(empty_env_file):
    """GIVEN docker-compose.yml WHEN Debian's docker-compose validates it (defaults, the
    .env.example values, the scheduler profile) THEN it accepts it."""
    for env_file, extra in ((empty_env_file, {}), (ROOT / ".env.example", {}), (empty_env_file, {"COMPOSE_PROFILES": "scheduler"})):
        proc = run_compose("config", "-q", env_file=env_file, **extra)
        assert proc.returncode == 0, (env_file, extra, proc.stderr)


def test_the_stack_has_every_service(config):
    assert set(config["services"]) == SERVICES


def test_every_published_port_is_bound_to_loopback(config):
    published = []
    for name, service in config["services"].items():
        for port in service.get("ports", []):
            text = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port['published']}:{port['target']}"
            published.append((name, text))
            assert text.startswith("127.0.0.1:"), (name, text)
    assert {name for name, _ in published} == {"localstack", "pushgateway", "prometheus", "alertmanager", "elasticsearch", "kibana"}


def test_long_running_services_have_healthchecks_and_one_shots_do_not_restart(config):
    for name, service in config["services"].items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", name
        else:
            test = service.get("healthcheck", {}).get("test")
            assert test and test[0] in ("CMD", "CMD-SHELL"), (name, test)
            assert service.get("restart") in ("unless-stopped", "no"), name


def test_every_dependency_waits_for_health_or_completion(raw, config):
    """Written as conditions in the file (not the short list form), service_healthy on a
    long-running service and service_completed_successfully on a one-shot."""
    for name, service in raw["services"].items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), (name, depends)
        for other, spec in depends.items():
            wanted = "service_completed_successfully" if other in ONE_SHOT else "service_healthy"
            assert spec == {"condition": wanted}, (name, other, spec)
    # the resolved config agrees (nothing dropped by anchors/merges)
    assert config["services"]["scheduler"]["depends_on"]["deploy"]["condition"] == "service_completed_successfully"
    assert config["services"]["filebeat"]["depends_on"]["es-setup"]["condition"] == "service_completed_successfully"


def test_logs_reach_elasticsearch_without_kibana(config):
    """The template step needs Elasticsearch alone, and Filebeat needs only that step, Elasticsearch
    and LocalStack: a slow or failing Kibana holds no log back. Nothing but kibana-setup waits for
    Kibana, and nothing waits for kibana-setup."""
    services = config["services"]
    assert set(services["es-setup"]["depends_on"]) == {"elasticsearch"}
    assert set(services["filebeat"]["depends_on"]) == {"elasticsearch", "localstack", "es-setup"}
    waiting_for = {name: set(service.get("depends_on", {})) for name, service in services.items()}
    assert {name for name, deps in waiting_for.items() if "kibana" in deps} == {"kibana-setup"}
    assert not any("kibana-setup" in deps for deps in waiting_for.values())

    # the two one-shots run the two steps of one script, each only its own
    from importlib.util import module_from_spec, spec_from_file_location

    spec = spec_from_file_location("kibana_setup_steps", ROOT / "infra" / "kibana" / "setup.py")
    setup = module_from_spec(spec)
    sys.modules[spec.name] = setup  # dataclasses resolve annotations through it
    spec.loader.exec_module(setup)
    steps = {name: services[name]["entrypoint"][2:] for name in ("es-setup", "kibana-setup")}
    assert steps == {"es-setup": ["elasticsearch"], "kibana-setup": ["kibana"]}
    assert set(setup.STEPS) == {"elasticsearch", "kibana"}


def test_one_elastic_version_for_the_four_images_pinned_in_infra(config):
    pinned = (ROOT / "infra" / "elastic-version.txt").read_text().strip()
    tags = {}
    for _name, service in config["services"].items():
        image = service.get("image", "")
        if image.startswith("docker.elastic.co/"):
            repo, _, tag = image.removeprefix("docker.elastic.co/").partition(":")
            tags[repo] = tag
    assert set(tags) == set(ELASTIC_IMAGES)
    assert set(tags.values()) == {pinned}
    assert _variables()["ELASTIC_VERSION"] == pinned
    assert env_file_values(ROOT / ".env.example")["ELASTIC_VERSION"] == pinned


# -- Kibana's health check, memory ----------------------------------------------------------------

KIBANA_HOME = "/usr/share/kibana/"
# GET /api/status answers (src/core/packages/status: the v8 format; the redacted one anonymous users get)
STATUS_AVAILABLE = {
    "name": "kibana",
    "status": {
        "overall": {"level": "available", "summary": "All services and plugins are available"},
        "core": {"elasticsearch": {"level": "available"}},
        "plugins": {"lens": {"level": "available"}},
    },
}
STATUS_DEGRADED = {
    "name": "kibana",
    "status": {
        "overall": {"level": "degraded", "summary": "1 service is degraded"},
        "core": {"elasticsearch": {"level": "available"}, "savedObjects": {"level": "degraded"}},
        "plugins": {"lens": {"level": "available"}},
    },
}
STATUS_KEYS_REORDERED = {"status": {"plugins": {}, "overall": {"summary": "ok", "level": "available"}}}
STATUS_REDACTED = {"status": {"overall": {"level": "available"}}}
STATUS_STARTING = {"status": {"overall": {"level": "unavailable"}, "core": {"x": {"level": "available"}}}}


def run_kibana_healthcheck(command: str, body: str | None, tmp_path: Path) -> int:
    """Run the health check's shell command as the container would, with /usr/share/kibana made
    of the host's node.js (the image ships one under node/<build>/bin/) and a curl that prints
    ``body`` (None: fails like a refused connection)."""
    node = servers.find_binary("node", debian_package="nodejs")
    home = tmp_path / "kibana"
    (home / "node" / "glibc-217" / "bin").mkdir(parents=True, exist_ok=True)
    link = home / "node" / "glibc-217" / "bin" / "node"
    if not link.exists():
        link.symlink_to(node)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (tmp_path / "body.json").write_text(body or "")
    curl = bin_dir / "curl"
    curl.write_text(f"#!/bin/sh\n[ -s '{tmp_path / 'body.json'}' ] || exit 7\ncat '{tmp_path / 'body.json'}'\n")
    curl.chmod(0o755)
    script = command.replace("$$", "$").replace(KIBANA_HOME, f"{home}/")
    assert KIBANA_HOME not in script
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    return subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, timeout=60).returncode


def test_kibanas_healthcheck_reads_the_overall_level(config, tmp_path):
    """GIVEN the health check compose gives Kibana WHEN /api/status says overall "available" (key
    order and redaction aside) THEN healthy; WHEN overall is degraded or unavailable while single
    plugins say "available", or nothing answers THEN unhealthy."""
    check = config["services"]["kibana"]["healthcheck"]["test"]
    assert check[0] == "CMD-SHELL" and "/api/status" in check[1]
    for status, healthy in (
        (STATUS_AVAILABLE, True),
        (STATUS_KEYS_REORDERED, True),
        (STATUS_REDACTED, True),
        (STATUS_DEGRADED, False),
        (STATUS_STARTING, False),
        (None, False),
    ):
        code = run_kibana_healthcheck(check[1], json.dumps(status) if status else None, tmp_path)
        assert (code == 0) is healthy, (status, code)


def test_control_the_old_pattern_healthcheck_calls_a_degraded_kibana_healthy(tmp_path):
    old = """curl -fsS http://127.0.0.1:5601/api/status | grep -Eq '"level": ?"available"'"""
    assert run_kibana_healthcheck(old, json.dumps(STATUS_DEGRADED), tmp_path) == 0


def memory_lock_consistent(service: dict[str, Any]) -> bool:
    """bootstrap.memory_lock=true and an unlimited memlock ulimit, both or neither (either alone
    locks nothing: Elasticsearch needs the ulimit to lock, and locks only when asked to)."""
    wants = str(service.get("environment", {}).get("bootstrap.memory_lock", "false")).lower() == "true"
    memlock = service.get("ulimits", {}).get("memlock")
    unlimited = memlock in (-1, {"soft": -1, "hard": -1})
    return wants == unlimited and (memlock is None or unlimited)


def test_elasticsearch_locks_memory_both_ways_or_not_at_all(config):
    elasticsearch = config["services"]["elasticsearch"]
    assert memory_lock_consistent(elasticsearch)
    half = copy.deepcopy(elasticsearch)
    half.setdefault("ulimits", {})["memlock"] = {"soft": -1, "hard": -1}  # the old file: ulimit alone
    assert not memory_lock_consistent(half)
    half["environment"]["bootstrap.memory_lock"] = "true"
    assert memory_lock_consistent(half)


UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def to_bytes(size: str | int) -> int:
    """A compose / JVM size ("512m", "2g", "1536m", 1073741824) in bytes."""
    match = re.fullmatch(r"(\d+)([bkmg]?)b?", str(size).lower())
    assert match, size
    return int(match[1]) * UNITS[match[2] or "b"]


def stated_ram_mib() -> int:
    """The one RAM figure: .env.example, "resources"."""
    (figure,) = re.findall(r"add up to (\d+) MiB", (ROOT / ".env.example").read_text())
    return int(figure)


def test_every_service_has_a_memory_limit_and_they_add_up_to_the_stated_figure(config):
    limits = {name: to_bytes(service["mem_limit"]) for name, service in config["services"].items() if "mem_limit" in service}
    assert set(limits) == SERVICES
    assert sum(limits.values()) == stated_ram_mib() * 1024**2
    full_stack = (ROOT / "docs" / "full-stack.md").read_text()
    assert not re.search(r"\d+(\.\d+)? ?GB of RAM", full_stack)  # no second figure
    assert ".env.example" in full_stack.split("```")[0]  # the first paragraph refers to the one figure


def test_elasticsearchs_heap_is_at_most_half_its_memory_limit(config):
    elasticsearch = config["services"]["elasticsearch"]
    options = elasticsearch["environment"]["ES_JAVA_OPTS"].split()
    (xms,) = [o[4:] for o in options if o.startswith("-Xms")]
    (xmx,) = [o[4:] for o in options if o.startswith("-Xmx")]
    assert xms == xmx  # a fixed heap
    assert 2 * to_bytes(xmx) <= to_bytes(elasticsearch["mem_limit"])
    assert to_bytes("1536m") == 1536 * 1024**2 and to_bytes(1024) == 1024


def test_no_comment_calls_the_forecast_artifact_scikit_learn():
    """The forecast's Lambda artifact holds numpy and scipy (nnls), no scikit-learn."""
    for path in (COMPOSE_FILE, ROOT / "scripts" / "stack-smoke.sh"):
        assert not re.search(r"scikit|sklearn", path.read_text(), re.I), path
    assert "scikit" not in (ROOT / "jobs" / "lambda" / "forecast.txt").read_text().lower()


def test_localstack_is_pinned_runs_lambdas_on_the_compose_network_and_waits_for_its_hooks(config):
    localstack = config["services"]["localstack"]
    assert localstack["image"] == "localstack/localstack:4.14.0"
    assert any(v.startswith("/var/run/docker.sock:/var/run/docker.sock") for v in localstack["volumes"])
    network = config["networks"]["default"]["name"]
    assert localstack["environment"]["LAMBDA_DOCKER_NETWORK"] == network
    assert set(localstack["environment"]["SERVICES"].split(",")) == {"s3", "lambda", "events", "iam", "sts", "logs"}
    hooks = dict((target, source) for source, target in bind_mounts(localstack))
    assert hooks["/etc/localstack/init/ready.d"] == ROOT / "localstack" / "ready.d"
    assert "/_localstack/init/ready" in " ".join(localstack["healthcheck"]["test"])


def test_files_compose_mounts_exist_and_init_hooks_are_executable(config):
    for name, service in config["services"].items():
        for source, _target in bind_mounts(service):
            assert source.exists(), (name, source)
            assert ROOT in source.parents, (name, source)
    hooks = sorted((ROOT / "localstack" / "ready.d").iterdir())
    assert hooks
    for hook in hooks:
        assert hook.stat().st_mode & stat.S_IXUSR, hook
    assert (ROOT / "infra" / "alertmanager" / "alertmanager.yml").is_file()
    assert (ROOT / "infra" / "prometheus" / "prometheus.yml").is_file()


def test_config_files_land_where_each_program_reads_them(config):
    services = config["services"]

    def target_of(name: str, relative: str) -> str:
        for source, target in bind_mounts(services[name]):
            if source == ROOT / relative:
                return target
        raise AssertionError(f"{name} does not mount {relative}")

    assert f"--config.file={target_of('prometheus', 'infra/prometheus')}/prometheus.yml" in services["prometheus"]["command"]
    assert f"--config.file={target_of('alertmanager', 'infra/alertmanager')}/alertmanager.yml" in services["alertmanager"]["command"]
    assert target_of("filebeat", "infra/filebeat/filebeat.yml") == "/usr/share/filebeat/filebeat.yml"
    assert target_of("metricbeat", "infra/metricbeat/metricbeat.yml") == "/usr/share/metricbeat/metricbeat.yml"
    assert "filebeat-data:/usr/share/filebeat/data" in " ".join(services["filebeat"]["volumes"])
    for beat in ("filebeat", "metricbeat"):
        assert "--strict.perms=false" in services[beat]["command"], beat
    assert any(v.startswith("pushgateway-data:") for v in services["pushgateway"]["volumes"])
    persistence = [a for a in services["pushgateway"]["command"] if a.startswith("--persistence.file=")]
    assert persistence and persistence[0].split("=", 1)[1].startswith("/pushgateway/")

    setup_source = (ROOT / "infra" / "kibana" / "setup.py").read_text()
    read = set(re.findall(r'env\.get\("([A-Z_]+)"', setup_source))
    kibana_setup, es_setup = services["kibana-setup"], services["es-setup"]
    assert kibana_setup["entrypoint"][:2] == es_setup["entrypoint"][:2] == ["python3", "/setup/setup.py"]
    assert target_of("kibana-setup", "infra/kibana") == "/setup"
    assert target_of("es-setup", "infra/kibana/setup.py") == "/setup/setup.py"
    for setup in (kibana_setup, es_setup):
        assert set(setup["environment"]) <= read, set(setup["environment"]) - read
    assert kibana_setup["environment"]["KIBANA_DIR"] == "/setup"
    assert es_setup["environment"]["ELASTICSEARCH_DIR"] == target_of("es-setup", "infra/elasticsearch")


def test_prometheus_targets_are_compose_services_on_their_container_ports(config):
    prometheus = yaml.safe_load((ROOT / "infra" / "prometheus" / "prometheus.yml").read_text())
    targets = [t for job in prometheus["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    targets += [t for am in prometheus["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]]
    pushgateway_job = next(job for job in prometheus["scrape_configs"] if job["job_name"] == "pushgateway")
    assert pushgateway_job["honor_labels"] is True
    for target in targets:
        host, port = target.split(":")
        if host == "localhost":
            continue
        ports = [str(p).split(":")[-1].split("/")[0] for p in config["services"][host]["ports"]]
        assert port in ports, (target, ports)


def test_beats_get_every_variable_their_config_reads(config):
    for beat in ("filebeat", "metricbeat"):
        text = (ROOT / "infra" / beat / f"{beat}.yml").read_text()
        wanted = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)(?::[^}]*)?\}", text))
        assert wanted <= set(config["services"][beat]["environment"]), (beat, wanted)
    filebeat = config["services"]["filebeat"]["environment"]
    assert filebeat["AWS_ENDPOINT_URL"] == "http://localstack:4566"
    assert filebeat["ELASTICSEARCH_URL"] == "http://elasticsearch:9200"
    assert config["services"]["metricbeat"]["environment"]["PROMETHEUS_HOST"] == "prometheus:9090"


# -- names: compose, the init hook, jobs.deploy and Filebeat agree ---------------------------


def test_bucket_is_one_name_across_compose_the_init_hook_deploy_and_filebeat(config):
    bucket = deploy_module.DEFAULT_BUCKET
    assert _variables()["STOCKPULSE_BUCKET"] == bucket
    assert env_file_values(ROOT / ".env.example")["STOCKPULSE_BUCKET"] == bucket
    services = config["services"]
    for name in ("localstack", "deploy", "scheduler", "filebeat"):
        assert services[name]["environment"]["STOCKPULSE_BUCKET"] == bucket, name
    hook = (ROOT / "localstack" / "ready.d" / "10-stockpulse-bucket.sh").read_text()
    assert re.search(r'bucket="\$\{STOCKPULSE_BUCKET:-([^}]+)\}"', hook).group(1) == bucket
    filebeat = (ROOT / "infra" / "filebeat" / "filebeat.yml").read_text()
    assert re.search(r"non_aws_bucket_name: \$\{STOCKPULSE_BUCKET:([^}]+)\}", filebeat).group(1) == bucket
    assert services["scheduler"]["environment"]["STOCKPULSE_STORE_URL"] == deploy_module.Target().store_url


def test_the_artifacts_the_image_builds_are_the_ones_deploy_reads():
    dockerfile = (ROOT / "Dockerfile").read_text()
    built = re.search(r"python -m jobs package --out (\S+) --python (\S+)", dockerfile)
    assert built, "the Dockerfile must build the Lambda artifacts"
    assert built.group(2) == package.DEFAULT_PYTHON
    compose_text = COMPOSE_FILE.read_text()
    assert compose_text.count(f"--artifacts {built.group(1)}") == 2  # deploy and scheduler's --destroy
    base = re.search(r"^FROM python:(\d+\.\d+)-slim", dockerfile, re.M)
    assert base and base.group(1) == package.DEFAULT_PYTHON
    args = parse_cli(built.group(0).split()[3:])
    assert (args.command, args.out, args.python) == ("package", built.group(1), built.group(2))


# -- the runners: commands the CLI accepts, and the guard --------------------------------------


STUB = r"""#!/bin/sh
printf '%s\n' "$*" >> "$STUB_LOG"
if [ "$1" = -m ] && [ "$2" = jobs ] && [ "$3" = run ]; then
    exec sleep "$STUB_RUN_SECONDS"
fi
if [ "$1" = -c ]; then
    calls=$(( $(cat "$STUB_PROBES" 2>/dev/null || echo 0) + 1 ))
    echo "$calls" > "$STUB_PROBES"
    if [ "$calls" -ge "$STUB_DEPLOYED_AT_PROBE" ]; then echo deployed; else echo absent; fi
fi
exit 0
"""


def run_service(
    service: dict[str, Any], tmp_path: Path, *, run_seconds: float = 30, deployed_at_probe: int = 10**6
) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    """Run a service's ``sh -c`` command with its resolved environment and a stub ``python``;
    returns the result and the argument lists python was called with."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "python"
    stub.write_text(STUB)
    stub.chmod(0o755)
    log = tmp_path / "python.log"
    log.write_text("")
    env = {k: str(v) for k, v in service["environment"].items()}
    env.update(
        PATH=f"{bin_dir}:/usr/bin:/bin",
        STUB_LOG=str(log),
        STUB_PROBES=str(tmp_path / "probes"),
        STUB_RUN_SECONDS=str(run_seconds),
        STUB_DEPLOYED_AT_PROBE=str(deployed_at_probe),
        STOCKPULSE_GUARD_SECONDS="0.1",
    )
    proc = subprocess.run(["/bin/sh", "-c", command_text(service)], capture_output=True, text=True, env=env, timeout=60)
    calls = [shlex.split(line) for line in log.read_text().splitlines()]
    return proc, calls


def jobs_calls(calls: list[list[str]]) -> list[list[str]]:
    return [c[2:] for c in calls if c[:2] == ["-m", "jobs"]]


def parse_cli(argv: list[str]) -> Any:
    return build_parser().parse_args(argv)


def test_lambda_mode_deploy_creates_the_functions_with_the_pushgateway_they_reach(config, tmp_path):
    """GIVEN no profile WHEN the deploy service runs THEN it deploys (no --destroy) to LocalStack,
    with the Pushgateway as the functions see it, and the real CLI accepts that command."""
    proc, calls = run_service(config["services"]["deploy"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    (argv,) = jobs_calls(calls)
    args = parse_cli(argv)
    assert args.command == "deploy" and not args.destroy
    assert args.endpoint == "http://localstack:4566"
    assert args.pushgateway_url == "http://pushgateway:9091"
    assert args.bucket == deploy_module.DEFAULT_BUCKET and args.name == deploy_module.DEFAULT_NAME
    host, port = args.pushgateway_url.removeprefix("http://").split(":")
    assert any(str(p).split(":")[-1].startswith(port) for p in config["services"][host]["ports"])


@pytest.mark.parametrize("profiles", ["scheduler", "debug,scheduler"])
def test_scheduler_mode_deploy_removes_the_functions(empty_env_file, tmp_path, profiles):
    """GIVEN COMPOSE_PROFILES naming the scheduler WHEN the deploy service runs THEN it only
    destroys (the same bucket and names), so no rule can fire next to the scheduler."""
    scheduler_config = resolved(empty_env_file, COMPOSE_PROFILES=profiles)
    assert scheduler_config["services"]["deploy"]["environment"]["STOCKPULSE_PROFILES"] == profiles
    proc, calls = run_service(scheduler_config["services"]["deploy"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    (argv,) = jobs_calls(calls)
    args = parse_cli(argv)
    assert args.command == "deploy" and args.destroy
    assert args.bucket == deploy_module.DEFAULT_BUCKET and args.name == deploy_module.DEFAULT_NAME


def test_scheduler_refuses_without_the_profile_variable(config, tmp_path):
    """GIVEN the scheduler started by `--profile scheduler` alone (COMPOSE_PROFILES unset, so the
    deploy service deployed the Lambdas) THEN it exits 2 before touching anything."""
    proc, calls = run_service(config["services"]["scheduler"], tmp_path)
    assert proc.returncode == 2
    assert calls == []
    assert "COMPOSE_PROFILES=scheduler" in proc.stderr


def test_scheduler_removes_the_functions_first_then_runs_on_the_store(empty_env_file, tmp_path):
    scheduler = resolved(empty_env_file, COMPOSE_PROFILES="scheduler")["services"]["scheduler"]
    proc, calls = run_service(scheduler, tmp_path, run_seconds=0.5)
    assert proc.returncode == 0, proc.stderr
    destroy, run = (parse_cli(argv) for argv in jobs_calls(calls))
    assert destroy.command == "deploy" and destroy.destroy and destroy.bucket == deploy_module.DEFAULT_BUCKET
    assert run.command == "run" and run.speed == float(_variables()["STOCKPULSE_SPEED"])
    assert scheduler["environment"]["STOCKPULSE_PUSHGATEWAY_URL"] == "http://pushgateway:9091"


def test_scheduler_stops_when_the_functions_are_deployed_again(empty_env_file, tmp_path):
    """GIVEN the scheduler running WHEN the guard's probe finds the functions (the deploy service
    re-ran in Lambda mode) THEN it stops the runner and exits 3, long before the runner's end."""
    scheduler = resolved(empty_env_file, COMPOSE_PROFILES="scheduler")["services"]["scheduler"]
    started = time.monotonic()
    proc, calls = run_service(scheduler, tmp_path, run_seconds=30, deployed_at_probe=3)
    assert proc.returncode == 3, proc.stderr
    assert time.monotonic() - started < 20
    assert "deployed again" in proc.stderr
    assert sum(1 for c in calls if c[:1] == ["-c"]) == 3


def test_the_guard_probe_asks_for_deploys_function_names(config):
    probe = config["services"]["scheduler"]["environment"]["LAMBDAS_DEPLOYED"]
    compile(probe, "LAMBDAS_DEPLOYED", "exec")
    assert "function_names()" in probe and "from jobs.deploy import function_names" in probe
    assert set(deploy_module.function_names().values()) == {f"stockpulse-{h.replace('_', '-')}" for h in HANDLERS}


# -- image, .dockerignore, .env.example ---------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_caches_dependencies_before_the_source_and_runs_unprivileged():
    steps = dockerfile_instructions()
    index = {i: (k, v) for i, (k, v) in enumerate(steps)}
    copy_pyproject = next(i for i, (k, v) in index.items() if k == "COPY" and v.startswith("pyproject.toml"))
    install_deps = next(i for i, (k, v) in index.items() if k == "RUN" and "pip install -r" in v)
    copy_source = [i for i, (k, v) in index.items() if k == "COPY" and v.split()[0] in ("handlers", "jobs")]
    assert copy_pyproject < install_deps < min(copy_source)
    users = [v for k, v in steps if k == "USER"]
    assert users and users[-1] not in ("root", "0")
    package_step = next(i for i, (k, v) in index.items() if k == "RUN" and "jobs package" in v)
    assert max(copy_source) < package_step


def test_dockerignore_keeps_local_state_out_but_not_what_the_image_copies():
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path.split("/")[0], p) for p in patterns)

    for path in (".venv", "data", "build", ".git", ".pytest_cache", ".hypothesis", "tests/__pycache__"):
        assert ignored(path), path
    copied = [v.split()[0] for k, v in dockerfile_instructions() if k == "COPY"]
    assert copied
    for path in copied:
        assert not ignored(path), path


def test_env_example_lists_every_variable_with_the_compose_default(empty_env_file):
    """GIVEN .env.example WHEN compose resolves the file with it THEN nothing changes: it names
    every variable compose reads, each with the default compose uses."""
    example = env_file_values(ROOT / ".env.example")
    variables = _variables()
    assert set(variables) <= set(example), set(variables) - set(example)
    for name, default in variables.items():
        assert example[name] == (default or ""), name
    assert resolved(ROOT / ".env.example") == resolved(empty_env_file)


# -- the smoke script ------------------------------------------------------------------------


def test_smoke_script_parses_and_checks_the_names_the_stack_uses():
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "stack-smoke.sh")]).returncode == 0
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "stack-smoke.sh"), "--list"], capture_output=True, text=True, timeout=60, env=_compose_env()
    )
    assert proc.returncode == 0, proc.stderr
    listed = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    assert listed["bucket"] == deploy_module.DEFAULT_BUCKET
    assert tuple(listed["handlers"].split()) == HANDLERS
    assert listed["functions"].split() == list(deploy_module.function_names().values())
    assert set(listed["services"].split()) | set(listed["one-shot"].split()) == SERVICES - {"scheduler"}
    assert set(listed["event-types"].split()) == SEED_EVENT_TYPES
    metrics = {m.removesuffix("_bucket") for m in listed["metrics"].split()}
    assert SEED_METRICS <= metrics <= set(METRICS)
    saved = [yaml.safe_load(line) for line in (ROOT / "infra" / "kibana" / "saved_objects.ndjson").read_text().splitlines() if line.strip()]
    assert listed["dashboard"] == next(o["id"] for o in saved if o["type"] == "dashboard")
    assert set(listed["data-views"].split()) == {o["id"] for o in saved if o["type"] == "index-pattern"}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
