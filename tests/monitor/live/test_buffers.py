"""Ring buffers and the live windower, fed directly (no decoder): bounds, gaps, timing."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest

from monitor.contract import InputContract
from monitor.live.buffers import AudioRing, FrameSampler, StreamBuffers
from monitor.live.crops import CropStage
from monitor.live.windowing import RawWindow, Window, Windower

SR = 16_000


def ramp(t0: float, seconds: float) -> np.ndarray:
    """Samples whose value is their own stream time, to check placement exactly."""
    n = round(seconds * SR)
    return (t0 + np.arange(n) / SR).astype(np.float32)


def test_audio_ring_places_samples_on_the_stream_clock() -> None:
    ring = AudioRing(seconds=4.0)
    for k in range(10):
        ring.push(ramp(k * 0.1, 0.1), k * 0.1)
    assert ring.end_t == pytest.approx(1.0)
    x, cov = ring.read(0.5, SR // 4)
    assert cov == 1.0
    np.testing.assert_allclose(x, ramp(0.5, 0.25), atol=1e-6)


def test_audio_ring_fills_gaps_with_silence_and_trims_overlaps() -> None:
    ring = AudioRing(seconds=4.0)
    ring.push(ramp(0.0, 0.5), 0.0)
    ring.push(ramp(1.0, 0.5), 1.0)  # 0.5 s missing
    assert ring.gap_samples == SR // 2
    x, _ = ring.read(0.5, SR // 2)
    assert not x.any()
    ring.push(ramp(1.25, 0.5), 1.25)  # overlaps the last 0.25 s: trimmed, not duplicated
    assert ring.end_t == pytest.approx(1.75)
    x, _ = ring.read(1.0, round(0.75 * SR))
    np.testing.assert_allclose(x, ramp(1.0, 0.75), atol=1e-6)


def test_audio_ring_is_bounded_and_counts_unread_overwrites() -> None:
    ring = AudioRing(seconds=1.0)
    ring.release_before(0.0)
    for k in range(30):  # 3 s into a 1 s ring, nobody reading
        ring.push(ramp(k * 0.1, 0.1), k * 0.1)
    assert ring._buf.shape == (SR,)
    assert ring.dropped_samples == 2 * SR
    x, cov = ring.read(0.0, SR)  # gone: zeros, no coverage
    assert cov == 0.0 and not x.any()
    # samples already released (read by a window) are not "dropped"
    ring2 = AudioRing(seconds=1.0)
    for k in range(30):
        ring2.push(ramp(k * 0.1, 0.1), k * 0.1)
        ring2.release_before(k * 0.1)
    assert ring2.dropped_samples == 0


def test_frame_sampler_keeps_only_the_nearest_frames_and_is_bounded() -> None:
    s = FrameSampler(max_frames=4)
    s.want([0.25, 0.75])
    for i in range(10):  # 10 fps
        s.push(f"f{i}", i / 10)
    got = s.take([0.25, 0.75])
    assert [g.frame for g in got if g] == ["f2", "f7"]  # 0.2 is nearer 0.25 than 0.3
    assert s.received == 10 and s.dropped == 0
    s.want([1.0 + i for i in range(8)])  # future times, resolved as frames arrive
    for i in range(10, 100):
        s.push(f"f{i}", i / 10)
    assert len(s._resolved) <= 4 and s.dropped > 0  # bounded, and the overflow counted
    s.release_before(100.0)
    assert not s._resolved


def collect_windows(
    contract: InputContract,
    pushes: list[tuple[str, float, float]],
    *,
    declare: tuple[bool, bool] | None,
) -> list[RawWindow]:
    """Push ("a"/"v", t, seconds) items through StreamBuffers + Windower."""
    b = StreamBuffers("s1", audio_seconds=6.0)
    out: list[RawWindow] = []
    Windower(b, contract, out.append)
    if declare is not None:
        b.declare_tracks(*declare)
    for kind, t, secs in pushes:
        if kind == "a":
            b.push_audio(ramp(t, secs), t)
        else:
            b.push_video(np.full((8, 8, 3), int(t * 10) % 256, np.uint8), t)
    return out


def av_pushes(seconds: float, fps: int = 10, audio: bool = True, video: bool = True) -> list:
    items = []
    if video:
        items += [("v", i / fps, 0.0) for i in range(round(seconds * fps))]
    if audio:
        items += [("a", k * 0.064, 0.064) for k in range(round(seconds / 0.064))]
    return sorted(items, key=lambda x: x[1])


def test_windower_emits_every_hop_with_the_k_nearest_frames() -> None:
    c = InputContract()  # 2 s windows, 1 s hop, K = 4
    wins = collect_windows(c, av_pushes(5.2), declare=(True, True))
    assert [w.start_s for w in wins] == [0.0, 1.0, 2.0, 3.0]
    w = wins[1]
    assert w.audio.shape == (c.window_samples,) and w.audio_coverage == 1.0
    np.testing.assert_allclose(w.audio, ramp(1.0, 2.0), atol=1e-5)
    # frame times 1.25, 1.75, 2.25, 2.75 -> frames at 1.2 (or 1.3), 1.7/1.8, 2.2/2.3, 2.7/2.8
    assert all(
        abs(f.t - target) <= 0.05 + 1e-9
        for f, target in zip(w.frames, (1.25, 1.75, 2.25, 2.75), strict=True)
        if f
    )
    assert w.has_audio and w.has_video


def test_windower_does_not_wait_for_a_declared_missing_track() -> None:
    c = InputContract()
    # video only: a window is complete once its last frame time (end - 0.25 s) is covered
    wins = collect_windows(c, av_pushes(4.05, audio=False), declare=(False, True))
    assert [w.start_s for w in wins] == [0.0, 1.0, 2.0]
    assert not wins[0].has_audio and not wins[0].audio.any()
    wins = collect_windows(c, av_pushes(4.05, video=False), declare=(True, False))
    assert [w.start_s for w in wins] == [0.0, 1.0, 2.0]
    assert wins[0].frames == (None,) * 4 and not wins[0].has_video


def test_windower_undeclared_missing_track_costs_at_most_the_skew() -> None:
    c = InputContract()
    wins = collect_windows(c, av_pushes(4.05, audio=False), declare=None)
    # without a declaration a window waits for the missing audio until video is 1 s past
    # its end: video reaches 3.9 s, so only the window ending at 2 s is out
    assert [w.start_s for w in wins] == [0.0]


def test_windower_skips_ahead_after_a_long_gap_and_restarts_on_discontinuity() -> None:
    c = InputContract()
    b = StreamBuffers("s1", audio_seconds=6.0)
    out: list[RawWindow] = []
    win = Windower(b, c, out.append)
    b.declare_tracks(True, False)
    b.push_audio(ramp(0.0, 2.5), 0.0)
    assert len(out) == 1
    b.push_audio(ramp(30.0, 2.5), 30.0)  # 27 s of nothing, then media again
    assert win.windows_skipped > 20
    assert out[-1].end_s <= 32.5 and out[-1].start_s > 20.0
    b.discontinuity()  # a reconnect: windows start again from the new media
    b.push_audio(ramp(40.0, 2.2), 40.0)
    assert out[-1].start_s == pytest.approx(40.0) and out[-1].index == 0


def test_windower_offset_shortens_the_second_hop_only_and_loses_no_media() -> None:
    c = InputContract()  # 2 s windows, 1 s hop, K = 4
    b = StreamBuffers("s1", audio_seconds=6.0)
    out: list[RawWindow] = []
    Windower(b, c, out.append, offset_s=0.25)
    b.declare_tracks(True, True)
    for kind, t, secs in av_pushes(6.2):
        if kind == "a":
            b.push_audio(ramp(t, secs), t)
        else:
            b.push_video(np.full((8, 8, 3), int(t * 10) % 256, np.uint8), t)
    # the first window starts at the first media; later ones 0.25 s after the plain grid
    assert [w.start_s for w in out] == pytest.approx([0.0, 1.25, 2.25, 3.25])
    np.testing.assert_allclose(out[1].audio, ramp(1.25, 2.0), atol=1e-5)
    # the frames wanted for the shifted windows were kept: each within half a frame
    want = (1.5, 2.0, 2.5, 3.0)  # frame times of the window starting at 1.25 s
    assert all(abs(f.t - t) <= 0.05 + 1e-9 for f, t in zip(out[1].frames, want, strict=True))
    with pytest.raises(ValueError, match="offset_s"):  # past the overlap: media skipped
        Windower(StreamBuffers("s2"), c, out.append, offset_s=1.01)


class _Cropper:
    """Centre square resize + 'found' when the frame is not black."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.calls = 0

    def crop(self, rgb: np.ndarray) -> SimpleNamespace:
        self.calls += 1
        img = np.resize(rgb, (self.size, self.size, 3)).astype(np.uint8)
        return SimpleNamespace(image=img, found=bool(rgb.mean() > 10))


def test_crop_stage_converts_crops_once_per_time_and_drops_oldest() -> None:
    c = InputContract(crop_size=32)
    windows: list[Window] = []

    async def main() -> CropStage:
        cropper = _Cropper(32)
        with ThreadPoolExecutor(1) as pool:
            stage = CropStage("s1", c, cropper, pool, windows.append, max_waiting=2)
            raws = collect_windows(c, av_pushes(6.2), declare=(True, True))
            for raw in raws:  # 5 windows at once into a queue of 2: 3 dropped
                stage.put(raw)
            task = asyncio.create_task(stage.run())
            while not stage.idle:
                await asyncio.sleep(0.01)
            task.cancel()
        stage.cropper_calls = cropper.calls  # type: ignore[attr-defined]
        return stage

    stage = asyncio.run(main())
    assert stage.dropped == 3 and [w.start_s for w in windows] == [3.0, 4.0]
    w = windows[0]
    assert w.faces.shape == (4, 32, 32, 3) and w.faces.dtype == np.uint8
    assert w.face_found.tolist() == [True] * 4 and w.face_fraction == 1.0
    assert w.audio_rms > 1.0  # the ramp's values are stream seconds (3..5)
    # windows 3 and 4 share the frame times 4.25 and 4.75: cropped once each
    assert stage.cropper_calls == 6  # type: ignore[attr-defined]
