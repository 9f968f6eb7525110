"""The Grafana dashboard and the alert rules: one source each, and built only on
metrics the services really expose."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client import REGISTRY

from tests.infra.manifests import ROOT
from tests.infra.sync_rules import PROMETHEUS_RULE, RULES, render

# Every module that defines metrics (importing registers them in the default registry).
METRIC_MODULES = (
    "servicekit.metrics",
    "servicekit.resilience",
    "core.metrics",
    "gateway.metrics",
    "notice.sender",
    "model.handlers",
    "target.handlers",
    "mypage_cqrs.stalls",
)
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exposed_names() -> set[str]:
    for module in METRIC_MODULES:
        importlib.import_module(module)
    names = {"up"}  # Prometheus's own, per target
    for family in REGISTRY.collect():
        names |= {family.name + s for s in SUFFIXES.get(family.type, ("",))}
    return names


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\(?)", expr):
        if not match.group(2) and match.group(1) not in KEYWORDS:
            names.add(match.group(1))
    return names


def alerts() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [r for g in groups for r in g["rules"]]


def rule_exprs() -> list[str]:
    return [r["expr"] for r in alerts()]


def dashboard_exprs() -> list[str]:
    dash = json.loads((ROOT / "deploy/grafana/dashboards/nocode.json").read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", ())]  # rows: none


def used_names() -> set[str]:
    """Every metric name a panel or an alert refers to."""
    return set().union(*(metric_names(e) for e in (*dashboard_exprs(), *rule_exprs())))


def test_the_metric_name_parser() -> None:
    expr = 'histogram_quantile(0.99, sum by (service, le) (rate(x_bucket{a="b"}[5m]))) > 1'
    assert metric_names(expr) == {"x_bucket"}


def test_alert_rules_use_only_exposed_metrics() -> None:
    exposed = exposed_names()
    for expr in rule_exprs():
        assert metric_names(expr), expr
        assert metric_names(expr) <= exposed, (expr, metric_names(expr) - exposed)


def test_dashboard_uses_only_exposed_metrics() -> None:
    exposed = exposed_names()
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    for expr in exprs:
        assert metric_names(expr) <= exposed, (expr, metric_names(expr) - exposed)
    used = set().union(*(metric_names(e) for e in exprs))
    for name in (
        "core_queue_depth",
        "outbox_backlog_events",
        "events_dead_lettered_total",
        "events_failed_total",
        "kafka_consumer_lag_messages",
        "core_compensation_checks_total",
        "saga_stage_duration_seconds_bucket",
        "saga_outcomes_total",
        "saga_cancellations_total",
        "saga_compensations_total",
    ):
        assert name in used


def test_consumer_panels_and_alerts_are_per_consumer_group() -> None:
    consumer = ("events_", "event_processing_", "kafka_consumer_lag_")
    for expr in (*dashboard_exprs(), *rule_exprs()):
        if any(n.startswith(consumer) for n in metric_names(expr)):
            assert re.search(r"by \([^)]*\bgroup\b", expr), expr


def test_every_alert_is_named_labelled_and_explained() -> None:
    rules = alerts()
    assert len({a["alert"] for a in rules}) == len(rules)
    for a in rules:
        assert a["labels"]["severity"] in ("warning", "critical")
        assert a["annotations"]["summary"] and a["annotations"]["description"], a["alert"]
        assert 'platform="nocode"' in a["expr"], "selects the platform's own targets"


def test_the_alerts_the_issue_asks_for() -> None:
    """Dead letters > 0, outbox backlog and consumer lag growing (a slope, not only a
    level), compensation checks retrying, error rate."""
    by_name = {a["alert"]: a["expr"] for a in alerts()}
    assert "events_dead_lettered_total" in by_name["NocodeEventsDeadLettered"]
    assert by_name["NocodeEventsDeadLettered"].rstrip().endswith("> 0")
    for name, metric in (
        ("NocodeOutboxBacklogGrowing", "outbox_backlog_events"),
        ("NocodeConsumerLagGrowing", "kafka_consumer_lag_messages"),
    ):
        assert re.search(rf"(deriv|delta)\({metric}\b", by_name[name]), by_name[name]
    retrying = by_name["NocodeCompensationCheckRetrying"]
    assert "core_compensation_checks_total" in retrying and "unavailable" in retrying
    assert 'status=~"5.."' in by_name["NocodeHighErrorRate"]


def test_the_prometheusrule_is_the_rule_file() -> None:
    assert PROMETHEUS_RULE.read_text() == render(), (
        "run `.venv/bin/python -m tests.infra.sync_rules` after editing the rule file"
    )


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian: prometheus)")
def test_promtool_parses_the_rules_the_dashboard_and_the_scrape_config(tmp_path) -> None:
    dashboard_rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:expr{i}", "expr": e.replace("$__rate_interval", "5m")}
                    for i, e in enumerate(dashboard_exprs())
                ],
            }
        ]
    }
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump(dashboard_rules))
    config = (ROOT / "deploy/prometheus/prometheus.yml").read_text()
    (tmp_path / "prometheus.yml").write_text(
        config.replace("/etc/prometheus/rules/", f"{RULES.parent}/")
    )
    for args in (
        ["check", "rules", str(RULES), str(tmp_path / "dashboard.yml")],
        ["check", "config", str(tmp_path / "prometheus.yml")],
    ):
        result = subprocess.run(["promtool", *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
