"""The Prometheus config and alerting rules pass promtool: syntax, lint and rule unit tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

from handlers.telemetry.metrics import METRICS
from tests.support import servers

INFRA = Path(__file__).resolve().parents[2] / "infra" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = servers.find_binary("promtool", debian_package="prometheus")
    return subprocess.run([binary, *args], capture_output=True, text=True, cwd=INFRA, timeout=60)


def test_config_is_valid_and_scrapes_the_pushgateway_with_honor_labels():
    proc = promtool("check", "config", "prometheus.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (INFRA / "prometheus.yml").read_text()
    assert "honor_labels: true" in text and "pushgateway:9091" in text


def test_rules_are_valid():
    proc = promtool("check", "rules", "rules/stockpulse.rules.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rule_unit_tests_pass():
    proc = promtool("test", "rules", "tests/stockpulse.rules.test.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_rules_reference_only_metrics_the_handlers_export():
    """GIVEN the rule file THEN every metric name in it is one the handlers push (or Prometheus's own)."""
    import re

    import yaml

    rules = yaml.safe_load((INFRA / "rules/stockpulse.rules.yml").read_text())
    exprs = " ".join(r["expr"] for group in rules["groups"] for r in group["rules"])
    names = set(re.findall(r"(?<![\w:])([a-z_:]+_(?:total|seconds|units|hours))\b", exprs))
    known = set(METRICS) | {"stockpulse:handler_interval_seconds"}
    assert names and names <= known, names - known
