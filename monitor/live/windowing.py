"""Live windowing: every hop, one window of audio + K face crops from a stream's buffers.

The `Windower` listens to a stream's `StreamBuffers`. It announces the frame times the
next windows will sample (so the buffers keep just those frames), and emits a
`RawWindow` as soon as both tracks have reached the window's end: audio up to `end_s`
and a frame at or after every sample time. A track the source declared missing is not
waited for; an undeclared track that lags more than `MAX_SKEW_S` behind the other is
treated as missing for that window.

`monitor.live.crops.CropStage` then turns raw windows into model inputs (`Window`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from monitor.contract import InputContract
from monitor.live.buffers import SampledFrame, StreamBuffers
from monitor.windows import frame_times

logger = logging.getLogger(__name__)

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # offsets k·GOLDEN mod 1 stay evenly spread for any k
MAX_SKEW_S = 1.0  # emit a window once the leading track is this far past its end
END_TOLERANCE_S = 0.25  # at end of stream, a window this close to complete is still emitted
RESYNC_WINDOWS = 3  # jump ahead when this many windows behind the newest media


def stagger_offset(slot: int, hop_s: float, window_s: float) -> float:
    """The window offset of a pipeline's `slot`-th stream: a fraction of the hop, spread
    evenly however many streams there are (0, 0.618, 0.236, 0.854, ... x hop). Capped
    at the windows' overlap (window_s - hop_s), so that no media falls between windows."""
    return (slot * GOLDEN) % 1.0 * min(hop_s, window_s - hop_s)


@dataclass(frozen=True)
class RawWindow:
    """A window as cut from the buffers, before RGB conversion and face cropping."""

    stream_id: str
    index: int  # 0-based per stream (restarts after a reconnect)
    start_s: float  # stream time
    end_s: float
    audio: np.ndarray  # float32 [window_samples], zero where audio was missing
    audio_coverage: float  # fraction of the window covered by received audio
    frames: tuple[SampledFrame | None, ...]  # K frames (None: no video yet)
    has_audio: bool  # the stream has an audio track (declared or seen)
    has_video: bool
    ready_at: float  # monotonic time the window's media was complete


@dataclass(frozen=True)
class Window:
    """One window's model inputs plus what the state machine needs. Small and picklable,
    so ingest processes can send it to the scorer process."""

    stream_id: str
    index: int
    start_s: float
    end_s: float
    audio: np.ndarray  # float32 [window_samples]
    faces: np.ndarray  # uint8 [K, crop, crop, 3] RGB
    face_found: np.ndarray  # bool [K]: a face was detected or tracked
    audio_rms: float  # RMS of the window's audio (0 for no audio)
    has_audio: bool
    has_video: bool
    ready_at: float  # monotonic (CLOCK_MONOTONIC is system-wide on Linux)
    cropped_at: float | None = None  # monotonic time its crops were done (None: not timed)

    @property
    def face_fraction(self) -> float:
        return float(self.face_found.mean()) if self.face_found.size else 0.0


class Windower:
    """Cuts one stream's buffers into windows every hop; see the module docstring."""

    def __init__(
        self,
        buffers: StreamBuffers,
        contract: InputContract,
        emit: Callable[[RawWindow], None],
        hop_seconds: float | None = None,
        on_end: Callable[[str], None] | None = None,
        offset_s: float = 0.0,
    ) -> None:
        self.buffers = buffers
        self.contract = contract
        self.emit = emit
        self.on_end = on_end  # called with the reason once the stream's last window is out
        self.hop = contract.hop_seconds if hop_seconds is None else hop_seconds
        if self.hop <= 0:
            raise ValueError(f"hop_seconds must be > 0, got {self.hop}")
        if not 0.0 <= offset_s <= max(0.0, min(self.hop, contract.window_seconds - self.hop)):
            raise ValueError(f"offset_s must be in [0, min(hop, window - hop)], got {offset_s}")
        # The first window starts at the stream's first media; every later one starts
        # offset_s later than the plain hop grid would put it (the second hop is longer,
        # still within the first window's end, so no media is skipped), so that streams
        # opened together close their windows at different moments.
        self.offset_s = offset_s
        self.window_s = contract.window_seconds
        self._lookahead = math.ceil(self.window_s / self.hop) + 1
        self._next_start: float | None = None
        self._index = 0
        self._announced_until = -1  # highest window index whose frame times were announced
        self.windows_emitted = 0
        self.windows_skipped = 0  # windows jumped over when far behind (e.g. after a gap)
        self.closed = False
        self._flushing = False
        buffers.listener = self

    # -- BufferListener ------------------------------------------------------------------

    def on_media(self) -> None:
        if self.closed:
            return
        if self._next_start is None:
            first = self._first_media_t()
            if first is None:
                return
            self._next_start = first
            self._announce()
        self._emit_ready()

    def on_reset(self) -> None:
        self._next_start = None
        self._index = 0
        self._announced_until = -1

    def on_close(self, reason: str) -> None:
        # Codec padding often leaves the last window a few ms short: flush it anyway.
        self._flushing = True
        if self._next_start is not None:
            self._emit_ready()
        self.closed = True
        if self.on_end is not None:
            self.on_end(reason)

    # -- internals -----------------------------------------------------------------------

    def _first_media_t(self) -> float | None:
        times = [
            t for t in (self.buffers.audio.start_t, self.buffers.video.latest_t) if t is not None
        ]
        return min(times) if times else None

    def _start_of(self, index: int) -> float:
        assert self._next_start is not None
        start = self._next_start + (index - self._index) * self.hop
        if self._index == 0 and index > 0:  # the second hop is offset_s longer
            start += self.offset_s
        return start

    def _announce(self) -> None:
        last = self._index + self._lookahead
        for i in range(max(self._index, self._announced_until + 1), last + 1):
            self.buffers.video.want(frame_times(self._start_of(i), self.contract))
        self._announced_until = max(self._announced_until, last)

    def _track_state(self, end: float, times: tuple[float, ...]) -> tuple[bool, bool, bool]:
        """(ready, has_audio, has_video) for the window ending at `end`."""
        b = self.buffers
        audio_end, video_t = b.audio.end_t, b.video.latest_t
        lead = max((t for t in (audio_end, video_t) if t is not None), default=None)
        has_audio = b.has_audio if b.has_audio is not None else audio_end is not None
        has_video = b.has_video if b.has_video is not None else video_t is not None
        audio_ok = b.has_audio is False or (audio_end is not None and audio_end >= end)
        video_ok = b.has_video is False or (video_t is not None and b.video.resolved(times))
        slack = -END_TOLERANCE_S if self._flushing else MAX_SKEW_S
        forced = lead is not None and lead >= end + slack
        return (audio_ok and video_ok) or forced, has_audio, has_video

    def _emit_ready(self) -> None:
        while self._next_start is not None:
            start = self._next_start
            end = start + self.window_s
            lead = self.buffers.media_t
            if lead is not None and lead - end > RESYNC_WINDOWS * self.hop + MAX_SKEW_S:
                skip = math.floor((lead - end - MAX_SKEW_S) / self.hop)
                self.windows_skipped += skip
                logger.info(
                    "stream %s: %d windows behind, skipping ahead", self.buffers.stream_id, skip
                )
                self._next_start = self._start_of(self._index + skip)
                self._index += skip
                self._announced_until = self._index - 1
                self._announce()
                continue
            times = frame_times(start, self.contract)
            ready, has_audio, has_video = self._track_state(end, times)
            if not ready:
                return
            audio, coverage = self.buffers.audio.read(start, self.contract.window_samples)
            frames = tuple(self.buffers.video.take(times)) if has_video else (None,) * len(times)
            raw = RawWindow(
                stream_id=self.buffers.stream_id,
                index=self._index,
                start_s=start,
                end_s=end,
                audio=audio,
                audio_coverage=coverage,
                frames=frames,
                has_audio=has_audio,
                has_video=has_video,
                ready_at=time.monotonic(),
            )
            self._next_start = self._start_of(self._index + 1)
            self._index += 1
            self.buffers.audio.release_before(self._next_start)
            self.buffers.video.release_before(self._next_start)
            self._announce()
            self.windows_emitted += 1
            self.emit(raw)
