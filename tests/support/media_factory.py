"""Small real media files written with PyAV, for tests."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def tone(freq_hz: float, seconds: float, rate: int, channels: int) -> np.ndarray:
    """A sine tone, float32 [channels, samples], amplitude 0.5."""
    t = np.arange(round(seconds * rate)) / rate
    x = (0.5 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)
    return np.repeat(x[None, :], channels, axis=0)


def index_frame(i: int, width: int, height: int) -> np.ndarray:
    """An RGB frame whose brightness encodes its index (readable after lossy coding)."""
    level = (i * 7) % 250
    img = np.full((height, width, 3), level, dtype=np.uint8)
    return img


def write_clip(
    path: Path,
    *,
    seconds: float = 2.0,
    fps: int = 25,
    size: tuple[int, int] = (64, 48),
    audio_rate: int | None = 44_100,
    channels: int = 2,
    video: bool = True,
    tone_hz: float = 440.0,
    gop: int | None = None,
    container: str = "mp4",
) -> Path:
    """Write an H.264 + AAC clip; frame i has brightness (7*i) % 250, audio is a tone."""
    width, height = size
    with av.open(str(path), mode="w", format=container) as out:
        vs = None
        if video:
            vs = out.add_stream("libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
            vs.options = {"preset": "ultrafast", "crf": "18"}
            if gop:
                vs.codec_context.gop_size = gop
                vs.options = {**vs.options, "keyint": str(gop), "min-keyint": str(gop)}
        a_s = None
        if audio_rate:
            a_s = out.add_stream("aac", rate=audio_rate)
            a_s.layout = "stereo" if channels == 2 else "mono"
        if vs is not None:
            for i in range(round(seconds * fps)):
                frame = av.VideoFrame.from_ndarray(index_frame(i, width, height), format="rgb24")
                frame.pts = i
                frame.time_base = Fraction(1, fps)
                for pkt in vs.encode(frame):
                    out.mux(pkt)
            for pkt in vs.encode():
                out.mux(pkt)
        if a_s is not None and audio_rate:
            samples = tone(tone_hz, seconds, audio_rate, channels)
            chunk = 1024
            for start in range(0, samples.shape[1], chunk):
                part = np.ascontiguousarray(samples[:, start : start + chunk])
                af = av.AudioFrame.from_ndarray(
                    part.reshape(1, -1) if channels == 2 else part,
                    format="flt",
                    layout=a_s.layout.name,
                )
                if channels == 2:
                    # packed stereo: interleave the two channels
                    inter = np.empty((1, part.shape[1] * 2), dtype=np.float32)
                    inter[0, 0::2], inter[0, 1::2] = part[0], part[1]
                    af = av.AudioFrame.from_ndarray(inter, format="flt", layout="stereo")
                af.sample_rate = audio_rate
                af.pts = start
                af.time_base = Fraction(1, audio_rate)
                for pkt in a_s.encode(af):
                    out.mux(pkt)
            for pkt in a_s.encode():
                out.mux(pkt)
    return path


def dominant_frequency(x: np.ndarray, rate: int) -> float:
    """Frequency (Hz) of the strongest FFT bin of a mono signal."""
    spec = np.abs(np.fft.rfft(x * np.hanning(x.shape[0])))
    return float(np.argmax(spec) * rate / x.shape[0])
