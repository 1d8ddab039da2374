"""What a deployment is, without calling anything: names, schedules, the functions' settings and
their least-privilege policies."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from handlers.errors import ConfigError
from handlers.model.logs import LOG_PREFIX
from handlers.model.state import HANDLERS, STATE_KEY
from handlers.runtime.catalogs import SOURCE_PREFIX, STORE_SCHEME, compiled_globs
from handlers.runtime.declarations import DECLARATIONS
from handlers.runtime.feeds import JOURNAL_PREFIX
from handlers.runtime.layout import FORECAST_KEY, HISTORY_PREFIX, HOT_PREFIX
from handlers.runtime.pool import PREFIX as POOL_PREFIX
from handlers.runtime.settings import ENV, Settings
from handlers.runtime.shards import MANIFEST_KEY, SHARDS_PREFIX
from handlers.telemetry.metrics import metrics_key

from .. import package
from ..schedule import Schedule

DEFAULT_NAME = "stockpulse"
DEFAULT_BUCKET = "stockpulse"
TAG_KEY = "stockpulse:deployment"
CODE_PREFIX = "lambda-code/"
LOG_RETENTION_DAYS = 14
#: memory (MB) and timeout (s): inside each schedule's interval, so a slow run never overlaps the next
FUNCTION_SIZING: dict[str, tuple[int, int]] = {"order_tick": (512, 50), "restock": (512, 120), "forecast": (1536, 600), "alert": (512, 300)}
#: EventBridge: targets a rule may have (a hard limit), rules an event bus holds by default (a quota
#: that can be raised); Lambda: the size of a function's resource-based policy (one statement per rule)
TARGETS_PER_RULE = 5
RULES_PER_BUS = 300
FUNCTION_POLICY_BYTES = 20 * 1024
_LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


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


#: every name that reaches an ARN (the roles' S3 resources, log groups, functions, rules) and what it
#: may hold: no character with a meaning in an IAM resource or ArnLike condition — '*' and '?' are
#: wildcards (``--prefix '*'`` would grant every store in the bucket), '${...}' a policy variable —
#: nor '[' (a pattern elsewhere). The account comes from STS: twelve digits.
_NAME_RULES: dict[str, tuple[str, str]] = {
    "--name": (r"[a-z0-9][a-z0-9-]{0,40}", "lowercase letters, digits and '-', at most 41 characters"),
    "--bucket": (r"(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", "a valid S3 bucket name (lowercase letters, digits, '.' and '-')"),
    "--prefix": (
        r"(?:(?!\.\.?/)[A-Za-z0-9._=+-]+/)*(?!\.\.?$)[A-Za-z0-9._=+-]*",
        "key prefix: segments of letters, digits and . _ = + - separated by '/', no leading '/' and no '.' or '..' segment",
    ),
    "--region": (r"[a-z]{2}(-[a-z]+)+-\d", "an AWS region name"),
}
_PATTERN_CHARACTERS = "*?[]{}$"


def check_names(*, name: str, bucket: str, prefix: str, region: str) -> None:
    """Refuse, with one line naming the flag, a name that would put anything but a literal into an
    ARN (or is not a name AWS takes). Called by the command line before anything is read, and by
    every ``Target``."""
    for flag, value in (("--name", name), ("--bucket", bucket), ("--prefix", prefix), ("--region", region)):
        pattern, what = _NAME_RULES[flag]
        if not re.fullmatch(pattern, value):
            wild = sorted({c for c in value if c in _PATTERN_CHARACTERS})
            why = (
                (f" ({' '.join(wild)} would be a pattern in the IAM policies' resource ARNs, granting more than this store)")
                if wild
                else ""
            )
            raise ConfigError(f"{flag}: {what}, got {value!r}{why}")


def check_account(account: str) -> str:
    """The caller's account id as STS gave it, refused unless twelve digits (it reaches the ARNs)."""
    if not re.fullmatch(r"\d{12}", account):
        raise ConfigError(f"sts get-caller-identity: account {account!r} is not twelve digits")
    return account


@dataclass(frozen=True)
class Target:
    """Where and how to deploy. Its names are checked when it is made (``check_names``)."""

    name: str = DEFAULT_NAME
    bucket: str = DEFAULT_BUCKET
    prefix: str = ""
    region: str = "us-east-1"
    endpoint: str | None = None
    schedule: Schedule = field(default_factory=Schedule.parse)
    environment: Mapping[str, str] = field(default_factory=dict)  # STOCKPULSE_* but the store
    #: the shop's catalog to keep in the store before the functions name it (jobs/deploy/catalog.py):
    #: key relative to the store -> bytes, write-once
    catalog_objects: Mapping[str, bytes] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        check_names(name=self.name, bucket=self.bucket, prefix=self.prefix, region=self.region)
        self.feeds  # noqa: B018 - a feed URL that is not an ARN-safe s3:// location is refused here too

    @property
    def key_prefix(self) -> str:
        return f"{self.prefix.strip('/')}/" if self.prefix.strip("/") else ""

    @property
    def store_url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix.strip('/')}".rstrip("/")

    @property
    def tags(self) -> dict[str, str]:
        return {TAG_KEY: self.name}

    @property
    def num_shards(self) -> int:
        """The functions' ``STOCKPULSE_NUM_SHARDS`` (1 when unset)."""
        return int(self.environment.get(ENV["num_shards"][0], "1"))

    @property
    def feeds(self) -> dict[str, tuple[str, str]]:
        """The shop's feeds the functions read (``STOCKPULSE_ORDERS_URL`` ...): kind -> (bucket, key
        prefix ending in ``/``, or empty). Each must be an ``s3://`` location whose names are literals in
        an ARN (a ``file://`` directory is on the deploying machine, not the functions')."""
        found = {}
        for kind, setting in (("orders", "orders_url"), ("receipts", "receipts_url"), ("counts", "counts_url")):
            variable, flag = ENV[setting][:2]
            url = self.environment.get(variable)
            if not url:
                continue
            match = re.fullmatch(r"s3://([^/]+)/?(.*)", url)
            if match is None:
                raise ConfigError(
                    f"{flag} / {variable}: a deployed function reads its feed from S3 (s3://BUCKET/PREFIX), got {url[:200]!r}"
                )
            bucket, prefix = match.group(1), match.group(2).strip("/")
            for rule, value in (("--bucket", bucket), ("--prefix", prefix)):
                if not re.fullmatch(_NAME_RULES[rule][0], value):
                    raise ConfigError(f"{flag} / {variable}: {_NAME_RULES[rule][1]}, got {value!r} in {url[:200]!r}")
            found[kind] = (bucket, f"{prefix}/" if prefix else "")
        return found

    @property
    def catalog_in_store(self) -> bool:
        """Whether the functions read their catalog from the store (``STOCKPULSE_CATALOG=store:...``)."""
        return self.environment.get(ENV["catalog_path"][0], "").startswith(STORE_SCHEME)


# -- the code objects --------------------------------------------------------------------------


def code_prefix(target: Target) -> str:
    """Where this deployment keeps its zips: ``PREFIX/lambda-code/<name>/``. Its own folder, so that
    another deployment sharing the bucket and prefix (another ``--name``), or another team's objects
    under ``lambda-code/``, are never listed as this deployment's code."""
    return f"{target.key_prefix}{CODE_PREFIX}{target.name}/"


def code_name(artifact: str, sha256_hex: str) -> str:
    """The zip's name in the folder: content-addressed (the first 16 hex digits of its SHA-256)."""
    return f"{artifact}-{sha256_hex[:16]}.zip"


def is_code_name(name: str) -> bool:
    """Whether ``name`` (relative to ``code_prefix``) is one ``code_name`` makes."""
    found = re.fullmatch(r"([a-z]+)-[0-9a-f]{16}\.zip", name)
    return found is not None and found.group(1) in package.ARTIFACTS


# -- the schedule as EventBridge rules ---------------------------------------------------------


@dataclass(frozen=True)
class RuleSpec:
    """One EventBridge rule of a handler: unsharded (``shards == ()``), the rule is named as the
    function and delivers the scheduled event as it is; sharded, it is ``<function>-s<first>-<last>``
    and has one target per shard, each delivering the scheduled event with ``detail.shard`` set."""

    name: str
    handler: str
    shards: tuple[int, ...] = ()

    @property
    def statement(self) -> str:
        """The Sid of the function's permission for this rule."""
        return f"{self.name}-events"

    def description(self, expression: str) -> str:
        which = f", shards {self.shards[0]}-{self.shards[-1]}" if self.shards else ""
        return f"stockpulse {self.handler}{which}: {expression}"


def rules_of(target: Target, handler: str) -> list[RuleSpec]:
    """The rules of one handler: one when unsharded (as before sharding), else shards packed
    ``TARGETS_PER_RULE`` to a rule: ``ceil(num_shards / 5)`` rules."""
    function = function_names(target.name)[handler]
    count = target.num_shards
    if count == 1:
        return [RuleSpec(function, handler)]
    return [
        RuleSpec(
            f"{function}-s{first}-{min(first + TARGETS_PER_RULE, count) - 1}",
            handler,
            tuple(range(first, min(first + TARGETS_PER_RULE, count))),
        )
        for first in range(0, count, TARGETS_PER_RULE)
    ]


def is_shard_rule(function: str, rule: str) -> bool:
    """Whether ``rule`` is a sharded rule of ``function`` (whatever the shard count it was made for)."""
    return re.fullmatch(rf"{re.escape(function)}-s\d+-\d+", rule) is not None


#: the fields of EventBridge's Scheduled Event, kept by each shard's target (InputPathsMap keys may
#: not hold '-')
_EVENT_FIELDS = {
    "version": "version",
    "id": "id",
    "detailType": "detail-type",
    "source": "source",
    "account": "account",
    "time": "time",
    "region": "region",
    "resources": "resources",
}


def shard_input(shard: int) -> dict[str, Any]:
    """The InputTransformer of shard ``shard``'s target: the scheduled event as EventBridge made it
    (its ``id`` and ``time`` above all: the tick's identity and business time) with
    ``detail: {"shard": k}``. String placeholders are quoted, as EventBridge requires."""
    fields = ", ".join(f'"{name}": <{key}>' if key == "resources" else f'"{name}": "<{key}>"' for key, name in _EVENT_FIELDS.items())
    return {
        "InputPathsMap": {key: f"$.{name}" for key, name in _EVENT_FIELDS.items()},
        "InputTemplate": f'{{{fields}, "detail": {{"shard": {shard}}}}}',
    }


def rule_targets(spec: RuleSpec, function_arn: str) -> list[dict[str, Any]]:
    if not spec.shards:
        return [{"Id": "function", "Arn": function_arn}]
    return [{"Id": f"shard-{k}", "Arn": function_arn, "InputTransformer": shard_input(k)} for k in spec.shards]


def permission_statement(spec: RuleSpec, function_arn: str, rule_arn: str) -> dict[str, Any]:
    """The statement ``lambda add-permission`` makes for one rule (as ``get-policy`` shows it)."""
    return {
        "Sid": spec.statement,
        "Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"},
        "Action": "lambda:InvokeFunction",
        "Resource": function_arn,
        "Condition": {"ArnLike": {"AWS:SourceArn": rule_arn}},
    }


def function_policy_bytes(target: Target, handler: str, *, account: str) -> int:
    """The size of the function's resource-based policy with one statement per rule."""
    function = function_names(target.name)[handler]
    function_arn = f"arn:aws:lambda:{target.region}:{account}:function:{function}"
    statements = [
        permission_statement(spec, function_arn, f"arn:aws:events:{target.region}:{account}:rule/{spec.name}")
        for spec in rules_of(target, handler)
    ]
    return len(json.dumps({"Version": "2012-10-17", "Id": "default", "Statement": statements}, separators=(",", ":")))


#: settings naming a file on the deploying machine, which a function would not have
_LOCAL_FILES = {
    "catalog_path": "the catalog built into the package (handlers/catalogs/default.yaml)",
    "pushgateway_ca_file": "the system's CA bundle",
}


def function_settings(settings: Settings, *, catalog: str | None = None) -> dict[str, str]:
    """The settings a function needs, as its ``STOCKPULSE_*`` environment (the store URL comes
    from the target): only what differs from the built-in defaults, so a function's configuration
    says what was chosen. A catalog file is the one local file a function may name, once it is in
    the store: ``catalog`` is its ``store:`` reference (jobs/deploy/catalog.py uploads it); a
    ``store:`` reference in the settings passes as it is."""
    for name, instead in _LOCAL_FILES.items():
        value = getattr(settings, name)
        if value is None or (name == "catalog_path" and (catalog is not None or value.startswith(STORE_SCHEME))):
            continue
        variable, flag = ENV[name][:2]
        hint = "; `deploy --catalog FILE` keeps it in the store and names it there" if name == "catalog_path" else "; unset it to deploy"
        raise ConfigError(
            f"{flag} / {variable}: names a file on this machine, which deployed functions do not have (they use {instead}){hint}"
        )
    environment = settings.to_env()
    environment.pop(ENV["store_url"][0], None)
    if catalog is not None:
        environment[ENV["catalog_path"][0]] = catalog
    return environment


def feed_statements(target: Target, handler: str, *, state: str) -> list[dict[str, Any]]:
    """With the shop's feeds (handlers/runtime/feeds.py): the hot committers read, write and prune their
    journals (``state/feed/``); the handler that applies the feeds may read each feed's objects and list
    its prefix — only read, and only there."""
    if not target.feeds:
        return []
    declared = DECLARATIONS[handler]
    out: list[dict[str, Any]] = []
    if declared.owns == "hot":
        out.append(
            {
                "Sid": "FeedJournals",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": [f"{state}{JOURNAL_PREFIX}*"],
            }
        )
    if declared.reads_feeds:
        for kind, (feed_bucket, feed_prefix) in sorted(target.feeds.items()):
            out.append(
                {
                    "Sid": f"ReadFeed{kind.capitalize()}",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject"],
                    "Resource": [f"arn:aws:s3:::{feed_bucket}/{feed_prefix}*"],
                }
            )
            out.append(
                {
                    "Sid": f"ListFeed{kind.capitalize()}",
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket"],
                    "Resource": [f"arn:aws:s3:::{feed_bucket}"],
                    "Condition": {"StringLike": {"s3:prefix": [f"{feed_prefix}*"]}},
                }
            )
    return out


def role_policy(target: Target, handler: str, *, account: str) -> dict[str, Any]:
    """Least privilege for one function: the state's objects (handlers/runtime/layout.py: hot and forecast
    parts by compare-and-swap, history objects write-once; sharded, each shard's under
    ``shards/<k>/``), the log objects (its own, and any other handler's promised by the state's
    outbox, which every invocation completes), its own metrics text file(s), the shard manifest
    (handlers/runtime/shards.py: read by every process's first invocation; sharded, written once by the
    first, which first looks whether an unsharded state is there), and its own log group. The order
    tick may delete history objects: the one that closes a day deletes those older than the one its
    commit replaced (handlers/runtime/layout.py ``prune_history``); the hot part's committers delete its
    base and delta objects older than the base they replaced (``prune_hot``). The forecast reads every shard's
    statistics of the day before and writes (and prunes) its own (handlers/runtime/pool.py).
    ``s3:ListBucket`` lets a read of a not-yet-existing object say 404 rather than 403. With the
    catalog in the store (``STOCKPULSE_CATALOG=store:...``, handlers/runtime/catalogs.py): its source objects
    read (when a compiled form is missing), and the compiled forms (whole, each shard's) read and
    written (a process that found none writes them, write-once)."""
    bucket = f"arn:aws:s3:::{target.bucket}"
    prefix = target.key_prefix
    function = function_names(target.name)[handler]
    group = f"arn:aws:logs:{target.region}:{account}:log-group:/aws/lambda/{function}"
    sharded = target.num_shards > 1
    state = f"{prefix}{SHARDS_PREFIX}*/" if sharded else prefix
    metrics = metrics_key(handler, 0).replace("/0.prom", "/*.prom") if sharded else metrics_key(handler)
    manifest: list[dict[str, Any]] = [
        {
            "Sid": "ShardManifest",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject"] if sharded else ["s3:GetObject"],
            "Resource": [f"{bucket}/{prefix}{MANIFEST_KEY}"],
        }
    ]
    if sharded:
        manifest.append(
            {"Sid": "NoUnshardedState", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"{bucket}/{prefix}{STATE_KEY}"]}
        )
    catalog: list[dict[str, Any]] = (
        [
            {"Sid": "CatalogSource", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"{bucket}/{prefix}{SOURCE_PREFIX}*"]},
            {
                "Sid": "CompiledCatalog",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": [f"{bucket}/{prefix}{glob}" for glob in compiled_globs(target.num_shards)],
            },
        ]
        if target.catalog_in_store
        else []
    )
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "State",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": [
                    f"{bucket}/{state}{STATE_KEY}",
                    f"{bucket}/{state}{FORECAST_KEY}",
                    f"{bucket}/{state}{HISTORY_PREFIX}*",
                    f"{bucket}/{state}{HOT_PREFIX}*",
                ],
            },
            *(
                [
                    {
                        "Sid": "PruneHotObjects",
                        "Effect": "Allow",
                        "Action": ["s3:DeleteObject"],  # after a new base
                        "Resource": [f"{bucket}/{state}{HOT_PREFIX}*"],
                    }
                ]
                if DECLARATIONS[handler].owns == "hot"
                else []
            ),
            *(
                [
                    {
                        "Sid": "PruneHistory",
                        "Effect": "Allow",
                        "Action": ["s3:DeleteObject"],  # the order tick that closes a day
                        "Resource": [f"{bucket}/{state}{HISTORY_PREFIX}*"],
                    }
                ]
                if handler == "order_tick"
                else []
            ),
            *(
                [
                    {
                        "Sid": "PooledFit",
                        "Effect": "Allow",
                        "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                        "Resource": [f"{bucket}/{state}{POOL_PREFIX}*"],
                    }
                ]
                if DECLARATIONS[handler].pools
                else []
            ),
            {"Sid": "Logs", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": [f"{bucket}/{prefix}{LOG_PREFIX}*"]},
            {"Sid": "Metrics", "Effect": "Allow", "Action": ["s3:PutObject"], "Resource": [f"{bucket}/{prefix}{metrics}"]},
            *manifest,
            *catalog,
            *feed_statements(target, handler, state=f"{bucket}/{state}"),
            {"Sid": "NotFoundIsNotForbidden", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [bucket]},
            {"Sid": "OwnLogGroup", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Resource": [f"{group}:*"]},
        ],
    }
