"""The monitoring mixin: the shipped files are the generator's output, Prometheus's and
Alertmanager's own tools accept them, and every alert has promtool unit tests."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from monitor.cli import main
from monitor.errors import ConfigError
from monitor.mixin import (
    ALERTMANAGER_FILE,
    DASHBOARD_FILE,
    RULES_FILE,
    check_files,
    load_mixin_config,
    render_all,
)
from monitor.mixin.dashboard import dashboard_queries
from monitor.mixin.rules import alerting_rules
from tests.support import REPO_ROOT

MONITORING = REPO_ROOT / "deploy" / "monitoring"
SETTINGS = MONITORING / "mixin.yaml"
RULE_TESTS = MONITORING / "prometheus" / "deepfake-monitor.rules.test.yaml"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (scripts/system-deps.sh installs it)")
    return path


def test_the_shipped_files_are_what_the_shipped_settings_render() -> None:
    assert check_files(MONITORING, load_mixin_config(SETTINGS)) == []
    assert main(["mixin", "--config", str(SETTINGS), "--out", str(MONITORING), "--check"]) == 0


def test_a_stale_or_malformed_file_is_named_with_its_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "monitoring"
    assert main(["mixin", "--out", str(out)]) == 0
    (out / DASHBOARD_FILE).write_text('{"panels": [')
    rules = out / RULES_FILE
    rules.write_text(rules.read_text().replace("for: 10s", "for: 20s"))
    (out / ALERTMANAGER_FILE).unlink()
    capsys.readouterr()
    assert main(["mixin", "--out", str(out), "--check"]) == 1
    err = capsys.readouterr().err
    assert f"{out / DASHBOARD_FILE}: not valid JSON" in err
    assert f"{rules}: line " in err and "for: 20s" in err
    assert f"{out / ALERTMANAGER_FILE}: missing" in err


def test_bad_settings_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "mixin.yaml"
    bad.write_text("deepfake_for: 10 seconds\nselector: job=deepfake\nalert_for: 1m\n")
    with pytest.raises(ConfigError) as exc:
        load_mixin_config(bad)
    msg = str(exc.value)
    assert "deepfake_for" in msg and "Prometheus duration" in msg
    assert "selector" in msg and "label matcher" in msg
    assert "alert_for" in msg  # unknown key


def test_settings_change_the_rendered_rules() -> None:
    cfg = load_mixin_config(None).model_copy(
        update={"selector": 'job="kyc",env="prod"', "deepfake_for": "30s"}
    )
    rules = yaml.safe_load(render_all(cfg)[RULES_FILE])
    detected = next(
        r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "DeepfakeDetected"
    )
    assert detected["for"] == "30s"
    assert 'deepfake_stream_state{job="kyc",env="prod",state="ALERT"}' in detected["expr"]


def test_promtool_accepts_the_rules_and_every_alert_has_unit_tests() -> None:
    promtool = _tool("promtool")
    check = subprocess.run(
        [promtool, "check", "rules", str(MONITORING / RULES_FILE)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    run = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and "SUCCESS" in run.stdout, run.stdout + run.stderr
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    checked: dict[str, set[bool]] = {}
    for case in tests:
        for check_ in case.get("alert_rule_test", []):
            checked.setdefault(check_["alertname"], set()).add(bool(check_["exp_alerts"]))
    for rule in alerting_rules(load_mixin_config(SETTINGS)):
        assert checked.get(rule.name) == {True, False}, f"{rule.name}: firing and silent cases"


def test_amtool_accepts_the_alertmanager_example() -> None:
    amtool = _tool("amtool")
    run = subprocess.run(
        [amtool, "check-config", str(MONITORING / ALERTMANAGER_FILE)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and "SUCCESS" in run.stdout, run.stdout + run.stderr
    am = yaml.safe_load((MONITORING / ALERTMANAGER_FILE).read_text())
    assert am["route"]["group_by"] == ["stream"]
    names = {r.name for r in alerting_rules(load_mixin_config(SETTINGS))}
    for rule in am["inhibit_rules"]:  # every alert an inhibit rule names exists
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            if matcher.startswith("alertname"):
                value = matcher.split("=", 1)[1].lstrip("~").strip('"')
                assert set(value.split("|")) <= names, matcher


def test_the_dashboard_is_grafana_json_with_a_query_on_every_panel() -> None:
    dashboard = json.loads((MONITORING / DASHBOARD_FILE).read_text())
    assert dashboard["uid"] == "deepfake-monitor" and dashboard["title"] == "deepfake-monitor"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["stream"]["query"].startswith("label_values(deepfake_stream_state")
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
        assert panel["datasource"]["uid"] == "${datasource}"
    titles = {p["title"] for p in dashboard["panels"]}
    assert {"Stream state", "Fused score", "Window-to-score latency"} <= titles
    queries = dashboard_queries(dashboard)
    assert any("ALERTS{" in q for _, q in queries)  # alert annotations
    assert all('job="deepfake-monitor"' in q for t, q in queries if not t.startswith("annot"))


def test_the_prometheus_rule_resource_holds_exactly_the_mixin_rules() -> None:
    from monitor.mixin import PROMETHEUS_RULE_FILE

    resource = yaml.safe_load((MONITORING / PROMETHEUS_RULE_FILE).read_text())
    rules = yaml.safe_load((MONITORING / RULES_FILE).read_text())
    assert resource["kind"] == "PrometheusRule"
    assert resource["spec"]["groups"] == rules["groups"]  # one source, two packagings
