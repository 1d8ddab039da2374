"""Making, updating and removing a deployment: ``deploy`` and ``destroy``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from .. import package
from .aws import Clients, DeployError, Row, _Deployment, _say_nothing
from .catalog import plan_catalog, upload_catalog
from .code import code_keys, list_keys, plan_code, remove_code, remove_superseded, running_code, upload_code
from .plan import (
    _LAMBDA_TRUST,
    FUNCTION_SIZING,
    LOG_RETENTION_DAYS,
    Target,
    artifact_of,
    code_name,
    role_policy,
)
from .rules import apply_rules, check_quotas, check_store_split, existing_rules, remove_rule


def _function_config(target: Target, handler: str, role_arn: str, artifact: package.Artifact) -> dict[str, Any]:
    memory, timeout = FUNCTION_SIZING[handler]
    return {
        "Runtime": artifact.runtime,
        "Handler": f"handlers.{handler}.handler",
        "Role": role_arn,
        "MemorySize": memory,
        "Timeout": timeout,
        "Environment": {"Variables": {"STOCKPULSE_STORE_URL": target.store_url, **target.environment}},
    }


def _differs(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    have = {
        "Runtime": current.get("Runtime"),
        "Handler": current.get("Handler"),
        "Role": current.get("Role"),
        "MemorySize": current.get("MemorySize"),
        "Timeout": current.get("Timeout"),
        "Environment": {"Variables": current.get("Environment", {}).get("Variables", {})},
    }
    return have != dict(wanted)


def deploy(
    target: Target,
    artifacts: Mapping[str, package.Artifact],
    *,
    dry_run: bool = False,
    clients: Clients | None = None,
    say: Callable[[str], None] = _say_nothing,
) -> list[Row]:
    """Make or update everything; returns one row per resource. Reads the whole plan first and
    raises ``DeployError`` on any conflict before changing anything."""
    d = _Deployment(target, clients or Clients(target), say)
    try:
        return _deploy(d, artifacts, dry_run=dry_run)
    except DeployError as exc:
        changed = [row for row in d.rows if not row.action.startswith(("unchanged", "would", "kept"))]
        if not changed:
            raise
        raise DeployError(f"{exc} (after {len(changed)} changes: run deploy again to finish, or deploy --destroy to remove them)") from exc


def _deploy(d: _Deployment, artifacts: Mapping[str, package.Artifact], *, dry_run: bool) -> list[Row]:
    target = d.t
    will = "would " if dry_run else ""
    account = d.account()
    # 1. the plan: what exists and whether it is ours (raises on anything foreign)
    bucket = d.bucket_state()
    existing = {h: (d.role(f), d.function(f), existing_rules(d, f), d.log_group(f"/aws/lambda/{f}")) for h, f in d.functions.items()}
    check_store_split(d, bucket)  # a shard count the store would refuse
    check_quotas(d, account, {h: rules for h, (_, _, rules, _) in existing.items()})
    catalog_present = plan_catalog(d, bucket)  # a store: reference to nothing is refused
    keys = code_keys(d, artifacts)
    code_present = plan_code(d, bucket, keys)  # an object of someone else's at one of our keys is refused

    # 2. the bucket
    if bucket == "missing":
        if not dry_run:
            _make_bucket(d)
        d.row("bucket", target.bucket, will + "create")
    else:
        d.row("bucket", target.bucket, "unchanged" if bucket == "ours" else "unchanged (not made by deploy, kept as is)")
    # 2b. the shop's catalog and its compiled forms, before any function names them
    upload_catalog(d, catalog_present, dry_run)

    # 3. the code, content-addressed, in the deployment's own folder (jobs/deploy/code.py)
    upload_code(d, artifacts, keys, code_present, dry_run)

    for handler, function in d.functions.items():
        role, config, rules, group = existing[handler]
        artifact = artifacts[artifact_of(handler)]
        # 4. log group, 5. role
        if group is None and not dry_run:
            with d.errors(f"log group /aws/lambda/{function}"):
                d.c.logs.create_log_group(logGroupName=f"/aws/lambda/{function}", tags=target.tags)
                d.c.logs.put_retention_policy(logGroupName=f"/aws/lambda/{function}", retentionInDays=LOG_RETENTION_DAYS)
        d.row("log group", f"/aws/lambda/{function}", "unchanged" if group else will + "create")
        role_arn = _apply_role(d, handler, function, role, account, dry_run)
        # 6. function
        wanted = _function_config(target, handler, role_arn, artifact)
        if config is None:
            if not dry_run:
                config = _runs(d, function, artifact, _create_function(d, function, wanted, keys[artifact.name]))
            d.row("function", function, will + "create")
        else:
            changes = ["configuration"] if _differs(config, wanted) else []
            if config.get("CodeSha256") != artifact.sha256:
                changes.append("code")
            if changes and not dry_run:
                config = _runs(d, function, artifact, _update_function(d, function, config, wanted, keys[artifact.name], changes))
            d.row("function", function, f"{will}update {' and '.join(changes)}" if changes else "unchanged")
        # 7. rules (one, or the shards' fan-out), their targets and permissions; stale rules removed
        apply_rules(d, handler, function, rules, config, account, dry_run)
    # 8. this deployment's code that none of its functions runs any more
    if bucket != "missing":
        remove_superseded(d, keys, {f: artifact_of(h) for h, f in d.functions.items()}, dry_run)
    return d.rows


def _runs(d: _Deployment, function: str, artifact: package.Artifact, config: dict[str, Any]) -> dict[str, Any]:
    """``config``, once Lambda reports the function runs ``artifact``; else a ``DeployError`` (an
    update that failed on Lambda's side, or a code object whose bytes are not the artifact's): the
    code it does run is then kept, as nothing superseded is deleted after an error."""
    if config.get("CodeSha256") == artifact.sha256:
        return config
    runs = running_code(artifact.name, config.get("CodeSha256")) or "no code"
    raise DeployError(
        f"function {function}: runs {runs}, not {code_name(artifact.name, artifact.sha256_hex)} "
        f"(last update {config.get('LastUpdateStatus', 'unknown')}: "
        f"{config.get('LastUpdateStatusReason') or 'no reason given'})"
    )


def _make_bucket(d: _Deployment) -> None:
    t = d.t
    with d.errors(f"bucket {t.bucket}"):
        options = {} if t.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": t.region}}
        d.c.s3.create_bucket(Bucket=t.bucket, **options)
        d.c.s3.put_bucket_tagging(Bucket=t.bucket, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in t.tags.items()]})
        d.c.s3.put_public_access_block(
            Bucket=t.bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        d.c.s3.put_bucket_encryption(
            Bucket=t.bucket,
            ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
        )


def _apply_role(d: _Deployment, handler: str, function: str, role: dict[str, Any] | None, account: str, dry_run: bool) -> str:
    policy = json.dumps(role_policy(d.t, handler, account=account), sort_keys=True)
    if role is None:
        if dry_run:
            d.row("role", function, "would create")
            return f"arn:aws:iam::{account}:role/{function}"
        with d.errors(f"role {function}"):
            made = d.c.iam.create_role(
                RoleName=function,
                AssumeRolePolicyDocument=json.dumps(_LAMBDA_TRUST),
                Description=f"stockpulse {handler} function",
                Tags=[{"Key": k, "Value": v} for k, v in d.t.tags.items()],
            )
            d.c.iam.put_role_policy(RoleName=function, PolicyName="stockpulse", PolicyDocument=policy)
        d.row("role", function, "create")
        return str(made["Role"]["Arn"])
    with d.errors(f"role {function}"):
        try:
            current = d.c.iam.get_role_policy(RoleName=function, PolicyName="stockpulse")["PolicyDocument"]
        except d.c.iam.exceptions.NoSuchEntityException:
            current = None
        if isinstance(current, str):  # some servers return it URL-encoded text
            from urllib.parse import unquote

            current = json.loads(unquote(current))
        same = current is not None and json.dumps(current, sort_keys=True) == policy
        if not same and not dry_run:
            d.c.iam.put_role_policy(RoleName=function, PolicyName="stockpulse", PolicyDocument=policy)
    d.row("role", function, "unchanged" if same else ("would " if dry_run else "") + "update policy")
    return str(role["Arn"])


def _create_function(d: _Deployment, function: str, wanted: dict[str, Any], code_key: str) -> dict[str, Any]:
    # A new role takes a few seconds to be assumable by Lambda on AWS: retry that one refusal.
    deadline = time.monotonic() + 60
    while True:
        try:
            with d.errors(f"function {function}"):
                d.c.lambda_.create_function(
                    FunctionName=function,
                    Code={"S3Bucket": d.t.bucket, "S3Key": code_key},
                    Architectures=["x86_64"],
                    Tags=d.t.tags,
                    Description="stockpulse handler (python -m jobs deploy)",
                    **wanted,
                )
            break
        except DeployError as exc:
            if "cannot be assumed" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(2)
    return d.wait_settled(function)


def _update_function(
    d: _Deployment, function: str, config: dict[str, Any], wanted: dict[str, Any], code_key: str, changes: list[str]
) -> dict[str, Any]:
    if config.get("State") == "Failed":
        # Lambda cannot update a function that never started (LocalStack without Docker leaves every
        # function so); it is of no use as it is: make it again with what is wanted.
        d.say(f"function {function}: was Failed ({config.get('StateReason', 'no reason given')}): replacing it")
        with d.errors(f"function {function}"):
            d.c.lambda_.delete_function(FunctionName=function)
        return _create_function(d, function, wanted, code_key)
    if "configuration" in changes:
        d.wait_settled(function)
        with d.errors(f"function {function}"):
            d.c.lambda_.update_function_configuration(FunctionName=function, **wanted)
    if "code" in changes:
        d.wait_settled(function)
        with d.errors(f"function {function}"):
            d.c.lambda_.update_function_code(FunctionName=function, S3Bucket=d.t.bucket, S3Key=code_key)
    return d.wait_settled(function)


def destroy(
    target: Target, *, dry_run: bool = False, clients: Clients | None = None, say: Callable[[str], None] = _say_nothing
) -> list[Row]:
    """Remove what ``deploy`` made for ``target.name`` (refusing anything it did not make)."""
    d = _Deployment(target, clients or Clients(target), say)
    will = "would " if dry_run else ""
    bucket = d.bucket_state()
    existing = {h: (d.role(f), d.function(f), existing_rules(d, f), d.log_group(f"/aws/lambda/{f}")) for h, f in d.functions.items()}
    for handler, function in d.functions.items():
        role, config, rules, group = existing[handler]
        for name in rules:  # every rule, whatever shard count it was made for
            remove_rule(d, function, name, dry_run, permission=False)  # permissions go with the function
        if config is not None:
            if not dry_run:
                with d.errors(f"function {function}"):
                    d.c.lambda_.delete_function(FunctionName=function)
            d.row("function", function, will + "delete")
        if group is not None:
            if not dry_run:
                with d.errors(f"log group /aws/lambda/{function}"):
                    d.c.logs.delete_log_group(logGroupName=f"/aws/lambda/{function}")
            d.row("log group", f"/aws/lambda/{function}", will + "delete")
        if role is not None:
            if not dry_run:
                with d.errors(f"role {function}"):
                    for policy in d.c.iam.list_role_policies(RoleName=function).get("PolicyNames", []):
                        d.c.iam.delete_role_policy(RoleName=function, PolicyName=policy)
                    d.c.iam.delete_role(RoleName=function)
            d.row("role", function, will + "delete")
    if bucket == "missing":
        return d.rows
    code = remove_code(d, dry_run)  # only this deployment's own zips (jobs/deploy/code.py)
    with d.errors(f"bucket {target.bucket}"):
        if bucket != "ours":
            d.row("bucket", target.bucket, "kept (not made by deploy)")
        elif (keys := list(list_keys(d, ""))) and not (dry_run and set(keys) <= set(code)):  # one listing of the bucket
            count = sum(1 for key in keys if key not in code)  # a dry run's code would be gone
            d.row(
                "bucket",
                target.bucket,
                f"kept: holds {count} objects this deployment did not make (the store's "
                "data, other deployments' code): remove them, then --destroy again",
            )
        else:
            if not dry_run:
                d.c.s3.delete_bucket(Bucket=target.bucket)
            d.row("bucket", target.bucket, will + "delete")
    return d.rows
