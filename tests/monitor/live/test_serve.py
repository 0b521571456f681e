"""`deepfake-monitor serve` as a real subprocess: ready, /metrics, then SIGTERM -> clean exit
within the configured limit; a config without a token on a public address warns."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.live_media import FAKE, toy_model, write_clip

SHUTDOWN_LIMIT_S = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return 0, ""


@pytest.mark.slow
def test_serve_runs_and_stops_on_sigterm(tmp_path: Path) -> None:
    model = toy_model(tmp_path / "model")
    clip = write_clip(tmp_path / "loop.mp4", seconds=3.0, **FAKE)
    port = free_port()
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        f"model: {model}\n"
        "backend: onnxruntime\n"
        f"server: {{host: 127.0.0.1, port: {port}, token: test-token-123, "
        f"shutdown_timeout_s: {SHUTDOWN_LIMIT_S}}}\n"
        f"events: {{path: {tmp_path / 'events.jsonl'}}}\n"
        "webrtc: {enabled: false}\n"
        f"streams: [{{id: loop, url: '{clip}', loop: true}}]\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DEEPFAKE_MONITOR_TOKEN"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "-v", "serve", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and http_get(base + "/readyz")[0] != 200:
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.2)
        assert http_get(base + "/healthz")[0] == 200
        status, body = http_get(base + "/readyz")
        assert status == 200 and json.loads(body)["backend"] == "onnxruntime"
        # wait for scores to show in /metrics
        while time.monotonic() < deadline:
            metrics = http_get(base + "/metrics")[1]
            if 'deepfake_windows_scored_total{stream="loop"} 2.0' in metrics:
                break
            time.sleep(0.3)
        assert 'deepfake_stream_state{state="STARTING",stream="loop"}' in metrics
        assert http_get(base + "/streams")[0] == 401  # token configured, none given
        code, body = http_get(base + "/streams", {"Authorization": "Bearer test-token-123"})
        assert code == 200 and json.loads(body)["streams"][0]["stream_id"] == "loop"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=SHUTDOWN_LIMIT_S + 5)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.communicate()[1]
    assert rc == 0, err
    assert took < SHUTDOWN_LIMIT_S + 2  # interpreter exit adds a little
    assert "SIGTERM received, shutting down" in err and "shut down in" in err
    assert "test-token-123" not in err


def test_serve_warns_without_a_token_beyond_localhost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Startup fails on the missing model, after the HTTP server has started and warned."""
    import asyncio

    from monitor.errors import DeepfakeMonitorError
    from monitor.live.config import MonitorConfig
    from monitor.live.service import Service

    monkeypatch.delenv("DEEPFAKE_MONITOR_TOKEN", raising=False)
    cfg = MonitorConfig.model_validate(
        {
            "model": str(tmp_path / "missing.onnx"),
            "server": {"host": "0.0.0.0", "port": free_port()},
            "webrtc": {"enabled": False},
        }
    )
    service = Service(cfg)
    with pytest.raises(DeepfakeMonitorError, match="missing.onnx"):
        asyncio.run(service.run(install_signals=False))
    assert "without a bearer token" in caplog.text
    assert service.port is not None and not service.ready
