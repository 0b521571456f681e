"""The demo's looped camera feeds keep the voice on the mouth from copy to copy."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from media_factory import write_clip

from monitor.demo import loop_clip


def stream_spans(path: Path) -> dict[str, tuple[float, float]]:
    """Per stream type: (first dts, end of the last packet) in seconds."""
    spans: dict[str, tuple[float, float]] = {}
    with av.open(str(path)) as c:
        for s in c.streams:
            c.seek(0)
            first, end = None, None
            for p in c.demux(s):
                if p.dts is None:
                    continue
                first = p.dts if first is None else first
                end = (
                    p.dts + (p.duration or 1)
                    if end is None
                    else max(end, p.dts + (p.duration or 1))
                )
            assert first is not None and end is not None and s.time_base is not None
            spans[s.type] = (float(first * s.time_base), float(end * s.time_base))
    return spans


def test_loop_clip_keeps_audio_and_video_together(tmp_path: Path) -> None:
    # 51 frames of 40 ms against 2.03 s of audio: the streams end 10 ms apart
    src = write_clip(tmp_path / "src.mp4", seconds=2.03, fps=25, audio_rate=44_100)
    one = stream_spans(src)
    (a0, a1), (v0, v1) = one["audio"], one["video"]
    span = max(a1 - a0, v1 - v0)
    drift = (a1 - a0) - (v1 - v0)  # in camera clips, AAC frames round the audio up
    assert abs(drift) > 0.005  # the clip would drift by this much per copy
    repeats = 8
    looped = stream_spans(loop_clip(src, tmp_path / "loop.mp4", repeats=repeats))
    (la0, la1), (lv0, lv1) = looped["audio"], looped["video"]
    assert la0 == pytest.approx(a0, abs=1e-3) and lv0 == pytest.approx(v0, abs=1e-3)
    # the last copy starts repeats - 1 spans after the first, audio and video alike,
    # so the streams end as far apart as in one copy (7 x the drift otherwise)
    assert la1 - lv1 == pytest.approx(a1 - v1, abs=2e-3)
    assert lv1 == pytest.approx(v1 + (repeats - 1) * span, abs=2e-3)
    # and the file decodes end to end, every frame in time order
    with av.open(str(tmp_path / "loop.mp4")) as c:
        times = [f.time for f in c.decode(video=0)]
    assert len(times) == repeats * 51 and times == sorted(times)
