"""deploy's pure parts: names, schedules, settings as environment, least-privilege policies."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import zipfile
from datetime import datetime, timezone
from typing import Any

import pytest

from handlers.errors import CatalogError, ConfigError
from handlers.model.events import parse_event, scheduled_event
from handlers.model.state import HANDLERS
from handlers.runtime.catalogs import compiled_key, load_catalog, load_compiled, source_key, store_reference
from handlers.runtime.settings import Settings
from handlers.runtime.shards import MAX_SHARDS, split
from handlers.storage.location import open_store
from jobs import cli, package
from jobs.deploy import (
    FUNCTION_POLICY_BYTES,
    RULES_PER_BUS,
    TAG_KEY,
    TARGETS_PER_RULE,
    DeployError,
    RuleSpec,
    Target,
    deploy,
    destroy,
    function_names,
    function_policy_bytes,
    function_settings,
    prepare_catalog,
    rate_expression,
    role_policy,
    rule_targets,
    rules_of,
    shard_input,
)
from jobs.deploy.plan import is_shard_rule


def statements(target: Target, handler: str) -> dict[str, dict]:
    return {s["Sid"]: s for s in role_policy(target, handler, account="123456789012")["Statement"]}


@pytest.mark.parametrize("handler", HANDLERS)
def test_each_policy_allows_only_the_keys_and_log_group_of_its_function(handler):
    target = Target(name="shop", bucket="shop-store", prefix="eu/", region="eu-west-1")
    policy = statements(target, handler)
    assert policy["State"]["Resource"] == [
        "arn:aws:s3:::shop-store/eu/state/state.bin",
        "arn:aws:s3:::shop-store/eu/state/forecast.bin",
        "arn:aws:s3:::shop-store/eu/state/history/*",
        "arn:aws:s3:::shop-store/eu/state/hot/*",
    ]
    assert policy["State"]["Action"] == ["s3:GetObject", "s3:PutObject"]
    assert policy["Logs"]["Resource"] == ["arn:aws:s3:::shop-store/eu/logs/*"]
    assert policy["Metrics"] == {
        "Sid": "Metrics",
        "Effect": "Allow",
        "Action": ["s3:PutObject"],
        "Resource": [f"arn:aws:s3:::shop-store/eu/metrics/{handler}.prom"],
    }
    assert policy["NotFoundIsNotForbidden"]["Action"] == ["s3:ListBucket"]
    assert policy["NotFoundIsNotForbidden"]["Resource"] == ["arn:aws:s3:::shop-store"]
    function = function_names("shop")[handler]
    assert policy["OwnLogGroup"]["Resource"] == [f"arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/{function}:*"]
    prune = policy.pop("PruneHistory", None)  # deleting: only the order tick, only history objects
    assert (prune is not None) == (handler == "order_tick")
    if prune is not None:
        assert prune["Action"] == ["s3:DeleteObject"]
        assert prune["Resource"] == ["arn:aws:s3:::shop-store/eu/state/history/*"]
    hot = policy.pop("PruneHotObjects", None)  # the hot part's old base and delta objects: its committers
    assert (hot is not None) == (handler != "forecast")
    if hot is not None:
        assert hot["Action"] == ["s3:DeleteObject"] and hot["Resource"] == ["arn:aws:s3:::shop-store/eu/state/hot/*"]
    pooled = policy.pop("PooledFit", None)  # the forecast's statistics (handlers/runtime/pool.py): its own, and every shard's
    assert (pooled is not None) == (handler == "forecast")
    if pooled is not None:
        assert pooled["Action"] == ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
        assert pooled["Resource"] == ["arn:aws:s3:::shop-store/eu/state/pool/*"]
    every_action = [a for s in policy.values() for a in s["Action"]]
    assert not [a for a in every_action if "*" in a or a.startswith(("s3:Delete", "iam:", "lambda:"))]
    assert {s["Effect"] for s in policy.values()} == {"Allow"}
    resources = [r for s in policy.values() for r in s["Resource"]]
    assert not [r for r in resources if "lambda-code" in r or r.endswith(":::*") or r == "*"]


def test_no_function_may_write_another_handlers_metrics():
    target = Target()
    metrics = {h: statements(target, h)["Metrics"]["Resource"] for h in HANDLERS}
    assert len({tuple(r) for r in metrics.values()}) == len(HANDLERS)


def test_function_names_follow_the_deployment_name():
    assert function_names("shop") == {
        "order_tick": "shop-order-tick",
        "restock": "shop-restock",
        "forecast": "shop-forecast",
        "alert": "shop-alert",
    }


@pytest.mark.parametrize(
    ("seconds", "expression"),
    [
        (60, "rate(1 minute)"),
        (300, "rate(5 minutes)"),
        (3600, "rate(1 hour)"),
        (900, "rate(15 minutes)"),
        (7200, "rate(2 hours)"),
        (86400, "rate(1 day)"),
    ],
)
def test_schedules_become_eventbridge_rates(seconds, expression):
    assert rate_expression(seconds) == expression


def test_store_url_and_key_prefix_follow_bucket_and_prefix():
    assert Target(bucket="bkt").store_url == "s3://bkt"
    assert Target(bucket="bkt", prefix="shop/").store_url == "s3://bkt/shop"
    assert Target(bucket="bkt", prefix="shop").key_prefix == "shop/"
    assert Target(bucket="bkt").key_prefix == ""


def test_functions_get_only_the_settings_that_differ_from_the_defaults():
    assert function_settings(Settings()) == {}
    chosen = Settings(pushgateway_url="http://pushgateway:9091", cover_days=2.0, service_level=0.95)
    assert function_settings(chosen) == {
        "STOCKPULSE_PUSHGATEWAY_URL": "http://pushgateway:9091",
        "STOCKPULSE_COVER_DAYS": "2",
        "STOCKPULSE_SERVICE_LEVEL": "0.95",
    }
    parsed = Settings.from_env(function_settings(chosen))  # a function reads back what was chosen
    assert (parsed.cover_days, parsed.service_level, parsed.pushgateway_url) == (2.0, 0.95, "http://pushgateway:9091")


@pytest.mark.parametrize(
    ("field", "named"),
    [("catalog_path", "--catalog / STOCKPULSE_CATALOG"), ("pushgateway_ca_file", "--pushgateway-ca-file / STOCKPULSE_PUSHGATEWAY_CA_FILE")],
)
def test_settings_naming_a_local_file_are_refused_naming_the_setting(field, named):
    with pytest.raises(ConfigError, match=named):
        function_settings(Settings(**{field: "shop.yaml"}))


def test_every_setting_a_function_gets_reads_back_as_chosen():
    """GIVEN every setting away from its default WHEN deploy turns them into a function's environment
    THEN Settings.from_env of that environment builds the same settings (the store URL aside)."""
    chosen = Settings(
        pushgateway_url="https://gw.example:9091",
        push_timeout_seconds=2.5,
        alert_threshold_hours=12.0,
        service_level=0.9,
        cover_days=3.0,
        pushgateway_username="shop",
        pushgateway_password="s3cret",
        max_tick_lead={"order_tick": 86400.0, "restock": 3600.0, "forecast": 7200.0, "alert": 600.0},
        max_catch_up_minutes=60,
    )
    environment = function_settings(chosen)
    assert "STOCKPULSE_STORE_URL" not in environment
    assert Settings.from_env({**environment, "STOCKPULSE_STORE_URL": chosen.store_url}) == chosen


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--name", "Shop_1"], "--name"),
        (["--bucket", "a"], "--bucket"),
        (["--bucket", "UPPER"], "--bucket"),
        (["--prefix", "../x"], "--prefix"),
        (["--prefix", "/shop"], "--prefix"),
        (["--prefix", "a//b"], "--prefix"),
        (["--region", "mars"], "--region"),
        (["--every", "alert=90s"], "--every alert"),
    ],
)
def test_bad_names_are_one_line_errors_before_any_call(argv, field, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # never reached
    assert cli.main(["deploy", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"stockpulse: error: {field}")


#: every flag whose value reaches an ARN, with a valid value to put a pattern character into
ARN_FLAGS = {"--prefix": "shop/eu", "--bucket": "shop-store", "--name": "shop", "--region": "eu-west-1"}


@pytest.mark.parametrize("flag", ARN_FLAGS)
@pytest.mark.parametrize("pattern", ["*", "?", "[", "]", "${aws:username}", "{a}"])
@pytest.mark.parametrize("destroy_", [False, True])
def test_a_pattern_character_in_any_name_reaching_an_arn_is_refused_naming_the_flag(flag, pattern, destroy_, capsys, monkeypatch, tmp_path):
    """GIVEN ``deploy [--destroy] --prefix '*'`` (or '?', '[', a policy variable; in any flag whose
    value reaches an IAM resource ARN) THEN one line naming the flag, exit 2, before any call: the
    endpoint is one nothing listens on, and the artifacts are not even built. Also refused by
    ``Target`` itself, so no caller of ``deploy()``/``destroy()``/``role_policy()`` gets a
    wildcard into a policy."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # never reached
    value = f"{ARN_FLAGS[flag]}{pattern}" if flag != "--prefix" else pattern
    argv = ["deploy", flag, value, "--artifacts", str(tmp_path / "none"), *(["--destroy"] if destroy_ else [])]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"stockpulse: error: {flag}: ") and repr(value) in err[0]
    assert not (tmp_path / "none").exists()
    field = flag.removeprefix("--")
    with pytest.raises(ConfigError, match=f"^{flag}: "):
        Target(**{field: value})


def test_a_pattern_character_in_a_prefix_says_it_would_widen_the_grant():
    with pytest.raises(
        ConfigError,
        match=r"--prefix: .*got 'eu/\*' \(\* would be a pattern in the IAM policies' "
        r"resource ARNs, granting more than this store\)",
    ):
        Target(prefix="eu/*")


def test_names_that_are_literals_pass_and_reach_the_arns_as_they_are():
    """The control: prefixes of the allowed characters (nested, with '=', '+', '.', a trailing
    '/') are accepted, and each role's ARNs are those of the store without a prefix with the
    prefix put in literally (the policy's own '*'s and nothing else)."""

    def arns(prefix: str) -> list[str]:
        target = Target(name="shop", bucket="shop.store-1", prefix=prefix, region="ap-southeast-2")
        return [arn for handler in HANDLERS for s in statements(target, handler).values() for arn in s["Resource"]]

    for prefix, key_prefix in (("eu", "eu/"), ("eu/shop-1/", "eu/shop-1/"), ("dt=2026+x/v1.2", "dt=2026+x/v1.2/"), ("..a/b", "..a/b/")):
        assert arns(prefix) == [arn.replace("shop.store-1/", f"shop.store-1/{key_prefix}") for arn in arns("")]


def test_every_target_value_that_reaches_an_arn_is_one_the_names_check_covers(tmp_path):
    """GIVEN a target whose every text value is a distinct marker THEN the markers found in the
    roles' and the functions' resource ARNs are only those of the checked flags (name, bucket,
    prefix, region) and the account: a new value reaching an ARN fails here until it is checked."""
    markers = {"name": "qqname", "bucket": "qqbucket", "prefix": "qqprefix", "region": "qq-qqregion-1", "endpoint": "http://qqendpoint"}
    environment = function_settings(Settings(pushgateway_url="http://qqgateway:9091", num_shards=3, cover_days=2.0))
    target = Target(**markers, environment=environment)
    arns = [arn for handler in HANDLERS for s in statements(target, handler).values() for arn in s["Resource"]]
    arns += [f"arn:aws:lambda:{target.region}:123456789012:function:{f}" for f in function_names(target.name).values()]
    arns += [f"rule/{spec.name}" for handler in HANDLERS for spec in rules_of(target, handler)]
    found = {field for field, marker in markers.items() if any(marker.removeprefix("http://") in arn for arn in arns)}
    assert found == {"name", "bucket", "prefix", "region"}
    assert not [arn for arn in arns if "qqgateway" in arn]


# -- sharding: the schedule as a fan-out of rules ----------------------------------------------


def sharded(count: int, **changes: Any) -> Target:
    return Target(**{"name": "shop", "bucket": "shop-store", **changes, "environment": {"STOCKPULSE_NUM_SHARDS": str(count)}})


def test_unsharded_each_handler_has_one_rule_named_as_its_function():
    for handler, function in function_names("shop").items():
        assert rules_of(Target(name="shop"), handler) == [RuleSpec(function, handler)]
        assert rule_targets(RuleSpec(function, handler), "arn:f") == [{"Id": "function", "Arn": "arn:f"}]


@pytest.mark.parametrize(
    ("count", "names"),
    [
        (2, ["shop-alert-s0-1"]),
        (5, ["shop-alert-s0-4"]),
        (6, ["shop-alert-s0-4", "shop-alert-s5-5"]),
        (7, ["shop-alert-s0-4", "shop-alert-s5-6"]),
        (11, ["shop-alert-s0-4", "shop-alert-s5-9", "shop-alert-s10-10"]),
    ],
)
def test_shards_are_packed_five_to_a_rule_named_by_their_range(count, names):
    rules = rules_of(sharded(count), "alert")
    assert [rule.name for rule in rules] == names
    assert [k for rule in rules for k in rule.shards] == list(range(count))
    assert all(len(rule.shards) <= TARGETS_PER_RULE for rule in rules)


def test_the_largest_deployment_fits_eventbridges_names_and_default_rule_quota():
    """GIVEN the longest --name (41) and the most shards (256) THEN every rule name is at most 64
    characters, and the 4 handlers need 4 x 52 = 208 rules of a bus's default 300."""
    target = sharded(MAX_SHARDS, name="n" * 41)
    rules = [rule for handler in HANDLERS for rule in rules_of(target, handler)]
    assert max(len(rule.name) for rule in rules) == 61
    assert len(rules) == 4 * 52 <= RULES_PER_BUS
    assert len({rule.name for rule in rules}) == len(rules)


def test_a_rule_of_another_deployment_or_handler_is_never_taken_for_a_shard_rule():
    assert is_shard_rule("shop-alert", "shop-alert-s0-4")
    assert is_shard_rule("shop-alert", "shop-alert-s250-255")
    for other in ("shop-alert", "shop-alert-s0-4-alert", "shop-alert-sx-alert", "shop-alert-s0", "shop-alerts0-4", "shop-alert-s0-4x"):
        assert not is_shard_rule("shop-alert", other)


def render(transformer: dict[str, Any], event: dict[str, Any]) -> Any:
    """What EventBridge delivers: each placeholder replaced by the value its path selects, a quoted
    one by the text as it is (strings must be quoted), an unquoted one by its JSON."""
    values = {name: event[path.removeprefix("$.")] for name, path in transformer["InputPathsMap"].items()}

    def one(match: re.Match[str]) -> str:
        value = values[match.group(2)]
        return f'"{value}"' if match.group(1) else json.dumps(value)

    return json.loads(re.sub(r'(")?<([A-Za-z]+)>(?(1)")', one, transformer["InputTemplate"]))


@pytest.mark.parametrize("shard", [0, 4, 255])
def test_each_shards_target_delivers_the_scheduled_event_with_its_shard(shard):
    """GIVEN the Scheduled Event EventBridge makes WHEN shard k's InputTransformer renders it THEN
    the function gets the same event (id, time, source ...) with detail {"shard": k}."""
    moment = datetime(2026, 3, 1, 12, 7, tzinfo=timezone.utc)
    scheduled = scheduled_event(moment, "shop-order-tick-s0-4", event_id="4d3e9438")
    delivered = render(shard_input(shard), scheduled)
    assert delivered == scheduled_event(moment, "shop-order-tick-s0-4", event_id="4d3e9438", shard=shard)
    tick = parse_event(delivered)
    assert (tick.time, tick.event_id, tick.shard) == (moment, "4d3e9438", shard)
    (target,) = [t for t in rule_targets(RuleSpec("r", "alert", (shard,)), "arn:f")]
    assert (target["Id"], target["Arn"], target["InputTransformer"]) == (f"shard-{shard}", "arn:f", shard_input(shard))


@pytest.mark.parametrize("handler", HANDLERS)
def test_a_sharded_role_allows_the_shards_keys_and_the_manifest_not_the_unsharded_state(handler):
    policy = statements(sharded(3, prefix="eu/"), handler)
    store = "arn:aws:s3:::shop-store/eu/"
    assert policy["State"]["Resource"] == [
        f"{store}shards/*/state/state.bin",
        f"{store}shards/*/state/forecast.bin",
        f"{store}shards/*/state/history/*",
        f"{store}shards/*/state/hot/*",
    ]
    if handler == "forecast":
        assert policy["PooledFit"]["Resource"] == [f"{store}shards/*/state/pool/*"]
    assert policy["Metrics"]["Resource"] == [f"{store}metrics/{handler}/shard/*.prom"]
    assert policy["ShardManifest"]["Resource"] == [f"{store}state/shards.json"]
    assert policy["ShardManifest"]["Action"] == ["s3:GetObject", "s3:PutObject"]
    assert policy["NoUnshardedState"] == {
        "Sid": "NoUnshardedState",
        "Effect": "Allow",
        "Action": ["s3:GetObject"],
        "Resource": [f"{store}state/state.bin"],
    }
    unsharded = statements(Target(name="shop", bucket="shop-store", prefix="eu/"), handler)
    assert unsharded["ShardManifest"]["Action"] == ["s3:GetObject"]  # read, never written unsharded
    assert "NoUnshardedState" not in unsharded


def test_the_functions_resource_policy_fits_lambdas_limit_but_for_long_names_with_many_shards():
    assert function_policy_bytes(sharded(MAX_SHARDS), "order_tick", account="123456789012") <= FUNCTION_POLICY_BYTES
    assert function_policy_bytes(sharded(MAX_SHARDS, name="n" * 41), "order_tick", account="123456789012") > FUNCTION_POLICY_BYTES


def test_num_shards_reaches_the_functions_environment_and_the_target():
    environment = function_settings(Settings(num_shards=7))
    assert environment == {"STOCKPULSE_NUM_SHARDS": "7"}
    assert Target(environment=environment).num_shards == 7
    assert Target().num_shards == 1


# -- the shop's own catalog: validated here, kept in the store, named by the functions ------------


def catalog_file(tmp_path, products: int = 30) -> Any:
    from tests.support.catalogs import catalog_text

    path = tmp_path / "shop.yaml"
    path.write_text(catalog_text(products))
    return path


def catalog_target(path: Any, num_shards: int = 3, **changes: Any) -> Target:
    """The target ``deploy --catalog PATH --num-shards N`` builds (jobs/deploy/command.py)."""
    upload = prepare_catalog(str(path), num_shards=num_shards)
    assert upload is not None
    settings = Settings(catalog_path=str(path), num_shards=num_shards)
    return Target(
        **{
            "name": "shop",
            "bucket": "shop-store",
            "prefix": "eu",
            **changes,
            "environment": function_settings(settings, catalog=upload.reference),
            "catalog_objects": upload.objects,
        }
    )


def test_a_catalog_file_becomes_a_store_reference_and_its_objects(tmp_path):
    """GIVEN a catalog file and 3 shards WHEN deploy prepares it THEN the functions get a store:
    reference to its bytes, and the objects to keep are those bytes and the compiled forms of the
    whole catalog and of each shard, under the digest of the file."""
    path = catalog_file(tmp_path)
    data = path.read_bytes()
    target = catalog_target(path)
    reference = store_reference(data)
    assert target.environment == {"STOCKPULSE_CATALOG": reference, "STOCKPULSE_NUM_SHARDS": "3"}
    assert sorted(target.catalog_objects) == sorted([source_key(data), compiled_key(data)] + [compiled_key(data, (k, 3)) for k in range(3)])
    assert target.catalog_objects[source_key(data)] == data
    assert Settings.from_env(target.environment).catalog_path == reference  # what a function reads back
    unsharded = prepare_catalog(str(path), num_shards=1)
    assert unsharded is not None and sorted(unsharded.objects) == sorted([source_key(data), compiled_key(data)])


def test_deploying_the_same_catalog_again_does_not_parse_it_again(tmp_path, monkeypatch):
    """GIVEN a catalog deployed once WHEN it is prepared again THEN its validated compiled form is
    read back from the local cache (a 1M-series YAML takes ~30 s to parse) and the objects to
    upload are byte for byte the same; a changed file is parsed (and refused when invalid)."""
    import handlers.model.catalog

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = catalog_file(tmp_path)
    first = prepare_catalog(str(path), num_shards=3)

    def no_parsing(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("parsed again")

    with monkeypatch.context() as patched:
        patched.setattr(handlers.model.catalog, "parse_catalog", no_parsing)
        again = prepare_catalog(str(path), num_shards=3)
    assert first is not None and again is not None
    assert (again.reference, dict(again.objects)) == (first.reference, dict(first.objects))
    assert list((tmp_path / "cache" / "stockpulse" / "catalogs").rglob("*.v2.json"))
    path.write_text(path.read_text().replace("pack_size: 5", "pack_size: 2.5", 1))
    with pytest.raises(CatalogError, match=r"pack_size: must be an integer"):
        prepare_catalog(str(path), num_shards=3)


def test_a_store_reference_passes_as_it_is_and_other_local_files_are_still_refused():
    reference = store_reference(b"seed: 1\n")
    assert function_settings(Settings(catalog_path=reference)) == {"STOCKPULSE_CATALOG": reference}
    upload = prepare_catalog(reference, num_shards=1)
    assert upload is not None and (upload.reference, dict(upload.objects)) == (reference, {})
    with pytest.raises(ConfigError, match="--pushgateway-ca-file / STOCKPULSE_PUSHGATEWAY_CA_FILE"):
        function_settings(Settings(catalog_path=reference, pushgateway_ca_file="ca.pem"), catalog=reference)


@pytest.mark.parametrize("handler", HANDLERS)
def test_a_role_reads_the_catalogs_source_and_reads_and_writes_its_compiled_forms_only_when_in_the_store(handler, tmp_path):
    store = "arn:aws:s3:::shop-store/eu/"
    policy = statements(catalog_target(catalog_file(tmp_path)), handler)
    assert policy["CatalogSource"] == {
        "Sid": "CatalogSource",
        "Effect": "Allow",
        "Action": ["s3:GetObject"],
        "Resource": [f"{store}catalogs/source/*"],
    }
    assert policy["CompiledCatalog"] == {
        "Sid": "CompiledCatalog",
        "Effect": "Allow",
        "Action": ["s3:GetObject", "s3:PutObject"],
        "Resource": [f"{store}catalogs/*.v2.json", f"{store}catalogs/*.v2.shard-*-of-3.json"],
    }
    unsharded = statements(catalog_target(catalog_file(tmp_path), 1), handler)
    assert unsharded["CompiledCatalog"]["Resource"] == [f"{store}catalogs/*.v2.json"]
    builtin = statements(Target(name="shop", bucket="shop-store", prefix="eu"), handler)
    assert not {"CatalogSource", "CompiledCatalog"} & set(builtin)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("products: [\n", "not valid YAML"),
        (
            "seed: 1\nproducts:\n  - {id: A, base_demand_per_day: -3, lead_time_hours: 4, "
            "pack_size: 1}\nwarehouses:\n  - {id: W, timezone: UTC}\n",
            "products[0].base_demand_per_day",
        ),
    ],
)
def test_an_invalid_catalog_is_one_line_exit_2_before_any_call(text, field, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # never reached
    path = tmp_path / "shop.yaml"
    path.write_text(text)
    assert cli.main(["deploy", "--catalog", str(path), "--artifacts", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"stockpulse: error: {path}") and field in err[0]
    assert not (tmp_path / "none").exists()  # not even the artifacts were built


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_missing_catalog_file_or_a_bad_reference_is_one_line_exit_2(how, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    for value, expected in (
        (str(tmp_path / "gone.yaml"), "cannot read"),
        ("store:catalogs/source/nothex.yaml", "a store: reference must name"),
    ):
        if how == "flag":
            argv = ["deploy", "--catalog", value]
        else:
            monkeypatch.setenv("STOCKPULSE_CATALOG", value)
            argv = ["deploy"]
        assert cli.main([*argv, "--artifacts", str(tmp_path / "none")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("stockpulse: error: --catalog / STOCKPULSE_CATALOG") and expected in err[0]


def test_a_catalog_whose_shard_one_invocation_cannot_handle_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("handlers.runtime.invoke.MAX_SERIES", 20)  # 30 products x 2 warehouses over 3 shards: > 20 each
    with pytest.raises(ConfigError, match=r"shard \d of 3 holds \d+ series, more than the 20 one invocation"):
        prepare_catalog(str(catalog_file(tmp_path)), num_shards=3)


# -- the whole deploy in-process against moto: what is uploaded, when, and what destroy keeps -------


@pytest.fixture
def aws(monkeypatch):
    from moto import mock_aws

    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    with mock_aws():
        import boto3

        yield boto3.client("s3", region_name="us-east-1")


def stand_ins(directory: Any, version: str = "1") -> dict[str, package.Artifact]:
    """Tiny stand-ins for the Lambda zips (moto makes functions from them; nothing runs them); each
    ``version`` has other bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    found = {}
    for name, served in package.ARTIFACTS.items():
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("handlers/__init__.py", f"# {name} {version}\n")
        path = directory / f"{name}.zip"
        path.write_bytes(buffer.getvalue())
        found[name] = package.Artifact(
            name,
            path,
            tuple(served),
            "3.12",
            path.stat().st_size,
            16,
            base64.b64encode(hashlib.sha256(buffer.getvalue()).digest()).decode(),
        )
    return found


@pytest.fixture
def artifacts(tmp_path_factory) -> dict[str, package.Artifact]:
    return stand_ins(tmp_path_factory.mktemp("artifacts"))


def bucket_objects(s3: Any, bucket: str, prefix: str = "") -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {item["Key"]: s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in listed}


def test_deploy_keeps_the_catalog_in_the_store_before_the_functions_name_it(aws, artifacts, tmp_path):
    """GIVEN a catalog file in 3 shards WHEN deployed THEN the plan shows each catalog object
    uploaded before any function is made; the bucket holds the file's exact bytes and compiled forms
    under the store's prefix; the functions name the source; a shard's process reads its compiled
    form from there without the YAML."""
    path = catalog_file(tmp_path)
    target = catalog_target(path)
    rows = deploy(target, artifacts)
    uploads = [row.name for row in rows if row.resource == "catalog"]
    assert uploads == [f"eu/{key}" for key in target.catalog_objects]
    assert {row.action for row in rows if row.resource == "catalog"} == {"upload"}
    first_function = next(i for i, row in enumerate(rows) if row.resource == "function")
    assert max(i for i, row in enumerate(rows) if row.resource == "catalog") < first_function
    assert bucket_objects(aws, target.bucket, "eu/catalogs/") == {f"eu/{k}": v for k, v in target.catalog_objects.items()}
    variables = boto3_lambda().get_function_configuration(FunctionName="shop-alert")["Environment"]["Variables"]
    assert variables["STOCKPULSE_CATALOG"] == store_reference(path.read_bytes())
    store = open_store("s3://shop-store/eu")
    part = load_compiled(variables["STOCKPULSE_CATALOG"], store, shard=(1, 3))
    assert part.products == split(load_catalog(path), 3)[1].catalog.products


def boto3_lambda() -> Any:
    import boto3

    return boto3.client("lambda", region_name="us-east-1")


def test_a_dry_run_uploads_nothing_and_a_second_deploy_nothing_new(aws, artifacts, tmp_path):
    target = catalog_target(catalog_file(tmp_path))
    rows = deploy(target, artifacts, dry_run=True)
    assert [row.action for row in rows if row.resource == "catalog"] == ["would upload"] * 5
    assert target.bucket not in {b["Name"] for b in aws.list_buckets()["Buckets"]}
    deploy(target, artifacts)
    stored = bucket_objects(aws, target.bucket, "eu/catalogs/")
    again = deploy(target, artifacts)
    assert {row.action for row in again} == {"unchanged"}
    assert [row.name for row in again if row.resource == "catalog"] == sorted(
        stored, key=list(f"eu/{k}" for k in target.catalog_objects).index
    )
    assert bucket_objects(aws, target.bucket, "eu/catalogs/") == stored


def test_a_store_reference_is_deployed_when_the_bucket_holds_it_and_refused_before_anything_else(aws, artifacts, tmp_path):
    path = catalog_file(tmp_path)
    reference = store_reference(path.read_bytes())
    given = Target(name="ref", bucket="ref-store", environment={"STOCKPULSE_CATALOG": reference})
    with pytest.raises(DeployError, match=f"STOCKPULSE_CATALOG: {reference}: no such object in s3://ref-store"):
        deploy(given, artifacts)
    assert "ref-store" not in {b["Name"] for b in aws.list_buckets()["Buckets"]}
    deploy(catalog_target(path, 1, name="ref", bucket="ref-store", prefix=""), artifacts)  # uploads it
    rows = deploy(given, artifacts)
    assert not [row for row in rows if row.resource == "catalog"]
    assert {row.action for row in rows} == {"unchanged"}


def test_destroy_keeps_the_catalog_objects_as_the_stores_data(aws, artifacts, tmp_path):
    """GIVEN a deployment with its catalog in the store WHEN destroyed THEN the catalog objects stay
    and so does the bucket (as for state: empty it, then destroy again)."""
    target = catalog_target(catalog_file(tmp_path))
    deploy(target, artifacts)
    stored = bucket_objects(aws, target.bucket)
    kept = (
        "kept: holds 5 objects this deployment did not make (the store's data, other deployments' code): remove them, then --destroy again"
    )
    assert [row.action for row in destroy(target, dry_run=True) if row.resource == "bucket"] == [kept]
    rows = destroy(target)
    assert [row.action for row in rows if row.resource == "bucket"] == [kept]
    assert bucket_objects(aws, target.bucket) == {k: v for k, v in stored.items() if "/lambda-code/" not in k}
    assert len(bucket_objects(aws, target.bucket)) == 5


# -- the code objects: a deployment deletes only its own, and never the code its functions run ------


def code_of(artifacts: dict[str, package.Artifact], prefix: str) -> set[str]:
    return {f"{prefix}{name}-{artifact.sha256_hex[:16]}.zip" for name, artifact in artifacts.items()}


def runs(function: str) -> str:
    return str(boto3_lambda().get_function_configuration(FunctionName=function)["CodeSha256"])


def test_a_redeploy_and_a_destroy_delete_only_the_code_this_deployment_made(aws, tmp_path):
    """GIVEN two deployments (--name shop, --name shop-b) sharing a bucket and prefix, and another
    team's objects under lambda-code/ (one named like code, one in shop's own folder, untagged)
    WHEN shop is redeployed with new code, then destroyed THEN shop's old code, then its new code
    are deleted, and nothing else: shop-b's code and functions are as they were (a redeploy of
    shop-b changes nothing), the other team's objects are intact."""
    v1, v2 = stand_ins(tmp_path / "v1", "1"), stand_ins(tmp_path / "v2", "2")
    shop, other = Target(name="shop", bucket="shared-store", prefix="eu"), Target(name="shop-b", bucket="shared-store", prefix="eu")
    deploy(shop, v1)
    others_rows = deploy(other, v1)
    team = {
        "eu/lambda-code/handlers-0123456789abcdef.zip": b"another team's zip",
        "eu/lambda-code/tools/x.zip": b"x",
        "eu/lambda-code/shop/notes.txt": b"notes",
        "eu/lambda-code/shop/forecast-0123456789abcdef.zip": b"untagged",
    }
    for key, body in team.items():
        aws.put_object(Bucket="shared-store", Key=key, Body=body)
    # the code shop-b's functions were made from, wherever deploy keeps it
    names = {row.name for row in others_rows if row.resource == "code"}
    others_code = {
        k: v
        for k, v in bucket_objects(aws, "shared-store", "eu/lambda-code/").items()
        if k.rsplit("/", 1)[1] in names and k not in team and not k.startswith("eu/lambda-code/shop/")
    }
    assert len(others_code) == 2
    others_run = {f: runs(f) for f in function_names("shop-b").values()}

    rows = deploy(shop, v2)
    code = {row.name: row.action for row in rows if row.resource == "code"}
    assert code == {
        **{key: "upload" for key in code_of(v2, "")},
        **{key: "delete (superseded)" for key in code_of(v1, "")},
        "notes.txt": "kept (not made by deploy --name shop)",
        "forecast-0123456789abcdef.zip": "kept (not made by deploy --name shop)",
    }
    assert set(bucket_objects(aws, "shared-store", "eu/lambda-code/shop/")) == code_of(v2, "eu/lambda-code/shop/") | {
        "eu/lambda-code/shop/notes.txt",
        "eu/lambda-code/shop/forecast-0123456789abcdef.zip",
    }
    assert {k: v for k, v in bucket_objects(aws, "shared-store").items() if k in others_code} == others_code
    assert {f: runs(f) for f in function_names("shop-b").values()} == others_run

    rows = destroy(shop)
    assert {row.name: row.action for row in rows if row.resource == "code"} == {
        **{key: "delete" for key in code_of(v2, "")},
        "notes.txt": "kept (not made by deploy --name shop)",
        "forecast-0123456789abcdef.zip": "kept (not made by deploy --name shop)",
    }
    assert [row.action for row in rows if row.resource == "bucket"] == [
        "kept: holds 6 objects this deployment did not make (the store's data, other deployments' code): remove them, then --destroy again"
    ]
    assert bucket_objects(aws, "shared-store") == {**others_code, **team}
    assert {f: runs(f) for f in function_names("shop-b").values()} == others_run
    assert {row.action for row in deploy(other, v1) if row.resource != "bucket"} == {"unchanged"}


def test_an_object_this_deployment_did_not_make_at_its_code_key_is_refused_before_anything_changes(aws, artifacts):
    """GIVEN an untagged object at the key where shop's handlers.zip goes WHEN shop is deployed
    THEN it is refused naming the key, and no function is made from it."""
    aws.create_bucket(Bucket="shop-store")
    (key,) = [k for k in code_of(artifacts, "lambda-code/shop/") if "/handlers-" in k]
    aws.put_object(Bucket="shop-store", Key=key, Body=b"not the artifact")
    with pytest.raises(DeployError, match=f"s3://shop-store/{key}: exists and was not made by"):
        deploy(Target(name="shop", bucket="shop-store"), artifacts)
    assert boto3_lambda().list_functions()["Functions"] == []
    assert set(bucket_objects(aws, "shop-store")) == {key}


def update_accepted_but_not_applied(function: str) -> Any:
    """A botocore hook answering UpdateFunctionCode for ``function`` as Lambda does when the update
    then fails: accepted, the function still on its old code (LastUpdateStatus Failed)."""
    from botocore.awsrequest import AWSResponse

    def answer(params: dict[str, Any], **kwargs: Any) -> Any:
        if f"/functions/{function}/code" not in params["url_path"]:
            return None
        current = boto3_lambda().get_function_configuration(FunctionName=function)
        return AWSResponse("", 200, {}, None), {**current, "LastUpdateStatus": "Failed", "LastUpdateStatusReason": "injected"}

    return answer


def test_a_function_left_on_its_old_code_by_a_failed_update_keeps_that_code(aws, tmp_path):
    """GIVEN shop deployed with v1 WHEN a redeploy with v2 has the forecast's code update fail on
    Lambda's side THEN deploy stops with one line naming the function and the code it runs, and
    that code object (v1's forecast.zip) is still in the bucket."""
    from jobs.deploy import Clients

    v1, v2 = stand_ins(tmp_path / "v1", "1"), stand_ins(tmp_path / "v2", "2")
    shop = Target(name="shop", bucket="shop-store")
    deploy(shop, v1)
    clients = Clients(shop)
    clients.lambda_.meta.events.register("before-call.lambda.UpdateFunctionCode", update_accepted_but_not_applied("shop-forecast"))
    v1_forecast = f"forecast-{v1['forecast'].sha256_hex[:16]}.zip"
    with pytest.raises(
        DeployError,
        match=rf"function shop-forecast: runs {v1_forecast}, not forecast-"
        rf"{v2['forecast'].sha256_hex[:16]}.zip \(last update ",
    ):
        deploy(shop, v2, clients=clients)
    assert runs("shop-forecast") == v1["forecast"].sha256
    assert f"lambda-code/shop/{v1_forecast}" in bucket_objects(aws, "shop-store", "lambda-code/shop/")


def test_a_redeploy_never_deletes_the_code_its_functions_run_now(aws, tmp_path):
    """GIVEN shop deployed with v1 WHEN, while a redeploy with v2 is about to remove superseded
    code, another deploy of shop puts every function on v3 THEN the first keeps v3's code (its
    functions run it, as they report it after the listing); a dry run says it would delete what a
    real run would supersede, and deletes nothing."""
    from jobs.deploy import Clients

    v1, v2, v3 = (stand_ins(tmp_path / f"v{n}", str(n)) for n in (1, 2, 3))
    shop = Target(name="shop", bucket="shop-store")
    deploy(shop, v1)
    clients = Clients(shop)
    raced: list[list[Any]] = []

    def another_deploy_first(**kwargs: Any) -> None:
        if not raced:
            raced.append(deploy(shop, v3))  # its own clients: no hook

    clients.s3.meta.events.register("before-call.s3.ListObjectsV2", another_deploy_first)
    rows = deploy(shop, v2, clients=clients)
    assert raced
    assert {f: runs(f) for f in function_names("shop").values()} == {f: v3[package_of(h)].sha256 for h, f in function_names("shop").items()}
    code = {row.name: row.action for row in rows if row.resource == "code"}
    assert {code[key] for key in code_of(v3, "")} == {"kept (a function still runs it)"}
    # v1's and v2's code went with the deploy of v3 (once its functions ran v3); v3's stays
    assert set(bucket_objects(aws, "shop-store", "lambda-code/shop/")) == code_of(v3, "lambda-code/shop/")
    rows = deploy(shop, v1, dry_run=True)
    assert {row.name: row.action for row in rows if row.resource == "code"} == {
        **{key: "would upload" for key in code_of(v1, "")},
        **{key: "would delete (superseded)" for key in code_of(v3, "")},
    }
    assert set(bucket_objects(aws, "shop-store", "lambda-code/shop/")) == code_of(v3, "lambda-code/shop/")


def package_of(handler: str) -> str:
    return next(name for name, served in package.ARTIFACTS.items() if handler in served)


def inventory(s3: Any, target: Target) -> dict[str, set[str]]:
    """What exists of a deployment's names, by kind."""
    import boto3

    names = set(function_names(target.name).values())
    return {
        "function": {f["FunctionName"] for f in boto3_lambda().list_functions()["Functions"]} & names,
        "role": {r["RoleName"] for r in boto3.client("iam").list_roles()["Roles"]} & names,
        "rule": {r["Name"] for r in boto3.client("events", region_name="us-east-1").list_rules()["Rules"]} & names,
        "log group": {g["logGroupName"] for g in boto3.client("logs", region_name="us-east-1").describe_log_groups()["logGroups"]}
        & {f"/aws/lambda/{n}" for n in names},
        "code": set(bucket_objects(s3, target.bucket, "lambda-code/")),
    }


def replace_with_foreign(kind: str, name: str) -> str:
    """Delete the deployment's resource ``name`` of ``kind`` and make an untagged one in its place
    (a log group: take the tag off)."""
    import boto3

    if kind == "function":
        lam = boto3_lambda()
        role = lam.get_function_configuration(FunctionName=name)["Role"]
        code = {"ZipFile": io.BytesIO(zipfile_bytes()).getvalue()}
        lam.delete_function(FunctionName=name)
        lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="x.handler", Code=code)
    elif kind == "role":
        iam = boto3.client("iam")
        iam.delete_role_policy(RoleName=name, PolicyName="stockpulse")
        iam.delete_role(RoleName=name)
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    elif kind == "rule":
        events = boto3.client("events", region_name="us-east-1")
        events.remove_targets(Rule=name, Ids=["function"])
        events.delete_rule(Name=name)
        events.put_rule(Name=name, ScheduleExpression="rate(1 day)")
    else:  # untagged in place: moto keeps a deleted log group's tags for the next one of that name
        name = f"/aws/lambda/{name}"
        boto3.client("logs", region_name="us-east-1").untag_log_group(logGroupName=name, tags=[TAG_KEY])
    return name


def zipfile_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.py", "def handler(event, context): return {}\n")
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["function", "role", "rule", "log group"])
def test_destroy_deletes_nothing_when_one_of_its_names_is_someone_elses(kind, aws, artifacts):
    """GIVEN a deployment one of whose names (a function, role, rule or log group) now holds
    something it did not make (no tag) WHEN it is destroyed THEN one line names that resource, and
    nothing is deleted: neither it, nor any of the deployment's own resources or code."""
    target = Target(name="shop", bucket="shop-store")
    deploy(target, artifacts)
    name = replace_with_foreign(kind, function_names("shop")["alert"])
    before = inventory(aws, target)
    assert all(before.values())
    with pytest.raises(DeployError, match=f"^{kind} {name}: exists and was not made by"):
        destroy(target)
    assert inventory(aws, target) == before
    assert set(bucket_objects(aws, "shop-store", "lambda-code/")) == code_of(artifacts, "lambda-code/shop/")
