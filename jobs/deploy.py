"""``python -m jobs deploy``: the four handlers as Lambda functions on EventBridge rules.

What it makes, every piece tagged ``stockpulse:deployment=<name>`` (the tag is how a later
``deploy`` or ``--destroy`` knows a resource is its own; a name taken by anything without it is
refused, before anything is made):

=========================  ===============================================================
bucket                     the store (``s3://BUCKET/PREFIX``): public access blocked, SSE-S3
code objects               ``PREFIX/lambda-code/<artifact>-<sha256>.zip`` (content-addressed)
log group per function     ``/aws/lambda/<function>``, 14 days
role per function          ``<function>``: assumed by Lambda; S3 only on the keys it uses
function per handler       ``<name>-order-tick`` ... runtime, handler, memory, timeout, env
rule per handler           ``<function>``: ``rate(...)`` of the handler's schedule -> function
=========================  ===============================================================

The plan (what exists, what is whose, what would change) is read first; a conflict stops it
before any change. A second ``deploy`` updates in place and uploads code only when its SHA-256
changed; ``--dry-run`` prints the plan; ``--destroy`` removes what it made (a bucket only when
nothing but its own code is in it: the store's data is never deleted).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handlers import HANDLERS
from handlers.errors import ConfigError, StockpulseError
from handlers.logs import LOG_PREFIX
from handlers.metrics import metrics_key
from handlers.settings import ENV, Settings
from handlers.state import STATE_KEY

from . import package
from .schedule import Schedule

__all__ = ["DEFAULT_BUCKET", "DEFAULT_NAME", "TAG_KEY", "DeployError", "Target", "function_names",
           "function_settings", "role_policy", "rate_expression", "deploy", "destroy", "register"]

DEFAULT_NAME = "stockpulse"
DEFAULT_BUCKET = "stockpulse"
TAG_KEY = "stockpulse:deployment"
CODE_PREFIX = "lambda-code/"
LOG_RETENTION_DAYS = 14
#: memory (MB) and timeout (s): inside each schedule's interval, so a slow run never overlaps the next
FUNCTION_SIZING: dict[str, tuple[int, int]] = {"order_tick": (512, 50), "restock": (512, 120),
                                               "forecast": (1536, 600), "alert": (512, 300)}
_LAMBDA_TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


class DeployError(StockpulseError):
    """The cloud said no (or could not be reached): one line naming the resource."""


def function_names(name: str = DEFAULT_NAME) -> dict[str, str]:
    """handler -> function name (also the name of its role, rule and log group suffix)."""
    return {handler: f"{name}-{handler.replace('_', '-')}" for handler in HANDLERS}


def artifact_of(handler: str) -> str:
    return next(artifact for artifact, served in package.ARTIFACTS.items() if handler in served)


def rate_expression(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"rate({count} {unit}{'' if count == 1 else 's'})"
    raise ConfigError(f"schedule: {seconds} s is not whole minutes (EventBridge rates are)")


@dataclass(frozen=True)
class Target:
    """Where and how to deploy."""

    name: str = DEFAULT_NAME
    bucket: str = DEFAULT_BUCKET
    prefix: str = ""
    region: str = "us-east-1"
    endpoint: str | None = None
    schedule: Schedule = field(default_factory=Schedule.parse)
    environment: Mapping[str, str] = field(default_factory=dict)  # STOCKPULSE_* but the store

    @property
    def key_prefix(self) -> str:
        return f"{self.prefix.strip('/')}/" if self.prefix.strip("/") else ""

    @property
    def store_url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix.strip('/')}".rstrip("/")

    @property
    def tags(self) -> dict[str, str]:
        return {TAG_KEY: self.name}


def function_settings(settings: Settings) -> dict[str, str]:
    """The settings a function needs, as its ``STOCKPULSE_*`` environment (the store URL comes
    from the target). Only what differs from the built-in defaults, so a function's configuration
    says what was chosen."""
    if settings.catalog_path is not None:
        raise ConfigError("--catalog / STOCKPULSE_CATALOG: deployed functions use the catalog built "
                          "into the package (handlers/catalogs/default.yaml); unset it to deploy")
    defaults = Settings()
    environment = {}
    for name, (variable, _, _, _) in ENV.items():
        value = getattr(settings, name)
        if name in ("store_url", "catalog_path") or value is None or value == getattr(defaults, name):
            continue
        environment[variable] = f"{value:g}" if isinstance(value, float) else str(value)
    return environment


def role_policy(target: Target, handler: str, *, account: str) -> dict[str, Any]:
    """Least privilege for one function: the state object (compare-and-swap), the log objects
    (its own, and any other handler's promised by the state's outbox, which every invocation
    completes), its own metrics text file, and its own log group. ``s3:ListBucket`` lets a read of
    the not-yet-existing state say 404 rather than 403."""
    bucket = f"arn:aws:s3:::{target.bucket}"
    prefix = target.key_prefix
    function = function_names(target.name)[handler]
    group = f"arn:aws:logs:{target.region}:{account}:log-group:/aws/lambda/{function}"
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "State", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": [f"{bucket}/{prefix}{STATE_KEY}"]},
        {"Sid": "Logs", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": [f"{bucket}/{prefix}{LOG_PREFIX}*"]},
        {"Sid": "Metrics", "Effect": "Allow", "Action": ["s3:PutObject"],
         "Resource": [f"{bucket}/{prefix}{metrics_key(handler)}"]},
        {"Sid": "NotFoundIsNotForbidden", "Effect": "Allow", "Action": ["s3:ListBucket"],
         "Resource": [bucket]},
        {"Sid": "OwnLogGroup", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": [f"{group}:*"]},
    ]}


# ---------------------------------------------------------------------------------------------
# foreign errors, translated in one place


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


@contextlib.contextmanager
def aws_errors(what: str, endpoint: str | None) -> Iterator[None]:
    """botocore's exceptions -> one ``DeployError`` line naming ``what``."""
    from botocore import exceptions as bx

    try:
        yield
    except StockpulseError:
        raise
    except (bx.NoCredentialsError, bx.PartialCredentialsError):
        raise DeployError("no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE "
                          "(LocalStack takes any, e.g. test/test)") from None
    except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError) as exc:
        raise DeployError(f"{what}: cannot reach {endpoint or 'AWS'} ({type(exc).__name__})") from None
    except bx.ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        raise DeployError(f"{what}: {_error_code(exc) or 'error'}: {message}") from None
    except bx.BotoCoreError as exc:
        raise DeployError(f"{what}: {exc}") from None


# ---------------------------------------------------------------------------------------------


@dataclass
class Row:
    resource: str
    name: str
    action: str  # created, updated, unchanged, deleted, kept, would create, would update ...


class Clients:
    """boto3 clients for one target, built once."""

    def __init__(self, target: Target, *, session: Any = None) -> None:
        import boto3
        from botocore.config import Config

        session = session or boto3.session.Session(region_name=target.region)
        config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=60)
        kwargs: dict[str, Any] = {"region_name": target.region, "config": config}
        if target.endpoint:
            kwargs["endpoint_url"] = target.endpoint
        self.s3 = session.client("s3", **kwargs)
        self.iam = session.client("iam", **kwargs)
        self.lambda_ = session.client("lambda", **kwargs)
        self.events = session.client("events", **kwargs)
        self.logs = session.client("logs", **kwargs)
        self.sts = session.client("sts", **kwargs)


def _say_nothing(line: str) -> None:
    pass


class _Deployment:
    def __init__(self, target: Target, clients: Clients, say: Callable[[str], None]) -> None:
        self.t, self.c, self.say = target, clients, say
        self.rows: list[Row] = []
        self.functions = function_names(target.name)
        self._account: str | None = None

    def errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        return aws_errors(what, self.t.endpoint)

    def row(self, resource: str, name: str, action: str) -> None:
        self.rows.append(Row(resource, name, action))
        self.say(f"{resource} {name}: {action}")

    # -- reading what exists ----------------------------------------------------------------
    def account(self) -> str:
        if self._account is None:
            with self.errors("sts get-caller-identity"):
                self._account = str(self.c.sts.get_caller_identity()["Account"])
        return self._account

    def bucket_state(self) -> str:
        """'missing', 'ours' or 'foreign' (exists, not tagged by this deployment)."""
        with self.errors(f"bucket {self.t.bucket}"):
            try:
                self.c.s3.head_bucket(Bucket=self.t.bucket, ExpectedBucketOwner=self.account())
            except Exception as exc:
                code = _error_code(exc)
                if code in ("404", "NoSuchBucket", "NotFound"):
                    return "missing"
                if code in ("403", "AccessDenied", "Forbidden"):  # AWS: another account's bucket
                    raise DeployError(f"bucket {self.t.bucket}: exists and belongs to another account "
                                      "(bucket names are global): choose another --bucket") from None
                raise
            owned = {bucket["Name"] for bucket in self.c.s3.list_buckets().get("Buckets", [])}
            if self.t.bucket not in owned:  # visible but not ours (LocalStack answers HEAD for any account)
                raise DeployError(f"bucket {self.t.bucket}: exists and belongs to another account "
                                  "(bucket names are global): choose another --bucket")
            try:
                tags = self.c.s3.get_bucket_tagging(Bucket=self.t.bucket).get("TagSet", [])
            except Exception as exc:
                if _error_code(exc) not in ("NoSuchTagSet", "NoSuchTagSetError"):
                    raise
                tags = []
        return "ours" if {"Key": TAG_KEY, "Value": self.t.name} in tags else "foreign"

    def role(self, role: str) -> dict[str, Any] | None:
        with self.errors(f"role {role}"):
            try:
                found = self.c.iam.get_role(RoleName=role)["Role"]
            except self.c.iam.exceptions.NoSuchEntityException:
                return None
            tags = {t["Key"]: t["Value"] for t in self.c.iam.list_role_tags(RoleName=role).get("Tags", [])}
        self._own("role", role, tags)
        return dict(found)

    def function(self, function: str) -> dict[str, Any] | None:
        with self.errors(f"function {function}"):
            try:
                found = self.c.lambda_.get_function(FunctionName=function)
            except self.c.lambda_.exceptions.ResourceNotFoundException:
                return None
        self._own("function", function, found.get("Tags", {}))
        return dict(found["Configuration"])

    def rule(self, rule: str) -> dict[str, Any] | None:
        with self.errors(f"rule {rule}"):
            try:
                found = self.c.events.describe_rule(Name=rule)
            except self.c.events.exceptions.ResourceNotFoundException:
                return None
            tags = {t["Key"]: t["Value"] for t in self.c.events.list_tags_for_resource(ResourceARN=found["Arn"])["Tags"]}
        self._own("rule", rule, tags)
        return dict(found)

    def log_group(self, group: str) -> dict[str, Any] | None:
        with self.errors(f"log group {group}"):
            for found in self.c.logs.describe_log_groups(logGroupNamePrefix=group).get("logGroups", []):
                if found["logGroupName"] == group:
                    tags = self.c.logs.list_tags_log_group(logGroupName=group).get("tags", {})
                    self._own("log group", group, tags)
                    return dict(found)
        return None

    def _own(self, resource: str, name: str, tags: Mapping[str, str]) -> None:
        if tags.get(TAG_KEY) != self.t.name:
            raise DeployError(f"{resource} {name}: exists and was not made by `stockpulse deploy --name "
                              f"{self.t.name}` (no tag {TAG_KEY}={self.t.name}): remove it or choose another --name")

    def wait_settled(self, function: str, deadline_seconds: float = 120.0) -> dict[str, Any]:
        """Wait while a function is Pending or an update is InProgress (Lambda refuses changes then)."""
        deadline = time.monotonic() + deadline_seconds
        while True:
            with self.errors(f"function {function}"):
                config = self.c.lambda_.get_function_configuration(FunctionName=function)
            settled = config.get("State") == "Failed" or (
                config.get("State") != "Pending" and config.get("LastUpdateStatus") != "InProgress")
            if settled:
                return dict(config)
            if time.monotonic() > deadline:
                raise DeployError(f"function {function}: still {config.get('State')}/"
                                  f"{config.get('LastUpdateStatus')} after {deadline_seconds:g} s")
            time.sleep(1.0)


def _function_config(target: Target, handler: str, role_arn: str, artifact: package.Artifact) -> dict[str, Any]:
    memory, timeout = FUNCTION_SIZING[handler]
    return {"Runtime": artifact.runtime, "Handler": f"handlers.{handler}.handler", "Role": role_arn,
            "MemorySize": memory, "Timeout": timeout,
            "Environment": {"Variables": {"STOCKPULSE_STORE_URL": target.store_url, **target.environment}}}


def _differs(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    have = {"Runtime": current.get("Runtime"), "Handler": current.get("Handler"), "Role": current.get("Role"),
            "MemorySize": current.get("MemorySize"), "Timeout": current.get("Timeout"),
            "Environment": {"Variables": current.get("Environment", {}).get("Variables", {})}}
    return have != dict(wanted)


def deploy(target: Target, artifacts: Mapping[str, package.Artifact], *, dry_run: bool = False,
           clients: Clients | None = None, say: Callable[[str], None] = _say_nothing) -> list[Row]:
    """Make or update everything; returns one row per resource. Reads the whole plan first and
    raises ``DeployError`` on any conflict before changing anything."""
    d = _Deployment(target, clients or Clients(target), say)
    try:
        return _deploy(d, artifacts, dry_run=dry_run)
    except DeployError as exc:
        changed = [row for row in d.rows if not row.action.startswith(("unchanged", "would", "kept"))]
        if not changed:
            raise
        raise DeployError(f"{exc} (after {len(changed)} changes: run deploy again to finish, or deploy "
                          "--destroy to remove them)") from None


def _deploy(d: _Deployment, artifacts: Mapping[str, package.Artifact], *, dry_run: bool) -> list[Row]:
    target = d.t
    will = "would " if dry_run else ""
    account = d.account()
    # 1. the plan: what exists and whether it is ours (raises on anything foreign)
    bucket = d.bucket_state()
    existing = {h: (d.role(f), d.function(f), d.rule(f), d.log_group(f"/aws/lambda/{f}"))
                for h, f in d.functions.items()}

    # 2. the bucket
    if bucket == "missing":
        if not dry_run:
            _make_bucket(d)
        d.row("bucket", target.bucket, will + "create")
    else:
        d.row("bucket", target.bucket, "unchanged" if bucket == "ours" else "unchanged (not made by deploy, kept as is)")

    # 3. the code, content-addressed
    code_keys = {}
    for name, artifact in artifacts.items():
        key = f"{target.key_prefix}{CODE_PREFIX}{name}-{artifact.sha256_hex[:16]}.zip"
        code_keys[name] = key
        with d.errors(f"s3://{target.bucket}/{key}"):
            present = bucket != "missing" and _object_exists(d, key)
            if not present and not dry_run:
                d.c.s3.upload_file(str(artifact.path), target.bucket, key)
        d.row("code", key.rsplit("/", 1)[-1], "unchanged" if present else will + "upload")

    for handler, function in d.functions.items():
        role, config, rule, group = existing[handler]
        artifact = artifacts[artifact_of(handler)]
        # 4. log group, 5. role
        if group is None and not dry_run:
            with d.errors(f"log group /aws/lambda/{function}"):
                d.c.logs.create_log_group(logGroupName=f"/aws/lambda/{function}", tags=target.tags)
                d.c.logs.put_retention_policy(logGroupName=f"/aws/lambda/{function}",
                                              retentionInDays=LOG_RETENTION_DAYS)
        d.row("log group", f"/aws/lambda/{function}", "unchanged" if group else will + "create")
        role_arn = _apply_role(d, handler, function, role, account, dry_run)
        # 6. function
        wanted = _function_config(target, handler, role_arn, artifact)
        if config is None:
            if not dry_run:
                config = _create_function(d, function, wanted, code_keys[artifact_of(handler)])
            d.row("function", function, will + "create")
        else:
            changes = ["configuration"] if _differs(config, wanted) else []
            if config.get("CodeSha256") != artifact.sha256:
                changes.append("code")
            if changes and not dry_run:
                config = _update_function(d, function, config, wanted, code_keys[artifact_of(handler)], changes)
            d.row("function", function, f"{will}update {' and '.join(changes)}" if changes else "unchanged")
        # 7. rule, target, permission
        _apply_rule(d, handler, function, rule, config, account, dry_run)
    # 8. code no function uses any more
    if bucket != "missing":
        with d.errors(f"s3://{target.bucket}/{target.key_prefix}{CODE_PREFIX}"):
            for key in sorted(set(_keys(d, f"{target.key_prefix}{CODE_PREFIX}")) - set(code_keys.values())):
                if not dry_run:
                    d.c.s3.delete_object(Bucket=target.bucket, Key=key)
                d.row("code", key.rsplit("/", 1)[-1], will + "delete (superseded)")
    return d.rows


def _object_exists(d: _Deployment, key: str) -> bool:
    try:
        d.c.s3.head_object(Bucket=d.t.bucket, Key=key)
        return True
    except Exception as exc:
        if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def _make_bucket(d: _Deployment) -> None:
    t = d.t
    with d.errors(f"bucket {t.bucket}"):
        options = {} if t.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": t.region}}
        d.c.s3.create_bucket(Bucket=t.bucket, **options)
        d.c.s3.put_bucket_tagging(Bucket=t.bucket, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in t.tags.items()]})
        d.c.s3.put_public_access_block(Bucket=t.bucket, PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
        d.c.s3.put_bucket_encryption(Bucket=t.bucket, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})


def _apply_role(d: _Deployment, handler: str, function: str, role: dict[str, Any] | None, account: str,
                dry_run: bool) -> str:
    policy = json.dumps(role_policy(d.t, handler, account=account), sort_keys=True)
    if role is None:
        if dry_run:
            d.row("role", function, "would create")
            return f"arn:aws:iam::{account}:role/{function}"
        with d.errors(f"role {function}"):
            made = d.c.iam.create_role(RoleName=function, AssumeRolePolicyDocument=json.dumps(_LAMBDA_TRUST),
                                       Description=f"stockpulse {handler} function",
                                       Tags=[{"Key": k, "Value": v} for k, v in d.t.tags.items()])
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
                d.c.lambda_.create_function(FunctionName=function, Code={"S3Bucket": d.t.bucket, "S3Key": code_key},
                                            Architectures=["x86_64"], Tags=d.t.tags,
                                            Description="stockpulse handler (python -m jobs deploy)", **wanted)
            break
        except DeployError as exc:
            if "cannot be assumed" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(2)
    return d.wait_settled(function)


def _apply_rule(d: _Deployment, handler: str, function: str, rule: dict[str, Any] | None,
                config: dict[str, Any] | None, account: str, dry_run: bool) -> None:
    expression = rate_expression(d.t.schedule.intervals[handler])
    will = "would " if dry_run else ""
    function_arn = (config or {}).get("FunctionArn") or f"arn:aws:lambda:{d.t.region}:{account}:function:{function}"
    if rule is not None and rule.get("ScheduleExpression") == expression and rule.get("State") == "ENABLED":
        action = "unchanged"
    else:
        action = will + ("create" if rule is None else "update schedule")
        if not dry_run:
            with d.errors(f"rule {function}"):
                made = d.c.events.put_rule(Name=function, ScheduleExpression=expression, State="ENABLED",
                                           Description=f"stockpulse {handler}: {expression}",
                                           **({"Tags": [{"Key": k, "Value": v} for k, v in d.t.tags.items()]}
                                              if rule is None else {}))
                rule = {"Arn": made["RuleArn"]}
    d.row("rule", f"{function} {expression}", action)
    if dry_run and rule is None:
        d.row("rule target", function, "would create")
        d.row("permission", f"{function} <- events", "would create")
        return
    assert rule is not None
    with d.errors(f"rule {function}"):
        targets = d.c.events.list_targets_by_rule(Rule=function).get("Targets", [])
        target_ok = [(t["Id"], t["Arn"]) for t in targets] == [("function", function_arn)]
        if not target_ok and not dry_run:
            stale = [t["Id"] for t in targets if t["Id"] != "function"]
            if stale:
                d.c.events.remove_targets(Rule=function, Ids=stale)
            d.c.events.put_targets(Rule=function, Targets=[{"Id": "function", "Arn": function_arn}])
    d.row("rule target", function, "unchanged" if target_ok else will + "set")
    statement = f"{function}-events"
    with d.errors(f"function {function} policy"):
        try:
            policy = json.loads(d.c.lambda_.get_policy(FunctionName=function)["Policy"])
            allowed = any(s.get("Sid") == statement and _source_arn(s) == rule["Arn"] for s in policy["Statement"])
        except d.c.lambda_.exceptions.ResourceNotFoundException:
            allowed = False
        if not allowed and not dry_run:
            with contextlib.suppress(d.c.lambda_.exceptions.ResourceNotFoundException):
                d.c.lambda_.remove_permission(FunctionName=function, StatementId=statement)
            d.c.lambda_.add_permission(FunctionName=function, StatementId=statement, Action="lambda:InvokeFunction",
                                       Principal="events.amazonaws.com", SourceArn=rule["Arn"])
    d.row("permission", f"{function} <- events", "unchanged" if allowed else will + "create")


def _update_function(d: _Deployment, function: str, config: dict[str, Any], wanted: dict[str, Any],
                     code_key: str, changes: list[str]) -> dict[str, Any]:
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


def _source_arn(statement: Mapping[str, Any]) -> str | None:
    condition = statement.get("Condition", {}).get("ArnLike", {})
    return condition.get("AWS:SourceArn")


def destroy(target: Target, *, dry_run: bool = False, clients: Clients | None = None,
            say: Callable[[str], None] = _say_nothing) -> list[Row]:
    """Remove what ``deploy`` made for ``target.name`` (refusing anything it did not make)."""
    d = _Deployment(target, clients or Clients(target), say)
    will = "would " if dry_run else ""
    bucket = d.bucket_state()
    existing = {h: (d.role(f), d.function(f), d.rule(f), d.log_group(f"/aws/lambda/{f}"))
                for h, f in d.functions.items()}
    for handler, function in d.functions.items():
        role, config, rule, group = existing[handler]
        if rule is not None:
            if not dry_run:
                with d.errors(f"rule {function}"):
                    ids = [t["Id"] for t in d.c.events.list_targets_by_rule(Rule=function).get("Targets", [])]
                    if ids:
                        d.c.events.remove_targets(Rule=function, Ids=ids)
                    d.c.events.delete_rule(Name=function)
            d.row("rule", function, will + "delete")
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
    with d.errors(f"bucket {target.bucket}"):
        code = list(_keys(d, f"{target.key_prefix}{CODE_PREFIX}"))
        for key in code:
            if not dry_run:
                d.c.s3.delete_object(Bucket=target.bucket, Key=key)
            d.row("code", key.rsplit("/", 1)[-1], will + "delete")
        if bucket != "ours":
            d.row("bucket", target.bucket, "kept (not made by deploy)")
        elif next(iter(_keys(d, "")), None) is not None and not (dry_run and set(_keys(d, "")) <= set(code)):
            count = sum(1 for _ in _keys(d, ""))
            d.row("bucket", target.bucket, f"kept: holds {count} objects of the store (empty it, then --destroy again)")
        else:
            if not dry_run:
                d.c.s3.delete_bucket(Bucket=target.bucket)
            d.row("bucket", target.bucket, will + "delete")
    return d.rows


def _keys(d: _Deployment, prefix: str) -> Iterator[str]:
    for page in d.c.s3.get_paginator("list_objects_v2").paginate(Bucket=d.t.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            yield item["Key"]


# ---------------------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    from .cli import _add_settings

    parser = subparsers.add_parser(
        "deploy", help="deploy the handlers as Lambda functions on EventBridge rules (AWS or LocalStack)",
        description="Create or update the bucket, one least-privilege role, log group, function and "
                    "EventBridge rule per handler, all tagged. Credentials and region come from the "
                    "standard AWS environment; --endpoint (or AWS_ENDPOINT_URL) for LocalStack.")
    parser.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL"),
                        help="AWS API endpoint, e.g. http://localhost:4566 for LocalStack (default $AWS_ENDPOINT_URL, else AWS)")
    parser.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
                        help="region (default $AWS_REGION, $AWS_DEFAULT_REGION, else us-east-1)")
    parser.add_argument("--bucket", default=DEFAULT_BUCKET, help=f"the store's bucket (default {DEFAULT_BUCKET})")
    parser.add_argument("--prefix", default="", help="key prefix of the store in the bucket (default none)")
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"name of the deployment: prefix of every resource (default {DEFAULT_NAME})")
    parser.add_argument("--artifacts", default="build/lambda", metavar="DIR",
                        help="where `package` wrote the zips (built there when missing; default build/lambda)")
    parser.add_argument("--python", default=package.DEFAULT_PYTHON, choices=package.RUNTIMES,
                        help=f"Lambda runtime's Python (default {package.DEFAULT_PYTHON})")
    parser.add_argument("--every", action="append", default=[], metavar="HANDLER=DURATION",
                        help="schedule override, repeatable (default order_tick=1m restock=5m forecast=1h alert=15m)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    parser.add_argument("--destroy", action="store_true", help="remove what deploy made")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    _add_settings(parser, *(name for name in ENV if name not in ("store_url",)))
    parser.set_defaults(func=cmd_deploy)


def _validate_names(args: argparse.Namespace) -> None:
    import re

    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,40}", args.name):
        raise ConfigError(f"--name: lowercase letters, digits and '-', at most 41 characters, got {args.name!r}")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", args.bucket) or ".." in args.bucket:
        raise ConfigError(f"--bucket: not a valid S3 bucket name: {args.bucket!r}")
    if args.prefix.startswith("/") or ".." in args.prefix.split("/"):
        raise ConfigError(f"--prefix: a relative key prefix without '..', got {args.prefix!r}")
    if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", args.region):
        raise ConfigError(f"--region: not an AWS region name: {args.region!r}")


def _artifacts(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, package.Artifact]:
    out = Path(args.artifacts)
    found = package.read_built(out, python=args.python)
    if found is None:
        say(f"building the artifacts into {out} (python -m jobs package)")
        found = {a.name: a for a in package.build(out, python=args.python, say=say)}
    return found


def cmd_deploy(args: argparse.Namespace) -> int:
    from .cli import _settings

    _validate_names(args)
    schedule = Schedule.parse(args.every)

    def say(line: str) -> None:
        print(f"stockpulse deploy: {line}", file=sys.stderr)

    environment = {} if args.destroy else function_settings(_settings(args))
    target = Target(name=args.name, bucket=args.bucket, prefix=args.prefix, region=args.region,
                    endpoint=args.endpoint, schedule=schedule, environment=environment)
    where = target.endpoint or f"AWS {target.region}"
    say(f"{'destroying' if args.destroy else 'deploying'} {target.name} on {where}{' (dry run)' if args.dry_run else ''}")
    if args.destroy:
        rows = destroy(target, dry_run=args.dry_run, say=say)
    else:
        rows = deploy(target, _artifacts(args, say), dry_run=args.dry_run, say=say)
    if args.json:
        print(json.dumps([row.__dict__ for row in rows], indent=2))
    else:
        width = max(len(row.name) for row in rows) if rows else 4
        print(f"{'resource':<12} {'name':<{width}}  result")
        for row in rows:
            print(f"{row.resource:<12} {row.name:<{width}}  {row.action}")
        print(f"store: {target.store_url}" + ("" if args.destroy else
              f"; functions: {', '.join(function_names(target.name).values())}"))
    return 0
