"""What a deployment is, without calling anything: names, schedules, the functions' settings and
their least-privilege policies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from handlers import HANDLERS
from handlers.errors import ConfigError
from handlers.layout import FORECAST_KEY, HISTORY_PREFIX
from handlers.logs import LOG_PREFIX
from handlers.metrics import metrics_key
from handlers.settings import ENV, Settings
from handlers.state import STATE_KEY

from .. import package
from ..schedule import Schedule

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


#: settings naming a file on the deploying machine, which a function would not have
_LOCAL_FILES = {"catalog_path": "the catalog built into the package (handlers/catalogs/default.yaml)",
                "pushgateway_ca_file": "the system's CA bundle"}


def function_settings(settings: Settings) -> dict[str, str]:
    """The settings a function needs, as its ``STOCKPULSE_*`` environment (the store URL comes
    from the target): only what differs from the built-in defaults, so a function's configuration
    says what was chosen."""
    for name, instead in _LOCAL_FILES.items():
        if getattr(settings, name) is not None:
            variable, flag = ENV[name][:2]
            raise ConfigError(f"{flag} / {variable}: names a file on this machine, which deployed functions "
                              f"do not have (they use {instead}); unset it to deploy")
    environment = settings.to_env()
    environment.pop(ENV["store_url"][0], None)
    return environment


def role_policy(target: Target, handler: str, *, account: str) -> dict[str, Any]:
    """Least privilege for one function: the state's objects (handlers/layout.py: hot and forecast
    parts by compare-and-swap, history objects write-once), the log objects
    (its own, and any other handler's promised by the state's outbox, which every invocation
    completes), its own metrics text file, and its own log group. ``s3:ListBucket`` lets a read of
    the not-yet-existing state say 404 rather than 403."""
    bucket = f"arn:aws:s3:::{target.bucket}"
    prefix = target.key_prefix
    function = function_names(target.name)[handler]
    group = f"arn:aws:logs:{target.region}:{account}:log-group:/aws/lambda/{function}"
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "State", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": [f"{bucket}/{prefix}{STATE_KEY}", f"{bucket}/{prefix}{FORECAST_KEY}",
                      f"{bucket}/{prefix}{HISTORY_PREFIX}*"]},
        {"Sid": "Logs", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": [f"{bucket}/{prefix}{LOG_PREFIX}*"]},
        {"Sid": "Metrics", "Effect": "Allow", "Action": ["s3:PutObject"],
         "Resource": [f"{bucket}/{prefix}{metrics_key(handler)}"]},
        {"Sid": "NotFoundIsNotForbidden", "Effect": "Allow", "Action": ["s3:ListBucket"],
         "Resource": [bucket]},
        {"Sid": "OwnLogGroup", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": [f"{group}:*"]},
    ]}
