"""The demo's looped camera feeds keep the voice on the mouth from copy to copy."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from monitor.demo.run import loop_clip
from train.synth.encode import AUDIO_RATE, write_mp4


def decoded(path: Path) -> tuple[float, list[float]]:
    """(seconds of decoded audio, counted in samples; times of the video frames)."""
    with av.open(str(path)) as c:
        samples, rate = 0, 1
        for f in c.decode(audio=0):
            samples, rate = samples + f.samples, f.sample_rate
    with av.open(str(path)) as c:
        times = [float(f.time) for f in c.decode(video=0) if f.time is not None]
    return samples / rate, times


def test_loop_clip_keeps_audio_and_video_together(tmp_path: Path) -> None:
    # a clip as the synthetic generator encodes it: 127 frames at 30 fps and 4.25 s of
    # AAC sound (the demo's real camera clip has these lengths)
    src = tmp_path / "src.mp4"
    rng = np.random.default_rng(0)
    frames = (np.full((48, 64, 3), 7 * i % 250, np.uint8) for i in range(127))
    sound = (0.1 * rng.standard_normal((2, round(4.25 * AUDIO_RATE)))).astype(np.float32)
    write_mp4(src, frames, sound, fps=30, width=64, height=48, crf=23, audio_bitrate=96_000)
    _, times = decoded(src)
    span = len(times) * (times[1] - times[0])
    repeats = 8
    audio_s, looped = decoded(loop_clip(src, tmp_path / "loop.mp4", repeats=repeats))
    # every copy is as long in sound as in pictures: the sound a sample-counting
    # reader hears keeps pace with the frame times (AAC priming and padding once, not
    # once per copy, which would drift the voice off the mouth copy after copy)
    assert audio_s == pytest.approx(repeats * span, abs=0.03)
    assert len(looped) == repeats * len(times) and looped == sorted(looped)
    for copy in range(repeats):
        first = looped[copy * len(times)]
        assert first == pytest.approx(times[0] + copy * span, abs=1e-3)
