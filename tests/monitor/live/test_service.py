"""The service end to end on real parts: files decoded by PyAV, real face crops, the toy
ONNX detector in onnxruntime, aiohttp endpoints; one stream stalls, one has no audio,
one no face, and the others keep being scored."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.live.config import MonitorConfig
from monitor.live.service import Service
from monitor.live.state import ALERT, CLEAR, DOWN, NO_AUDIO, NO_FACE
from tests.support.live_media import FAKE, REAL, toy_model, write_clip

CLIP_S = 5.0  # 3-4 windows per clip (2 s windows, 1 s hop, the stream's window offset)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("svc")
    return {
        "model": toy_model(d / "model"),
        "fake": write_clip(d / "fake.mp4", seconds=CLIP_S, **FAKE),
        "real": write_clip(d / "real.mp4", seconds=CLIP_S, **REAL),
        "mute": write_clip(d / "mute.mp4", seconds=CLIP_S, audio=False, gain=REAL["gain"]),
        "dark": write_clip(d / "dark.mp4", seconds=CLIP_S, black=True, tone_amp=0.05),
    }


class StallAfter:
    """A real file whose demuxer goes quiet after `n` packets (a camera that hangs), and
    stays quiet after every reconnect."""

    kind, live, realtime, loop = "rtsp", True, False, False

    def __init__(self, path: Path, n: int) -> None:
        self.path, self.n = path, n
        self.release = threading.Event()
        self.opens = 0

    def describe(self) -> str:
        return "rtsp://***@stalled-cam/live"

    def open(self) -> Any:
        import av

        container = av.open(str(self.path))
        outer = self
        limit = self.n if self.opens == 0 else 0
        self.opens += 1

        class Quiet:
            streams = container.streams

            def demux(self, streams: Any) -> Any:
                for i, pkt in enumerate(container.demux(streams)):
                    if i >= limit:
                        outer.release.wait()
                        return
                    yield pkt

            def close(self) -> None:
                container.close()

        return Quiet()


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as r:
        return r.status, await r.text()


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        if "{" in head:
            n, _, rest = head.partition("{")
            got = ",".join(sorted(rest.rstrip("}").split(",")))
        else:
            n, got = head, ""
        if n == name and got == want:
            return float(value)
    return None


def test_service_scores_streams_and_survives_bad_ones(
    media: dict[str, Path], tmp_path: Path
) -> None:
    events_path = tmp_path / "events.jsonl"
    cfg = MonitorConfig.model_validate(
        {
            "model": str(media["model"]),
            "backend": "onnxruntime",
            "server": {"host": "127.0.0.1", "port": 0},
            "sources": {"stall_timeout_s": 1.0, "backoff_initial_s": 0.2, "backoff_max_s": 0.5},
            "scorer": {"max_batch": 8, "max_delay_ms": 20},
            "events": {"path": str(events_path)},
            "webrtc": {"enabled": False},
            "streams": [
                {"id": name, "url": str(media[name])} for name in ("fake", "real", "mute", "dark")
            ],
        }
    )
    service = Service(cfg)
    stalled = StallAfter(media["real"], n=25)
    seen: dict[str, Any] = {}

    async def main() -> None:
        run = asyncio.create_task(service.run(install_signals=False))
        async with aiohttp.ClientSession() as http:
            while service.port is None:
                await asyncio.sleep(0.02)
            base = f"http://127.0.0.1:{service.port}"
            seen["health"] = await get(http, base + "/healthz")
            while not service.ready:
                await asyncio.sleep(0.05)
            seen["ready"] = await get(http, base + "/readyz")
            assert service.pipeline is not None
            service.pipeline.add_source("stalled", stalled)
            p = service.pipeline
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                files_done = all(p.streams[n].ended for n in ("fake", "real", "mute", "dark"))
                if files_done and p.idle() and p.streams["stalled"].state.state == DOWN:
                    break
                await asyncio.sleep(0.1)
            seen["states"] = {s.stream_id: s for s in p.statuses()}
            seen["slots"] = {sid: rt.slot for sid, rt in p.streams.items()}
            seen["metrics"] = (await get(http, base + "/metrics"))[1]
            seen["streams"] = json.loads((await get(http, base + "/streams"))[1])
            p.close_stream("real")
            seen["metrics_after"] = (await get(http, base + "/metrics"))[1]
            service.stop()
        await run
        stalled.release.set()

    asyncio.run(main())
    assert seen["health"][0] == 200 and seen["ready"][0] == 200
    assert json.loads(seen["ready"][1])["backend"] == "onnxruntime"
    st = seen["states"]
    assert st["fake"].state == ALERT and st["fake"].fused > 0.8
    assert st["real"].state == CLEAR and st["real"].fused < 0.4
    assert st["mute"].state == NO_AUDIO and st["mute"].audio is None
    assert st["dark"].state == NO_FACE and st["dark"].visual is None
    assert st["stalled"].state == DOWN
    for name in ("fake", "real", "mute", "dark"):
        # windows in a 5 s file: at 0, 1, 2, 3 s for the first stream; the others' later
        # windows shift by their window offset (windows.stagger), which can cost the last
        allowed = (4,) if seen["slots"][name] == 0 else (3, 4)
        assert st[name].windows_scored in allowed, name
        assert st[name].windows_dropped == 0, name
        assert st[name].latency_ms is not None and st[name].latency_ms < 2000

    m = seen["metrics"]
    assert metric(m, "deepfake_stream_state", stream="fake", state="ALERT") == 1.0
    assert metric(m, "deepfake_stream_state", stream="fake", state="CLEAR") == 0.0
    assert metric(m, "deepfake_score", stream="fake", head="fused") == pytest.approx(
        st["fake"].fused, abs=1e-6
    )
    assert metric(m, "deepfake_windows_scored_total", stream="real") == st["real"].windows_scored
    assert metric(m, "deepfake_windows_dropped_total", stream="real", stage="scorer") == 0.0
    assert (metric(m, "deepfake_source_stalls_total", stream="stalled") or 0) >= 1
    assert (metric(m, "deepfake_source_reconnects_total", stream="stalled") or 0) >= 1
    n_lat = metric(m, "deepfake_window_latency_seconds_count") or 0
    assert n_lat == sum(st[name].windows_scored for name in ("fake", "real", "mute", "dark"))
    # the latency split by stage: every scored window timed in each, and the stages add up
    stage_sum = 0.0
    for stage in ("crop", "batch_wait", "inference"):
        assert metric(m, "deepfake_window_stage_seconds_count", stage=stage) == n_lat, stage
        stage_sum += metric(m, "deepfake_window_stage_seconds_sum", stage=stage) or 0.0
    lat_sum = metric(m, "deepfake_window_latency_seconds_sum") or 0.0
    assert stage_sum == pytest.approx(lat_sum, rel=1e-6)
    assert metric(m, "deepfake_backend_ready") == 1.0
    assert metric(m, "deepfake_streams") == 5.0
    # which modality raised the fake's ALERT: the same in the metric and in the event
    raised = [e["raised_by"] for e in read_events(events_path) if e["state"] == ALERT]
    assert raised and raised[0] in ("voice", "voice_face")  # the toy model hears the voice
    modality = {
        mod: metric(m, "deepfake_verdict_modality", stream="fake", modality=mod)
        for mod in ("voice", "face", "voice_face", "lip_sync")
    }
    assert modality[raised[0]] == 1.0 and sum(v or 0 for v in modality.values()) == 1.0
    assert metric(m, "deepfake_verdict_modality", stream="real", modality="voice") == 0.0
    assert metric(m, "deepfake_state_threshold", head="fused", threshold="alert_on") == 0.8
    info = re.search(r"deepfake_build_info\{([^}]*)\} 1\.0", m)
    assert info is not None
    labels = dict(re.findall(r'(\w+)="([^"]*)"', info.group(1)))
    assert labels["backend"] == "onnxruntime"
    assert labels["model_sha256"] == hashlib.sha256(Path(media["model"]).read_bytes()).hexdigest()
    assert labels["contract"].startswith("v1 16000Hz 2s/1s K")
    # a removed stream's series are gone, the others stay
    after = seen["metrics_after"]
    assert 'stream="real"' not in after and 'stream="fake"' in after
    assert metric(after, "deepfake_streams") == 4.0
    assert {s["stream_id"] for s in seen["streams"]["streams"]} >= {"fake", "real", "stalled"}

    lines = read_events(events_path)
    # one verdict per stream once settled: no CLEAR before the fake's ALERT
    assert [(e["previous"], e["state"]) for e in lines if e["stream"] == "fake"] == [
        ("STARTING", ALERT)
    ]
    assert [(e["previous"], e["state"]) for e in lines if e["stream"] == "real"] == [
        ("STARTING", CLEAR)
    ]
    assert all(
        {"stream", "time", "state", "previous", "scores", "modality"} <= set(e) for e in lines
    )
    assert any(e["stream"] == "stalled" and e["state"] == DOWN for e in lines)
    assert service.shutdown_s is not None and service.shutdown_s < cfg.server.shutdown_timeout_s


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_watch_prints_plain_lines_and_writes_events(
    media: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from monitor.cli import main

    events = tmp_path / "ev.jsonl"
    rc = main(
        [
            "watch",
            str(media["fake"]),
            str(media["real"]),
            "--model",
            str(media["model"]),
            "--backend",
            "onnxruntime",
            "--fast",
            "--events",
            str(events),
            "--duration",
            "60",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    table = out.strip().splitlines()[-3:]
    assert table[0].split()[:3] == ["stream", "state", "fused"]
    rows = {r.split()[0]: r.split() for r in table[1:]}
    assert rows["fake"][1] == ALERT and rows["real"][1] == CLEAR
    assert rows["fake"][8] == "4"  # windows scored
    states = [json.loads(x)["state"] for x in events.read_text().splitlines()]
    assert ALERT in states and CLEAR in states


def test_watch_table_renders_aligned_columns() -> None:
    from monitor.commands.watch import render_table
    from monitor.live.sink import StreamStatus

    rows = [
        StreamStatus("lobby-cam", ALERT, 0.91, 0.95, None, 0.12, "voice", False, 12, 1, 25.0, 48.2),
        StreamStatus("x", "STARTING", None, None, None, None, None, False, 0, 0, 0.0, None),
    ]
    lines = render_table(rows).splitlines()
    assert lines[0].split() == [
        "stream",
        "state",
        "fused",
        "audio",
        "visual",
        "sync",
        "fps",
        "lat_ms",
        "scored",
        "dropped",
    ]
    assert lines[1].split() == [
        "lobby-cam",
        "ALERT",
        "0.910",
        "0.950",
        "-",
        "0.120",
        "25.0",
        "48",
        "12",
        "1",
    ]
    assert lines[2].split()[:3] == ["x", "STARTING", "-"]
    assert lines[1].index("ALERT") == lines[0].index("state") == lines[2].index("STARTING")
