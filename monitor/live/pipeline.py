"""The live pipeline: streams -> buffers -> windower -> crops -> one scorer -> state -> events.

`Pipeline` implements `monitor.live.sink.StreamRegistry`: sources that appear on demand
(a WebRTC peer) call `open_stream` and push into the returned sink; configured RTSP and
file streams are started with `add_source`, which also runs the stream's supervisor.
Everything per stream lives in one `StreamRuntime`; the scorer is shared by all streams.

Scaling out: ingest (decode + windowing + crops) is the expensive, per-stream part and
`Window` is small and picklable. `submit_window` is the seam where windows from other
processes (see `monitor.live.ingest_workers`) enter the scorer; those streams are registered with
`open_remote_stream` and have no local buffers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from monitor.backend import Backend, model_calibration
from monitor.contract import InputContract
from monitor.errors import ConfigError
from monitor.live.buffers import StreamBuffers
from monitor.live.config import MonitorConfig, effective_state
from monitor.live.crops import Cropper
from monitor.live.events import EventDispatcher
from monitor.live.evidence import PacketRing
from monitor.live.ingest import IngestChain, IngestSettings
from monitor.live.metrics import MonitorMetrics, StreamMetrics
from monitor.live.scorer import BatchStats, ScoredWindow, Scorer
from monitor.live.sink import StreamStatus
from monitor.live.sources import RetryPolicy, Source, SourceSupervisor, sanitize_stream_id
from monitor.live.state import ALERT, DOWN, STARTING, StateChange, StreamState
from monitor.live.timeline import TimelineRow, TimelineWriter
from monitor.live.windowing import Window, stagger_offset

logger = logging.getLogger(__name__)

HOUSEKEEPING_S = 1.0  # fps and queue gauges refresh period
HISTORY_WINDOWS = 600  # smoothed scores kept per stream for the operator page (10 min at 1 s)
STREAM_KINDS = ("webrtc", "rtsp", "file", "remote")

CropperFactory = Callable[[str], Cropper]  # stream id -> that stream's own cropper


def ingest_settings(cfg: MonitorConfig) -> IngestSettings:
    return IngestSettings(
        audio_seconds=cfg.buffers.audio_seconds,
        video_frames=cfg.buffers.video_frames,
        hop_seconds=cfg.windows.hop_seconds,
    )


def window_offset(cfg: MonitorConfig, contract: InputContract, slot: int) -> float:
    """The `slot`-th stream's window offset (`windows.stagger`; 0 when off)."""
    if not cfg.windows.stagger:
        return 0.0
    hop = cfg.windows.hop_seconds or contract.hop_seconds
    return stagger_offset(slot, hop, contract.window_seconds)


def retry_policy(cfg: MonitorConfig) -> RetryPolicy:
    s = cfg.sources
    return RetryPolicy(
        initial_s=s.backoff_initial_s,
        max_s=s.backoff_max_s,
        jitter=s.backoff_jitter,
        stall_s=s.stall_timeout_s,
        open_timeout_s=s.open_timeout_s,
    )


class StreamRuntime:
    """Everything one stream owns; also the supervisor's `SourceEvents`."""

    def __init__(self, pipeline: Pipeline, stream_id: str, kind: str, slot: int = 0) -> None:
        self.pipeline = pipeline
        self.stream_id = stream_id
        self.kind = kind
        self.slot = slot  # its place among the pipeline's streams: its window offset
        self.metrics: StreamMetrics = pipeline.metrics.stream(stream_id)
        self.state = StreamState(stream_id, pipeline.state_params)
        self.ingest: IngestChain | None = None  # None: ingested by a worker process
        self.evidence: PacketRing | None = None  # opt-in: last seconds of packets
        self.degraded = False  # the latest window could not be scored (backend error)
        self.supervisor: SourceSupervisor | None = None
        self.supervised = False  # a supervisor (here or in an ingest worker) runs its source
        self.tasks: set[asyncio.Task[Any]] = set()
        self.windows_scored = 0
        self.windows_dropped = 0
        self.latency_s: float | None = None
        self.fps = 0.0
        self._frames_seen = 0
        self._fps_at = time.monotonic()
        self.ended: str | None = None  # reason the source ended (EOF), None while running
        # (wall time, smoothed fused, audio, visual, sync, state) per scored window
        self.history: deque[
            tuple[float, float | None, float | None, float | None, float | None, str]
        ] = deque(maxlen=HISTORY_WINDOWS)
        tdir = pipeline.cfg.timeline.dir
        self.timeline = TimelineWriter(tdir / f"{stream_id}.csv") if tdir is not None else None

    @property
    def frames_seen(self) -> int:
        """Video frames received so far, as of the last housekeeping tick."""
        return self._frames_seen

    # -- ingest (local streams) ----------------------------------------------------------

    def attach_ingest(self, cropper: Cropper, executor: ThreadPoolExecutor) -> StreamBuffers:
        self.ingest = IngestChain(
            self.stream_id,
            self.pipeline.contract,
            ingest_settings(self.pipeline.cfg),
            cropper,
            executor,
            submit=self.pipeline.submit_window,
            on_window_dropped=lambda n: self.window_dropped("crop", n),
            on_media_dropped=self.media_dropped,
            on_end=self.on_close,
            offset_s=window_offset(self.pipeline.cfg, self.pipeline.contract, self.slot),
        )
        return self.ingest.buffers

    def on_close(self, reason: str) -> None:
        """The source ended and its last window is out (locally or in an ingest worker)."""
        self.ended = reason
        self.metrics.set_up(False)

    # -- SourceEvents (supervisor) -------------------------------------------------------

    def source_up(self) -> None:
        self.metrics.set_up(True)
        if self.state.state == DOWN:
            self.pipeline.record_change(self, self.state.mark(STARTING))

    def source_down(self, reason: str) -> None:
        self.metrics.set_up(False)
        self.pipeline.record_change(self, self.state.mark(DOWN))

    def reconnect(self) -> None:
        self.metrics.reconnect()

    def stall(self) -> None:
        self.metrics.stall()

    def media_dropped(self, kind: str, n: int) -> None:
        """n video frames, or n audio samples at the contract's rate, evicted unused."""
        if kind == "audio":
            self.metrics.audio_dropped(n / self.pipeline.contract.sample_rate)
        else:
            self.metrics.video_frames_dropped(n)

    # -- scoring -------------------------------------------------------------------------

    def window_dropped(self, stage: str, n: int = 1) -> None:
        self.windows_dropped += n
        self.metrics.window_dropped(stage, n)

    def scored(self, result: ScoredWindow) -> StateChange | None:
        w = result.window
        change = self.state.update(
            w.end_s,
            result.fused,
            result.audio,
            result.visual,
            face_fraction=w.face_fraction,
            audio_rms=w.audio_rms,
            has_audio=w.has_audio,
            has_video=w.has_video,
            sync=result.sync,
        )
        self.windows_scored += 1
        self.latency_s = result.latency_s
        s = self.state.scores()
        self.history.append(
            (time.time(), s["fused"], s["audio"], s["visual"], s["sync"], self.state.state)
        )
        if self.timeline is not None:
            self.timeline.write(
                TimelineRow(
                    stream_time=w.end_s,
                    raw=(result.fused, result.audio, result.visual, result.sync),
                    smoothed=self.state.scores(),
                    state=self.state.state,
                    raised_by=self.state.raised_by,
                    face_fraction=w.face_fraction,
                    speech=w.has_audio and w.audio_rms >= self.state.params.silence_rms,
                    audio_rms=w.audio_rms,
                )
            )
        self.metrics.scored(
            (result.fused, result.audio, result.visual, result.sync),
            self.state.scores(),
            self.state.levels(),
            result.latency_s,
        )
        stages = result.stage_s()
        if stages is not None:
            self.metrics.stages(stages)
        return change

    def tick(self, now: float) -> None:
        """Housekeeping: frames per second from the buffers' counters."""
        if self.ingest is not None:
            self._count_frames(self.ingest.frames_received, now)

    def remote_frames(self, frames: int, now: float) -> None:
        """Frame count reported by an ingest worker."""
        self._count_frames(frames, now)

    def _count_frames(self, frames: int, now: float) -> None:
        frames = max(frames, self._frames_seen)
        dt = now - self._fps_at
        if dt > 0:
            self.fps = (frames - self._frames_seen) / dt
            self.metrics.frames(frames - self._frames_seen)
            self.metrics.set_fps(self.fps)
        self._frames_seen, self._fps_at = frames, now

    def status(self) -> StreamStatus:
        scores = self.state.scores()
        return StreamStatus(
            stream_id=self.stream_id,
            state=self.state.state,
            fused=scores["fused"],
            audio=scores["audio"],
            visual=scores["visual"],
            sync=scores["sync"],
            raised_by=self.state.raised_by,
            degraded=self.degraded,
            windows_scored=self.windows_scored,
            windows_dropped=self.windows_dropped,
            fps=self.fps,
            latency_ms=None if self.latency_s is None else 1000.0 * self.latency_s,
        )


class Pipeline:
    """Owns the streams, the crop thread pool and the shared scorer (a StreamRegistry)."""

    def __init__(
        self,
        backend: Backend,
        cfg: MonitorConfig,
        *,
        metrics: MonitorMetrics | None = None,
        events: EventDispatcher | None = None,
        cropper_factory: CropperFactory | None = None,
    ) -> None:
        self.backend = backend
        self.contract = backend.contract
        self.cfg = cfg
        self.metrics = metrics or MonitorMetrics()
        state_cfg, self.state_source = effective_state(cfg.state, model_calibration(backend))
        logger.info("%s", self.state_source)
        self.state_params = state_cfg.params()
        self.metrics.set_thresholds(self.state_params)
        self.events = events or EventDispatcher()
        self.cropper_factory = cropper_factory or self._default_cropper
        self.streams: dict[str, StreamRuntime] = {}
        self.scorer = Scorer(
            backend,
            self._on_result,
            max_batch=cfg.scorer.max_batch,
            max_delay_s=cfg.scorer.max_delay_ms / 1000.0,
            max_pending=cfg.scorer.max_pending,
            on_drop=self._on_scorer_drop,
            on_batch=self._on_batch,
            more_coming=self._windows_in_flight,
            on_failed=self._on_failed,
        )
        self._executor = ThreadPoolExecutor(
            max_workers=cfg.windows.crop_workers, thread_name_prefix="crop"
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False

    def _default_cropper(self, stream_id: str) -> Cropper:
        from monitor.media.faces import FaceCropper

        return FaceCropper.from_contract(self.contract, name=stream_id)

    # -- lifecycle -----------------------------------------------------------------------

    def _spawn(self, coro: Any, name: str, owner: StreamRuntime | None = None) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if owner is not None:
            owner.tasks.add(task)
            task.add_done_callback(owner.tasks.discard)
        task.add_done_callback(self._log_task_end)
        return task

    @staticmethod
    def _log_task_end(task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("task %s failed: %r", task.get_name(), task.exception())

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.events.start()
        self._spawn(self.scorer.run(), "scorer")
        self._spawn(self._housekeeping(), "housekeeping")

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Cancel every task (sources, crops, scorer) and wait for them, bounded."""
        for sid in list(self.streams):
            self.close_stream(sid)
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
        await self.events.close(timeout_s=min(2.0, timeout_s))
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            self._tick(time.monotonic())

    def _tick(self, now: float) -> None:
        # a function of its own: a loop variable in the loop above would keep the last
        # stream's runtime (and its buffers) alive after the stream is removed
        for rt in list(self.streams.values()):
            rt.tick(now)
        self.metrics.scorer_queue.set(self.scorer.pending)

    # -- StreamRegistry ------------------------------------------------------------------

    def _register(self, stream_id: str, kind: str) -> StreamRuntime:
        if kind not in STREAM_KINDS:
            raise ValueError(f"unknown stream kind {kind!r}")
        sid = sanitize_stream_id(stream_id)
        if sid in self.streams:
            raise ConfigError(f"stream id {sid!r} is already in use; pick another id")
        if len(self.streams) >= self.cfg.max_streams:
            raise ConfigError(
                f"stream limit reached ({self.cfg.max_streams}); raise max_streams or "
                "run another monitor process"
            )
        used = {rt.slot for rt in self.streams.values()}
        slot = next(i for i in range(len(used) + 1) if i not in used)  # the lowest free one
        rt = StreamRuntime(self, sid, kind, slot)
        self.streams[sid] = rt
        rt.metrics.set_state(rt.state.state, rt.state.raised_by)
        logger.info("stream %s: opened (%s)", sid, kind)
        return rt

    def open_stream(self, stream_id: str, kind: str) -> StreamBuffers:
        """Register a stream and return its sink; call on the event loop (after start)."""
        rt = self._register(stream_id, kind)
        buffers = rt.attach_ingest(self.cropper_factory(rt.stream_id), self._executor)
        assert rt.ingest is not None
        self._spawn(rt.ingest.run(), f"crop-{rt.stream_id}", rt)
        return buffers

    def open_remote_stream(self, stream_id: str) -> str:
        """A stream ingested in another process: only scoring state lives here."""
        return self._register(stream_id, "remote").stream_id

    def close_stream(self, stream_id: str) -> None:
        sid = sanitize_stream_id(stream_id)
        rt = self.streams.pop(sid, None)
        if rt is None:
            return
        if rt.ingest is not None and rt.ingest.buffers.closed_reason is None:
            rt.ingest.buffers.close("removed")
        for task in list(rt.tasks):
            task.cancel()
        if rt.ingest is not None:
            rt.ingest.release()  # frees the stream's frames now, not at a full GC
        self.scorer.discard_stream(sid)
        self.metrics.remove_stream(sid)
        if rt.timeline is not None:
            rt.timeline.close()
        logger.info("stream %s: removed", sid)

    def status(self, stream_id: str) -> StreamStatus | None:
        rt = self.streams.get(sanitize_stream_id(stream_id))
        return None if rt is None else rt.status()

    def statuses(self) -> list[StreamStatus]:
        return [rt.status() for rt in self.streams.values()]

    # -- sources -------------------------------------------------------------------------

    def add_source(self, stream_id: str, source: Source) -> StreamRuntime:
        """Open a stream and keep `source` running into it under a supervisor."""
        sink = self.open_stream(stream_id, source.kind)
        rt = self.streams[sink.stream_id]
        if self.cfg.evidence.enabled:
            rt.evidence = PacketRing(rt.stream_id, self.cfg.evidence.settings())
            self.cfg.evidence.dir.mkdir(parents=True, exist_ok=True)
        rt.supervisor = SourceSupervisor(
            rt.stream_id,
            source,
            sink,
            retry_policy(self.cfg),
            rt,
            sample_rate=self.contract.sample_rate,
            ring=rt.evidence,
        )
        rt.supervised = True
        self._spawn(rt.supervisor.run(), f"source-{rt.stream_id}", rt)
        return rt

    def sources_ended(self) -> bool:
        """True when every supervised source has finished (non-looping files at EOF)."""
        return all(rt.ended is not None for rt in self.streams.values() if rt.supervised)

    def idle(self) -> bool:
        """Nothing waiting to be cropped or scored (used to finish file runs cleanly)."""
        crops_idle = all(rt.ingest is None or rt.ingest.idle for rt in self.streams.values())
        return crops_idle and self.scorer.idle

    # -- scoring -------------------------------------------------------------------------

    def _windows_in_flight(self) -> bool:
        """A window is being prepared here, or may arrive from an ingest worker at any time."""
        for rt in self.streams.values():
            if rt.kind == "remote" or (rt.ingest is not None and not rt.ingest.idle):
                return True
        return False

    def submit_window(self, window: Window) -> None:
        if window.stream_id in self.streams:
            self.scorer.submit(window)

    def _on_scorer_drop(self, window: Window) -> None:
        rt = self.streams.get(window.stream_id)
        if rt is not None:
            rt.window_dropped("scorer")

    def _on_batch(self, stats: BatchStats) -> None:
        self.metrics.batch_size.observe(stats.size)
        self.metrics.infer.observe(stats.infer_s)
        self.metrics.scorer_queue.set(stats.queued)

    def _on_failed(self, batch: list[Window], reason: str) -> None:
        """The backend failed a batch: its windows are counted as dropped and their streams
        marked degraded until one of their windows is scored again."""
        self.metrics.scorer_errors.inc()
        for window in batch:
            rt = self.streams.get(window.stream_id)
            if rt is None:
                continue
            rt.window_dropped("backend")
            if not rt.degraded:
                logger.warning("stream %s: degraded: window not scored (%s)", rt.stream_id, reason)
            rt.degraded = True
            rt.metrics.set_degraded(True)

    def _on_result(self, result: ScoredWindow) -> None:
        rt = self.streams.get(result.window.stream_id)
        if rt is None:
            return  # removed while its window was being scored
        if rt.degraded:
            logger.info("stream %s: scoring again", rt.stream_id)
            rt.degraded = False
            rt.metrics.set_degraded(False)
        self.record_change(rt, rt.scored(result))

    def record_change(self, rt: StreamRuntime, change: StateChange | None) -> None:
        if change is None:
            return
        if change.state == ALERT and rt.evidence is not None:
            path = rt.evidence.request(change.wall_time)
            if path is not None:
                change = dataclasses.replace(change, evidence=path.name)
        rt.metrics.set_state(change.state, change.raised_by)
        self.metrics.events.labels(change.state).inc()
        self.events.emit(change)


async def wait_until(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.05) -> bool:
    """Poll `predicate` on the loop until true or timeout; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(poll_s)
    return True
