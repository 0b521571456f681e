"""Keyframe-anchored sampling and the decode side of offline scoring, on real H.264 files."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from monitor.contract import InputContract
from monitor.errors import CorruptMediaError, ZeroDurationError
from monitor.media.clip import extract_windows
from monitor.media.decode import sample_frames, sample_keyframes
from monitor.offline.extraction import ExtractJob, extract_job, windows_with_sampler
from tests.support.media_factory import index_frame, write_clip

FPS = 25
GOP = 10  # frames between keyframes: 0.4 s at 25 fps
CONTRACT = InputContract(window_seconds=1.0, hop_seconds=0.5, k_crops=2, crop_size=32)


def level(i: int) -> int:
    """Brightness media_factory gives frame i."""
    return (i * 7) % 250


def write_bframes_clip(path: Path, seconds: float, gop: int) -> Path:
    """H.264 with B-frames (decoder output delay) and a fixed GOP."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        vs.codec_context.gop_size = gop
        vs.options = {"preset": "medium", "bf": "3", "sc_threshold": "0"}
        for i in range(round(seconds * FPS)):
            frame = av.VideoFrame.from_ndarray(index_frame(i, 64, 48), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            for pkt in vs.encode(frame):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
    return path


@pytest.fixture(scope="module")
def gop_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("kf")
    return write_clip(d / "gop.mp4", seconds=4.0, fps=FPS, gop=GOP, size=(64, 48))


def test_keyframe_at_or_before_each_time(gop_clip: Path) -> None:
    times = [2.5, 0.0, 0.39, 0.41, 1.3, 3.99, 9.0]  # unsorted, one past the end
    frames = sample_keyframes(gop_clip, times)
    assert len(frames) == len(times)
    keyframe_s = GOP / FPS
    for t, f in zip(times, frames, strict=True):
        kf = min(int(t / keyframe_s), int(3.96 / keyframe_s))  # last keyframe at 3.6 s
        assert f.t == pytest.approx(kf * keyframe_s, abs=1e-6)
        assert abs(int(f.image[0, 0, 0]) - level(kf * GOP)) <= 3, t
    assert frames[1].image.shape == (48, 64, 3) and frames[1].image.dtype == np.uint8
    assert sample_keyframes(gop_clip, []) == []


def test_keyframes_with_b_frames_and_decoder_delay(tmp_path: Path) -> None:
    clip = write_bframes_clip(tmp_path / "b.mp4", seconds=4.0, gop=12)
    with av.open(str(clip)) as c:
        assert c.streams.video[0].codec_context.has_b_frames
    frames = sample_keyframes(clip, [0.5, 1.0, 2.0, 3.9])
    for f, kf in zip(frames, (12, 24, 48, 96), strict=True):
        assert f.t == pytest.approx(kf / FPS, abs=1e-6)
        assert abs(int(f.image[0, 0, 0]) - level(kf)) <= 3


def test_all_intra_video_keyframe_mode_equals_exact(tmp_path: Path) -> None:
    """With a keyframe on every frame, both samplers must give identical model inputs."""
    clip = write_clip(tmp_path / "intra.mp4", seconds=2.0, fps=10, gop=1, size=(48, 48))
    exact = sample_frames(clip, [0.25, 0.75, 1.55])
    key = sample_keyframes(clip, [0.25, 0.75, 1.55])
    for a, b in zip(exact, key, strict=True):
        assert a.t == b.t and np.array_equal(a.image, b.image)
    x = extract_job(ExtractJob(0, "intra.mp4", str(clip), CONTRACT, sampling="exact"))
    k = extract_job(ExtractJob(0, "intra.mp4", str(clip), CONTRACT, sampling="keyframe"))
    assert x.ok and k.ok and x.audio is not None and k.audio is not None
    assert np.array_equal(x.audio, k.audio) and np.array_equal(x.faces, k.faces)  # type: ignore[arg-type]


def test_sampler_composition_reproduces_extract_windows(gop_clip: Path) -> None:
    """The keyframe path shares extract_windows' steps: with the exact sampler it is equal."""
    cw = extract_windows(gop_clip, CONTRACT, max_windows=5)
    starts, audio, faces, found, has_a, has_v, dur = windows_with_sampler(
        str(gop_clip), CONTRACT, sample_frames, max_windows=5
    )
    assert [w.start_s for w in cw.windows] == starts.tolist()
    assert np.array_equal(cw.audio, audio) and np.array_equal(cw.faces, faces)
    assert np.array_equal(cw.face_found, found)
    assert (cw.has_audio, cw.has_video, cw.duration_s) == (has_a, has_v, dur)


def test_keyframe_mode_on_long_gop_crops_fewer_distinct_frames(gop_clip: Path) -> None:
    x = extract_job(ExtractJob(0, "g", str(gop_clip), CONTRACT, sampling="exact"))
    k = extract_job(ExtractJob(0, "g", str(gop_clip), CONTRACT, sampling="keyframe"))
    assert x.faces is not None and k.faces is not None
    assert x.n_windows == k.n_windows == 7
    assert np.array_equal(x.audio, k.audio)  # type: ignore[arg-type]
    distinct = {k.faces[i, j].tobytes() for i in range(7) for j in range(2)}
    assert len(distinct) <= 10  # 10 keyframes in 4 s; exact mode has 14 distinct times
    assert not np.array_equal(x.faces, k.faces)


def test_corrupt_and_missing_files_come_back_as_failures(tmp_path: Path, gop_clip: Path) -> None:
    data = gop_clip.read_bytes()
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises((CorruptMediaError, ZeroDurationError)):
        sample_keyframes(bad, [0.1, 3.5])
    for mode in ("exact", "keyframe"):
        r = extract_job(ExtractJob(0, "cut.mp4", str(bad), CONTRACT, sampling=mode))
        assert not r.ok and r.reason in ("corruptmedia", "zeroduration") and r.detail
        gone = extract_job(ExtractJob(1, "gone", str(tmp_path / "gone.mp4"), CONTRACT, mode))
        assert not gone.ok and gone.reason == "medianotfound"
