"""``python -m jobs deploy``: the four handlers as Lambda functions on EventBridge rules.

What it makes, every piece tagged ``stockpulse:deployment=<name>`` (the tag is how a later
``deploy`` or ``--destroy`` knows a resource is its own; a name taken by anything without it is
refused, before anything is made):

=========================  ===============================================================
bucket                     the store (``s3://BUCKET/PREFIX``): public access blocked, SSE-S3
code objects               ``PREFIX/lambda-code/<name>/<artifact>-<sha256>.zip`` (content-addressed,
                           in the deployment's own folder, tagged; jobs/deploy/code.py)
catalog objects            ``--catalog FILE``: ``PREFIX/catalogs/source/<sha>.yaml`` and its compiled
                           forms (write-once, content-addressed; jobs/deploy/catalog.py)
log group per function     ``/aws/lambda/<function>``, 14 days
role per function          ``<function>``: assumed by Lambda; S3 only on the keys it uses
function per handler       ``<name>-order-tick`` ... runtime, handler, memory, timeout, env
rule per handler           ``<function>``: ``rate(...)`` of the handler's schedule -> function
                           (``num_shards > 1``: ``<function>-s<first>-<last>``, one target per
                           shard, at most 5 to a rule, each adding ``detail.shard`` to the event)
=========================  ===============================================================

The plan (what exists, what is whose, what would change) is read first; a conflict stops it
before any change. A second ``deploy`` updates in place and uploads code only when its SHA-256
changed; ``--dry-run`` prints the plan; ``--destroy`` removes what it made (a bucket only when
nothing but its own code is in it: the store's data is never deleted). Every deletion is limited
to what this deployment made: tagged resources, and code objects in its own folder, tagged, that
none of its functions runs (jobs/deploy/code.py).
"""

from __future__ import annotations

from .apply import deploy, destroy
from .aws import Clients, DeployError, Row, aws_errors
from .catalog import CatalogUpload, prepare_catalog
from .command import register
from .plan import (
    CODE_PREFIX,
    DEFAULT_BUCKET,
    DEFAULT_NAME,
    FUNCTION_POLICY_BYTES,
    FUNCTION_SIZING,
    RULES_PER_BUS,
    TAG_KEY,
    TARGETS_PER_RULE,
    RuleSpec,
    Target,
    artifact_of,
    check_names,
    code_prefix,
    function_names,
    function_policy_bytes,
    function_settings,
    rate_expression,
    role_policy,
    rule_targets,
    rules_of,
    shard_input,
)

__all__ = [
    "CODE_PREFIX",
    "DEFAULT_BUCKET",
    "DEFAULT_NAME",
    "FUNCTION_POLICY_BYTES",
    "FUNCTION_SIZING",
    "RULES_PER_BUS",
    "TAG_KEY",
    "TARGETS_PER_RULE",
    "CatalogUpload",
    "Clients",
    "DeployError",
    "Row",
    "RuleSpec",
    "Target",
    "artifact_of",
    "aws_errors",
    "check_names",
    "code_prefix",
    "deploy",
    "destroy",
    "function_names",
    "function_policy_bytes",
    "function_settings",
    "prepare_catalog",
    "rate_expression",
    "register",
    "role_policy",
    "rule_targets",
    "rules_of",
    "shard_input",
]
