"""A handler's schedule as EventBridge rules: reading them, making them as the plan wants (one rule
unsharded; with ``num_shards > 1`` a fan-out, five shards' targets to a rule), removing the ones
no longer wanted, and each rule's permission to invoke the function.

Also the checks that refuse a sharded plan before anything changes: a store split another way
(``state/shards.json``), and a function policy over Lambda's size limit."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from typing import Any

from handlers.model.state import STATE_KEY
from handlers.runtime.shards import MANIFEST_KEY

from .aws import DeployError, _Deployment, _error_code, client_error
from .plan import (
    FUNCTION_POLICY_BYTES,
    RULES_PER_BUS,
    RuleSpec,
    function_policy_bytes,
    is_shard_rule,
    rate_expression,
    rule_targets,
    rules_of,
)


def existing_rules(d: _Deployment, function: str) -> dict[str, dict[str, Any]]:
    """The function's rules that exist, by name: the unsharded one and every ``<function>-s<a>-<b>``
    (whatever shard count they were made for); any of them not made by this deployment is refused."""
    found = {}
    plain = d.rule(function)
    if plain is not None:
        found[function] = plain
    with d.errors(f"rules {function}-s*"):
        names = [
            rule["Name"]
            for page in d.c.events.get_paginator("list_rules").paginate(NamePrefix=f"{function}-s")
            for rule in page.get("Rules", [])
            if is_shard_rule(function, rule["Name"])
        ]
    for name in sorted(names, key=_natural):
        rule = d.rule(name)
        if rule is not None:
            found[name] = rule
    return found


def _natural(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def check_store_split(d: _Deployment, bucket: str) -> None:
    """Refuse a shard count the store would refuse (handlers/runtime/shards.py): the store's
    ``state/shards.json`` names another count, or a sharded deployment meets an unsharded state."""
    if bucket == "missing":
        return
    t = d.t
    store = t.store_url
    recorded_doc = _read_small(d, f"{t.key_prefix}{MANIFEST_KEY}")
    if recorded_doc is not None:
        try:
            recorded = int(json.loads(recorded_doc)["num_shards"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DeployError(
                f'{store}/{MANIFEST_KEY}: damaged (expected {{"num_shards": N}}); the functions would refuse every event'
            ) from exc
        if recorded != t.num_shards:
            raise DeployError(
                f"--num-shards / STOCKPULSE_NUM_SHARDS: the store {store} is split into {recorded} "
                f"shard(s) ({MANIFEST_KEY}), got {t.num_shards}; resharding moves products between "
                "states: deploy with another --bucket or --prefix (a new store) to reshard"
            )
    elif t.num_shards > 1 and _read_small(d, f"{t.key_prefix}{STATE_KEY}", head=True) is not None:
        raise DeployError(
            f"--num-shards / STOCKPULSE_NUM_SHARDS: the store {store} holds an unsharded state, got "
            f"{t.num_shards} shards: deploy with another --bucket or --prefix (a new store) to shard"
        )


def _read_small(d: _Deployment, key: str, *, head: bool = False) -> bytes | None:
    with d.errors(f"s3://{d.t.bucket}/{key}"):
        try:
            if head:
                d.c.s3.head_object(Bucket=d.t.bucket, Key=key)
                return b""
            return bytes(d.c.s3.get_object(Bucket=d.t.bucket, Key=key)["Body"].read(65536))
        except client_error() as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise


def check_quotas(d: _Deployment, account: str, ours: Mapping[str, Mapping[str, Any]]) -> None:
    """A function policy over Lambda's 20 KB is refused before anything changes; a default event
    bus that would hold more than its default quota of rules is a warning (the quota can be raised)."""
    t = d.t
    if t.num_shards == 1:
        return
    for handler in d.functions:
        size = function_policy_bytes(t, handler, account=account)
        if size > FUNCTION_POLICY_BYTES:
            raise DeployError(
                f"--num-shards {t.num_shards}: {d.functions[handler]} would need a resource policy of "
                f"{size} bytes (one statement per rule), over Lambda's {FUNCTION_POLICY_BYTES}: use a "
                "shorter --name or fewer shards"
            )
    with d.errors("rules of the default event bus"):
        on_bus = sum(len(page.get("Rules", [])) for page in d.c.events.get_paginator("list_rules").paginate())
    wanted = sum(len(rules_of(t, handler)) for handler in d.functions)
    total = on_bus - sum(len(rules) for rules in ours.values()) + wanted
    if total > RULES_PER_BUS:
        d.say(
            f"warning: the default event bus would hold {total} rules ({wanted} of this deployment); its default "
            f"quota is {RULES_PER_BUS} (raise it in Service Quotas, or the rules past it are refused)"
        )


def apply_rules(
    d: _Deployment,
    handler: str,
    function: str,
    found: Mapping[str, Mapping[str, Any]],
    config: Mapping[str, Any] | None,
    account: str,
    dry_run: bool,
) -> None:
    """Remove the function's rules the plan no longer wants, then make or update the wanted ones,
    their targets and their permissions."""
    wanted = rules_of(d.t, handler)
    names = {spec.name for spec in wanted}
    for name in found:
        if name not in names:
            remove_rule(d, function, name, dry_run, why=f" (not a rule of {d.t.num_shards} shard(s))")
    function_arn = (config or {}).get("FunctionArn") or f"arn:aws:lambda:{d.t.region}:{account}:function:{function}"
    statements = _statements(d, function, exists=config is not None)
    for spec in wanted:
        _apply_rule(d, spec, function, found.get(spec.name), function_arn, statements, dry_run)


def _statements(d: _Deployment, function: str, *, exists: bool) -> dict[str, dict[str, Any]]:
    if not exists:
        return {}
    with d.errors(f"function {function} policy"):
        try:
            policy = json.loads(d.c.lambda_.get_policy(FunctionName=function)["Policy"])
        except d.c.lambda_.exceptions.ResourceNotFoundException:
            return {}
    return {s.get("Sid", ""): s for s in policy.get("Statement", [])}


def _apply_rule(
    d: _Deployment,
    spec: RuleSpec,
    function: str,
    rule: Mapping[str, Any] | None,
    function_arn: str,
    statements: Mapping[str, Mapping[str, Any]],
    dry_run: bool,
) -> None:
    expression = rate_expression(d.t.schedule.intervals[spec.handler])
    will = "would " if dry_run else ""
    if rule is not None and rule.get("ScheduleExpression") == expression and rule.get("State") == "ENABLED":
        action = "unchanged"
    else:
        action = will + ("create" if rule is None else "update schedule")
        if not dry_run:
            with d.errors(f"rule {spec.name}"):
                made = d.c.events.put_rule(
                    Name=spec.name,
                    ScheduleExpression=expression,
                    State="ENABLED",
                    Description=spec.description(expression),
                    **({"Tags": [{"Key": k, "Value": v} for k, v in d.t.tags.items()]} if rule is None else {}),
                )
                rule = {"Arn": made["RuleArn"]}
    d.row("rule", f"{spec.name} {expression}", action)
    if dry_run and rule is None:
        d.row("rule target", spec.name, "would create")
        d.row("permission", f"{spec.name} <- events", "would create")
        return
    assert rule is not None
    wanted = rule_targets(spec, function_arn)
    with d.errors(f"rule {spec.name}"):
        targets = d.c.events.list_targets_by_rule(Rule=spec.name).get("Targets", [])
        target_ok = [_target_view(t) for t in targets] == [_target_view(t) for t in wanted]
        if not target_ok and not dry_run:
            stale = [t["Id"] for t in targets if t["Id"] not in {w["Id"] for w in wanted}]
            if stale:
                d.c.events.remove_targets(Rule=spec.name, Ids=stale)
            d.c.events.put_targets(Rule=spec.name, Targets=wanted)
    d.row("rule target", spec.name, "unchanged" if target_ok else will + "set")
    allowed = _source_arn(statements.get(spec.statement, {})) == rule["Arn"]
    if not allowed and not dry_run:
        with d.errors(f"function {function} policy"):
            if spec.statement in statements:
                d.c.lambda_.remove_permission(FunctionName=function, StatementId=spec.statement)
            d.c.lambda_.add_permission(
                FunctionName=function,
                StatementId=spec.statement,
                Action="lambda:InvokeFunction",
                Principal="events.amazonaws.com",
                SourceArn=rule["Arn"],
            )
    d.row("permission", f"{spec.name} <- events", "unchanged" if allowed else will + "create")


def _target_view(target: Mapping[str, Any]) -> tuple[str, str, str | None]:
    transformer = target.get("InputTransformer")
    return target["Id"], target["Arn"], None if transformer is None else json.dumps(transformer, sort_keys=True)


def _source_arn(statement: Mapping[str, Any]) -> str | None:
    condition = statement.get("Condition", {}).get("ArnLike", {})
    found = condition.get("AWS:SourceArn")
    return None if found is None else str(found)


def remove_rule(d: _Deployment, function: str, name: str, dry_run: bool, *, why: str = "", permission: bool = True) -> None:
    """Delete a rule (its targets first) and, while the function lives, its permission."""
    will = "would " if dry_run else ""
    if not dry_run:
        with d.errors(f"rule {name}"):
            ids = [t["Id"] for t in d.c.events.list_targets_by_rule(Rule=name).get("Targets", [])]
            if ids:
                d.c.events.remove_targets(Rule=name, Ids=ids)
            d.c.events.delete_rule(Name=name)
    d.row("rule", name, f"{will}delete{why}")
    if permission:
        if not dry_run:
            with d.errors(f"function {function} policy"), contextlib.suppress(d.c.lambda_.exceptions.ResourceNotFoundException):
                d.c.lambda_.remove_permission(FunctionName=function, StatementId=f"{name}-events")
        d.row("permission", f"{name} <- events", f"{will}delete")
