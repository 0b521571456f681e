"""Privacy by default: a run with default settings writes no media anywhere, only scores
and events. Opt-in evidence: on ALERT, the stream's last seconds are saved (audio and
video, remuxed from the camera's own packets), named in the event, pruned by count and
age, and never named after a URL's credentials."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from monitor.demo.cameras import gi_python
from monitor.live.config import MonitorConfig
from monitor.live.evidence import EvidenceSettings, evidence_name, prune
from monitor.live.service import Service
from monitor.media.decode import probe
from tests.support.live_media import FAKE, REAL, toy_model, write_clip
from tests.support.rtsp import RtspServer, free_port
from tests.support.webrtc_peers import wait_until

MEDIA_SUFFIXES = {".mp4", ".mkv", ".mov", ".webm", ".avi", ".ts", ".wav", ".aac", ".y4m",
                  ".h264", ".jpg", ".jpeg", ".png", ".npz", ".npy", ".part"}  # fmt: skip


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_a_default_run_writes_no_media(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    fake = write_clip(inputs / "fake.mp4", seconds=6.0, **FAKE)
    real = write_clip(inputs / "real.mp4", seconds=6.0, **REAL)
    model = toy_model(inputs / "model")
    work = tmp_path / "work"
    (work / "tmp").mkdir(parents=True)
    monkeypatch.chdir(work)  # a relative default path would land here
    monkeypatch.setenv("TMPDIR", str(work / "tmp"))  # and temporary files here
    before = files_under(tmp_path)
    cfg = MonitorConfig.model_validate(
        {
            "model": str(model),
            "backend": "onnxruntime",
            "server": {"port": 0},
            "webrtc": {"enabled": False},
            "events": {"path": str(work / "events.jsonl")},
            "streams": [
                {"id": "fake", "url": str(fake), "realtime": False},
                {"id": "real", "url": str(real), "realtime": False},
            ],
        }
    )
    assert cfg.evidence.enabled is False and cfg.timeline.dir is None
    service = Service(cfg)

    def done() -> bool:
        p = service.pipeline
        return p is not None and p.sources_ended() and p.idle()

    asyncio.run(service.run(install_signals=False, until=done))
    new = files_under(tmp_path) - before
    assert not [p for p in new if p.suffix.lower() in MEDIA_SUFFIXES]
    # outside the temporary folder only the events; in it, nothing bigger than a libraries'
    # session marker (onnxruntime writes its 51-byte .ses file there on import)
    assert {p for p in new if work / "tmp" not in p.parents} == {work / "events.jsonl"}
    assert all(p.stat().st_size < 1024 for p in new if work / "tmp" in p.parents)
    events = [json.loads(x) for x in (work / "events.jsonl").read_text().splitlines()]
    assert any(e["state"] == "ALERT" for e in events)
    assert all("evidence" not in e for e in events)


def test_prune_keeps_the_newest_files_within_count_and_age(tmp_path: Path) -> None:
    settings = EvidenceSettings(tmp_path, seconds=10, max_files=2, max_age_s=3600)
    now = time.time()
    made = []
    for i, age in enumerate((7200, 300, 200, 100)):  # one too old, then three recent
        p = tmp_path / evidence_name("cam1", now - age - i)
        p.write_bytes(b"x")
        os.utime(p, (now - age, now - age))
        made.append(p)
    other = tmp_path / "notes.txt"  # not ours: never touched
    other.write_text("keep")
    gone = prune(settings, now)
    assert set(gone) == {made[0], made[1]}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [made[2].name, made[3].name, "notes.txt"]
    )


@pytest.mark.slow
@pytest.mark.skipif(gi_python()[0] is None, reason=gi_python()[1] or "")
def test_evidence_on_alert_is_the_cameras_last_seconds(tmp_path: Path) -> None:
    camera = RtspServer(write_clip(tmp_path / "cam.mp4", seconds=40.0, **FAKE), free_port())
    camera.start()
    evidence_dir = tmp_path / "evidence"
    secret = "pa55word"
    cfg = MonitorConfig.model_validate(
        {
            "model": str(toy_model(tmp_path / "model")),
            "backend": "onnxruntime",
            "server": {"port": 0},
            "webrtc": {"enabled": False},
            "events": {"path": str(tmp_path / "events.jsonl")},
            "evidence": {"enabled": True, "dir": str(evidence_dir), "seconds": 4},
            "streams": [
                {"id": "door-cam", "url": f"rtsp://admin:{secret}@127.0.0.1:{camera.port}/live"}
            ],
        }
    )
    service = Service(cfg)
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        run = asyncio.create_task(service.run(install_signals=False))
        try:
            await wait_until(lambda: any(evidence_dir.glob("*.mp4")), 60, "an evidence file")
            seen["files"] = sorted(evidence_dir.iterdir())
        finally:
            service.stop()
            await run

    try:
        asyncio.run(scenario())
    finally:
        camera.stop()
    (clip,) = seen["files"]
    assert clip.name.startswith("door-cam-") and secret not in clip.name
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    alert = next(e for e in events if e["state"] == "ALERT")
    assert alert["evidence"] == clip.name
    info = probe(clip)
    assert info.has_audio and info.has_video
    assert 3.0 <= info.duration_s <= 4.0 + 4.0  # the asked seconds, from a keyframe
