"""An example Alertmanager configuration for the mixin's alerts.

Routes by severity to webhook receivers, groups by stream, and inhibits a stream's
deepfake alerts while the stream is down (a dead stream's last verdict is not news) and
its SUSPICIOUS warning while it is in ALERT. Operators merge the route and the inhibit
rules into their own configuration.
"""

from __future__ import annotations

from typing import Any

from monitor.mixin.rules import GENERATED_BY, dump
from monitor.mixin.settings import MixinConfig

SEVERITIES = ("critical", "warning", "info")
VERDICT_ALERTS = ("DeepfakeDetected", "DeepfakeSuspicious")


def alertmanager_config(cfg: MixinConfig) -> dict[str, Any]:
    base = cfg.webhook_url.rstrip("/")
    routes = []
    for severity in SEVERITIES:
        route: dict[str, Any] = {
            "receiver": f"deepfake-{severity}",
            "matchers": [f'severity="{severity}"'],
        }
        if severity == "critical":
            route["group_wait"] = cfg.group_wait_critical
        routes.append(route)
    return {
        "route": {
            "receiver": "deepfake-warning",
            "group_by": ["stream"],
            "group_wait": cfg.group_wait,
            "group_interval": cfg.group_interval,
            "repeat_interval": cfg.repeat_interval,
            "routes": routes,
        },
        "receivers": [
            {
                "name": f"deepfake-{severity}",
                "webhook_configs": [{"url": f"{base}/{severity}", "send_resolved": True}],
            }
            for severity in SEVERITIES
        ],
        "inhibit_rules": [
            {
                "source_matchers": ['alertname="DeepfakeStreamDown"'],
                "target_matchers": [f'alertname=~"{"|".join(VERDICT_ALERTS)}"'],
                "equal": ["instance", "stream"],
            },
            {
                "source_matchers": ['alertname="DeepfakeDetected"'],
                "target_matchers": ['alertname="DeepfakeSuspicious"'],
                "equal": ["instance", "stream"],
            },
            {
                "source_matchers": ['alertname="DeepfakeMonitorDown"'],
                "target_matchers": ['severity=~"warning|info"'],
                "equal": ["instance"],
            },
        ],
    }


def render_alertmanager(cfg: MixinConfig) -> str:
    note = (
        "# Example: route by severity to webhooks, group by stream, inhibit a down stream's\n"
        "# deepfake alerts. Merge the route, receivers and inhibit_rules into your own file.\n"
    )
    return GENERATED_BY + note + dump(alertmanager_config(cfg))
