"""A real RTSP camera (GStreamer's RTSP server, monitor/demo/rtsp_camera.py): the monitor
connects and scores; the server is killed and restarted, and the monitor reconnects by
itself. Credentials in the URL never reach logs, metrics or events."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.demo.cameras import gi_python
from monitor.live.config import MonitorConfig
from monitor.live.service import Service
from monitor.live.state import ALERT
from tests.support.live_media import FAKE, toy_model, write_clip
from tests.support.rtsp import RtspServer, free_port

SECRET = "s3cr3t-pw"


_SKIP = gi_python()[1] or None
pytestmark = [pytest.mark.skipif(_SKIP is not None, reason=_SKIP or ""), pytest.mark.slow]


@pytest.fixture
def camera(tmp_path: Path) -> Iterator[RtspServer]:
    clip = write_clip(tmp_path / "cam.mp4", seconds=16.0, **FAKE)
    server = RtspServer(clip, free_port())
    server.start()
    yield server
    server.stop()


def test_rtsp_camera_is_scored_and_reconnected_after_a_restart(
    camera: RtspServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    events = tmp_path / "events.jsonl"
    url = f"rtsp://admin:{SECRET}@127.0.0.1:{camera.port}/live"
    cfg = MonitorConfig.model_validate(
        {
            "model": str(toy_model(tmp_path / "model")),
            "backend": "onnxruntime",
            "server": {"port": 0},
            "sources": {
                "open_timeout_s": 5,
                "read_timeout_s": 2,
                "stall_timeout_s": 3,
                "backoff_initial_s": 0.3,
                "backoff_max_s": 1.0,
            },
            "events": {"path": str(events)},
            "webrtc": {"enabled": False},
            "streams": [{"id": "cam", "url": url}],
        }
    )
    service = Service(cfg)
    seen: dict[str, object] = {}

    async def main() -> None:
        run = asyncio.create_task(service.run(install_signals=False))

        async def wait_for(pred: object, timeout: float) -> bool:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if pred():  # type: ignore[operator]
                    return True
                await asyncio.sleep(0.1)
            return False

        assert await wait_for(lambda: service.ready, 30)
        assert service.pipeline is not None
        rt = service.pipeline.streams["cam"]
        assert await wait_for(lambda: rt.windows_scored >= 4, 30), "no windows from the camera"
        seen["state_before"] = rt.state.state
        seen["scored_before"] = rt.windows_scored
        assert rt.supervisor is not None
        camera.stop()  # the camera goes away
        assert await wait_for(lambda: rt.state.state == "DOWN", 20), "outage not noticed"
        seen["down_reason"] = rt.supervisor.last_error
        await asyncio.sleep(1.0)
        camera.start()  # ... and comes back on the same address
        scored_at_restart = rt.windows_scored
        assert await wait_for(lambda: rt.windows_scored >= scored_at_restart + 2, 40), (
            "no windows after the camera came back"
        )
        seen["reconnects"] = rt.supervisor.reconnects
        seen["metrics"] = service.metrics.exposition().decode()
        service.stop()
        await run

    asyncio.run(main())
    assert seen["state_before"] == ALERT  # the "fake" camera was flagged
    assert isinstance(seen["reconnects"], int) and seen["reconnects"] >= 1
    metrics = str(seen["metrics"])
    assert 'deepfake_source_reconnects_total{stream="cam"}' in metrics
    assert 'deepfake_windows_scored_total{stream="cam"}' in metrics
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    assert [e["state"] for e in lines][:3] == ["ALERT", "DOWN", "STARTING"]
    assert lines[0]["modality"] == "fused"  # video and audio both came through RTSP
    for text in (caplog.text, metrics, events.read_text(), str(seen["down_reason"])):
        assert SECRET not in text and "admin" not in text
    assert "rtsp://***@127.0.0.1" in caplog.text


@pytest.mark.parametrize(
    "creds",
    [
        "admin:p@ss word!@",  # "@" and a space in the password
        "",  # credentials as query parameters instead
    ],
)
def test_credentials_with_odd_characters_never_leave_the_process(
    camera: RtspServer, tmp_path: Path, creds: str
) -> None:
    """Through the CLI (its log filter included): logs, /metrics, /streams and events."""
    import subprocess
    import sys
    import urllib.request

    from tests.support.rtsp import free_port

    secrets = ["p@ss word!", "q5ecr3t-pw", "t0k3n-abc"]
    url = f"rtsp://{creds}127.0.0.1:{camera.port}/live?user=admin&pw=q5ecr3t-pw&token=t0k3n-abc"
    port = free_port()
    events = tmp_path / "events.jsonl"
    cmd = [
        sys.executable, "-m", "monitor.cli", "-vv", "watch", url,
        "--model", str(toy_model(tmp_path / "model")), "--metrics-port", str(port),
        "--events", str(events), "--duration", "12",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    answers = []
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        for path in ("/metrics", "/streams"):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                    answers.append(r.read().decode())
            except OSError:
                pass
        time.sleep(1.0)
    out, err = proc.communicate(timeout=60)
    assert answers and any("deepfake_" in a for a in answers)
    texts = [out, err, events.read_text() if events.exists() else "", *answers]
    for text in texts:
        for secret in secrets:
            assert secret not in text, (secret, text[:2000])
    assert "***" in err  # the URL was logged, masked
