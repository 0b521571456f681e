"""One scorer for all streams: cross-stream micro-batching in front of the backend.

Windows from every stream wait in one bounded queue. A batch is flushed when it is full
(`max_batch`), when its oldest window has waited `max_delay_s`, or at once when no other
window is on its way (so a quiet monitor does not pay the batching delay); `backend.score` runs in
a dedicated worker thread, never on the event loop, and each row of the result goes back
to the stream it came from. When the backend falls behind and more than `max_pending`
windows wait, the OLDEST are dropped (their scores would be stale anyway) and counted
per stream - the queue never grows without bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from monitor.backend import Backend, Scores, check_batch
from monitor.live.windowing import Window

logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 32  # windows per backend call
DEFAULT_MAX_DELAY_S = 0.05  # longest a window waits for its batch to fill
DEFAULT_MAX_PENDING = 256  # windows waiting across all streams before dropping the oldest


@dataclass(frozen=True)
class ScoredWindow:
    """A window's scores, routed back to its stream."""

    window: Window
    fused: float  # P(fake), raw (unsmoothed)
    audio: float
    visual: float
    scored_at: float  # monotonic
    sync: float | None = None  # P(voice and mouth out of step); None: the model has no sync
    batch_at: float | None = None  # monotonic start of the backend call that scored it

    @property
    def latency_s(self) -> float:
        """Window complete -> score available."""
        return self.scored_at - self.window.ready_at

    def stage_s(self) -> dict[str, float] | None:
        """`latency_s` split into crop, batch_wait and inference (None: a stage untimed)."""
        cropped, batch = self.window.cropped_at, self.batch_at
        if cropped is None or batch is None:
            return None
        return {
            "crop": cropped - self.window.ready_at,
            "batch_wait": batch - cropped,
            "inference": self.scored_at - batch,
        }


@dataclass(frozen=True)
class BatchStats:
    """What one backend call did, for metrics."""

    size: int
    infer_s: float  # backend.score wall time
    queued: int  # windows still waiting after this batch was taken


class Scorer:
    """Batch windows across streams; call `submit` on the loop, run `run()` as a task."""

    def __init__(
        self,
        backend: Backend,
        on_result: Callable[[ScoredWindow], None],
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_delay_s: float = DEFAULT_MAX_DELAY_S,
        max_pending: int = DEFAULT_MAX_PENDING,
        on_drop: Callable[[Window], None] | None = None,
        on_batch: Callable[[BatchStats], None] | None = None,
        more_coming: Callable[[], bool] | None = None,
        on_failed: Callable[[list[Window], str], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_pending < max_batch:
            raise ValueError(f"need 1 <= max_batch ({max_batch}) <= max_pending ({max_pending})")
        self.backend = backend
        self.contract = backend.contract
        self.on_result = on_result
        self.on_drop = on_drop
        self.on_failed = on_failed  # a batch the backend failed to score, and why
        self.on_batch = on_batch
        # Whether another window is about to arrive (a crop is under way). When nothing is,
        # waiting out max_delay_s cannot grow the batch: flush at once.
        self.more_coming = more_coming
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.max_pending = max_pending
        self._pending: deque[tuple[float, Window]] = deque()  # (submitted monotonic, window)
        self._wake = asyncio.Event()
        # One thread: backends promise safety from one worker thread, not from many.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer")
        self._busy = False  # a batch is being scored
        self.windows_scored = 0
        self.windows_dropped = 0
        self.batches = 0
        self.errors = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def idle(self) -> bool:
        return not self._pending and not self._busy

    def submit(self, window: Window) -> None:
        """Queue a window; drops (and reports) the oldest when the queue is full."""
        while len(self._pending) >= self.max_pending:
            _, old = self._pending.popleft()
            self.windows_dropped += 1
            if self.on_drop is not None:
                self.on_drop(old)
        self._pending.append((time.monotonic(), window))
        self._wake.set()

    def discard_stream(self, stream_id: str) -> int:
        """Forget a removed stream's waiting windows (not counted as drops)."""
        before = len(self._pending)
        self._pending = deque(p for p in self._pending if p[1].stream_id != stream_id)
        return before - len(self._pending)

    async def _next_batch(self) -> list[Window]:
        """Wait until a batch is due: full, or its oldest window waited max_delay_s."""
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(self._pending) >= self.max_batch:
                break
            if self.more_coming is not None and not self.more_coming():
                break
            waited = time.monotonic() - self._pending[0][0]
            remaining = self.max_delay_s - waited
            if remaining <= 0:
                break
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=remaining)
            except TimeoutError:
                break
        n = min(self.max_batch, len(self._pending))
        return [self._pending.popleft()[1] for _ in range(n)]

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                batch = await self._next_batch()
                self._busy = True
                audio = np.stack([w.audio for w in batch]).astype(np.float32, copy=False)
                faces = np.stack([w.faces for w in batch])
                t0 = time.monotonic()
                try:
                    scores = await loop.run_in_executor(self._executor, self._score, audio, faces)
                except Exception as exc:  # boundary: a failed batch must not stop scoring
                    self.errors += 1
                    self._busy = False
                    reason = f"{type(exc).__name__}: {exc}"
                    logger.error("scorer: batch of %d windows failed: %s", len(batch), reason)
                    if self.on_failed is not None:
                        self.on_failed(batch, reason)
                    continue
                done = time.monotonic()
                self.batches += 1
                if self.on_batch is not None:
                    self.on_batch(BatchStats(len(batch), done - t0, len(self._pending)))
                for i, window in enumerate(batch):
                    fused, a, v = scores.row(i)
                    self.windows_scored += 1
                    scored = ScoredWindow(window, fused, a, v, done, scores.sync_at(i), batch_at=t0)
                    try:
                        self.on_result(scored)
                    except Exception:  # per-stream boundary: other streams keep scoring
                        logger.exception("stream %s: handling a score failed", window.stream_id)
                self._busy = False
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _score(self, audio: np.ndarray, faces: np.ndarray) -> Scores:
        check_batch(self.contract, audio, faces)
        scores = self.backend.score(audio, faces)
        if len(scores) != audio.shape[0]:
            raise ValueError(f"backend returned {len(scores)} rows for a batch of {audio.shape[0]}")
        return scores


def warm_up(backend: Backend, batch: int = 1) -> float:
    """Run one dummy batch (compiles kernels, allocates arenas); returns seconds taken."""
    c = backend.contract
    audio = np.zeros((batch, c.window_samples), dtype=np.float32)
    faces = np.zeros((batch, *c.faces_shape), dtype=np.uint8)
    t0 = time.monotonic()
    backend.score(audio, faces)
    return time.monotonic() - t0
