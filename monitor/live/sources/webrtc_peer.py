"""One WebRTC caller: its aiortc peer connection, the tasks that drain its tracks, cleanup.

aiortc decodes each incoming track into an unbounded queue that only `track.recv()`
empties, so every track gets its own task that receives as fast as frames come and hands
them straight to the stream's `MediaSink` (which is bounded and counts its own drops).
Latency therefore cannot build up inside aiortc, whatever the scorer does.

Audio arrives as 48 kHz stereo 20 ms frames (Opus) and leaves as mono float32 at the
contract's rate. Both tracks' RTP clocks start at 0 at their own first packet; a
`TrackClock` pins each one to the wall-clock time its first frame arrived, so audio and
video share one stream timeline (aligned to within the network jitter).

A peer ends when its connection fails or closes, when all its tracks end (the caller hung
up: RTCP BYE), when it stays silent for `media_timeout_s` (a caller that vanished without
a word, e.g. a killed browser), or when ICE does not connect within `connect_timeout_s`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from monitor.live.sink import MediaSink
from monitor.media.decode import AUDIO_RESYNC_S, AudioConverter

logger = logging.getLogger(__name__)

WATCHDOG_PERIOD_S = 0.25  # how often a peer checks its connect / media deadlines
SINK_ERROR_LOG_EVERY = 100  # log the 1st, 101st, ... failed push of a stream, count all
CLOSE_TIMEOUT_S = 5.0  # longest wait for aiortc to tear a connection down
TRACK_KINDS = ("audio", "video")


@dataclass
class PeerStats:
    """Counters of one peer (mutable on purpose: updated per frame on the loop thread)."""

    audio_frames: int = 0  # frames received from aiortc (20 ms each for Opus)
    audio_samples: int = 0  # mono samples pushed to the sink, after resampling
    video_frames: int = 0  # frames received and pushed
    sink_errors: int = 0  # pushes that raised inside the sink
    decode_errors: int = 0  # audio frames the resampler refused


class TrackClock:
    """Maps one track's media time (s from its first RTP packet) onto the stream timeline
    (s since the peer was created), using the arrival time of the track's first frame."""

    def __init__(self, origin: float) -> None:
        self._origin = origin  # time.monotonic() when the peer was created
        self._offset: float | None = None  # stream time - media time, fixed at first frame

    def stream_time(self, media_time: float | None, now: float) -> float:
        if media_time is None:  # no pts: the best we know is when it arrived
            return max(0.0, now - self._origin)
        if self._offset is None:
            self._offset = (now - self._origin) - media_time
        return max(0.0, media_time + self._offset)


def frame_time(frame: Any) -> float | None:
    """Presentation time of an aiortc/PyAV frame in seconds, or None when it has none."""
    pts = getattr(frame, "pts", None)
    time_base = getattr(frame, "time_base", None)
    if pts is None or time_base is None:
        return None
    return float(pts * time_base)


async def close_peer_connection(pc: RTCPeerConnection, stream_id: str) -> None:
    """`pc.close()`, bounded in time, and forced when aiortc trips over a connection that a
    bad offer left half built (it then raises, e.g. AttributeError on a missing transport,
    and stops nothing after that point)."""
    try:
        await asyncio.wait_for(pc.close(), CLOSE_TIMEOUT_S)
        drop_transport_listeners(pc)
        return
    except Exception as exc:  # see the docstring: any error here must not leak the peer
        logger.warning("stream %s: closing the peer connection failed: %r", stream_id, exc)
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        if dtls is None:
            continue
        for transport in (dtls, dtls.transport):  # DTLS, then the ICE transport under it
            try:
                await asyncio.wait_for(transport.stop(), CLOSE_TIMEOUT_S)
            except Exception as exc:
                logger.debug("stream %s: forced stop of %r: %r", stream_id, transport, exc)
    pc.remove_all_listeners()
    drop_transport_listeners(pc)


def drop_transport_listeners(pc: RTCPeerConnection) -> None:
    """Remove the state listeners a closed connection leaves on its DTLS transports.

    aiortc's `close()` removes the connection's own listeners but not those it put on its
    transports, which point back at it: a reference cycle that keeps the whole closed
    connection (receivers, jitter buffers, rate estimators, ...) until a full cyclic
    garbage collection. Without them reference counting frees it at once."""
    for transceiver in pc.getTransceivers():
        if transceiver.receiver.transport is not None:
            transceiver.receiver.transport.remove_all_listeners()


class PeerSession:
    """One caller's connection and the tasks draining its tracks into one MediaSink."""

    def __init__(
        self,
        stream_id: str,
        pc: RTCPeerConnection,
        sink: MediaSink,
        *,
        sample_rate: int,
        connect_timeout_s: float,
        media_timeout_s: float,
        on_closed: Callable[[PeerSession, str], None],
    ) -> None:
        self.stream_id = stream_id
        self.pc = pc
        self.sink = sink
        self.stats = PeerStats()
        self.closed = asyncio.Event()
        self.close_reason: str | None = None
        self._sample_rate = sample_rate
        self._connect_timeout_s = connect_timeout_s
        self._media_timeout_s = media_timeout_s
        self._on_closed = on_closed
        self._origin = time.monotonic()
        self._connected_at: float | None = None
        self._last_media: float | None = None
        self._kinds_seen: set[str] = set()
        self._track_tasks: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_connection_state)

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start the watchdog; call once the answer has been sent."""
        self._spawn(self._watchdog(), track=False)

    def close_soon(self, reason: str) -> None:
        """Schedule `close` from a callback that must not block (aiortc events, tasks)."""
        if not self._closing:
            self._spawn(self.close(reason), track=False)

    async def close(self, reason: str) -> None:
        """Stop the tasks, close the connection, tell the sink and the owner. Idempotent."""
        if self._closing:
            await self.closed.wait()
            return
        self._closing = True
        self.close_reason = reason
        me = asyncio.current_task()
        others = [t for t in self._tasks | self._track_tasks if t is not me and not t.done()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await close_peer_connection(self.pc, self.stream_id)
        try:
            self.sink.close(reason)
        except Exception:  # the sink belongs to the pipeline: a bug there must not leak peers
            logger.exception("stream %s: sink.close raised", self.stream_id)
        s = self.stats
        logger.info(
            "stream %s: closed (%s) after %.1f s; audio %d frames / %d samples, video %d frames, "
            "%d sink errors, %d decode errors",
            self.stream_id,
            reason,
            time.monotonic() - self._origin,
            s.audio_frames,
            s.audio_samples,
            s.video_frames,
            s.sink_errors,
            s.decode_errors,
        )
        self.closed.set()
        self._on_closed(self, reason)

    def _spawn(self, coro: Any, *, track: bool) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        bucket = self._track_tasks if track else self._tasks
        bucket.add(task)
        task.add_done_callback(bucket.discard)
        if track:
            task.add_done_callback(self._on_track_task_done)

    # --- aiortc events ---------------------------------------------------------------

    def _on_track(self, track: MediaStreamTrack) -> None:
        kind = track.kind
        if kind not in TRACK_KINDS or kind in self._kinds_seen:
            # the offer check admits one audio and one video section, so this is a
            # renegotiation or an odd client; stopping the track ends its (unbounded) queue
            logger.warning("stream %s: ignoring extra %s track", self.stream_id, kind)
            track.stop()
            return
        self._kinds_seen.add(kind)
        logger.info("stream %s: receiving %s", self.stream_id, kind)
        consume = self._consume_audio if kind == "audio" else self._consume_video
        self._spawn(consume(track), track=True)

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        logger.info("stream %s: connection %s", self.stream_id, state)
        if state == "connected" and self._connected_at is None:
            self._connected_at = time.monotonic()
        elif state in ("failed", "closed"):
            self.close_soon(f"connection {state}")

    def _on_track_task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("stream %s: track task failed", self.stream_id, exc_info=task.exception())
        if not self._track_tasks - {task} and not self._closing:
            self.close_soon("tracks ended")

    # --- draining --------------------------------------------------------------------

    def _push(self, push: Callable[[Any, float], None], payload: Any, t: float) -> None:
        try:
            push(payload, t)
        except Exception:  # per-stream boundary: count, log now and then, keep draining
            self.stats.sink_errors += 1
            if self.stats.sink_errors % SINK_ERROR_LOG_EVERY == 1:
                logger.exception(
                    "stream %s: sink push failed (%d so far)",
                    self.stream_id,
                    self.stats.sink_errors,
                )

    async def _consume_audio(self, track: MediaStreamTrack) -> None:
        clock = TrackClock(self._origin)
        # The same conversion as training and offline scoring (equal-weight downmix).
        converter = AudioConverter(self._sample_rate)
        next_t: float | None = None  # running time for frames without pts
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            self._last_media = now
            self.stats.audio_frames += 1
            if not isinstance(frame, av.AudioFrame):  # aiortc decodes: never a Packet here
                continue
            try:
                samples = converter.convert(frame)
            except (ValueError, av.error.FFmpegError) as exc:
                # e.g. a format the resampler refuses: start a fresh converter, drop the frame
                self.stats.decode_errors += 1
                logger.warning("stream %s: audio resample failed: %s", self.stream_id, exc)
                converter = AudioConverter(self._sample_rate)
                continue
            if not samples.size:
                continue
            media_t = frame_time(frame)
            if media_t is None:
                t = next_t if next_t is not None else clock.stream_time(None, now)
            else:
                t = clock.stream_time(media_t, now)
                if next_t is not None and abs(t - next_t) <= AUDIO_RESYNC_S:
                    t = next_t  # contiguous: the resampler's buffering is not a gap
            next_t = t + samples.size / self._sample_rate
            self.stats.audio_samples += samples.size
            self._push(self.sink.push_audio, samples, t)

    async def _consume_video(self, track: MediaStreamTrack) -> None:
        clock = TrackClock(self._origin)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            self._last_media = now
            self.stats.video_frames += 1
            self._push(self.sink.push_video, frame, clock.stream_time(frame_time(frame), now))

    async def _watchdog(self) -> None:
        while not self._closing:
            await asyncio.sleep(WATCHDOG_PERIOD_S)
            now = time.monotonic()
            if self._connected_at is None:
                if now - self._origin > self._connect_timeout_s:
                    self.close_soon(f"not connected within {self._connect_timeout_s:g} s")
                    return
                continue
            last = self._last_media if self._last_media is not None else self._connected_at
            if now - last > self._media_timeout_s:
                self.close_soon(f"no media for {self._media_timeout_s:g} s")
                return
