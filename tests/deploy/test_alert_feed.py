"""The alert feed end to end, with real parts: the monitor scores a fake camera (a real RTSP
server) and a real one; a real Prometheus loads the mixin's rules and scrapes it; a real
Alertmanager routes the alerts to a webhook receiver. The deepfake alert goes pending, then
firing, for the fake stream only, and reaches the receiver with its stream and modality;
every dashboard query returns series for the test streams; killing the fake camera fires
the stream-down alert, which inhibits that stream's deepfake alert.

The rules are the shipped expressions rendered with shorter waits (`for:`, group waits),
so the test takes seconds instead of minutes; promtool tests the shipped waits.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.demo.cameras import gi_python
from monitor.live.config import MonitorConfig
from monitor.live.service import Service
from monitor.mixin import DASHBOARD_FILE, load_mixin_config, render_all
from monitor.mixin.dashboard import dashboard_queries
from tests.support import REPO_ROOT
from tests.support.alert_stack import (
    AlertStack,
    MonitorThread,
    Receiver,
    missing_binaries,
    wait_for,
)
from tests.support.live_media import FAKE, REAL, toy_model, write_clip
from tests.support.rtsp import RtspServer, free_port

_SKIP = missing_binaries() or gi_python()[1] or None
pytestmark = [pytest.mark.skipif(_SKIP is not None, reason=_SKIP or ""), pytest.mark.slow]

TEST_STREAMS = ("fake", "real")
FAST = {  # the shipped rules with short waits (the expressions are unchanged)
    "deepfake_for": "2s",
    "deepfake_keep_firing_for": "1m",
    "stream_down_for": "3s",
    "group_wait_critical": "1s",
    "group_wait": "1s",
    "group_interval": "1s",
}


@pytest.fixture
def camera(tmp_path: Path) -> Iterator[RtspServer]:
    server = RtspServer(write_clip(tmp_path / "fake.mp4", seconds=60.0, **FAKE), free_port())
    server.start()
    yield server
    server.stop()


def test_a_fake_stream_alerts_through_prometheus_and_alertmanager(
    camera: RtspServer, tmp_path: Path
) -> None:
    real = write_clip(tmp_path / "real.mp4", seconds=8.0, **REAL)
    port = free_port()
    cfg = MonitorConfig.model_validate(
        {
            "model": str(toy_model(tmp_path / "model")),
            "backend": "onnxruntime",
            "server": {"host": "127.0.0.1", "port": port},
            "sources": {
                "open_timeout_s": 3,
                "read_timeout_s": 2,
                "stall_timeout_s": 2,
                "backoff_initial_s": 0.5,
                "backoff_max_s": 1.0,
            },
            "webrtc": {"enabled": False},
            "streams": [
                {"id": "fake", "url": camera.url},
                {"id": "real", "url": str(real), "loop": True},
            ],
        }
    )
    receiver = Receiver()
    mixin = load_mixin_config(REPO_ROOT / "deploy" / "monitoring" / "mixin.yaml")
    mixin = mixin.model_copy(update={**FAST, "webhook_url": receiver.url})
    stack = AlertStack(tmp_path / "stack", mixin, monitor_port=port)
    stack.workdir.mkdir()
    service = Service(cfg)
    seen_states: dict[tuple[str, str], set[str]] = {}

    def poll_alerts() -> list[dict[str, Any]]:
        alerts = stack.prometheus_alerts()
        for a in alerts:
            key = (a["labels"]["alertname"], a["labels"].get("stream", ""))
            seen_states.setdefault(key, set()).add(a["state"])
        return alerts

    with receiver.running(), MonitorThread(service) as monitor, stack.running():
        t_first = wait_for(
            "the fake stream's first window", lambda: monitor.first_window_at("fake"), 60, 0.05
        )
        firing = wait_for(
            "DeepfakeDetected firing",
            lambda: [
                a
                for a in poll_alerts()
                if a["labels"]["alertname"] == "DeepfakeDetected" and a["state"] == "firing"
            ],
            90,
        )
        delivery = wait_for(
            "the webhook delivery",
            lambda: receiver.first("DeepfakeDetected", stream="fake"),
            30,
        )
        time_to_alert = delivery.at - t_first
        # every dashboard query, against this Prometheus, returns the test streams
        dashboard = render_all(mixin)[DASHBOARD_FILE]
        broken = []
        for title, expr in dashboard_queries(json.loads(dashboard)):
            q = expr.replace("$stream", "|".join(TEST_STREAMS)).replace("$__rate_interval", "10s")
            result = stack.query(q)
            streams = {r["metric"].get("stream") for r in result}
            if not result or ("$stream" in expr and not streams & set(TEST_STREAMS)):
                broken.append(f"{title}: {expr}")
        # the fake camera goes away: stream down, and its deepfake alert is inhibited
        camera.stop()
        down = wait_for(
            "DeepfakeStreamDown at the receiver",
            lambda: receiver.first("DeepfakeStreamDown", stream="fake"),
            60,
        )

        def inhibited() -> list[dict[str, Any]]:
            poll_alerts()
            return [
                a
                for a in stack.alertmanager_alerts()
                if a["labels"]["alertname"] == "DeepfakeDetected"
                and a["labels"].get("stream") == "fake"
                and a["status"]["state"] == "suppressed"
                and a["status"]["inhibitedBy"]
            ]

        suppressed = wait_for("the deepfake alert inhibited", inhibited, 30)

    labels = firing[0]["labels"]
    assert {a["labels"]["stream"] for a in firing} == {"fake"}
    assert labels["modality"] in ("voice", "voice_face") and labels["severity"] == "critical"
    assert float(firing[0]["value"]) > 0.8
    assert "pending" in seen_states[("DeepfakeDetected", "fake")]  # for: was honoured
    assert not any(  # the real camera never raised a verdict alert
        name in ("DeepfakeDetected", "DeepfakeSuspicious") and stream == "real"
        for name, stream in seen_states
    )
    sent = delivery.alerts("DeepfakeDetected")[0]
    assert delivery.path == "/critical" and sent["labels"]["stream"] == "fake"
    assert sent["labels"]["modality"] == labels["modality"]
    assert "var-stream=fake" in sent["annotations"]["dashboard"]
    assert sent["annotations"]["description"].startswith("The monitor holds stream fake in ALERT")
    assert down.path == "/warning"
    assert suppressed[0]["labels"]["modality"] == labels["modality"]
    assert broken == [], "dashboard panels whose query returns no test stream:\n" + "\n".join(
        broken
    )
    print(f"first window -> webhook: {time_to_alert:.1f} s")
    assert time_to_alert < 30
