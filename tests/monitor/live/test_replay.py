"""`replay`: a recorded call through the live pipeline, every window scored, a timeline
CSV and plot per file; the live service writes the same CSV per stream when configured."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import numpy as np
import pytest

from engines.toy import toy_scores
from monitor.cli import main
from monitor.contract import InputContract
from monitor.live.config import MonitorConfig
from monitor.live.service import Service
from monitor.live.timeline import COLUMNS, read_timeline
from monitor.media.clip import extract_windows
from tests.support.live_media import FAKE, REAL, toy_model, write_clip

CLIP_S = 8.0


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("calls")
    return {
        "fake": write_clip(d / "fake.mp4", seconds=CLIP_S, **FAKE),
        "real": write_clip(d / "real.mp4", seconds=CLIP_S, **REAL),
        "model": toy_model(d / "model"),
    }


def test_replay_scores_every_window_and_writes_a_timeline_per_call(
    calls: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    missing = tmp_path / "gone.mp4"
    rc = main(
        [
            "replay",
            str(calls["fake"]),
            str(calls["real"]),
            str(missing),
            "--model",
            str(calls["model"]),
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 1  # one file could not be replayed; the others were
    assert f"{missing}: error: " in printed and "not found" in printed
    assert not (out / "gone").exists()  # nothing written for it
    fake, real = (read_timeline(out / n / "timeline.csv") for n in ("fake", "real"))
    with (out / "fake" / "timeline.csv").open() as fh:
        assert tuple(next(csv.reader(fh))) == COLUMNS
    # every window of the clip, none dropped: 2 s windows every 1 s over 8 s
    assert [r["stream_time"] for r in fake] == [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    # the windows the offline path cuts, scored alike (same plan, audio and crops)
    cw = extract_windows(calls["fake"], InputContract())
    want = toy_scores(cw.audio, cw.faces)
    np.testing.assert_allclose([r["fused_raw"] for r in fake], want[0], atol=1e-3)
    np.testing.assert_allclose([r["sync_raw"] for r in fake], want[3], atol=1e-3)
    assert fake[0]["state"] == "STARTING" and fake[-1]["state"] == "ALERT"
    first_alert = next(r for r in fake if r["state"] == "ALERT")
    assert first_alert["raised_by"] in ("voice", "voice_face")
    assert {r["state"] for r in real} <= {"STARTING", "CLEAR"}
    assert all(r["face_fraction"] == 1.0 and r["speech"] == 1.0 for r in fake)
    assert "ALERT at 4.0 s" in printed and "never ALERT" in printed
    for name in ("fake", "real"):
        assert (out / name / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / name / "events.jsonl").is_file()


def test_the_live_service_writes_the_same_timeline_when_configured(
    calls: dict[str, Path], tmp_path: Path
) -> None:
    cfg = MonitorConfig.model_validate(
        {
            "model": str(calls["model"]),
            "backend": "onnxruntime",
            "webrtc": {"enabled": False},
            "timeline": {"dir": str(tmp_path / "timelines")},
            "streams": [{"id": "cam", "url": str(calls["fake"]), "realtime": False}],
        }
    )
    service = Service(cfg, serve_http=False)

    def done() -> bool:
        p = service.pipeline
        return p is not None and p.sources_ended() and p.idle()

    asyncio.run(service.run(install_signals=False, until=done))
    rows = read_timeline(tmp_path / "timelines" / "cam.csv")
    assert len(rows) >= 5 and rows[-1]["state"] == "ALERT"
    assert all(r["fused"] is not None and r["sync"] is not None for r in rows)
