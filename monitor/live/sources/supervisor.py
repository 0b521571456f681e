"""Keeps one source running: restart on failure or stall, capped exponential backoff + jitter.

The supervisor is an asyncio task; the decoding happens in a `DecodeThread`. Stalls are
detected from outside the thread (no decoded media for `stall_s`), because a blocked
PyAV read may never return: the supervisor then stops waiting for that thread (it is told
to stop and its later hand-overs are ignored) and starts a fresh attempt.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Protocol

from monitor.contract import SAMPLE_RATE
from monitor.live.evidence import PacketRing
from monitor.live.sink import MediaSink
from monitor.live.sources.base import DecodeThread, Source

logger = logging.getLogger(__name__)

WATCH_INTERVAL_S = 0.1  # how often the supervisor looks at its thread
FILE_MAX_FAILURES = 3  # attempts in a row after which a file source gives up
FROZEN_SHARE = 0.9  # an open that failed after this share of its timeout met a frozen server
ABANDON_JOIN_S = 0.5  # how long to wait for a stopped thread before abandoning it


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed or stalled source is retried."""

    initial_s: float = 0.5  # first backoff delay
    max_s: float = 30.0  # cap on the backoff delay
    factor: float = 2.0  # growth per consecutive failure
    jitter: float = 0.2  # +- fraction of random spread, so cameras do not reconnect in step
    stall_s: float = 8.0  # no decoded media for this long = stalled
    open_timeout_s: float = 10.0  # PyAV's own open timeout (added to stall_s while opening)
    healthy_s: float = 10.0  # an attempt that delivered media this long resets the backoff

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Backoff before retry number `failures` (0-based), jittered and capped."""
        base = min(self.max_s, self.initial_s * self.factor ** max(0, failures))
        spread = base * self.jitter
        r = (rng or random).uniform(-spread, spread)
        return max(0.0, min(self.max_s, base + r))


class SourceEvents(Protocol):
    """Where the supervisor reports what happens (the pipeline's per-stream runtime)."""

    def source_up(self) -> None: ...

    def source_down(self, reason: str) -> None: ...

    def reconnect(self) -> None: ...

    def stall(self) -> None: ...

    def media_dropped(self, kind: str, n: int) -> None:
        """Called from the decode thread (must be thread-safe)."""
        ...


class _NoEvents:
    def source_up(self) -> None:
        pass

    def source_down(self, reason: str) -> None:
        pass

    def reconnect(self) -> None:
        pass

    def stall(self) -> None:
        pass

    def media_dropped(self, kind: str, n: int) -> None:
        pass


class SourceSupervisor:
    """Run `source` into `sink` until cancelled, or until a non-live source ends."""

    def __init__(
        self,
        stream_id: str,
        source: Source,
        sink: MediaSink,
        policy: RetryPolicy,
        events: SourceEvents | None = None,
        *,
        sample_rate: int = SAMPLE_RATE,
        rng: random.Random | None = None,
        ring: PacketRing | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.ring = ring
        self.source = source
        self.sink = sink
        self.policy = policy
        self.events: SourceEvents = events or _NoEvents()
        self.sample_rate = sample_rate
        self.rng = rng or random.Random()
        self.attempts = 0
        self.reconnects = 0
        self.stalls = 0
        self.abandoned_threads = 0
        self.last_error: str | None = None
        self._thread: DecodeThread | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        offset = 0.0
        try:
            while True:
                if self.attempts > 0:
                    self.reconnects += 1
                    self.events.reconnect()
                    discontinuity = getattr(self.sink, "discontinuity", None)
                    if discontinuity is not None:
                        discontinuity()
                self.attempts += 1
                thread = DecodeThread(
                    self.stream_id,
                    self.source,
                    self.sink,
                    loop,
                    time_offset=offset,
                    sample_rate=self.sample_rate,
                    on_drop=self.events.media_dropped,
                    ring=self.ring,
                )
                self._thread = thread
                thread.start()
                outcome = await self._watch(thread)
                if not await thread.drained():
                    logger.warning(
                        "stream %s: %d media items still queued after the decoder ended",
                        self.stream_id,
                        thread.in_flight,
                    )
                offset = thread.max_time + 1.0  # keep the stream clock moving forward
                healthy = (
                    thread.first_media_at is not None
                    and thread.heartbeat - thread.first_media_at >= self.policy.healthy_s
                )
                if outcome == "eof" and not self.source.live:
                    logger.info("stream %s: %s ended", self.stream_id, self.source.describe())
                    self.sink.close("eof")
                    return
                if outcome == "error" and self._frozen(thread):
                    # The server accepted the connection and then sent nothing until the
                    # open timeout: a frozen camera is a stall, not just a failed attempt.
                    self.stalls += 1
                    self.events.stall()
                    outcome = "stall"
                reason = outcome if thread.error is None else f"{outcome}: {thread.error}"
                self.last_error = reason
                self.events.source_down(reason)
                failures = 0 if healthy else failures + 1
                if not self.source.live and (thread.permanent or failures >= FILE_MAX_FAILURES):
                    # A file does not heal by waiting: after a few failed attempts in a row
                    # (a truncated or corrupt file) the stream ends, and says why.
                    why = reason if thread.permanent else f"{failures} failed attempts: {reason}"
                    logger.error("stream %s: giving up: %s", self.stream_id, why)
                    self.sink.close(f"gave up: {why}")
                    return
                delay = self.policy.delay(max(0, failures - 1), self.rng)
                logger.warning(
                    "stream %s: %s (%s); retrying in %.1f s",
                    self.stream_id,
                    self.source.describe(),
                    reason,
                    delay,
                )
                await asyncio.sleep(delay)
        finally:
            if self._thread is not None:
                self._thread.stop()

    def _frozen(self, thread: DecodeThread) -> bool:
        """Never connected, and the attempt lasted about the open timeout (a refused or
        unknown address fails at once)."""
        end = thread.ended_at if thread.ended_at is not None else time.monotonic()
        waited = end - thread.started_at
        return not thread.connected and waited >= FROZEN_SHARE * self.policy.open_timeout_s

    async def _watch(self, thread: DecodeThread) -> str:
        """Wait for the thread to end or stall; returns "eof" | "error" | "stall"."""
        up = False
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            if thread.connected and not up and thread.first_media_at is not None:
                up = True
                self.events.source_up()
            if not thread.is_alive():
                return thread.outcome or "error"
            now = time.monotonic()
            limit = self.policy.stall_s
            if not thread.connected:
                limit += self.policy.open_timeout_s
            if now - thread.heartbeat > limit:
                self.stalls += 1
                self.events.stall()
                thread.stop()
                # Give a well-behaved read a moment to notice; otherwise abandon the thread
                # (it is a daemon, its container is closed when its read finally returns).
                await asyncio.to_thread(thread.join, ABANDON_JOIN_S)
                if thread.is_alive():
                    self.abandoned_threads += 1
                    logger.warning(
                        "stream %s: decode thread stuck after a stall; abandoned it",
                        self.stream_id,
                    )
                return "stall"
