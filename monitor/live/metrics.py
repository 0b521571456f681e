"""Prometheus metrics of the live monitor, in their own CollectorRegistry.

Metrics are recorded where things happen, through a typed per-stream holder
(`StreamMetrics`) that the stream's runtime owns: the decode thread counts dropped
media, the supervisor counts reconnects and stalls, the state machine sets the state.
Label values come from bounded sets: stream ids are sanitized and capped by the
configured stream limit; heads, states, stages and kinds are fixed tuples below. When a
stream ends, every series carrying its id is removed.
"""

from __future__ import annotations

import contextlib
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from monitor.live.state import ALL_STATES, HEADS, RAISED_BY, Level, StateParams

NAMESPACE = "deepfake"
# window -> score; fine between 0.1 and 0.5 s, where a real-time budget (300 ms) is decided
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 1.0, 2.5, 5.0, 10.0)
INFER_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # windows per backend call
# where a window was dropped: the crop stage fell behind, the queue from an ingest worker
# process to the scorer process was full, the scorer's own queue was, or the backend failed
# to score its batch
DROP_STAGES = ("crop", "queue", "scorer", "backend")
# where a window's latency goes: RGB conversion and face crops (waiting for a crop thread
# included), waiting for its batch (and for the backend to finish the previous one), and
# the backend call that scored it
LATENCY_STAGES = ("crop", "batch_wait", "inference")
WEBHOOK_OUTCOMES = ("sent", "failed", "dropped")
THRESHOLDS = ("suspicious_on", "suspicious_off", "alert_on", "alert_off")  # StateParams fields

CONTENT_TYPE = CONTENT_TYPE_LATEST


class MonitorMetrics:
    """Every metric family of the monitor; one instance per process."""

    # One declaration per metric family, so the whole exposition schema reads in one place
    # (that is why this constructor is long; it holds no logic).
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r, ns = self.registry, NAMESPACE
        self.score = Gauge(
            "score",
            "Rolling (smoothed) P(fake) per stream and head",
            ["stream", "head"],
            namespace=ns,
            registry=r,
        )
        self.raw_score = Gauge(
            "score_raw",
            "P(fake) of the latest scored window",
            ["stream", "head"],
            namespace=ns,
            registry=r,
        )
        self.state = Gauge(
            "stream_state",
            "1 for the stream's current state, 0 for the others",
            ["stream", "state"],
            namespace=ns,
            registry=r,
        )
        self.raised_by = Gauge(
            "verdict_modality",
            "1 for the modality that raised the stream's SUSPICIOUS or ALERT verdict "
            "(voice, face, voice_face, lip_sync); all 0 in other states",
            ["stream", "modality"],
            namespace=ns,
            registry=r,
        )
        self.head_level = Gauge(
            "head_level",
            "Hysteresis level per head: 0 CLEAR, 1 SUSPICIOUS, 2 ALERT",
            ["stream", "head"],
            namespace=ns,
            registry=r,
        )
        self.windows_scored = Counter(
            "windows_scored", "Windows scored", ["stream"], namespace=ns, registry=r
        )
        self.windows_dropped = Counter(
            "windows_dropped",
            "Windows dropped because a stage fell behind",
            ["stream", "stage"],
            namespace=ns,
            registry=r,
        )
        self.video_dropped = Counter(
            "video_frames_dropped",
            "Decoded video frames dropped before use",
            ["stream"],
            namespace=ns,
            registry=r,
        )
        self.audio_dropped = Counter(
            "audio_dropped_seconds",
            "Decoded audio dropped before use",
            ["stream"],
            namespace=ns,
            registry=r,
        )
        self.frames = Counter(
            "video_frames", "Video frames received", ["stream"], namespace=ns, registry=r
        )
        self.fps = Gauge(
            "video_fps", "Video frames per second received", ["stream"], namespace=ns, registry=r
        )
        self.reconnects = Counter(
            "source_reconnects", "Source reconnect attempts", ["stream"], namespace=ns, registry=r
        )
        self.stalls = Counter(
            "source_stalls",
            "Sources that stopped delivering media",
            ["stream"],
            namespace=ns,
            registry=r,
        )
        self.source_up = Gauge(
            "source_up", "1 while the source delivers media", ["stream"], namespace=ns, registry=r
        )
        self.latency = Histogram(
            "window_latency_seconds",
            "Window complete -> score available",
            buckets=LATENCY_BUCKETS_S,
            namespace=ns,
            registry=r,
        )
        self.stage_latency = Histogram(
            "window_stage_seconds",
            "Window latency by stage: crop, batch_wait, inference",
            ["stage"],
            buckets=LATENCY_BUCKETS_S,
            namespace=ns,
            registry=r,
        )
        for stage in LATENCY_STAGES:
            self.stage_latency.labels(stage=stage)
        self.infer = Histogram(
            "inference_seconds",
            "Backend time per batch",
            buckets=INFER_BUCKETS_S,
            namespace=ns,
            registry=r,
        )
        self.batch_size = Histogram(
            "batch_size",
            "Windows per backend call",
            buckets=BATCH_BUCKETS,
            namespace=ns,
            registry=r,
        )
        self.scorer_queue = Gauge(
            "scorer_queue", "Windows waiting for the scorer", namespace=ns, registry=r
        )
        self.streams = Gauge("streams", "Streams being monitored", namespace=ns, registry=r)
        self.events = Counter(
            "events", "State-change events emitted", ["state"], namespace=ns, registry=r
        )
        self.webhook = Counter(
            "webhook_events", "Webhook deliveries by outcome", ["outcome"], namespace=ns, registry=r
        )
        self.scorer_errors = Counter(
            "scorer_errors", "Batches the backend failed to score", namespace=ns, registry=r
        )
        self.degraded = Gauge(
            "stream_degraded",
            "1 while the stream's latest window could not be scored (backend error)",
            ["stream"],
            namespace=ns,
            registry=r,
        )
        self.backend_ready = Gauge(
            "backend_ready", "1 once the backend is loaded and warm", namespace=ns, registry=r
        )
        self.threshold = Gauge(
            "state_threshold",
            "Smoothed P(fake) at which a head enters (_on) or leaves (_off) a level",
            ["head", "threshold"],
            namespace=ns,
            registry=r,
        )
        self.build_info = Gauge(
            "build_info",
            "1, labelled with the monitor version, model checksum, input contract and backend",
            ["version", "model_sha256", "contract", "backend"],
            namespace=ns,
            registry=r,
        )
        for outcome in WEBHOOK_OUTCOMES:  # present at 0, so increase() sees the first one
            self.webhook.labels(outcome)
        for state in ALL_STATES:
            self.events.labels(state)
        self._streams: dict[str, StreamMetrics] = {}
        self._lock = threading.Lock()

    def stream(self, stream_id: str) -> StreamMetrics:
        with self._lock:
            holder = self._streams.get(stream_id)
            if holder is None:
                holder = StreamMetrics(self, stream_id)
                self._streams[stream_id] = holder
                self.streams.set(len(self._streams))
            return holder

    def remove_stream(self, stream_id: str) -> None:
        with self._lock:
            holder = self._streams.pop(stream_id, None)
            self.streams.set(len(self._streams))
        if holder is not None:
            holder.remove()

    def set_thresholds(self, params: StateParams) -> None:
        for head in HEADS:
            th = params.thresholds(head)
            for name in THRESHOLDS:
                self.threshold.labels(head, name).set(getattr(th, name))

    def set_build_info(self, version: str, model_sha256: str, contract: str, backend: str) -> None:
        self.build_info.clear()
        self.build_info.labels(version, model_sha256, contract, backend).set(1)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class StreamMetrics:
    """The series of one stream; every method is cheap and thread-safe."""

    def __init__(self, parent: MonitorMetrics, stream_id: str) -> None:
        self.parent = parent
        self.stream_id = stream_id
        s = stream_id
        self._score = {h: parent.score.labels(s, h) for h in HEADS}
        self._raw = {h: parent.raw_score.labels(s, h) for h in HEADS}
        self._level = {h: parent.head_level.labels(s, h) for h in HEADS}
        self._state = {st: parent.state.labels(s, st) for st in ALL_STATES}
        self._raised_by = {m: parent.raised_by.labels(s, m) for m in RAISED_BY}
        self._scored = parent.windows_scored.labels(s)
        self._dropped = {st: parent.windows_dropped.labels(s, st) for st in DROP_STAGES}
        self._video_dropped = parent.video_dropped.labels(s)
        self._audio_dropped = parent.audio_dropped.labels(s)
        self._frames = parent.frames.labels(s)
        self._fps = parent.fps.labels(s)
        self._reconnects = parent.reconnects.labels(s)
        self._stalls = parent.stalls.labels(s)
        self._up = parent.source_up.labels(s)
        self._degraded = parent.degraded.labels(s)
        self.set_state(ALL_STATES[0])

    def scored(
        self,
        raw: tuple[float, float, float, float | None],
        smoothed: dict[str, float | None],
        levels: dict[str, str],
        latency_s: float,
    ) -> None:
        self._scored.inc()
        for h, v in zip(HEADS, raw, strict=True):
            self._raw[h].set(float("nan") if v is None else v)
        for h in HEADS:
            value = smoothed.get(h)
            # A gated head has no rolling score: export NaN rather than a stale number.
            self._score[h].set(float("nan") if value is None else value)
            self._level[h].set(int(Level[levels[h]]))
        self.parent.latency.observe(max(0.0, latency_s))

    def stages(self, stage_s: dict[str, float]) -> None:
        """One window's latency split by stage (`LATENCY_STAGES`)."""
        for stage, seconds in stage_s.items():
            self.parent.stage_latency.labels(stage=stage).observe(max(0.0, seconds))

    def set_state(self, state: str, raised_by: str | None = None) -> None:
        for name, child in self._state.items():
            child.set(1.0 if name == state else 0.0)
        for name, child in self._raised_by.items():
            child.set(1.0 if name == raised_by else 0.0)

    def window_dropped(self, stage: str, n: int = 1) -> None:
        self._dropped[stage].inc(n)

    def video_frames_dropped(self, frames: int) -> None:
        self._video_dropped.inc(frames)

    def audio_dropped(self, seconds: float) -> None:
        self._audio_dropped.inc(seconds)

    def frames(self, n: int) -> None:
        self._frames.inc(n)

    def set_fps(self, fps: float) -> None:
        self._fps.set(fps)

    def reconnect(self) -> None:
        self._reconnects.inc()

    def stall(self) -> None:
        self._stalls.inc()

    def set_up(self, up: bool) -> None:
        self._up.set(1.0 if up else 0.0)

    def set_degraded(self, degraded: bool) -> None:
        self._degraded.set(1.0 if degraded else 0.0)

    def remove(self) -> None:
        p, s = self.parent, self.stream_id
        for h in HEADS:
            for gauge in (p.score, p.raw_score, p.head_level):
                _remove(gauge, s, h)
        for st in ALL_STATES:
            _remove(p.state, s, st)
        for m in RAISED_BY:
            _remove(p.raised_by, s, m)
        for stage in DROP_STAGES:
            _remove(p.windows_dropped, s, stage)
        for counter in (
            p.windows_scored,
            p.frames,
            p.reconnects,
            p.stalls,
            p.video_dropped,
            p.audio_dropped,
        ):
            _remove(counter, s)
        for gauge in (p.fps, p.source_up, p.degraded):
            _remove(gauge, s)


def _remove(family: Gauge | Counter, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # never set: nothing to remove
        family.remove(*labels)
