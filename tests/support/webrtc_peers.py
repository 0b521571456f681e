"""Real WebRTC test peers and a small real pipeline stand-in, shared by the WebRTC tests.

`RecordingRegistry` / `RecordingSink` implement the StreamRegistry / MediaSink protocols
(monitor/live/sink.py) and record what arrives; `serve` runs the real aiohttp app with the
WebRTC routes on a loopback port; the media writers make tiny clips with PyAV.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import wave
from collections.abc import AsyncIterator, Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiohttp import ClientSession, web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer

from monitor.contract import SAMPLE_RATE
from monitor.errors import ConfigError
from monitor.live.sink import StreamStatus
from monitor.live.sources.webrtc import WEBRTC_SERVER, WebRTCConfig, add_webrtc_routes

TONE_HZ = 440.0
CLIP_SIZE = (320, 240)  # px
CLIP_FPS = 15
CLIP_SECONDS = 3.0
TOKEN = "s3cret-token-for-tests"


# --- a real (tiny) implementation of the pipeline's side of the seam ----------------------


class RecordingSink:
    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        self.audio: list[tuple[float, np.ndarray]] = []
        self.video: list[tuple[float, int, int]] = []  # (t, width, height)
        self.audio_wall: list[float] = []  # monotonic time of each push_audio
        self.closed: str | None = None
        self.last_luma = 0.0
        self.fail_every = 0  # >0: every n-th push_video raises after recording the frame

    def push_audio(self, samples: np.ndarray, t: float) -> None:
        self.audio.append((t, samples))
        self.audio_wall.append(time.monotonic())

    def push_video(self, frame: Any, t: float) -> None:
        img = frame.to_ndarray(format="rgb24") if isinstance(frame, av.VideoFrame) else frame
        self.video.append((t, img.shape[1], img.shape[0]))
        self.last_luma = float(img.mean()) / 255.0
        if self.fail_every and len(self.video) % self.fail_every == 0:
            raise RuntimeError("a bug in the pipeline")  # the source must shrug it off

    def close(self, reason: str) -> None:
        self.closed = reason

    def samples(self) -> np.ndarray:
        return np.concatenate([s for _, s in self.audio]) if self.audio else np.zeros(0, np.float32)

    def audio_seconds(self) -> float:
        return sum(s.size for _, s in self.audio) / SAMPLE_RATE


class RecordingRegistry:
    def __init__(self, max_streams: int = 100) -> None:
        self.max_streams = max_streams
        self.sinks: dict[str, RecordingSink] = {}  # every stream ever opened
        self.open: set[str] = set()
        self.closed: list[str] = []

    def open_stream(self, stream_id: str, kind: str) -> RecordingSink:
        assert kind == "webrtc"
        if len(self.open) >= self.max_streams:
            raise ConfigError(f"stream limit {self.max_streams} reached")
        sink = self.sinks[stream_id] = RecordingSink(stream_id)
        self.open.add(stream_id)
        return sink

    def close_stream(self, stream_id: str) -> None:
        self.open.discard(stream_id)
        self.closed.append(stream_id)

    def status(self, stream_id: str) -> StreamStatus | None:
        if stream_id not in self.open:
            return None
        sink = self.sinks[stream_id]
        live = bool(sink.audio) and bool(sink.video)
        rms = float(np.sqrt(np.mean(sink.audio[-1][1] ** 2))) if sink.audio else None
        return StreamStatus(
            stream_id=stream_id,
            state="CLEAR" if live else "STARTING",
            fused=None if rms is None else min(1.0, rms),
            audio=rms,
            visual=sink.last_luma if sink.video else None,
            sync=None,
            raised_by=None,
            degraded=False,
            windows_scored=len(sink.audio) // 50,
            windows_dropped=0,
            fps=float(len(sink.video)),
            latency_ms=12.0,
        )


# --- media fixtures -------------------------------------------------------------------------


def _picture(i: int, width: int, height: int) -> np.ndarray:
    """A gradient with a moving square: cheap to make, gives the encoder something to do."""
    img = np.zeros((height, width, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    img[..., 2] = np.linspace(255, 0, height, dtype=np.uint8)[:, None]
    x = (i * 8) % (width - 40)
    img[height // 3 : height // 3 + 40, x : x + 40] = 255
    return img


def _tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)


def write_mp4(path: Path, seconds: float = CLIP_SECONDS) -> Path:
    """H.264 + AAC (48 kHz stereo) clip with a tone, interleaved by the muxer."""
    width, height = CLIP_SIZE
    rate = 48_000
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=CLIP_FPS)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"preset": "ultrafast", "tune": "zerolatency"}
        aus = out.add_stream("aac", rate=rate)
        aus.layout = "stereo"
        tone = _tone(seconds, rate)
        chunk = 1024
        a_next = 0
        for i in range(round(seconds * CLIP_FPS)):
            frame = av.VideoFrame.from_ndarray(_picture(i, width, height), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, CLIP_FPS)
            out.mux(vs.encode(frame))
            while a_next < min(tone.size, (i + 1) * rate // CLIP_FPS):
                part = tone[a_next : a_next + chunk]
                inter = np.repeat(part, 2)[None, :]  # packed stereo
                af = av.AudioFrame.from_ndarray(inter, format="flt", layout="stereo")
                af.sample_rate, af.pts, af.time_base = rate, a_next, Fraction(1, rate)
                out.mux(aus.encode(af))
                a_next += chunk
        out.mux(vs.encode(None))
        out.mux(aus.encode(None))
    return path


def write_y4m(
    path: Path, seconds: float = 2.0, picture: Callable[[int], np.ndarray] | None = None
) -> Path:
    """Raw video for Chromium's fake camera; `picture(i)` -> RGB frame of CLIP_SIZE."""
    width, height = CLIP_SIZE
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{CLIP_FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(round(seconds * CLIP_FPS)):
            img = picture(i) if picture is not None else _picture(i, width, height)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            yuv = frame.reformat(format="yuv420p").to_ndarray()  # planes stacked: [H*3/2, W]
            f.write(b"FRAME\n" + yuv.tobytes())
    return path


def write_wav(path: Path, seconds: float = 2.0, rate: int = 48_000, amp: float = 0.5) -> Path:
    """16-bit mono WAV of the test tone (amplitude `amp`), for Chromium's fake microphone."""
    pcm = (_tone(seconds, rate) * (amp / 0.5) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


# --- helpers ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve(
    registry: RecordingRegistry, cfg: WebRTCConfig, token: str | None = None
) -> AsyncIterator[tuple[str, Any]]:
    """The real app on a real loopback port; yields (base URL, WebRTCServer)."""
    app = web.Application()
    add_webrtc_routes(app, registry, cfg, token=token)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", app[WEBRTC_SERVER]
    finally:
        await runner.cleanup()  # runs on_shutdown: closes every peer


async def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def aiortc_offer(pc: RTCPeerConnection) -> str:
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp


async def join(
    http: ClientSession, base: str, pc: RTCPeerConnection, *, name: str, token: str | None = None
) -> str:
    payload = {"sdp": await aiortc_offer(pc), "type": "offer", "name": name}
    async with http.post(f"{base}/offer", json=payload, headers=bearer(token)) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
    return str(body["stream_id"])


def player_pc(path: Path) -> tuple[RTCPeerConnection, MediaPlayer]:
    player = MediaPlayer(str(path))
    pc = RTCPeerConnection()
    assert player.audio is not None and player.video is not None
    pc.addTrack(player.audio)
    pc.addTrack(player.video)
    return pc, player


def dominant_frequency(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spec) * rate / x.size)


def check_audio(sink: RecordingSink) -> None:
    """Mono float32 at 16 kHz, times consistent with the sample count, the tone intact."""
    assert all(s.dtype == np.float32 and s.ndim == 1 for _, s in sink.audio)
    n = sum(s.size for _, s in sink.audio)
    t_first, t_last = sink.audio[0][0], sink.audio[-1][0]
    span = t_last + sink.audio[-1][1].size / SAMPLE_RATE - t_first
    assert n / span == pytest.approx(SAMPLE_RATE, rel=0.03), (n, span)
    # samples per second of arrival: the rate really is 16 kHz, not 48 kHz relabelled
    wall = sink.audio_wall[-1] - sink.audio_wall[0]
    n_after_first = n - sink.audio[0][1].size
    assert n_after_first / wall == pytest.approx(SAMPLE_RATE, rel=0.2), (n_after_first, wall)
    # drained as fast as it comes: arrival time minus stream time does not grow
    lag = [wall - t for (t, _), wall in zip(sink.audio, sink.audio_wall, strict=True)]
    assert float(np.median(lag[-20:]) - np.median(lag[:20])) < 0.25, (lag[:20], lag[-20:])
    x = sink.samples()[SAMPLE_RATE // 4 :]
    assert dominant_frequency(x, SAMPLE_RATE) == pytest.approx(TONE_HZ, abs=8)
    assert 0.05 < float(np.abs(x).max()) <= 1.0
