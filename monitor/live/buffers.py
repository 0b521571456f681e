"""Per-stream ring buffers: the bounded `MediaSink` that sources push decoded media into.

Audio is kept as a ring of mono float32 samples (`audio_seconds` long). Video is not kept
frame by frame: the windower announces the K frame times each coming window samples, and
the `FrameSampler` keeps, for each such time, only the decoded frame nearest to it (plus
the last frame seen). Memory per stream is therefore a few seconds of audio and a few
frames, whatever the frame rate or resolution. Anything evicted before it was used is
counted as dropped, never lost silently.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from monitor.contract import SAMPLE_RATE

logger = logging.getLogger(__name__)

AUDIO_JITTER_S = 0.01  # timestamp wobble tolerated before a gap is filled or overlap trimmed
DEFAULT_AUDIO_SECONDS = 8.0  # ring length: one window plus scheduling slack
DEFAULT_VIDEO_FRAMES = 32  # sampled frames kept per stream (K per window, a few windows)
TIME_KEY_DECIMALS = 6  # sample times are matched to the microsecond


def time_key(t: float) -> float:
    return round(t, TIME_KEY_DECIMALS)


class AudioRing:
    """Mono samples on a stream clock; gaps become silence, overlaps are trimmed."""

    def __init__(self, seconds: float, sample_rate: int = SAMPLE_RATE) -> None:
        self.sample_rate = sample_rate
        self.capacity = max(1, round(seconds * sample_rate))
        self._buf = np.zeros(self.capacity, dtype=np.float32)
        self._anchor: float | None = None  # stream time of absolute sample index 0
        self._written = 0  # absolute index one past the newest sample
        self._keep_from = 0  # absolute index of the oldest sample a window still needs
        self.dropped_samples = 0  # overwritten before any window read them
        self.gap_samples = 0  # silence inserted for missing audio
        self.received_samples = 0

    def reset(self) -> None:
        self._anchor = None
        self._written = 0
        self._keep_from = 0

    @property
    def started(self) -> bool:
        return self._anchor is not None

    @property
    def start_t(self) -> float | None:
        return self._anchor

    @property
    def end_t(self) -> float | None:
        """Stream time just after the newest sample (None before any audio)."""
        if self._anchor is None:
            return None
        return self._anchor + self._written / self.sample_rate

    def _index(self, t: float) -> int:
        assert self._anchor is not None
        return round((t - self._anchor) * self.sample_rate)

    def push(self, samples: np.ndarray, t: float) -> int:
        """Append samples starting at stream time t; returns samples dropped on overflow."""
        before = self.dropped_samples
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.received_samples += x.shape[0]
        if self._anchor is None:
            self._anchor = t
        idx = self._index(t)
        tol = round(AUDIO_JITTER_S * self.sample_rate)
        if idx > self._written + tol:
            gap = idx - self._written
            self.gap_samples += gap
            self._write(np.zeros(min(gap, self.capacity), dtype=np.float32), skip=gap)
        elif idx < self._written - tol:
            overlap = self._written - idx
            x = x[overlap:]
        if x.shape[0]:
            self._write(x)
        return self.dropped_samples - before

    def _write(self, x: np.ndarray, skip: int | None = None) -> None:
        """Write x at the head; `skip` advances the head further (a long gap)."""
        advance = x.shape[0] if skip is None else skip
        start_abs = self._written + advance - x.shape[0]
        if x.shape[0] >= self.capacity:
            x = x[-self.capacity :]
            start_abs = self._written + advance - self.capacity
        pos = start_abs % self.capacity
        first = min(x.shape[0], self.capacity - pos)
        self._buf[pos : pos + first] = x[:first]
        if first < x.shape[0]:
            self._buf[: x.shape[0] - first] = x[first:]
        new_written = self._written + advance
        # Samples pushed out of the ring that a window still needed count as dropped.
        oldest_kept = max(self._keep_from, self._written - self.capacity, 0)
        lost = min(new_written - self.capacity, self._written) - oldest_kept
        if lost > 0:
            self.dropped_samples += lost
            self._keep_from = new_written - self.capacity
        self._written = new_written

    def release_before(self, t: float) -> None:
        """Windows will never read before t: older samples may be overwritten freely."""
        if self._anchor is not None:
            self._keep_from = max(self._keep_from, self._index(t))

    def read(self, t: float, n: int) -> tuple[np.ndarray, float]:
        """n samples from stream time t, zero where missing; also the covered fraction."""
        out = np.zeros(n, dtype=np.float32)
        if self._anchor is None or n <= 0:
            return out, 0.0
        a = self._index(t)
        lo = max(a, self._written - self.capacity, 0)
        hi = min(a + n, self._written)
        if hi <= lo:
            return out, 0.0
        for abs_i, length in _ring_spans(lo, hi, self.capacity):
            pos = abs_i % self.capacity
            out[abs_i - a : abs_i - a + length] = self._buf[pos : pos + length]
        return out, (hi - lo) / n


def _ring_spans(lo: int, hi: int, capacity: int) -> list[tuple[int, int]]:
    """Split absolute range [lo, hi) into pieces that do not wrap around the ring."""
    spans = []
    i = lo
    while i < hi:
        length = min(hi - i, capacity - i % capacity)
        spans.append((i, length))
        i += length
    return spans


@dataclass(frozen=True)
class SampledFrame:
    """The decoded frame chosen for one sample time."""

    target_t: float  # the time a window asked for
    t: float  # the frame's own presentation time
    frame: Any  # av.VideoFrame or RGB uint8 ndarray, converted only when a window uses it


class FrameSampler:
    """Keeps, for each announced sample time, the decoded frame nearest to it."""

    def __init__(self, max_frames: int = DEFAULT_VIDEO_FRAMES) -> None:
        self.max_frames = max_frames
        self._pending: list[float] = []  # sorted sample times not yet resolved
        self._resolved: OrderedDict[float, SampledFrame] = OrderedDict()
        self._prev: tuple[float, Any] | None = None
        self.latest_t: float | None = None
        self.received = 0
        self.dropped = 0  # chosen frames evicted before a window used them

    def reset(self) -> None:
        self._pending.clear()
        self._resolved.clear()
        self._prev = None
        self.latest_t = None

    def want(self, times: tuple[float, ...] | list[float]) -> None:
        """Announce sample times; times already in the past get the newest frame."""
        for t in times:
            key = time_key(t)
            if key in self._resolved or key in self._pending:
                continue
            if self.latest_t is not None and key <= self.latest_t and self._prev is not None:
                self._store(key, *self._prev)
            else:
                self._pending.append(key)
        self._pending.sort()

    def push(self, frame: Any, t: float) -> None:
        self.received += 1
        while self._pending and self._pending[0] <= t:
            target = self._pending.pop(0)
            if self._prev is not None and abs(self._prev[0] - target) <= abs(t - target):
                self._store(target, *self._prev)
            else:
                self._store(target, t, frame)
        self._prev = (t, frame)
        self.latest_t = t if self.latest_t is None else max(self.latest_t, t)

    def _store(self, target: float, t: float, frame: Any) -> None:
        self._resolved[target] = SampledFrame(target, t, frame)
        while len(self._resolved) > self.max_frames:
            self._resolved.popitem(last=False)
            self.dropped += 1

    def resolved(self, times: tuple[float, ...] | list[float]) -> bool:
        return all(time_key(t) in self._resolved for t in times)

    def take(self, times: tuple[float, ...] | list[float]) -> list[SampledFrame | None]:
        """The frames for these times; unresolved times fall back to the newest frame."""
        out: list[SampledFrame | None] = []
        for t in times:
            key = time_key(t)
            got = self._resolved.get(key)
            if got is None and self._prev is not None:
                got = SampledFrame(key, self._prev[0], self._prev[1])
            out.append(got)
        return out

    def release_before(self, t: float) -> None:
        """Forget sample times before t (no window will ask for them again)."""
        cut = time_key(t)
        for key in [k for k in self._resolved if k < cut]:
            del self._resolved[key]
        self._pending = [k for k in self._pending if k >= cut]


class BufferListener(Protocol):
    def on_media(self) -> None: ...

    def on_reset(self) -> None: ...

    def on_close(self, reason: str) -> None: ...


class StreamBuffers:
    """The `MediaSink` of one stream: bounded audio ring + frame sampler + counters."""

    def __init__(
        self,
        stream_id: str,
        *,
        audio_seconds: float = DEFAULT_AUDIO_SECONDS,
        video_frames: int = DEFAULT_VIDEO_FRAMES,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        self.stream_id = stream_id
        self.audio = AudioRing(audio_seconds, sample_rate)
        self.video = FrameSampler(video_frames)
        self.has_audio: bool | None = None  # declared by the source, None = unknown
        self.has_video: bool | None = None
        self.closed_reason: str | None = None
        self.listener: BufferListener | None = None
        self.last_media_at: float | None = None  # monotonic time of the last push
        # Called with ("audio", samples) or ("video", frames) when unused media is evicted.
        self.on_drop: Callable[[str, int], None] | None = None

    # -- MediaSink ------------------------------------------------------------------------

    def push_audio(self, samples: np.ndarray, t: float) -> None:
        if self.closed_reason is not None:
            return
        lost = self.audio.push(samples, t)
        if lost and self.on_drop is not None:
            self.on_drop("audio", lost)
        self.last_media_at = time.monotonic()
        if self.listener is not None:
            self.listener.on_media()

    def push_video(self, frame: Any, t: float) -> None:
        if self.closed_reason is not None:
            return
        before = self.video.dropped
        self.video.push(frame, t)
        if self.video.dropped != before and self.on_drop is not None:
            self.on_drop("video", self.video.dropped - before)
        self.last_media_at = time.monotonic()
        if self.listener is not None:
            self.listener.on_media()

    def close(self, reason: str) -> None:
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        logger.info("stream %s: source closed (%s)", self.stream_id, reason)
        if self.listener is not None:
            self.listener.on_close(reason)

    # -- extensions used by the PyAV sources ----------------------------------------------

    def declare_tracks(self, has_audio: bool, has_video: bool) -> None:
        """The source knows which tracks exist: windows need not wait for a missing one."""
        self.has_audio, self.has_video = has_audio, has_video
        if self.listener is not None:
            self.listener.on_media()

    def discontinuity(self) -> None:
        """The source reconnected: start windows afresh, never across the outage."""
        self.audio.reset()
        self.video.reset()
        if self.listener is not None:
            self.listener.on_reset()

    # -- accounting -----------------------------------------------------------------------

    @property
    def media_t(self) -> float | None:
        """The newest stream time received on any track."""
        times = [t for t in (self.audio.end_t, self.video.latest_t) if t is not None]
        return max(times) if times else None
