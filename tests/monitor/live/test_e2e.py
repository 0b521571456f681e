"""Trained detectors through the live monitor: a fake clip reaches ALERT, a real one stays
CLEAR.

- always: the tiny detector trained by the session fixture (tests/conftest.py) on
  tests/tiny_dataset, loaded from its checkpoint by the torch backend;
- the detector shipped with the package (monitor/models/default/) on the demo's camera
  clips (a real and a voice+face-swapped clip of a synthetic test split of seed 7, which
  the shipped model never saw), generated as `make demo` generates them."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from monitor.live.config import MonitorConfig
from monitor.live.service import Service
from monitor.live.state import ALERT, CLEAR

CLIP_SECONDS = 8.0  # 7 windows: enough to settle and hold a verdict
SEED = 7

pytestmark = pytest.mark.slow


def _run(cfg: MonitorConfig, limit_s: float = 120) -> dict[str, Any]:
    service = Service(cfg, serve_http=False)

    def done() -> bool:
        p = service.pipeline
        return p is not None and p.sources_ended() and p.idle()

    t0 = time.monotonic()
    asyncio.run(service.run(until=done, duration_s=limit_s, install_signals=False))
    assert time.monotonic() - t0 < limit_s, "the clips were not scored in time"
    return {s.stream_id: s for s in service.final_statuses}


def test_trained_tiny_detector_live(tiny_detector: dict[str, Path], tmp_path: Path) -> None:
    from monitor.demo.run import loop_clip
    from tests.support.tiny_dataset import write_clip

    feeds = {}
    for name, fake, seed in (("fake", True, 951), ("real", False, 952)):
        clip = write_clip(tmp_path / f"{name}-2s.mp4", fake, fake, seed=seed)
        feeds[name] = loop_clip(clip, tmp_path / f"{name}.mp4", repeats=5)  # 10 s camera feed
    cfg = MonitorConfig.model_validate(
        {
            "model": str(tiny_detector["checkpoint"]),
            "backend": "torch",
            "webrtc": {"enabled": False},
            # the tiny clips are textures, not faces: judge them on their scores
            "state": {"min_face_fraction": 0.0},
            "streams": [
                {"id": name, "url": str(path), "realtime": False} for name, path in feeds.items()
            ],
        }
    )
    st = _run(cfg)
    for s in st.values():
        # Fed faster than real time, a slow machine's crop stage drops the oldest windows
        # by design (backpressure); every window is either scored or counted as dropped.
        # How many get scored depends on the machine's load (7 of 19 on an idle 2-core CI
        # run with the other tests beside it); the states below need a handful.
        assert s.windows_scored + s.windows_dropped >= 15 and s.windows_scored >= 5, st
    assert st["fake"].state == ALERT, st["fake"]
    assert st["real"].state == CLEAR, st["real"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo's own camera pair (a real and a voice+face-swapped test clip), looped."""
    from monitor.demo.run import _step_data, loop_clip, pick_clips

    root = tmp_path_factory.mktemp("e2e")
    real, fake = pick_clips(_step_data(root, train=False))
    return {
        "fake": loop_clip(fake, root / "fake.mp4", repeats=10),
        "real": loop_clip(real, root / "real.mp4", repeats=10),
    }


def test_shipped_model_flags_the_demo_fake_and_clears_the_real(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    cfg = MonitorConfig.model_validate(
        {
            "model": "default",
            "backend": "onnxruntime",
            "webrtc": {"enabled": False},
            "events": {"path": str(events)},
            "streams": [{"id": name, "url": str(path)} for name, path in clips.items()],
        }
    )
    st = _run(cfg)
    assert st["fake"].windows_scored >= 6 and st["real"].windows_scored >= 6, st
    # The cameras loop forever in the demo; here the files end, and the last windows (the
    # clip's tail) may let the fake's smoothed score sink, so judge the states reached.
    states: dict[str, set[str]] = {"fake": set(), "real": set()}
    raised_by = set()
    for line in events.read_text().splitlines():
        e = json.loads(line)
        states[e["stream"]].add(e["state"])
        if e["state"] == ALERT:
            raised_by.add(e["raised_by"])
    assert ALERT in states["fake"], (states, st["fake"])
    # the ALERT names the modality that raised it (the demo's fake swaps voice and face)
    assert raised_by and raised_by <= {"voice", "face", "voice_face", "lip_sync"}, raised_by
    # the real camera stays CLEAR the whole run (it only starts and ends)
    assert states["real"] <= {CLEAR, "STARTING", "ENDED"}, states
