"""Settings of the monitoring mixin: selectors, alert timings and thresholds, links.

One pydantic model, loaded from YAML (`deploy/monitoring/mixin.yaml` is the shipped one).
Every key is checked: an unknown key, a malformed Prometheus duration or a bad label
selector is refused with the key's name, so a typo never ships a silent rule.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from monitor.errors import ConfigError

DURATION_RE = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")  # Prometheus duration syntax
MATCHER_RE = re.compile(r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*')


def _duration(value: str) -> str:
    if not DURATION_RE.match(value):
        raise ValueError(f"{value!r} is not a Prometheus duration such as 30s, 5m or 1h30m")
    return value


def _selector(value: str) -> str:
    parts = [p for p in _split_matchers(value) if p.strip()]
    for part in parts:
        if not MATCHER_RE.fullmatch(part):
            raise ValueError(f'{part.strip()!r} is not a label matcher such as job="x"')
    return ",".join(p.strip() for p in parts)


def _split_matchers(value: str) -> list[str]:
    """Split on the commas outside quoted values."""
    parts, cur, quoted, escaped = [], "", False, False
    for ch in value:
        if ch == "," and not quoted:
            parts.append(cur)
            cur = ""
            continue
        cur += ch
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
    parts.append(cur)
    return parts


Duration = Annotated[str, AfterValidator(_duration)]
Selector = Annotated[str, AfterValidator(_selector)]


class MixinConfig(BaseModel):
    """What an operator tunes; `deepfake-monitor mixin` renders rules, routes and dashboard."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    selector: Selector = Field(
        'job="deepfake-monitor"',
        description='label matchers every rule and panel adds, e.g. job="deepfake-monitor"',
    )
    grafana_url: str = Field(
        "http://localhost:3000", description="Grafana base URL for the alerts' dashboard links"
    )
    dashboard_uid: str = Field(
        "deepfake-monitor", pattern=r"^[A-Za-z0-9_-]{1,40}$", description="dashboard uid"
    )
    webhook_url: str = Field(
        "http://127.0.0.1:9099/alerts",
        description="example Alertmanager receiver; /critical, /warning, /info are appended",
    )
    # -- the deepfake verdicts (the monitor's own state machine decides; these confirm) --
    deepfake_for: Duration = Field(
        "10s", description="a stream's ALERT must be seen this long before the alert fires"
    )
    deepfake_keep_firing_for: Duration = Field(
        "2m", description="the alert keeps firing this long after ALERT ends (no flapping)"
    )
    suspicious_window: Duration = Field(
        "10m", description="window over which a stream's SUSPICIOUS share is measured"
    )
    suspicious_fraction: float = Field(
        0.8, gt=0.0, le=1.0, description="share of suspicious_window spent SUSPICIOUS to warn"
    )
    suspicious_for: Duration = Field(
        "5m", description="the SUSPICIOUS share must stay above the fraction this long"
    )
    suspicious_keep_firing_for: Duration = Field("5m", description="keep_firing_for, warning")
    # -- streams --
    stream_down_for: Duration = Field("1m", description="a stream DOWN this long alerts")
    no_frames_for: Duration = Field("2m", description="a source up without video frames")
    gate_for: Duration = Field("10m", description="NO_FACE / NO_AUDIO / SILENCE this long")
    # -- the monitor itself --
    latency_p99_seconds: float = Field(
        2.0, gt=0.0, description="window-to-score p99 above this is lagging"
    )
    latency_for: Duration = Field("5m", description="lagging this long alerts")
    drops_for: Duration = Field("5m", description="windows dropped in every 5 min this long")
    nothing_scored_for: Duration = Field("5m", description="streams present, none scored")
    backend_for: Duration = Field("5m", description="backend not ready this long")
    webhook_window: Duration = Field("10m", description="webhook failures within this window")
    target_down_for: Duration = Field("2m", description="Prometheus cannot scrape the monitor")
    # -- Alertmanager example --
    group_wait_critical: Duration = Field("5s", description="first notification, critical")
    group_wait: Duration = Field("30s", description="first notification, warning and info")
    group_interval: Duration = Field("1m", description="updates to a notified group")
    repeat_interval: Duration = Field("4h", description="re-send a still-firing group")


def load_mixin_config(path: str | Path | None) -> MixinConfig:
    """The shipped defaults when path is None; else the YAML file, every key checked."""
    if path is None:
        return MixinConfig()
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read mixin config {p}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a mixin config must be a mapping, got {type(data).__name__}")
    try:
        return MixinConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or '(top level)'}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"{p}: invalid mixin config: {problems}") from exc
