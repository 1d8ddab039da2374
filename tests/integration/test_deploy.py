"""``python -m jobs deploy`` against a real LocalStack (host mode, on 127.0.0.1).

LocalStack (scripts/localstack.sh, as a user runs it) runs the deployed functions as local processes
of CPython 3.12 from the uploaded artifacts (localstack/executor/), so the functions are invoked for
real, and EventBridge rules fire them. Each test deploys under a name and bucket of its own."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import time
import uuid
import zipfile
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest

from handlers.model.catalog import parse_catalog
from handlers.model.events import scheduled_event
from handlers.model.logs import decode_events
from handlers.runtime.catalogs import compiled_key, source_key, store_reference
from handlers.runtime.shards import split
from jobs import cli, package
from jobs.deploy import (
    FUNCTION_SIZING,
    TAG_KEY,
    Clients,
    DeployError,
    Target,
    deploy,
    destroy,
    function_names,
    role_policy,
    rules_of,
    shard_input,
)
from jobs.schedule import Schedule
from tests.support import servers

SCHEDULES = {"order_tick": "rate(1 minute)", "restock": "rate(5 minutes)", "forecast": "rate(1 hour)", "alert": "rate(15 minutes)"}


@pytest.fixture
def aws_env(monkeypatch, localstack):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "STOCKPULSE_PUSHGATEWAY_URL",
        "STOCKPULSE_CATALOG",
        "STOCKPULSE_STORE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    return localstack


def client(localstack: servers.LocalStack, service: str) -> Any:
    return boto3.session.Session().client(service, region_name="us-east-1", endpoint_url=localstack.endpoint_url)


def new_target(localstack: servers.LocalStack, **changes: Any) -> Target:
    name = f"sp{uuid.uuid4().hex[:8]}"
    values: dict[str, Any] = {
        "name": name,
        "bucket": f"{name}-store",
        "endpoint": localstack.endpoint_url,
        "environment": {"STOCKPULSE_PUSHGATEWAY_URL": "http://pushgateway:9091"},
    }
    return Target(**{**values, **changes})


def actions(rows) -> dict[tuple[str, str], str]:
    return {(row.resource, row.name): row.action for row in rows}


@pytest.fixture(scope="module")
def deployed(localstack, lambda_artifacts):
    """One deployment for the read-only checks below."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "test")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "test")
        target = new_target(localstack)
        rows = deploy(target, lambda_artifacts)
        yield target, rows


def test_deploy_makes_each_resource_once(deployed):
    target, rows = deployed
    made = [(row.resource, row.action) for row in rows]
    assert made.count(("function", "create")) == 4
    assert made.count(("role", "create")) == 4
    assert made.count(("rule", "create")) == 4
    assert made.count(("log group", "create")) == 4
    assert ("bucket", "create") in made
    assert [row.action for row in rows if row.resource == "code"] == ["upload", "upload"]


def test_the_bucket_blocks_public_access_encrypts_and_is_tagged(deployed, localstack):
    target, _ = deployed
    s3 = client(localstack, "s3")
    block = s3.get_public_access_block(Bucket=target.bucket)["PublicAccessBlockConfiguration"]
    assert block == {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    rules = s3.get_bucket_encryption(Bucket=target.bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert {"Key": TAG_KEY, "Value": target.name} in s3.get_bucket_tagging(Bucket=target.bucket)["TagSet"]


def test_each_function_has_its_own_role_with_exactly_its_policy(deployed, localstack):
    target, _ = deployed
    iam = client(localstack, "iam")
    for handler, function in function_names(target.name).items():
        role = iam.get_role(RoleName=function)["Role"]
        trust = role["AssumeRolePolicyDocument"]
        assert trust["Statement"] == [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]
        assert iam.list_role_policies(RoleName=function)["PolicyNames"] == ["stockpulse"]
        document = iam.get_role_policy(RoleName=function, PolicyName="stockpulse")["PolicyDocument"]
        assert document == role_policy(target, handler, account="000000000000")
        assert {"Key": TAG_KEY, "Value": target.name} in iam.list_role_tags(RoleName=function)["Tags"]
        assert iam.list_attached_role_policies(RoleName=function)["AttachedPolicies"] == []


def test_functions_have_handler_runtime_sizing_and_settings_from_the_environment(deployed, localstack):
    target, _ = deployed
    lam = client(localstack, "lambda")
    for handler, function in function_names(target.name).items():
        found = lam.get_function(FunctionName=function)
        config = found["Configuration"]
        assert config["Handler"] == f"handlers.{handler}.handler"
        assert config["Runtime"] == "python3.12"
        assert config["Role"].endswith(f":role/{function}")
        assert (config["MemorySize"], config["Timeout"]) == FUNCTION_SIZING[handler]
        assert config["Environment"]["Variables"] == {
            "STOCKPULSE_STORE_URL": f"s3://{target.bucket}",
            "STOCKPULSE_PUSHGATEWAY_URL": "http://pushgateway:9091",
        }
        assert found["Tags"][TAG_KEY] == target.name
        assert config["State"] == "Active"


def test_rules_fire_each_function_on_its_schedule_with_permission(deployed, localstack):
    target, _ = deployed
    events, lam = client(localstack, "events"), client(localstack, "lambda")
    for handler, function in function_names(target.name).items():
        rule = events.describe_rule(Name=function)
        assert (rule["ScheduleExpression"], rule["State"]) == (SCHEDULES[handler], "ENABLED")
        targets = events.list_targets_by_rule(Rule=function)["Targets"]
        arn = lam.get_function(FunctionName=function)["Configuration"]["FunctionArn"]
        assert [(t["Id"], t["Arn"]) for t in targets] == [("function", arn)]
        statements = json.loads(lam.get_policy(FunctionName=function)["Policy"])["Statement"]
        assert len(statements) == 1
        assert statements[0]["Principal"] == {"Service": "events.amazonaws.com"}
        assert statements[0]["Action"] == "lambda:InvokeFunction"
        assert statements[0]["Condition"]["ArnLike"]["AWS:SourceArn"] == rule["Arn"]
    groups = client(localstack, "logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{target.name}-")
    assert sorted(g["logGroupName"] for g in groups["logGroups"]) == sorted(
        f"/aws/lambda/{f}" for f in function_names(target.name).values()
    )
    assert {g.get("retentionInDays") for g in groups["logGroups"]} == {14}


def test_a_second_deploy_changes_nothing_and_duplicates_nothing(deployed, lambda_artifacts, localstack):
    target, _ = deployed
    rows = deploy(target, lambda_artifacts)
    assert {row.action for row in rows} == {"unchanged"}
    lam, events = client(localstack, "lambda"), client(localstack, "events")
    ours = [f for f in lam.list_functions()["Functions"] if f["FunctionName"].startswith(f"{target.name}-")]
    assert len(ours) == 4
    assert len(events.list_rules(NamePrefix=f"{target.name}-")["Rules"]) == 4
    code = client(localstack, "s3").list_objects_v2(Bucket=target.bucket, Prefix="lambda-code/")
    assert len(code["Contents"]) == 2


def test_a_dry_run_says_what_would_change_and_changes_nothing(deployed, lambda_artifacts, localstack):
    target, _ = deployed
    changed = Target(**{**target.__dict__, "environment": {**target.environment, "STOCKPULSE_COVER_DAYS": "2"}})
    rows = deploy(changed, lambda_artifacts, dry_run=True)
    functions = {row.name: row.action for row in rows if row.resource == "function"}
    assert set(functions.values()) == {"would update configuration"}
    assert {row.action for row in rows if row.resource != "function"} == {"unchanged"}
    variables = client(localstack, "lambda").get_function_configuration(FunctionName=function_names(target.name)["alert"])["Environment"][
        "Variables"
    ]
    assert "STOCKPULSE_COVER_DAYS" not in variables


def test_a_dry_run_of_a_new_deployment_makes_nothing(lambda_artifacts, localstack, aws_env):
    target = new_target(localstack)
    rows = deploy(target, lambda_artifacts, dry_run=True)
    assert {row.action.split()[0] for row in rows} == {"would"}
    with pytest.raises(client(localstack, "s3").exceptions.ClientError):
        client(localstack, "s3").head_bucket(Bucket=target.bucket)
    names = {f["FunctionName"] for f in client(localstack, "lambda").list_functions()["Functions"]}
    assert not names & set(function_names(target.name).values())


def test_a_deployed_function_runs_the_handler_from_its_artifact(deployed, localstack):
    """GIVEN the deployed functions WHEN LocalStack invokes them THEN the handlers run from the
    uploaded zips (CPython 3.12) on the bucket: applied, state and log objects written."""
    target, _ = deployed
    s3 = client(localstack, "s3")
    results = {}
    for handler, time_ in (("order_tick", "2026-01-05T09:01:00Z"), ("forecast", "2026-01-05T10:00:00Z"), ("alert", "2026-01-05T10:15:00Z")):
        payload = invoke_function(localstack, function_names(target.name)[handler], time_)
        results[handler] = payload
    assert {result["status"] for result in results.values()} == {"applied"}
    body = s3.get_object(Bucket=target.bucket, Key=results["forecast"]["log_key"])["Body"].read()
    assert len([e for e in decode_events(body) if e["type"] == "inventory"]) == 15
    s3.head_object(Bucket=target.bucket, Key="state/state.bin")


def test_eventbridge_rules_fire_the_deployed_function(lambda_artifacts, localstack, aws_env):
    """GIVEN a fresh deployment WHEN a minute passes THEN the order_tick rule has invoked its
    function, which wrote its log object for the current business minute (EventBridge's time)."""
    target = new_target(localstack, environment={})
    deploy(target, lambda_artifacts)
    s3 = client(localstack, "s3")
    day = datetime.now(timezone.utc).strftime("%Y/%m/%d")
    deadline = time.monotonic() + 150
    keys: list[str] = []
    while time.monotonic() < deadline and not keys:
        time.sleep(3)
        listed = s3.list_objects_v2(Bucket=target.bucket, Prefix="logs/order_tick/")
        keys = [item["Key"] for item in listed.get("Contents", [])]
    assert keys, "no order_tick log object within 150 s of deploying its rate(1 minute) rule"
    days = {day, datetime.now(timezone.utc).strftime("%Y/%m/%d")}  # the minute may have crossed midnight
    assert any(keys[0].startswith(f"logs/order_tick/{d}/") for d in days), (keys[0], days)
    destroy_all(target, localstack)


def stop_and_empty(target: Target, localstack: servers.LocalStack) -> None:
    """Disable the deployment's rules, then delete every object but the code."""
    s3, events = client(localstack, "s3"), client(localstack, "events")
    for rule in events.list_rules(NamePrefix=f"{target.name}-")["Rules"]:  # stop the schedule before emptying
        events.disable_rule(Name=rule["Name"])
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=target.bucket):
        for item in page.get("Contents", []):
            if not item["Key"].startswith("lambda-code/"):
                s3.delete_object(Bucket=target.bucket, Key=item["Key"])


def destroy_all(target: Target, localstack: servers.LocalStack) -> None:
    stop_and_empty(target, localstack)
    destroy(target)


def test_destroy_removes_what_deploy_made_and_keeps_a_bucket_holding_data(lambda_artifacts, localstack, aws_env):
    target = new_target(localstack)
    deploy(target, lambda_artifacts)
    s3 = client(localstack, "s3")
    stop_and_empty(target, localstack)  # what the order_tick rule may have written while deploy ran
    s3.put_object(Bucket=target.bucket, Key="state/state.bin", Body=b"data of the store")
    rows = actions(destroy(target))
    assert rows[("bucket", target.bucket)].startswith("kept: holds 1 objects")
    assert s3.get_object(Bucket=target.bucket, Key="state/state.bin")["Body"].read() == b"data of the store"
    names = set(function_names(target.name).values())
    assert not names & {f["FunctionName"] for f in client(localstack, "lambda").list_functions()["Functions"]}
    assert not names & {r["RoleName"] for r in client(localstack, "iam").list_roles()["Roles"]}
    assert client(localstack, "events").list_rules(NamePrefix=f"{target.name}-")["Rules"] == []
    assert client(localstack, "logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{target.name}-")["logGroups"] == []
    assert "Contents" not in s3.list_objects_v2(Bucket=target.bucket, Prefix="lambda-code/")
    s3.delete_object(Bucket=target.bucket, Key="state/state.bin")
    assert actions(destroy(target))[("bucket", target.bucket)] == "delete"
    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert target.bucket not in buckets
    assert destroy(target) == []  # nothing left: a second destroy finds nothing


def test_a_name_taken_by_something_deploy_did_not_make_is_refused_before_anything_is_made(lambda_artifacts, localstack, aws_env):
    target = new_target(localstack)
    iam = client(localstack, "iam")
    taken = function_names(target.name)["alert"]
    iam.create_role(RoleName=taken, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    with pytest.raises(DeployError, match=f"role {taken}: exists and was not made by"):
        deploy(target, lambda_artifacts)
    with pytest.raises(DeployError, match=f"role {taken}"):
        destroy(target)
    assert target.bucket not in {b["Name"] for b in client(localstack, "s3").list_buckets()["Buckets"]}
    assert not {f["FunctionName"] for f in client(localstack, "lambda").list_functions()["Functions"]} & set(
        function_names(target.name).values()
    )
    iam.delete_role(RoleName=taken)


def test_an_existing_bucket_deploy_did_not_make_is_used_and_never_deleted(lambda_artifacts, localstack, aws_env):
    target = new_target(localstack)
    s3 = client(localstack, "s3")
    s3.create_bucket(Bucket=target.bucket)  # e.g. compose's init hook made it
    assert actions(deploy(target, lambda_artifacts))[("bucket", target.bucket)].startswith("unchanged")
    assert actions(destroy(target))[("bucket", target.bucket)] == "kept (not made by deploy)"
    s3.head_bucket(Bucket=target.bucket)


def own_copy(artifacts: dict[str, Any], directory: Path) -> Path:
    """The session's artifacts in a directory of the test's own: the CLI rebuilds the zips where they
    are when the sources changed since (another engineer's edit), which must not change the files
    the session's other tests deploy."""
    source = artifacts["handlers"].path.parent
    for path in source.iterdir():
        if path.is_file():
            shutil.copy2(path, directory / path.name)
    return directory


def test_cli_deploy_dry_run_prints_the_plan_table(localstack, aws_env, lambda_artifacts, capsys, tmp_path):
    out = own_copy(lambda_artifacts, tmp_path)
    code = cli.main(
        [
            "deploy",
            "--endpoint",
            localstack.endpoint_url,
            "--name",
            "spcli",
            "--bucket",
            "spcli-store",
            "--artifacts",
            str(out),
            "--dry-run",
        ]
    )
    printed = capsys.readouterr()
    assert code == 0
    lines = printed.out.splitlines()
    assert lines[0].split() == ["resource", "name", "result"]
    assert "function     spcli-order-tick" in printed.out and "would create" in printed.out
    assert "stockpulse deploy:" in printed.err  # progress while it works


def test_cli_unreachable_endpoint_is_one_line(aws_env, lambda_artifacts, capsys, tmp_path):
    port = servers.free_port()
    out = own_copy(lambda_artifacts, tmp_path)
    code = cli.main(["deploy", "--endpoint", f"http://127.0.0.1:{port}", "--artifacts", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == f"stockpulse: error: sts get-caller-identity: cannot reach http://127.0.0.1:{port} (EndpointConnectionError)"


def test_cli_missing_credentials_is_one_line(localstack, monkeypatch, tmp_path, lambda_artifacts, capsys):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    out = own_copy(lambda_artifacts, tmp_path)
    code = cli.main(["deploy", "--endpoint", localstack.endpoint_url, "--artifacts", str(out)])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("stockpulse: error: no AWS credentials")


def test_clients_use_the_endpoint_given(localstack, aws_env):
    target = new_target(localstack)
    assert Clients(target).s3.meta.endpoint_url == localstack.endpoint_url


def test_a_bucket_of_another_account_is_refused_before_anything_is_made(lambda_artifacts, localstack, aws_env):
    target = new_target(localstack)
    other = boto3.session.Session(aws_access_key_id="111111111111", aws_secret_access_key="test").client(
        "s3", region_name="us-east-1", endpoint_url=localstack.endpoint_url
    )  # LocalStack: key = account
    other.create_bucket(Bucket=target.bucket)
    with pytest.raises(DeployError, match=f"bucket {target.bucket}: exists and belongs to another account"):
        deploy(target, lambda_artifacts)
    names = {r["RoleName"] for r in client(localstack, "iam").list_roles()["Roles"]}
    assert not names & set(function_names(target.name).values())


# -- deployments sharing a bucket: each deletes only the code it made -------------------------------


def new_code(artifacts: dict[str, package.Artifact], directory: Path) -> dict[str, package.Artifact]:
    """The same artifacts with other bytes (one more file in each zip): a new version of the code."""
    changed = {}
    for name, artifact in artifacts.items():
        path = directory / artifact.path.name
        shutil.copy2(artifact.path, path)
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr("stockpulse-test-version.txt", "2\n")
        changed[name] = replace(artifact, path=path, zipped_bytes=path.stat().st_size, sha256=package.sha256_b64(path))
    return changed


def invoke_function(localstack: servers.LocalStack, function: str, moment: str | datetime, shard: int | None = None) -> dict[str, Any]:
    """Invoke a deployed function with the Scheduled Event its rule delivers at ``moment``; its payload."""
    when = moment if isinstance(moment, datetime) else datetime.fromisoformat(moment.replace("Z", "+00:00"))
    response = client(localstack, "lambda").invoke(FunctionName=function, Payload=json.dumps(scheduled_event(when, function, shard=shard)))
    payload = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, payload
    return dict(payload)


def invoke_applies(localstack: servers.LocalStack, function: str, moment: str) -> None:
    payload = invoke_function(localstack, function, moment)
    assert payload["status"] == "applied", payload


def test_another_deployment_in_the_same_bucket_and_prefix_keeps_its_code_and_runs_through_a_redeploy_and_a_destroy(
    lambda_artifacts, localstack, aws_env, tmp_path
):
    """GIVEN deployments A and B (another --name) in one bucket under one prefix, another team's
    objects under lambda-code/ WHEN A is redeployed with new code, then destroyed THEN A's old code,
    then its new code are deleted, and nothing else: B's code objects are as they were and its
    functions still run (invoked through LocalStack) after each, and the other team's objects are
    intact."""
    daily = Schedule.parse([f"{handler}=1d" for handler in SCHEDULES])  # only the test's own invocations run
    a = new_target(localstack, prefix="shared", environment={}, schedule=daily)
    b = Target(**{**a.__dict__, "name": f"{a.name}b"})
    s3 = client(localstack, "s3")
    deploy(a, lambda_artifacts)
    b_rows = deploy(b, lambda_artifacts)
    team = {"shared/lambda-code/team-x/tool.zip": b"another team's", "shared/lambda-code/handlers-0123456789abcdef.zip": b"x"}
    for key, body in team.items():
        s3.put_object(Bucket=a.bucket, Key=key, Body=body)

    def listed(prefix: str) -> dict[str, str]:
        return {item["Key"]: item["ETag"] for item in s3.list_objects_v2(Bucket=a.bucket, Prefix=prefix).get("Contents", [])}

    def b_code_now() -> dict[str, str]:  # the code B's functions were made from, wherever deploy keeps it
        names = {row.name for row in b_rows if row.resource == "code"}
        return {
            k: v
            for k, v in listed("shared/lambda-code/").items()
            if k.rsplit("/", 1)[1] in names and k not in team and not k.startswith(f"shared/lambda-code/{a.name}/")
        }

    b_code = b_code_now()
    assert len(b_code) == 2
    v2 = new_code(lambda_artifacts, tmp_path)
    rows = actions(deploy(a, v2))
    assert sorted(action for (resource, _), action in rows.items() if resource == "code") == [
        "delete (superseded)",
        "delete (superseded)",
        "upload",
        "upload",
    ]
    assert b_code_now() == b_code
    assert {key: s3.get_object(Bucket=a.bucket, Key=key)["Body"].read() for key in team} == team
    invoke_applies(localstack, function_names(b.name)["order_tick"], "2026-01-05T09:01:00Z")

    rows = actions(destroy(a))
    assert rows[("bucket", a.bucket)].startswith("kept: holds ")
    assert listed(f"shared/lambda-code/{a.name}/") == {}
    assert b_code_now() == b_code
    assert {key: s3.get_object(Bucket=a.bucket, Key=key)["Body"].read() for key in team} == team
    invoke_applies(localstack, function_names(b.name)["order_tick"], "2026-01-05T09:02:00Z")

    for key in listed(""):  # clean up: B's store and the team's objects, then B, then the bucket
        if not key.startswith(f"shared/lambda-code/{b.name}/"):
            s3.delete_object(Bucket=a.bucket, Key=key)
    assert actions(destroy(b))[("bucket", a.bucket)] == "kept (not made by deploy)"
    assert listed("") == {}
    s3.delete_bucket(Bucket=a.bucket)


# -- sharded: each schedule fans out as rules whose targets add detail.shard ---------------------

SHARDS = 7
#: the built-in catalog's 5 products over 7 shards (handlers/runtime/shards.py's stable hash): shards 2 and 3
#: (rule -s0-4) and 6 (rule -s5-6) hold products; the others answer "skipped" and write nothing
NON_EMPTY = (2, 3, 6)


def shard_count(count: int) -> dict[str, str]:
    return {"STOCKPULSE_NUM_SHARDS": str(count)}


@pytest.fixture(scope="module")
def sharded(localstack, lambda_artifacts):
    """One deployment of 7 shards, no Pushgateway (metrics go to the store); removed at the end."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "test")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "test")
        target = new_target(localstack, environment=shard_count(SHARDS))
        rows = deploy(target, lambda_artifacts)
        yield target, rows
        destroy_all(target, localstack)


def test_a_sharded_schedule_is_rules_of_five_shards_each_with_one_target_and_permission_per_shard_rule(sharded, localstack):
    target, rows = sharded
    assert [row.name for row in rows if row.resource == "rule"] == [
        f"{function}-s{first}-{last} {SCHEDULES[handler]}"
        for handler, function in function_names(target.name).items()
        for first, last in ((0, 4), (5, 6))
    ]
    assert {row.action for row in rows if row.resource in ("rule", "rule target", "permission")} == {"create", "set"}
    events, lam, iam = client(localstack, "events"), client(localstack, "lambda"), client(localstack, "iam")
    for handler, function in function_names(target.name).items():
        config = lam.get_function_configuration(FunctionName=function)
        assert config["Environment"]["Variables"]["STOCKPULSE_NUM_SHARDS"] == "7"
        rules = events.list_rules(NamePrefix=function)["Rules"]
        assert sorted(r["Name"] for r in rules) == [f"{function}-s0-4", f"{function}-s5-6"]
        statements = json.loads(lam.get_policy(FunctionName=function)["Policy"])["Statement"]
        assert len(statements) == 2
        for rule in rules:
            assert (rule["ScheduleExpression"], rule["State"]) == (SCHEDULES[handler], "ENABLED")
            first, last = (int(n) for n in rule["Name"].rsplit("-s", 1)[1].split("-"))
            targets = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
            assert [(t["Id"], t["Arn"], t["InputTransformer"]) for t in targets] == [
                (f"shard-{k}", config["FunctionArn"], shard_input(k)) for k in range(first, last + 1)
            ]
            (statement,) = [s for s in statements if s["Sid"] == f"{rule['Name']}-events"]
            assert statement["Principal"] == {"Service": "events.amazonaws.com"}
            assert statement["Condition"]["ArnLike"]["AWS:SourceArn"] == rule["Arn"]
            tags = events.list_tags_for_resource(ResourceARN=rule["Arn"])["Tags"]
            assert {"Key": TAG_KEY, "Value": target.name} in tags
        document = iam.get_role_policy(RoleName=function, PolicyName="stockpulse")["PolicyDocument"]
        assert document == role_policy(target, handler, account="000000000000")


def test_a_second_sharded_deploy_changes_nothing(sharded, lambda_artifacts, localstack):
    target, _ = sharded
    changed = [row for row in deploy(target, lambda_artifacts) if row.action != "unchanged"]
    assert not changed
    assert len(client(localstack, "events").list_rules(NamePrefix=f"{target.name}-")["Rules"]) == 8


def test_the_rules_fire_every_shard_of_order_tick_by_themselves(sharded, localstack):
    """GIVEN the sharded deployment WHEN a minute passes THEN both order_tick rules have invoked the
    function once per shard through their InputTransformers: each shard holding products wrote its
    own state, a log object named for it at EventBridge's time, and its metrics file; the store
    records the split; empty shards wrote nothing."""
    target, _ = sharded
    s3 = client(localstack, "s3")
    wanted = {f"shards/{k}/state/state.bin" for k in NON_EMPTY} | {f"metrics/order_tick/shard/{k}.prom" for k in NON_EMPTY}
    deadline = time.monotonic() + 200
    keys: set[str] = set()
    while time.monotonic() < deadline:
        keys = {
            item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=target.bucket) for item in page.get("Contents", [])
        }
        logs = {
            k for k in NON_EMPTY if [key for key in keys if key.startswith("logs/order_tick/") and key.endswith(f"-shard-{k}.ndjson.gz")]
        }
        if wanted <= keys and logs == set(NON_EMPTY):
            break
        time.sleep(3)
    assert wanted <= keys, f"missing after 200 s: {sorted(wanted - keys)}"
    assert logs == set(NON_EMPTY), f"order_tick log objects of shards {sorted(logs)} only"
    assert not [key for key in keys if key.startswith("shards/") and int(key.split("/")[1]) not in NON_EMPTY]
    assert not [key for key in keys if key.startswith("state/") and key != "state/shards.json"]
    manifest = json.loads(s3.get_object(Bucket=target.bucket, Key="state/shards.json")["Body"].read())
    assert manifest["num_shards"] == SHARDS
    for k in NON_EMPTY:
        key = sorted(key for key in keys if key.startswith("logs/order_tick/") and key.endswith(f"-shard-{k}.ndjson.gz"))[0]
        (run,) = [e for e in decode_events(s3.get_object(Bucket=target.bucket, Key=key)["Body"].read()) if e["type"] == "job_run"]
        assert run["shard"] == k and run["tick_id"]
        fired = datetime.fromisoformat(run["@timestamp"].replace("Z", "+00:00"))
        assert abs((datetime.now(timezone.utc) - fired).total_seconds()) < 600  # EventBridge's time, kept


def test_a_store_split_into_another_count_refuses_the_deploy_before_anything_is_made(sharded, lambda_artifacts, localstack):
    target, _ = sharded
    s3 = client(localstack, "s3")
    s3.head_object(Bucket=target.bucket, Key="state/shards.json")  # written by the first sharded invocation
    for count in (3, 1):
        other = Target(**{**target.__dict__, "environment": shard_count(count)})
        with pytest.raises(DeployError, match=f"the store s3://{target.bucket} is split into 7 shard"):
            deploy(other, lambda_artifacts, dry_run=True)
    lam = client(localstack, "lambda")
    assert (
        lam.get_function_configuration(FunctionName=function_names(target.name)["alert"])["Environment"]["Variables"][
            "STOCKPULSE_NUM_SHARDS"
        ]
        == "7"
    )


def test_an_unsharded_state_refuses_a_sharded_deploy_before_anything_is_made(lambda_artifacts, localstack, aws_env):
    target = new_target(localstack, environment=shard_count(3))
    s3 = client(localstack, "s3")
    s3.create_bucket(Bucket=target.bucket)
    s3.put_object(Bucket=target.bucket, Key="state/state.bin", Body=b"an unsharded store")
    with pytest.raises(DeployError, match="holds an unsharded state, got 3 shards"):
        deploy(target, lambda_artifacts)
    names = {r["RoleName"] for r in client(localstack, "iam").list_roles()["Roles"]}
    assert not names & set(function_names(target.name).values())


def test_a_function_policy_over_lambdas_limit_is_refused_before_anything_is_made(lambda_artifacts, localstack, aws_env):
    target = new_target(localstack, environment=shard_count(256))
    target = Target(**{**target.__dict__, "name": "n" * 41})
    with pytest.raises(DeployError, match="resource policy of .* bytes .* over Lambda's 20480"):
        deploy(target, lambda_artifacts)
    assert target.bucket not in {b["Name"] for b in client(localstack, "s3").list_buckets()["Buckets"]}


def test_a_new_shard_count_on_a_new_store_replaces_the_rules_and_destroy_removes_them_all(lambda_artifacts, localstack, aws_env):
    """GIVEN a deployment of 7 shards WHEN it is deployed again with 2 shards on a new store (another
    --prefix) THEN the rules of 7 shards and their permissions are gone and those of 2 made; a dry
    run back to 1 shard says so and changes nothing; destroy removes every rule."""
    target = new_target(localstack, environment=shard_count(SHARDS))
    deploy(target, lambda_artifacts)
    events, lam = client(localstack, "events"), client(localstack, "lambda")
    function = function_names(target.name)["order_tick"]

    two = Target(**{**target.__dict__, "prefix": "v2", "environment": shard_count(2)})
    rows = actions(deploy(two, lambda_artifacts))
    assert rows[("rule", f"{function}-s0-4")] == "delete (not a rule of 2 shard(s))"
    assert rows[("rule", f"{function}-s5-6")] == "delete (not a rule of 2 shard(s))"
    assert rows[("permission", f"{function}-s5-6 <- events")] == "delete"
    assert rows[("rule", f"{function}-s0-1 rate(1 minute)")] == "create"
    assert sorted(r["Name"] for r in events.list_rules(NamePrefix=f"{target.name}-")["Rules"]) == sorted(
        spec.name for handler in function_names() for spec in rules_of(two, handler)
    )
    sids = [s["Sid"] for s in json.loads(lam.get_policy(FunctionName=function)["Policy"])["Statement"]]
    assert sids == [f"{function}-s0-1-events"]
    assert [t["Id"] for t in events.list_targets_by_rule(Rule=f"{function}-s0-1")["Targets"]] == ["shard-0", "shard-1"]

    one = Target(**{**two.__dict__, "prefix": "v3", "environment": {}})
    rows = actions(deploy(one, lambda_artifacts, dry_run=True))
    assert rows[("rule", f"{function}-s0-1")] == "would delete (not a rule of 1 shard(s))"
    assert rows[("rule", f"{function} rate(1 minute)")] == "would create"
    assert events.describe_rule(Name=f"{function}-s0-1")["State"] == "ENABLED"

    rows = actions(destroy(two, dry_run=True))
    assert rows[("rule", f"{function}-s0-1")] == "would delete"
    destroy_all(two, localstack)
    assert events.list_rules(NamePrefix=f"{target.name}-")["Rules"] == []


# -- the shop's own catalog: deploy --catalog keeps it in the store, the functions read it there ----

SHOP_SHARDS = 3


@pytest.fixture(scope="module")
def shop(localstack, lambda_artifacts, tmp_path_factory):
    """One deployment through the command line of a generated catalog (30 products x 2 warehouses)
    in 3 shards, every shard holding products, under a store prefix; schedules of a day, so only
    the tests' own invocations run. Removed at the end."""
    from tests.support.catalogs import catalog_text

    directory = tmp_path_factory.mktemp("shop")
    path = directory / "shop.yaml"
    path.write_text(catalog_text(30))
    parts = split(parse_catalog(path.read_text(), source=str(path)), SHOP_SHARDS)
    assert not [part for part in parts if part.empty]
    out = own_copy(lambda_artifacts, tmp_path_factory.mktemp("shop-artifacts"))
    name = f"sp{uuid.uuid4().hex[:8]}"
    target = Target(name=name, bucket=f"{name}-store", prefix="shop", endpoint=localstack.endpoint_url)
    argv = [
        "deploy",
        "--endpoint",
        localstack.endpoint_url,
        "--name",
        name,
        "--bucket",
        target.bucket,
        "--prefix",
        "shop",
        "--artifacts",
        str(out),
        "--num-shards",
        str(SHOP_SHARDS),
        "--json",
        *(f"--every={handler}=1d" for handler in SCHEDULES),
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "test")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "test")
        mp.setenv("STOCKPULSE_CATALOG", str(path))  # the environment variable, as compose would give it
        for variable in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "STOCKPULSE_STORE_URL", "STOCKPULSE_NUM_SHARDS"):
            mp.delenv(variable, raising=False)

        def run_cli() -> list[dict[str, str]]:
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                assert cli.main(argv) == 0
            return json.loads(printed.getvalue())

        yield target, path, parts, run_cli(), run_cli
        destroy_all(target, localstack)


def test_deploy_keeps_the_catalog_and_its_compiled_forms_in_the_store(shop, localstack):
    """GIVEN deploy --catalog FILE --num-shards 3 THEN the bucket holds, under the store's prefix,
    the file's exact bytes and the compiled forms of the whole catalog and of each shard, uploaded
    before the functions were made, and the functions name the source by a store: reference."""
    target, path, _, rows, _ = shop
    data = path.read_bytes()
    keys = [source_key(data), compiled_key(data)] + [compiled_key(data, (k, SHOP_SHARDS)) for k in range(SHOP_SHARDS)]
    uploaded = [(row["name"], row["action"]) for row in rows if row["resource"] == "catalog"]
    assert uploaded == [(f"shop/{key}", "upload") for key in keys]
    first_function = next(i for i, row in enumerate(rows) if row["resource"] == "function")
    assert max(i for i, row in enumerate(rows) if row["resource"] == "catalog") < first_function
    s3 = client(localstack, "s3")
    assert s3.get_object(Bucket=target.bucket, Key=f"shop/{source_key(data)}")["Body"].read() == data
    listed = s3.list_objects_v2(Bucket=target.bucket, Prefix="shop/catalogs/")["Contents"]
    assert sorted(item["Key"] for item in listed) == sorted(f"shop/{key}" for key in keys)
    lam = client(localstack, "lambda")
    for function in function_names(target.name).values():
        variables = lam.get_function_configuration(FunctionName=function)["Environment"]["Variables"]
        assert variables == {
            "STOCKPULSE_STORE_URL": f"s3://{target.bucket}/shop",
            "STOCKPULSE_NUM_SHARDS": "3",
            "STOCKPULSE_CATALOG": store_reference(data),
        }


def test_each_shard_of_the_deployed_functions_runs_the_uploaded_catalogs_series(shop, localstack):
    """GIVEN the deployment of the shop's catalog WHEN LocalStack invokes order_tick then forecast
    for each shard THEN each shard applies with exactly its products of the uploaded catalog: the
    forecast's inventory events name each of the shard's series once, and the store's catalog
    objects are still the five deploy uploaded (no function had to compile the file)."""
    target, path, parts, _, _ = shop
    s3 = client(localstack, "s3")
    start = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)  # ahead of all

    def call(handler: str, moment: datetime, shard: int) -> dict[str, Any]:
        payload = invoke_function(localstack, function_names(target.name)[handler], moment, shard)
        assert (payload["status"], payload["shard"]) == ("applied", shard), payload
        return payload

    for part in parts:
        call("order_tick", start, part.number)
        forecast = call("forecast", start.replace(minute=1), part.number)
        body = s3.get_object(Bucket=target.bucket, Key=f"shop/{forecast['log_key']}")["Body"].read()
        series = sorted((e["product_id"], e["warehouse_id"]) for e in decode_events(body) if e["type"] == "inventory")
        assert series == sorted((p.id, w.id) for p in part.catalog.products for w in part.catalog.warehouses)
        s3.head_object(Bucket=target.bucket, Key=f"shop/shards/{part.number}/state/state.bin")
    assert len(s3.list_objects_v2(Bucket=target.bucket, Prefix="shop/catalogs/")["Contents"]) == 5


def test_a_second_deploy_of_the_catalog_uploads_nothing_new(shop):
    *_, run_cli = shop
    rows = run_cli()
    assert [row["action"] for row in rows if row["resource"] == "catalog"] == ["unchanged"] * 5
    assert {row["action"] for row in rows} == {"unchanged"}


# -- a shop's order feed: the deployed order_tick applies it from another bucket ----------------------


def test_a_deployed_order_tick_applies_the_shops_order_feed_and_destroy_keeps_the_feed(lambda_artifacts, localstack, aws_env, tmp_path):
    """GIVEN a deployment with STOCKPULSE_ORDERS_URL on a bucket of the shop's (not deploy's), holding
    an hour's partition of NDJSON order lines (one repeated in a second object, one bad) WHEN LocalStack
    invokes order_tick minute by minute THEN each good line is applied exactly once as an order event
    carrying its line id, the bad one is refused with a feed_rejected event, the journal lives under
    state/feed/ in the deployment's bucket; and destroy leaves the feed's bucket and objects alone."""
    from tests.support.feeds import line, ndjson, partition

    s3 = client(localstack, "s3")
    target = new_target(localstack, schedule=Schedule.parse(f"{handler}=1d" for handler in SCHEDULES))
    feed_bucket = f"{target.name}-feed"
    s3.create_bucket(Bucket=feed_bucket)
    target = replace(target, environment={**target.environment, "STOCKPULSE_ORDERS_URL": f"s3://{feed_bucket}/orders"})
    t0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
    minute = timedelta(minutes=1)
    laptop, phone = {"product": "LAPTOP-001", "warehouse": "WH-NYC"}, {"product": "PHONE-002", "warehouse": "WH-LDN"}
    lines = [
        line("o-1", t0 + minute, quantity=3, **laptop),
        line("o-2", t0 + minute + timedelta(seconds=20), quantity=1, **phone),
        line("o-3", t0 + 2 * minute, quantity=2, **laptop),
    ]
    keys = {
        f"orders/{partition(t0)}a.ndjson": ndjson(lines),
        f"orders/{partition(t0)}b.ndjson": ndjson(lines[:1]) + b'{"line_id": "o-bad", "quantity": 1}\n',
    }
    deploy(target, lambda_artifacts)
    try:
        function = function_names(target.name)["order_tick"]
        invoke_applies(localstack, function, t0.strftime("%Y-%m-%dT%H:%M:%SZ"))
        for key, body in keys.items():
            s3.put_object(Bucket=feed_bucket, Key=key, Body=body)
        for step in (1, 2, 3):
            invoke_applies(localstack, function, (t0 + step * minute).strftime("%Y-%m-%dT%H:%M:%SZ"))
        listed = s3.list_objects_v2(Bucket=target.bucket, Prefix="logs/order_tick/")["Contents"]
        events = [
            e
            for item in sorted(listed, key=lambda item: item["Key"])
            for e in decode_events(s3.get_object(Bucket=target.bucket, Key=item["Key"])["Body"].read())
        ]
        applied = sorted((e["line_id"], e["product_id"], e["quantity"]) for e in events if e["type"] == "order" and e.get("line_id"))
        assert applied == [("o-1", "LAPTOP-001", 3), ("o-2", "PHONE-002", 1), ("o-3", "LAPTOP-001", 2)]
        rejected = sorted((e["outcome"], e["key"].rsplit("/", 1)[-1], e["line"]) for e in events if e["type"] == "feed_rejected")
        assert rejected == [("bad", "b.ndjson", 2), ("duplicate", "b.ndjson", 1)]
        assert s3.list_objects_v2(Bucket=target.bucket, Prefix="state/feed/")["KeyCount"] >= 1
    finally:
        destroy_all(target, localstack)
    assert sorted(item["Key"] for item in s3.list_objects_v2(Bucket=feed_bucket)["Contents"]) == sorted(keys)
