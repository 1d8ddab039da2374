"""``python -m jobs deploy`` against a real LocalStack (host mode, on 127.0.0.1).

LocalStack runs the deployed functions as local processes of CPython 3.12 from the uploaded
artifacts (tests/localstack_executor), so the functions are invoked for real, and EventBridge
rules fire them. Each test deploys under a name and bucket of its own."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import boto3
import pytest

from handlers.logs import decode_events
from jobs import cli
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
)

from .. import servers

SCHEDULES = {"order_tick": "rate(1 minute)", "restock": "rate(5 minutes)", "forecast": "rate(1 hour)",
             "alert": "rate(15 minutes)"}


@pytest.fixture
def aws_env(monkeypatch, localstack):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "STOCKPULSE_PUSHGATEWAY_URL",
                 "STOCKPULSE_CATALOG", "STOCKPULSE_STORE_URL"):
        monkeypatch.delenv(name, raising=False)
    return localstack


def client(localstack: servers.LocalStack, service: str) -> Any:
    return boto3.session.Session().client(service, region_name="us-east-1", endpoint_url=localstack.endpoint_url)


def new_target(localstack: servers.LocalStack, **changes: Any) -> Target:
    name = f"sp{uuid.uuid4().hex[:8]}"
    values: dict[str, Any] = {"name": name, "bucket": f"{name}-store", "endpoint": localstack.endpoint_url,
                              "environment": {"STOCKPULSE_PUSHGATEWAY_URL": "http://pushgateway:9091"}}
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
    assert block == {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                     "RestrictPublicBuckets": True}
    rules = s3.get_bucket_encryption(Bucket=target.bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert {"Key": TAG_KEY, "Value": target.name} in s3.get_bucket_tagging(Bucket=target.bucket)["TagSet"]


def test_each_function_has_its_own_role_with_exactly_its_policy(deployed, localstack):
    target, _ = deployed
    iam = client(localstack, "iam")
    for handler, function in function_names(target.name).items():
        role = iam.get_role(RoleName=function)["Role"]
        trust = role["AssumeRolePolicyDocument"]
        assert trust["Statement"] == [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                       "Action": "sts:AssumeRole"}]
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
        assert config["Environment"]["Variables"] == {"STOCKPULSE_STORE_URL": f"s3://{target.bucket}",
                                                      "STOCKPULSE_PUSHGATEWAY_URL": "http://pushgateway:9091"}
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
        f"/aws/lambda/{f}" for f in function_names(target.name).values())
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
    variables = client(localstack, "lambda").get_function_configuration(
        FunctionName=function_names(target.name)["alert"])["Environment"]["Variables"]
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
    lam, s3 = client(localstack, "lambda"), client(localstack, "s3")
    results = {}
    for handler, time_ in (("order_tick", "2026-01-05T09:01:00Z"), ("forecast", "2026-01-05T10:00:00Z"),
                           ("alert", "2026-01-05T10:15:00Z")):
        event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
                 "account": "000000000000", "time": time_, "region": "us-east-1", "resources": [], "detail": {}}
        response = lam.invoke(FunctionName=function_names(target.name)[handler], Payload=json.dumps(event))
        payload = json.loads(response["Payload"].read())
        assert "FunctionError" not in response, payload
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
    assert keys[0].startswith(f"logs/order_tick/{day}/") or keys[0].startswith("logs/order_tick/")
    destroy_all(target, localstack)


def destroy_all(target: Target, localstack: servers.LocalStack) -> None:
    s3 = client(localstack, "s3")
    for function in function_names(target.name).values():  # stop the schedule before emptying
        client(localstack, "events").disable_rule(Name=function)
    for item in s3.list_objects_v2(Bucket=target.bucket).get("Contents", []):
        if not item["Key"].startswith("lambda-code/"):
            s3.delete_object(Bucket=target.bucket, Key=item["Key"])
    destroy(target)


def test_destroy_removes_what_deploy_made_and_keeps_a_bucket_holding_data(lambda_artifacts, localstack, aws_env):
    target = new_target(localstack)
    deploy(target, lambda_artifacts)
    s3 = client(localstack, "s3")
    s3.put_object(Bucket=target.bucket, Key="state/state.bin", Body=b"data of the store")
    rows = actions(destroy(target))
    assert rows[("bucket", target.bucket)].startswith("kept: holds 1 objects")
    assert s3.get_object(Bucket=target.bucket, Key="state/state.bin")["Body"].read() == b"data of the store"
    names = set(function_names(target.name).values())
    assert not names & {f["FunctionName"] for f in client(localstack, "lambda").list_functions()["Functions"]}
    assert not names & {r["RoleName"] for r in client(localstack, "iam").list_roles()["Roles"]}
    assert client(localstack, "events").list_rules(NamePrefix=f"{target.name}-")["Rules"] == []
    assert client(localstack, "logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{target.name}-")[
        "logGroups"] == []
    assert "Contents" not in s3.list_objects_v2(Bucket=target.bucket, Prefix="lambda-code/")
    s3.delete_object(Bucket=target.bucket, Key="state/state.bin")
    assert actions(destroy(target))[("bucket", target.bucket)] == "delete"
    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert target.bucket not in buckets
    assert destroy(target) == []  # nothing left: a second destroy finds nothing


def test_a_name_taken_by_something_deploy_did_not_make_is_refused_before_anything_is_made(
        lambda_artifacts, localstack, aws_env):
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
        function_names(target.name).values())
    iam.delete_role(RoleName=taken)


def test_an_existing_bucket_deploy_did_not_make_is_used_and_never_deleted(lambda_artifacts, localstack, aws_env):
    target = new_target(localstack)
    s3 = client(localstack, "s3")
    s3.create_bucket(Bucket=target.bucket)  # e.g. compose's init hook made it
    assert actions(deploy(target, lambda_artifacts))[("bucket", target.bucket)].startswith("unchanged")
    assert actions(destroy(target))[("bucket", target.bucket)] == "kept (not made by deploy)"
    s3.head_bucket(Bucket=target.bucket)


def test_cli_deploy_dry_run_prints_the_plan_table(localstack, aws_env, lambda_artifacts, capsys):
    out = lambda_artifacts["handlers"].path.parent
    code = cli.main(["deploy", "--endpoint", localstack.endpoint_url, "--name", "spcli", "--bucket", "spcli-store",
                     "--artifacts", str(out), "--dry-run"])
    printed = capsys.readouterr()
    assert code == 0
    lines = printed.out.splitlines()
    assert lines[0].split() == ["resource", "name", "result"]
    assert "function     spcli-order-tick" in printed.out and "would create" in printed.out
    assert "stockpulse deploy:" in printed.err  # progress while it works


def test_cli_unreachable_endpoint_is_one_line(aws_env, lambda_artifacts, capsys):
    port = servers.free_port()
    out = lambda_artifacts["handlers"].path.parent
    code = cli.main(["deploy", "--endpoint", f"http://127.0.0.1:{port}", "--artifacts", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == f"stockpulse: error: sts get-caller-identity: cannot reach http://127.0.0.1:{port} " \
                      "(EndpointConnectionError)"


def test_cli_missing_credentials_is_one_line(localstack, monkeypatch, tmp_path, lambda_artifacts, capsys):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    out = lambda_artifacts["handlers"].path.parent
    code = cli.main(["deploy", "--endpoint", localstack.endpoint_url, "--artifacts", str(out)])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("stockpulse: error: no AWS credentials")


def test_clients_use_the_endpoint_given(localstack, aws_env):
    target = new_target(localstack)
    assert Clients(target).s3.meta.endpoint_url == localstack.endpoint_url


def test_a_bucket_of_another_account_is_refused_before_anything_is_made(lambda_artifacts, localstack, aws_env):
    target = new_target(localstack)
    other = boto3.session.Session(aws_access_key_id="111111111111", aws_secret_access_key="test").client(
        "s3", region_name="us-east-1", endpoint_url=localstack.endpoint_url)  # LocalStack: key = account
    other.create_bucket(Bucket=target.bucket)
    with pytest.raises(DeployError, match=f"bucket {target.bucket}: exists and belongs to another account"):
        deploy(target, lambda_artifacts)
    names = {r["RoleName"] for r in client(localstack, "iam").list_roles()["Roles"]}
    assert not names & set(function_names(target.name).values())
