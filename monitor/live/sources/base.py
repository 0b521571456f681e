"""What every PyAV-backed live source shares: redaction, stream ids, the decode thread.

A source (`monitor.live.sources.rtsp.UrlSource`, `monitor.live.sources.file.FileSource`) only knows
how to open its container. One `DecodeThread` per connection attempt demuxes and decodes
in a daemon thread and hands media to the event loop with `loop.call_soon_threadsafe`;
the number of hand-overs in flight is bounded, so a slow loop makes the thread drop (and
count) media instead of queueing it without limit. The thread never blocks the loop and
can be abandoned: a PyAV read can hang, so the supervisor watches the thread's heartbeat
from outside and stops waiting for it (see `monitor.live.sources.supervisor`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from typing import Any, Protocol

import av
import av.error

from monitor.contract import SAMPLE_RATE
from monitor.errors import (
    BadDimensionsError,
    MediaError,
    MediaNotFoundError,
    NotMediaError,
    ZeroDurationError,
)
from monitor.live.evidence import PacketRing
from monitor.live.sink import MediaSink
from monitor.media.decode import limit_video_decoder, stream_media
from monitor.redaction import redact

logger = logging.getLogger(__name__)

STREAM_ID_MAX_CHARS = 64  # bounded label values for metrics and log lines
STREAM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_INFLIGHT_HANDOVERS = 256  # media items queued on the loop per stream before dropping
BACKPRESSURE_WAIT_S = 0.1  # a fast file's decoder re-checks its stop flag this often
DRAIN_TIMEOUT_S = 5.0  # longest wait for a finished thread's queued media to be delivered
REALTIME_MAX_SLEEP_S = 1.0  # never sleep longer than this per item while pacing (stop check)

# Errors that a retry cannot fix for a file (a camera URL is retried whatever happens).
PERMANENT_ERRORS = (MediaNotFoundError, NotMediaError, ZeroDurationError, BadDimensionsError)

_ID_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def sanitize_stream_id(raw: str) -> str:
    """Map any caller-supplied name to a safe stream id (bounded charset and length)."""
    cleaned = _ID_BAD_CHARS.sub("_", raw).strip("_.-")
    cleaned = cleaned[:STREAM_ID_MAX_CHARS]
    return cleaned or "stream"


def is_valid_stream_id(stream_id: str) -> bool:
    return re.fullmatch(STREAM_ID_PATTERN, stream_id) is not None


class Source(Protocol):
    """Opens one stream's container; the decode thread and the supervisor do the rest."""

    kind: str  # "rtsp" | "file" (the StreamRegistry kind)
    live: bool  # EOF means "reconnect" (camera) rather than "finished" (file)
    realtime: bool  # pace hand-over at the media's own rate (files); live input is paced
    loop: bool  # restart from the beginning at EOF (files)

    def describe(self) -> str:
        """Redacted, human-readable name (never contains credentials)."""
        ...

    def open(self) -> Any:
        """Open and return an `av.container.InputContainer`; blocking, called in the thread.
        Raises a MediaError subclass (message already redacted)."""
        ...


class _Counter:
    """Thread-side count that the loop side reads (ints are updated atomically under the GIL)."""

    def __init__(self) -> None:
        self.value = 0

    def add(self, n: int = 1) -> None:
        self.value += n


class DecodeThread:
    """One connection attempt: open, demux, decode, hand over; ends on EOF, error or stop.

    Stream times are rebased so that this attempt starts at `time_offset` seconds, keeping
    a stream's clock monotonic across reconnects and file loops. `outcome` is one of
    "eof", "error", "stopped" once the thread has ended; `error` holds a redacted message.
    """

    def __init__(
        self,
        stream_id: str,
        source: Source,
        sink: MediaSink,
        loop: asyncio.AbstractEventLoop,
        *,
        time_offset: float = 0.0,
        sample_rate: int = SAMPLE_RATE,
        on_drop: Any = None,
        ring: PacketRing | None = None,
    ) -> None:
        self.stream_id = stream_id
        self._ring = ring  # evidence: the stream's last seconds of packets (opt-in)
        self.source = source
        self.sink = sink
        self._loop = loop
        self._offset = time_offset
        self._sample_rate = sample_rate
        self._on_drop = on_drop  # callable(kind: str, n: int), thread-safe (prometheus)
        self._stop = threading.Event()
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self._inflight_ready = threading.Condition(self._inflight_lock)  # a delivery was made
        self.started_at = time.monotonic()
        self.heartbeat = self.started_at  # monotonic time of the last decoded item
        self.ended_at: float | None = None  # monotonic time the thread finished
        self.first_media_at: float | None = None
        self.connected = False
        self.max_time = time_offset  # latest stream time handed over
        self.outcome: str | None = None
        self.error: str | None = None
        self.permanent = False  # retrying cannot help (missing file, not media)
        self.frames = _Counter()
        self.audio_samples = _Counter()
        self._thread = threading.Thread(target=self._run, name=f"decode-{stream_id}", daemon=True)

    # -- control, from the loop thread -------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; it may be stuck in a read, so never join it here."""
        self._stop.set()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def in_flight(self) -> int:
        """Media handed to the loop and not delivered yet."""
        with self._inflight_lock:
            return self._inflight

    async def drained(self, timeout_s: float = DRAIN_TIMEOUT_S) -> bool:
        """Wait, on the loop, until everything this thread handed over is delivered; False
        if some is still queued after timeout_s.

        A handover waits in the loop's queue, and the thread can end while some of its
        media is still there. Whoever acts on the thread's end (closing the sink at EOF,
        starting a reconnect) waits here first, or the stream's last media, on a busy
        loop all of a short file's, would arrive after it and be ignored.
        """
        deadline = time.monotonic() + timeout_s
        while self.in_flight > 0:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0)  # the queued handovers run before this task resumes
        return True

    # -- thread side -------------------------------------------------------------------

    def _run(self) -> None:
        container = None
        try:
            container = self.source.open()
            if self._stop.is_set():
                self.outcome = "stopped"
                return
            self.connected = True
            self.heartbeat = time.monotonic()
            self.outcome = self._decode(container)
        except MediaError as exc:
            self.outcome, self.error = "error", redact(str(exc))
            self.permanent = isinstance(exc, PERMANENT_ERRORS)
        except (av.FFmpegError, OSError, ValueError) as exc:
            self.outcome = "error"
            self.error = redact(f"{type(exc).__name__}: {exc}")
        except RuntimeError as exc:  # the event loop closed under us: nothing to report to
            self.outcome, self.error = "stopped", redact(str(exc))
        finally:
            if self._ring is not None:
                self._ring.flush()  # while the container (and its stream templates) lives
            if container is not None:
                try:
                    container.close()
                except (av.FFmpegError, OSError) as exc:
                    logger.debug("stream %s: closing container: %s", self.stream_id, exc)
            if self._stop.is_set() and self.outcome != "error":
                self.outcome = "stopped"
            self.ended_at = time.monotonic()

    def _decode(self, container: Any) -> str:
        audio = container.streams.audio[0] if container.streams.audio else None
        video = container.streams.video[0] if container.streams.video else None
        if audio is None and video is None:
            raise MediaError(self.source.describe(), "no audio or video stream")
        if video is not None:
            # a declared or mid-stream picture over MAX_PIXELS fails (BadDimensionsError,
            # permanent) instead of making the decoder allocate gigabytes
            limit_video_decoder(video, self.source.describe())
            video.thread_type = "AUTO"
        declare = getattr(self.sink, "declare_tracks", None)
        if declare is not None:
            self._handover(declare, audio is not None, video is not None, force=True)
        loop_offset = self._offset
        wall0: float | None = None
        media0 = 0.0
        while not self._stop.is_set():
            pass_max = loop_offset
            on_packet = self._ring.add if self._ring is not None else None
            items = stream_media(
                container, audio, video, self._sample_rate, loop_offset, on_packet=on_packet
            )
            for item in items:
                if self._stop.is_set():
                    return "stopped"
                self.heartbeat = time.monotonic()
                if self.first_media_at is None:
                    self.first_media_at = self.heartbeat
                if self.source.realtime:
                    if wall0 is None:
                        wall0, media0 = time.monotonic(), item.t
                    if not self._pace(wall0 + (item.t - media0)):
                        return "stopped"
                if item.kind == "audio":
                    if self._handover(self.sink.push_audio, item.data, item.t):
                        self.audio_samples.add(item.data.shape[0])
                    elif self._on_drop is not None:
                        self._on_drop("audio", int(item.data.shape[0]))
                elif self._handover(self.sink.push_video, item.data, item.t):
                    self.frames.add()
                elif self._on_drop is not None:
                    self._on_drop("video", 1)
                pass_max = max(pass_max, item.end)
                self.max_time = max(self.max_time, pass_max)
            if not (self.source.loop and not self.source.live):
                return "eof" if not self._stop.is_set() else "stopped"
            # Loop a file: rewind and continue the clock one frame after this pass.
            frame_s = (
                1.0 / float(video.average_rate)
                if video is not None and video.average_rate
                else 0.04
            )
            loop_offset = pass_max + frame_s
            container.seek(0)
        return "stopped"

    def _pace(self, wall_target: float) -> bool:
        """Sleep until wall_target (monotonic); False when asked to stop meanwhile."""
        while True:
            delay = wall_target - time.monotonic()
            if delay <= 0:
                return not self._stop.is_set()
            if self._stop.wait(min(delay, REALTIME_MAX_SLEEP_S)):
                return False

    def _handover(self, fn: Any, *args: Any, force: bool = False) -> bool:
        """Schedule fn(*args) on the loop. With too many items in flight, a camera or a
        paced file drops this one (False; it cannot wait without falling behind), and a
        file read as fast as possible waits for the loop instead: a busy machine slows
        it down and loses nothing."""
        wait = not self.source.live and not self.source.realtime
        with self._inflight_ready:
            while not force and self._inflight >= MAX_INFLIGHT_HANDOVERS:
                if not wait or self._stop.is_set():
                    return False
                self._inflight_ready.wait(BACKPRESSURE_WAIT_S)
                self.heartbeat = time.monotonic()  # waiting on the loop is not a stall
            self._inflight += 1
        self._loop.call_soon_threadsafe(self._deliver, fn, args)
        return True

    def _deliver(self, fn: Any, args: tuple[Any, ...]) -> None:
        with self._inflight_ready:
            self._inflight -= 1
            self._inflight_ready.notify()
        if self._stop.is_set():
            return  # an abandoned attempt must not touch the stream any more
        try:
            fn(*args)
        except Exception:  # per-stream boundary: log with the stream id and go on
            logger.exception("stream %s: sink rejected media", self.stream_id)
