"""docs/deploy.md's walk through "LocalStack without Docker", run as written.

The first line of the walk through starts LocalStack (`bash scripts/localstack.sh`): the ``localstack``
fixture runs that same script. The rest runs as one bash script, as a new user types it, with no AWS
setting from the environment (no credentials, no endpoint): only its LocalStack address (another port
here) and `.venv/bin/python` (this interpreter, on this checkout) are substituted.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.support import servers

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "deploy.md"
DOC_ENDPOINT = "http://127.0.0.1:4566"


def walkthrough() -> tuple[str, str]:
    """(the line that starts LocalStack, the rest) of the first ```sh block of the section."""
    text = DOC.read_text()
    assert "\n## LocalStack without Docker\n" in text, f"{DOC} has no section 'LocalStack without Docker'"
    section = text.split("\n## LocalStack without Docker\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.S)
    assert block is not None, "the section has no ```sh block"
    first, _, rest = block[1].partition("\n")
    return first, rest


def new_user_env(tmp_path: Path) -> dict[str, str]:
    """This environment without any AWS or stockpulse setting, and no credentials file either."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STOCKPULSE_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        NO_PROXY="127.0.0.1,localhost",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
    )
    return env


def as_here(commands: str, localstack: servers.LocalStack) -> str:
    return commands.replace(DOC_ENDPOINT, localstack.endpoint_url).replace(".venv/bin/python", shlex.quote(sys.executable))


def test_the_walkthrough_starts_localstack_with_the_script_the_tests_run():
    first, _ = walkthrough()
    assert shlex.split(first, comments=True) == ["bash", "scripts/localstack.sh"]


def test_the_walkthrough_deploys_invokes_lists_the_log_objects_and_destroys_as_written(localstack, tmp_path):
    # GIVEN LocalStack from scripts/localstack.sh and a shell with no AWS settings
    _, commands = walkthrough()
    work = tmp_path / "work"
    work.mkdir()
    # WHEN the walk through runs as written, stopping at the first command that fails
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", as_here(commands, localstack)],
        cwd=work,
        env=new_user_env(tmp_path),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
    )
    # THEN every command succeeds: the functions made, one invoked, its log object listed, all destroyed
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    assert re.search(r"^function +stockpulse-forecast +create$", done.stdout, flags=re.M), done.stdout
    assert '"handler": "forecast"' in done.stdout and '"status": "applied"' in done.stdout, done.stdout
    assert re.search(r"^logs/forecast/\d{4}/\d\d/\d\d/\d\d/forecast-\d{8}T\d{6}Z\.ndjson\.gz$", done.stdout, flags=re.M)
    assert re.search(r"^bucket +stockpulse +delete$", done.stdout, flags=re.M), done.stdout
    s3 = boto3.session.Session().client(
        "s3", region_name="us-east-1", endpoint_url=localstack.endpoint_url, aws_access_key_id="test", aws_secret_access_key="test"
    )
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket="stockpulse")


def test_control_without_the_walkthroughs_credentials_deploy_stops_in_one_line(localstack, tmp_path):
    # GIVEN the same shell, without the walk through's export of credentials
    deploy = next(line for line in walkthrough()[1].splitlines() if " -m jobs deploy " in line)
    # WHEN its deploy runs (a dry run: it changes nothing either way)
    argv = shlex.split(as_here(deploy, localstack), comments=True) + ["--dry-run", "--artifacts", str(tmp_path / "zips")]
    done = subprocess.run(
        argv, cwd=tmp_path, env=new_user_env(tmp_path), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600
    )
    # THEN it stops with the one line the docs answer
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("stockpulse: error: no AWS credentials"), done.stderr
