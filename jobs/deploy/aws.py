"""Talking to AWS: boto3 clients, botocore's errors translated in one place, and reading what
exists (and whether it is this deployment's)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from handlers.errors import StockpulseError

from .plan import TAG_KEY, Target, check_account, function_names


class DeployError(StockpulseError):
    """The cloud said no (or could not be reached): one line naming the resource."""


def client_error() -> type[Exception]:
    """botocore's ``ClientError`` (an answer from the API: 404, 412, AccessDenied ...), imported when a
    deploy runs, not with the command line."""
    from botocore.exceptions import ClientError

    error: type[Exception] = ClientError
    return error


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
    except (bx.NoCredentialsError, bx.PartialCredentialsError) as exc:
        raise DeployError(
            "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE (LocalStack takes any, e.g. test/test)"
        ) from exc
    except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError) as exc:
        raise DeployError(f"{what}: cannot reach {endpoint or 'AWS'} ({type(exc).__name__})") from exc
    except bx.ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        raise DeployError(f"{what}: {_error_code(exc) or 'error'}: {message}") from exc
    except bx.BotoCoreError as exc:
        raise DeployError(f"{what}: {exc}") from exc


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
                self._account = check_account(str(self.c.sts.get_caller_identity()["Account"]))
        return self._account

    def bucket_state(self) -> str:
        """'missing', 'ours' or 'foreign' (exists, not tagged by this deployment)."""
        with self.errors(f"bucket {self.t.bucket}"):
            try:
                self.c.s3.head_bucket(Bucket=self.t.bucket, ExpectedBucketOwner=self.account())
            except client_error() as exc:
                code = _error_code(exc)
                if code in ("404", "NoSuchBucket", "NotFound"):
                    return "missing"
                if code in ("403", "AccessDenied", "Forbidden"):  # AWS: another account's bucket
                    raise DeployError(
                        f"bucket {self.t.bucket}: exists and belongs to another account (bucket names are global): choose another --bucket"
                    ) from exc
                raise
            owned = {bucket["Name"] for bucket in self.c.s3.list_buckets().get("Buckets", [])}
            if self.t.bucket not in owned:  # visible but not ours (LocalStack answers HEAD for any account)
                raise DeployError(
                    f"bucket {self.t.bucket}: exists and belongs to another account (bucket names are global): choose another --bucket"
                )
            try:
                tags = self.c.s3.get_bucket_tagging(Bucket=self.t.bucket).get("TagSet", [])
            except client_error() as exc:
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
            raise DeployError(
                f"{resource} {name}: exists and was not made by `stockpulse deploy --name "
                f"{self.t.name}` (no tag {TAG_KEY}={self.t.name}): remove it or choose another --name"
            )

    def wait_settled(self, function: str, deadline_seconds: float = 120.0) -> dict[str, Any]:
        """Wait while a function is Pending or an update is InProgress (Lambda refuses changes then)."""
        deadline = time.monotonic() + deadline_seconds
        while True:
            with self.errors(f"function {function}"):
                config = self.c.lambda_.get_function_configuration(FunctionName=function)
            settled = config.get("State") == "Failed" or (
                config.get("State") != "Pending" and config.get("LastUpdateStatus") != "InProgress"
            )
            if settled:
                return dict(config)
            if time.monotonic() > deadline:
                raise DeployError(
                    f"function {function}: still {config.get('State')}/{config.get('LastUpdateStatus')} after {deadline_seconds:g} s"
                )
            time.sleep(1.0)


def object_exists(d: _Deployment, key: str) -> bool:
    """Whether the bucket holds ``key`` (HEAD; 404 is no; other errors are raised)."""
    try:
        d.c.s3.head_object(Bucket=d.t.bucket, Key=key)
        return True
    except client_error() as exc:
        if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
