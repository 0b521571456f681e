"""The monitoring mixin: Prometheus rules, an Alertmanager example and a Grafana dashboard.

One source of truth: `render_all(cfg)` produces every file from `MixinConfig`, and
`deepfake-monitor mixin --out deploy/monitoring` writes them (`--check` reports drift).
The shipped files in deploy/monitoring/ are its output for deploy/monitoring/mixin.yaml.

    prometheus/deepfake-monitor.rules.yaml        recording + alerting rules
    alertmanager/alertmanager.yaml                route, receivers, inhibit rules (example)
    grafana/dashboards/deepfake-monitor.json      the dashboard
    grafana/provisioning/datasources/prometheus.yaml, .../dashboards/deepfake-monitor.yaml
    kubernetes/prometheusrule.yaml                the rules as a prometheus-operator resource
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from monitor.mixin.alertmanager import render_alertmanager
from monitor.mixin.dashboard import render_dashboard
from monitor.mixin.rules import GENERATED_BY, dump, render_rules, rule_groups
from monitor.mixin.settings import MixinConfig, load_mixin_config

RULES_FILE = "prometheus/deepfake-monitor.rules.yaml"
ALERTMANAGER_FILE = "alertmanager/alertmanager.yaml"
DASHBOARD_FILE = "grafana/dashboards/deepfake-monitor.json"
DATASOURCE_FILE = "grafana/provisioning/datasources/prometheus.yaml"
DASHBOARD_PROVIDER_FILE = "grafana/provisioning/dashboards/deepfake-monitor.yaml"
PROMETHEUS_RULE_FILE = "kubernetes/prometheusrule.yaml"  # the same rules for the Operator
GRAFANA_DASHBOARDS_DIR = "/var/lib/grafana/dashboards/deepfake-monitor"  # in the container
PROMETHEUS_URL = "http://prometheus:9090"  # the compose stack's service name

__all__ = ["MixinConfig", "check_files", "load_mixin_config", "render_all", "write_files"]


def _provisioning() -> dict[str, str]:
    datasource = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "type": "prometheus",
                "uid": "prometheus",
                "access": "proxy",
                "url": PROMETHEUS_URL,
                "isDefault": True,
            }
        ],
    }
    provider = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "deepfake-monitor",
                "folder": "deepfake-monitor",
                "type": "file",
                "allowUiUpdates": False,
                "options": {"path": GRAFANA_DASHBOARDS_DIR},
            }
        ],
    }
    return {
        DATASOURCE_FILE: GENERATED_BY + dump(datasource),
        DASHBOARD_PROVIDER_FILE: GENERATED_BY + dump(provider),
    }


def _prometheus_rule(cfg: MixinConfig) -> str:
    resource = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "deepfake-monitor",
            "labels": {"app.kubernetes.io/name": "deepfake-monitor", "role": "alert-rules"},
        },
        "spec": {"groups": rule_groups(cfg)},
    }
    return GENERATED_BY + dump(resource)


def render_all(cfg: MixinConfig) -> dict[str, str]:
    """Relative path -> file text, for every file of the mixin."""
    return {
        RULES_FILE: render_rules(cfg),
        PROMETHEUS_RULE_FILE: _prometheus_rule(cfg),
        ALERTMANAGER_FILE: render_alertmanager(cfg),
        DASHBOARD_FILE: render_dashboard(cfg),
        **_provisioning(),
    }


def write_files(out: Path, cfg: MixinConfig) -> list[Path]:
    written = []
    for rel, text in render_all(cfg).items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def check_files(out: Path, cfg: MixinConfig) -> list[str]:
    """One line per file under `out` that is missing, malformed or differs from what cfg
    renders, naming the file and the reason."""
    problems = []
    for rel, text in render_all(cfg).items():
        path = out / rel
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        found = path.read_text()
        if found == text:
            continue
        problems.append(f"{path}: {_difference(path, found, text)}")
    return problems


def _difference(path: Path, found: str, want: str) -> str:
    try:
        if path.suffix == ".json":
            json.loads(found)
        else:
            yaml.safe_load(found)
    except (ValueError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        return f"not valid {kind} ({' '.join(str(exc).split())})"
    lines_found, lines_want = found.splitlines(), want.splitlines()
    for n, (a, b) in enumerate(zip(lines_found, lines_want, strict=False), start=1):
        if a != b:
            return f"line {n} differs from the generated file: {a.strip()[:80]!r}"
    return "differs from the generated file in length"
