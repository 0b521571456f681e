"""The seam between live sources (RTSP, WebRTC, files) and the scoring pipeline.

A source owns one stream's transport and decoding; it pushes decoded media into a
`MediaSink` that the pipeline hands out per stream. Sinks are bounded and count what they
drop. Video frames are pushed as they come out of the decoder (e.g. `av.VideoFrame`) and
only converted to RGB when a window samples them, so a stream costs little beyond decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class StreamStatus:
    """Latest view of one stream, for tables, the browser page and health checks."""

    stream_id: str
    state: str  # CLEAR | SUSPICIOUS | ALERT | NO_FACE | NO_AUDIO | SILENCE | STARTING | DOWN
    fused: float | None  # smoothed P(fake), None before the first score
    audio: float | None
    visual: float | None
    sync: float | None  # smoothed P(voice and mouth out of step); None without a sync output
    raised_by: str | None  # voice | face | voice_face | lip_sync for SUSPICIOUS / ALERT
    degraded: bool  # the latest window could not be scored (the backend failed its batch)
    windows_scored: int
    windows_dropped: int
    fps: float  # video frames per second received
    latency_ms: float | None  # last window end -> score


class MediaSink(Protocol):
    """Where a source pushes one stream's decoded media. Call only on the event-loop thread;
    decoder threads hand over with `loop.call_soon_threadsafe(sink.push_video, frame, t)`."""

    stream_id: str

    def push_audio(self, samples: np.ndarray, t: float) -> None:
        """Mono float32 samples at the contract's sample rate; t = stream time (s) of the
        first sample. Gaps and overlaps in t are handled by the sink (silence / trimmed)."""
        ...

    def push_video(self, frame: Any, t: float) -> None:
        """One decoded frame (`av.VideoFrame`, or an RGB uint8 ndarray) shown at stream time t."""
        ...

    def close(self, reason: str) -> None:
        """The source ended (EOF, peer left, gave up); the pipeline keeps the stream's last
        state until it is removed."""
        ...


class StreamRegistry(Protocol):
    """What sources that create streams on demand (a WebRTC peer joining) need from the
    pipeline."""

    def open_stream(self, stream_id: str, kind: str) -> MediaSink:
        """Register a new stream (kind: "webrtc" | "rtsp" | "file") and return its sink.
        Raises monitor.errors.ConfigError when the stream limit is reached."""
        ...

    def close_stream(self, stream_id: str) -> None:
        """Remove the stream, its buffers and its metric series."""
        ...

    def status(self, stream_id: str) -> StreamStatus | None: ...
