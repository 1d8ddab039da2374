"""The Lambda artifacts of ``python -m jobs package``: deterministic, within AWS's limits, and
runnable as Lambda loads them — unzipped into an empty directory, a clean CPython of the runtime's
version in isolated mode with nothing but that directory and the standard library on its path,
configured only by environment variables, against a real S3 API server."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from handlers.model.logs import decode_events
from handlers.storage.location import open_store
from jobs import package
from tests.support import servers

TIMES = {
    "restock": "2026-01-05T09:05:00Z",
    "order_tick": "2026-01-05T09:06:00Z",
    "forecast": "2026-01-05T10:00:00Z",
    "alert": "2026-01-05T10:15:00Z",
}
RUN = """
import json, sys
sys.path[:0] = [sys.argv[1]]
module = __import__(f"handlers.{sys.argv[2]}", fromlist=["handler"])
event = {"version": "0", "id": "artifact-test", "detail-type": "Scheduled Event", "source": "aws.events",
         "account": "000000000000", "time": sys.argv[3], "region": "us-east-1", "resources": [], "detail": {}}
result = module.handler(event, None)
heavy = sorted(name for name in ("sklearn", "scipy", "pandas") if name in sys.modules)
if sys.argv[2] == "forecast":  # the regression is imported at its first fit: load it from here too
    import scipy.optimize
    assert scipy.optimize.__file__.startswith(sys.argv[1])
print(json.dumps({"result": result, "heavy": heavy, "path": sys.path}))
"""


def crcs(artifact: package.Artifact) -> dict[str, int]:
    with zipfile.ZipFile(artifact.path) as archive:
        return {info.filename: info.CRC for info in archive.infolist()}


def names(artifact: package.Artifact) -> set[str]:
    with zipfile.ZipFile(artifact.path) as archive:
        return set(archive.namelist())


def test_building_twice_gives_byte_identical_zips(lambda_artifacts, tmp_path):
    again = package.build(tmp_path, python="3.12")
    for artifact in again:
        assert crcs(artifact) == crcs(lambda_artifacts[artifact.name])  # names the entries that differ
        assert artifact.path.read_bytes() == lambda_artifacts[artifact.name].path.read_bytes()
        assert artifact.sha256 == lambda_artifacts[artifact.name].sha256
    assert package.read_built(tmp_path, python="3.12") == {a.name: a for a in again}
    assert package.read_built(tmp_path, python="3.13") is None  # built for another runtime


def test_the_light_functions_carry_no_scipy_and_none_carries_scikit_learn_or_pandas(lambda_artifacts):
    light, forecast = names(lambda_artifacts["handlers"]), names(lambda_artifacts["forecast"])
    tops = {name.split("/")[0] for name in light}
    assert {"handlers", "numpy", "yaml", "prometheus_client", "boto3", "botocore"} <= tops
    assert not tops & {"sklearn", "scipy", "pandas"}
    forecast_tops = {name.split("/")[0] for name in forecast}
    assert {"scipy", "handlers"} <= forecast_tops
    assert not forecast_tops & {"sklearn", "pandas"}  # the forecast fits with scipy's NNLS alone
    for contents in (light, forecast):
        assert not [n for n in contents if n.endswith(".pyc") or "/tests/" in n or "__pycache__" in n]


def test_artifacts_fit_the_limits_of_the_route_deploy_uses(lambda_artifacts):
    for artifact in lambda_artifacts.values():
        with zipfile.ZipFile(artifact.path) as archive:
            unzipped = sum(info.file_size for info in archive.infolist())
            assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert unzipped == artifact.unzipped_bytes <= package.MAX_UNZIPPED_BYTES
        assert artifact.zipped_bytes == artifact.path.stat().st_size
        assert artifact.runtime == "python3.12"


@pytest.fixture(scope="module")
def unzipped(lambda_artifacts, tmp_path_factory) -> dict[str, Path]:
    dirs = {}
    for name, artifact in lambda_artifacts.items():
        target = tmp_path_factory.mktemp(f"task-{name}")  # empty, as /var/task
        with zipfile.ZipFile(artifact.path) as archive:
            archive.extractall(target)
        dirs[name] = target
    return dirs


def test_each_handler_runs_from_its_unzipped_artifact_in_a_clean_python312(unzipped, moto_s3, tmp_path):
    """GIVEN each artifact unzipped alone and CPython 3.12 with -I -S (no site-packages, no
    environment paths) WHEN every handler runs with a Scheduled Event and only STOCKPULSE_* / AWS_*
    variables THEN each applies, the light ones without importing scikit-learn, scipy or pandas,
    and state and log objects land in the bucket."""
    python = servers.lambda_python("3.12")
    store_url = moto_s3.bucket_url("shop")
    environment = {
        "STOCKPULSE_STORE_URL": store_url,
        "AWS_ENDPOINT_URL": moto_s3.endpoint_url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "NO_PROXY": "127.0.0.1,localhost",
        "HOME": str(tmp_path),
    }
    script = tmp_path / "run.py"
    script.write_text(RUN)
    results = {}
    for handler, time in TIMES.items():
        task = unzipped[package_of(handler)]
        done = subprocess.run(
            [python, "-I", "-S", str(script), str(task), handler, time],
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        output = json.loads(done.stdout.splitlines()[-1])
        assert not [p for p in output["path"] if "site-packages" in p]
        results[handler] = output["result"]
        if handler != "forecast":
            assert output["heavy"] == []
    assert {result["status"] for result in results.values()} == {"applied"}
    store = open_store(store_url, s3_client=moto_s3.client)
    keys = set(store.list(""))
    assert "state/state.bin" in keys
    assert {result["log_key"] for result in results.values()} <= keys
    inventory = [e for e in decode_events(store.get(results["forecast"]["log_key"])) if e["type"] == "inventory"]
    assert len(inventory) == 15  # 5 products x 3 warehouses of the built-in catalog


def package_of(handler: str) -> str:
    return next(name for name, served in package.ARTIFACTS.items() if handler in served)
