"""deploy's pure parts: names, schedules, settings as environment, least-privilege policies."""

from __future__ import annotations

import pytest

from handlers import HANDLERS
from handlers.errors import ConfigError
from handlers.settings import Settings
from jobs import cli
from jobs.deploy import Target, function_names, function_settings, rate_expression, role_policy


def statements(target: Target, handler: str) -> dict[str, dict]:
    return {s["Sid"]: s for s in role_policy(target, handler, account="123456789012")["Statement"]}


@pytest.mark.parametrize("handler", HANDLERS)
def test_each_policy_allows_only_the_keys_and_log_group_of_its_function(handler):
    target = Target(name="shop", bucket="shop-store", prefix="eu/", region="eu-west-1")
    policy = statements(target, handler)
    assert policy["State"]["Resource"] == ["arn:aws:s3:::shop-store/eu/state/state.bin",
                                           "arn:aws:s3:::shop-store/eu/state/forecast.bin",
                                           "arn:aws:s3:::shop-store/eu/state/history/*"]
    assert policy["State"]["Action"] == ["s3:GetObject", "s3:PutObject"]
    assert policy["Logs"]["Resource"] == ["arn:aws:s3:::shop-store/eu/logs/*"]
    assert policy["Metrics"] == {"Sid": "Metrics", "Effect": "Allow", "Action": ["s3:PutObject"],
                                 "Resource": [f"arn:aws:s3:::shop-store/eu/metrics/{handler}.prom"]}
    assert policy["NotFoundIsNotForbidden"]["Action"] == ["s3:ListBucket"]
    assert policy["NotFoundIsNotForbidden"]["Resource"] == ["arn:aws:s3:::shop-store"]
    function = function_names("shop")[handler]
    assert policy["OwnLogGroup"]["Resource"] == [
        f"arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/{function}:*"]
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
    assert function_names("shop") == {"order_tick": "shop-order-tick", "restock": "shop-restock",
                                      "forecast": "shop-forecast", "alert": "shop-alert"}


@pytest.mark.parametrize(("seconds", "expression"), [(60, "rate(1 minute)"), (300, "rate(5 minutes)"),
                                                     (3600, "rate(1 hour)"), (900, "rate(15 minutes)"),
                                                     (7200, "rate(2 hours)"), (86400, "rate(1 day)")])
def test_schedules_become_eventbridge_rates(seconds, expression):
    assert rate_expression(seconds) == expression


def test_store_url_and_key_prefix_follow_bucket_and_prefix():
    assert Target(bucket="b").store_url == "s3://b"
    assert Target(bucket="b", prefix="/shop/").store_url == "s3://b/shop"
    assert Target(bucket="b", prefix="shop").key_prefix == "shop/"
    assert Target(bucket="b").key_prefix == ""


def test_functions_get_only_the_settings_that_differ_from_the_defaults():
    assert function_settings(Settings()) == {}
    chosen = Settings(pushgateway_url="http://pushgateway:9091", cover_days=2.0, service_level=0.95)
    assert function_settings(chosen) == {"STOCKPULSE_PUSHGATEWAY_URL": "http://pushgateway:9091",
                                         "STOCKPULSE_COVER_DAYS": "2", "STOCKPULSE_SERVICE_LEVEL": "0.95"}
    parsed = Settings.from_env(function_settings(chosen))  # a function reads back what was chosen
    assert (parsed.cover_days, parsed.service_level, parsed.pushgateway_url) == (2.0, 0.95, "http://pushgateway:9091")


@pytest.mark.parametrize(("field", "named"), [("catalog_path", "--catalog / STOCKPULSE_CATALOG"),
                                             ("pushgateway_ca_file", "--pushgateway-ca-file / STOCKPULSE_PUSHGATEWAY_CA_FILE")])
def test_settings_naming_a_local_file_are_refused_naming_the_setting(field, named):
    with pytest.raises(ConfigError, match=named):
        function_settings(Settings(**{field: "shop.yaml"}))


def test_every_setting_a_function_gets_reads_back_as_chosen():
    """GIVEN every setting away from its default WHEN deploy turns them into a function's environment
    THEN Settings.from_env of that environment builds the same settings (the store URL aside)."""
    chosen = Settings(pushgateway_url="https://gw.example:9091", push_timeout_seconds=2.5, alert_threshold_hours=12.0,
                      service_level=0.9, cover_days=3.0, pushgateway_username="shop", pushgateway_password="s3cret",
                      max_tick_lead={"order_tick": 86400.0, "restock": 3600.0, "forecast": 7200.0, "alert": 600.0},
                      max_catch_up_minutes=60)
    environment = function_settings(chosen)
    assert "STOCKPULSE_STORE_URL" not in environment
    assert Settings.from_env({**environment, "STOCKPULSE_STORE_URL": chosen.store_url}) == chosen


@pytest.mark.parametrize(("argv", "field"), [(["--name", "Shop_1"], "--name"), (["--bucket", "a"], "--bucket"),
                                             (["--bucket", "UPPER"], "--bucket"), (["--prefix", "../x"], "--prefix"),
                                             (["--region", "mars"], "--region"),
                                             (["--every", "alert=90s"], "--every alert")])
def test_bad_names_are_one_line_errors_before_any_call(argv, field, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # never reached
    assert cli.main(["deploy", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"stockpulse: error: {field}")
