"""Writes k8s/base/monitoring/prometheusrule.yaml from deploy/prometheus/rules/.

The alert rules have one source, the Prometheus rule file docker-compose.yml loads;
the PrometheusRule carries the same groups for the Prometheus operator. A test fails
when they differ; then run ``.venv/bin/python -m tests.infra.sync_rules``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/prometheus/rules/nocode-alerts.yml"
PROMETHEUS_RULE = ROOT / "k8s/base/monitoring/prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/prometheus/rules/nocode-alerts.yml (the one source of the alert
# rules; docker-compose.yml's Prometheus loads that file): edit it, then run
# `.venv/bin/python -m tests.infra.sync_rules`. tests/infra checks they are equal.
"""


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL) as literal blocks, as in the source file."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render() -> str:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "nocode",
            "labels": {"release": "kube-prometheus-stack"},  # the chart's ruleSelector
        },
        "spec": {"groups": groups},
    }
    return HEADER + yaml.dump(rule, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)


if __name__ == "__main__":
    PROMETHEUS_RULE.write_text(render())
    print(f"wrote {PROMETHEUS_RULE.relative_to(ROOT)}")
