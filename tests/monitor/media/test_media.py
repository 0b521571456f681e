"""Media I/O on real files written with PyAV: decoding, resampling, sampling, bad input."""

from __future__ import annotations

import gc
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from monitor.cli import main
from monitor.errors import (
    BadDimensionsError,
    CorruptMediaError,
    MediaNotFoundError,
    NoAudioStreamError,
    NotMediaError,
    NoVideoStreamError,
    ZeroDurationError,
)
from monitor.live.buffers import FrameSampler
from monitor.media.decode import AudioConverter, iter_frames, load_audio, probe, sample_frames
from tests.support.media_factory import dominant_frequency, write_clip


@pytest.mark.parametrize(
    ("rate", "channels"), [(44_100, 2), (48_000, 2), (22_050, 1), (8_000, 1), (32_000, 2)]
)
def test_audio_resampled_to_16k_mono_keeps_frequency(tmp_path: Path, rate: int, channels: int):
    clip = write_clip(tmp_path / "tone.mp4", seconds=2.0, audio_rate=rate, channels=channels)
    audio = load_audio(clip)
    assert audio.dtype == np.float32 and audio.ndim == 1
    # AAC adds priming samples; the length must still be ~2 s at 16 kHz
    assert abs(audio.shape[0] / 16_000 - 2.0) < 0.1
    mid = audio[4_000:28_000]
    assert dominant_frequency(mid, 16_000) == pytest.approx(440.0, abs=2.0)
    # a 0.5-amplitude sine in every channel downmixes to about 0.5 amplitude, not 1.0 or 0.25
    assert 0.3 < np.abs(mid).max() < 0.7


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_a_streams_audio_converter_starts_no_thread_and_frees_none_late(tmp_path: Path):
    # A resampler's filter graph starts one idle thread per CPU by default (16 per stream
    # on a 16-core host), and PyAV 18.1.1 frees that graph only in a cyclic collection:
    # with gc off, as in a long GC pause, ended streams would keep their threads.
    clip = write_clip(tmp_path / "tone.mp4", seconds=1.0, audio_rate=48_000, channels=2)
    with av.open(str(clip)) as container:
        frames = list(container.decode(audio=0))

    def threads() -> int:
        return len(list(Path("/proc/self/task").iterdir()))

    gc.collect()
    gc.disable()
    try:
        before = threads()
        converter = AudioConverter()
        samples = np.concatenate([converter.convert(f) for f in frames] + [converter.flush()])
        assert threads() == before
        # a layout change mid-stream starts a second filter, and no thread either
        mono = frames[0].to_ndarray().mean(axis=0, keepdims=True).astype(np.float32)
        resampled = av.AudioFrame.from_ndarray(mono, format="fltp", layout="mono")
        resampled.sample_rate = frames[0].sample_rate
        converter.convert(resampled)
        del converter
        assert threads() == before
    finally:
        gc.enable()
    assert abs(samples.size / 16_000 - 1.0) < 0.1
    assert dominant_frequency(samples[2_000:14_000], 16_000) == pytest.approx(440.0, abs=2.0)


def test_stereo_44k_tone_at_1khz(tmp_path: Path):
    clip = write_clip(tmp_path / "t.mp4", seconds=1.5, tone_hz=1000.0)
    audio = load_audio(clip)
    assert dominant_frequency(audio[2_000:20_000], 16_000) == pytest.approx(1000.0, abs=2.0)


def test_probe_reports_streams(tmp_path: Path):
    clip = write_clip(tmp_path / "c.mp4", seconds=2.0, fps=30, size=(96, 64))
    info = probe(clip)
    assert info.has_audio and info.has_video
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.width, info.height) == (96, 64)
    assert info.fps == pytest.approx(30.0)
    assert (info.audio_rate, info.audio_channels) == (44_100, 2)
    assert info.duration_s == pytest.approx(2.0, abs=0.1)
    assert "h264 96x64" in info.describe()


def test_iter_frames_decodes_every_frame_in_order(tmp_path: Path):
    clip = write_clip(tmp_path / "c.mp4", seconds=1.0, fps=25)
    frames = list(iter_frames(clip))
    assert len(frames) == 25
    times = [f.t for f in frames]
    assert times == sorted(times)
    assert frames[0].image.shape == (48, 64, 3) and frames[0].image.dtype == np.uint8
    # brightness encodes the frame index: (7 * i) % 250
    levels = [round(f.image.mean()) for f in frames]
    assert all(abs(lv - (7 * i) % 250) <= 3 for i, lv in enumerate(levels))


def _index_of(level: float) -> int:
    return round(level / 7)


def test_sample_frames_returns_the_nearest_frame_and_seeks(tmp_path: Path):
    clip = write_clip(tmp_path / "long.mp4", seconds=12.0, fps=25, gop=25, audio_rate=None)
    times = [0.11, 5.31, 5.29, 11.0, 8.0, 30.0, 0.03]
    frames = sample_frames(clip, times)
    assert len(frames) == len(times)
    for t, f in zip(times, frames, strict=True):
        expected = min(round(t * 25), 299)  # the frame nearest to time t (no ties here)
        assert f.t == pytest.approx(expected / 25, abs=1e-6)
        # brightness wraps at 250; compare modulo
        assert abs(f.image.mean() - (7 * expected) % 250) <= 3


def test_sample_frames_matches_full_decode(tmp_path: Path):
    clip = write_clip(tmp_path / "c.mp4", seconds=6.0, fps=30, gop=30)
    full = {round(f.t, 4): f.image for f in iter_frames(clip)}
    times = [0.0, 0.4, 2.75, 5.9]
    for t, f in zip(times, sample_frames(clip, times), strict=True):
        assert np.array_equal(full[round(f.t, 4)], f.image)
        assert abs(f.t - t) <= 0.5 / 30 + 1e-6


def test_offline_and_live_sample_the_same_frames(tmp_path: Path):
    # At 5 fps the frame on screen at a crop time lags it by 0.1 s on average, a lag the
    # lip-sync head reads; offline scoring and the live sampler both take the nearest.
    clip = write_clip(tmp_path / "slow.mp4", seconds=4.0, fps=5, gop=10, audio_rate=None)
    times = [round(0.05 + 0.25 * i + 0.013 * (i % 3), 3) for i in range(14)]
    live = FrameSampler()
    live.want(times)
    for f in iter_frames(clip):
        live.push(f.image, f.t)
    picked = live.take(times)
    offline = sample_frames(clip, times)
    assert [round(p.t, 4) for p in picked if p is not None] == [round(f.t, 4) for f in offline]
    assert max(abs(f.t - t) for f, t in zip(offline, times, strict=True)) <= 0.1 + 1e-6
    assert any(f.t > t for f, t in zip(offline, times, strict=True))  # not only earlier frames


# ---- bad input: each case raises its own clear, typed error naming the file ----


def test_missing_file(tmp_path: Path):
    with pytest.raises(MediaNotFoundError, match="nope.mp4: file not found"):
        probe(tmp_path / "nope.mp4")


def test_not_a_media_file(tmp_path: Path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 50)
    with pytest.raises(NotMediaError, match="notes.mp4"):
        probe(p)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(NotMediaError, match="empty file"):
        load_audio(empty)


def test_truncated_file(tmp_path: Path):
    clip = write_clip(tmp_path / "c.mp4", seconds=2.0)
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptMediaError, match="cut.mp4: truncated or corrupt"):
        probe(cut)


def test_truncated_faststart_file_detected_on_decode(tmp_path: Path):
    # moov first (faststart): the header survives, the payload does not
    src = write_clip(tmp_path / "src.mp4", seconds=4.0)
    fast = tmp_path / "fast.mp4"
    with (
        av.open(str(src)) as inp,
        av.open(str(fast), "w", options={"movflags": "faststart"}) as out,
    ):
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for pkt in inp.demux():
            if pkt.dts is None:
                continue
            pkt.stream = streams[pkt.stream.index]
            out.mux(pkt)
    data = fast.read_bytes()
    cut = tmp_path / "fastcut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.4)])
    with pytest.raises(CorruptMediaError, match="fastcut.mp4"):
        load_audio(cut)


def test_no_audio_stream(tmp_path: Path):
    clip = write_clip(tmp_path / "silent.mp4", audio_rate=None)
    assert not probe(clip).has_audio
    with pytest.raises(NoAudioStreamError, match="silent.mp4: no audio stream"):
        load_audio(clip)


def test_no_video_stream(tmp_path: Path):
    clip = write_clip(tmp_path / "voice.m4a", video=False, container="mp4")
    assert not probe(clip).has_video
    with pytest.raises(NoVideoStreamError, match="voice.m4a: no video stream"):
        sample_frames(clip, [0.5])
    with pytest.raises(NoVideoStreamError):
        next(iter_frames(clip))


def test_zero_duration(tmp_path: Path):
    wav = tmp_path / "zero.wav"
    with wave.open(str(wav), "wb") as w:  # a valid header with no samples
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
    with pytest.raises(ZeroDurationError, match="zero.wav: zero duration"):
        probe(wav)
    with pytest.raises(ZeroDurationError, match="zero.wav"):
        load_audio(wav)
    # an MP4 whose tracks never received a sample: the container lists no streams at all
    mp4 = tmp_path / "zero.mp4"
    with av.open(str(mp4), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()
    with pytest.raises(NotMediaError, match="zero.mp4"):
        probe(mp4)


def test_absurd_dimensions(tmp_path: Path):
    clip = write_clip(tmp_path / "tiny.mp4", size=(8, 8), seconds=0.5)
    with pytest.raises(BadDimensionsError, match=r"tiny.mp4: absurd video dimensions \(8x8"):
        probe(clip)
    with pytest.raises(BadDimensionsError):
        sample_frames(clip, [0.1])


def test_probe_cli_one_line_per_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    good = write_clip(tmp_path / "good.mp4", seconds=1.0)
    bad = tmp_path / "bad.mp4"
    bad.write_text("garbage")
    rc = main(["probe", str(good), str(bad), str(tmp_path / "missing.mp4")])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 1
    assert len(out) == 3
    assert out[0].startswith(f"{good}: ") and "video h264" in out[0] and "audio aac" in out[0]
    assert out[1].startswith(f"{bad}: ERROR not a media file")
    assert out[2].endswith("ERROR file not found")
