"""The cross-stream scorer: flush on size and on delay, routing, drop-oldest backpressure."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.backend import Scores
from monitor.contract import InputContract
from monitor.live.scorer import ScoredWindow, Scorer
from monitor.live.windowing import Window

CONTRACT = InputContract(window_seconds=0.5, hop_seconds=0.5, k_crops=1, crop_size=32)


class RecordingBackend:
    """Deterministic: every head scores the window's first audio sample. Optional delay."""

    name = "recording"
    contract = CONTRACT

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.batches: list[int] = []
        self.threads: set[str] = set()

    def score(self, audio: np.ndarray, faces: np.ndarray) -> Scores:
        self.batches.append(audio.shape[0])
        self.threads.add(threading.current_thread().name)
        if self.delay_s:
            time.sleep(self.delay_s)
        v = audio[:, 0].astype(np.float32)
        return Scores(fused=v, audio=v, visual=v)

    def close(self) -> None:
        pass


def window(stream: str, value: float, index: int = 0) -> Window:
    c = CONTRACT
    return Window(
        stream_id=stream,
        index=index,
        start_s=float(index),
        end_s=float(index) + c.window_seconds,
        audio=np.full(c.window_samples, value, np.float32),
        faces=np.zeros(c.faces_shape, np.uint8),
        face_found=np.ones(c.k_crops, bool),
        audio_rms=value,
        has_audio=True,
        has_video=True,
        ready_at=time.monotonic(),
    )


async def _settle(scorer: Scorer, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not scorer.idle and time.monotonic() < deadline:
        await asyncio.sleep(0.005)


def test_flush_on_full_batch_routes_each_row_back() -> None:
    backend = RecordingBackend()
    results: list[ScoredWindow] = []

    async def main() -> float:
        scorer = Scorer(backend, results.append, max_batch=4, max_delay_s=10.0, max_pending=16)
        task = asyncio.create_task(scorer.run())
        t0 = time.monotonic()
        for i in range(8):  # two streams interleaved
            scorer.submit(window("a" if i % 2 == 0 else "b", i / 10, i))
        await _settle(scorer)
        task.cancel()
        return time.monotonic() - t0

    took = asyncio.run(main())
    assert backend.batches == [4, 4]
    assert took < 5.0  # full batches did not wait for the 10 s delay
    assert all(r.fused == pytest.approx(r.window.index / 10) for r in results)
    assert {r.window.stream_id for r in results} == {"a", "b"}
    assert all(name.startswith("scorer") for name in backend.threads)  # off the loop


def test_flush_on_delay_when_the_batch_does_not_fill() -> None:
    backend = RecordingBackend()
    results: list[ScoredWindow] = []

    async def main() -> None:
        scorer = Scorer(backend, results.append, max_batch=32, max_delay_s=0.15, max_pending=64)
        task = asyncio.create_task(scorer.run())
        scorer.submit(window("a", 0.3))
        scorer.submit(window("b", 0.6))
        await asyncio.sleep(0.05)
        assert backend.batches == []  # still waiting for more windows
        await _settle(scorer)
        task.cancel()

    asyncio.run(main())
    assert backend.batches == [2]
    assert sorted(r.fused for r in results) == pytest.approx([0.3, 0.6])
    assert all(r.latency_s >= 0.1 for r in results)  # they waited ~max_delay


def test_flush_at_once_when_no_other_window_is_coming() -> None:
    backend = RecordingBackend()
    results: list[ScoredWindow] = []
    coming = {"n": 1}

    async def main() -> float:
        scorer = Scorer(
            backend,
            results.append,
            max_batch=32,
            max_delay_s=10.0,
            max_pending=64,
            more_coming=lambda: coming["n"] > 0,
        )
        task = asyncio.create_task(scorer.run())
        t0 = time.monotonic()
        scorer.submit(window("a", 0.1))
        await asyncio.sleep(0.1)
        assert backend.batches == []  # another window is on its way: wait for it
        coming["n"] = 0
        scorer.submit(window("b", 0.2))  # the last one: flush now, not after 10 s
        await _settle(scorer)
        task.cancel()
        return time.monotonic() - t0

    took = asyncio.run(main())
    assert backend.batches == [2] and took < 2.0


def test_backpressure_drops_the_oldest_windows_and_counts_them() -> None:
    backend = RecordingBackend(delay_s=0.3)  # a backend far slower than the input
    results: list[ScoredWindow] = []
    dropped: list[Window] = []

    async def main() -> Scorer:
        scorer = Scorer(
            backend,
            results.append,
            max_batch=2,
            max_delay_s=0.0,
            max_pending=4,
            on_drop=dropped.append,
        )
        task = asyncio.create_task(scorer.run())
        scorer.submit(window("a", 0.0, 0))
        await asyncio.sleep(0.05)  # window 0 is now being scored (0.3 s)
        for i in range(1, 11):
            scorer.submit(window("a", i / 100, i))
            assert scorer.pending <= 4  # never more than max_pending waiting
        await _settle(scorer)
        task.cancel()
        return scorer

    scorer = asyncio.run(main())
    scored = [r.window.index for r in results]
    # the freshest windows survive; the oldest waiting ones were dropped
    assert scored == [0, 7, 8, 9, 10]
    assert [w.index for w in dropped] == [1, 2, 3, 4, 5, 6]
    assert scorer.windows_dropped == 6 and scorer.windows_scored == 5


def test_a_failing_batch_does_not_stop_the_scorer() -> None:
    class Flaky(RecordingBackend):
        def score(self, audio: np.ndarray, faces: np.ndarray) -> Scores:
            if audio[0, 0] < 0:
                raise RuntimeError("boom")
            return super().score(audio, faces)

    results: list[ScoredWindow] = []

    async def main() -> Scorer:
        scorer = Scorer(Flaky(), results.append, max_batch=1, max_delay_s=0.0, max_pending=4)
        task = asyncio.create_task(scorer.run())
        scorer.submit(window("a", -1.0))
        await _settle(scorer)
        scorer.submit(window("a", 0.5))
        await _settle(scorer)
        task.cancel()
        return scorer

    scorer = asyncio.run(main())
    assert scorer.errors == 1 and [r.fused for r in results] == [0.5]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        Scorer(RecordingBackend(), lambda r: None, max_batch=8, max_pending=4)


def test_a_backend_that_fails_a_batch_degrades_those_streams_and_recovers(
    tmp_path: Path,
) -> None:
    """Real pipeline, real ONNX backend wrapped to fail for a while: the windows of the
    failed batches are counted (stage backend), their streams marked degraded, the others
    keep scoring, and everything scores again once the backend recovers."""
    from monitor.backend import load_backend
    from monitor.live.config import MonitorConfig
    from monitor.live.pipeline import Pipeline
    from monitor.live.sources import make_source
    from tests.support.live_media import FAKE, REAL, toy_model, write_clip

    inner = load_backend(toy_model(tmp_path / "model"), "onnxruntime")

    class Flaky:
        name, contract = "flaky", inner.contract
        failing = False

        def score(self, audio: np.ndarray, faces: np.ndarray) -> Scores:
            if self.failing:
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            return inner.score(audio, faces)

        def close(self) -> None:
            inner.close()

    flaky = Flaky()
    cfg = MonitorConfig.model_validate(
        {"model": "x", "scorer": {"max_batch": 4, "max_delay_ms": 20}, "webrtc": {"enabled": False}}
    )
    pipeline = Pipeline(flaky, cfg)  # type: ignore[arg-type]
    clips = {
        "a": write_clip(tmp_path / "a.mp4", seconds=30.0, **FAKE),
        "b": write_clip(tmp_path / "b.mp4", seconds=30.0, **REAL),
    }
    seen: dict[str, object] = {}

    async def scenario() -> None:
        await pipeline.start()
        for sid, clip in clips.items():
            pipeline.add_source(sid, make_source(str(clip), loop=True))
        rts = [pipeline.streams[s] for s in clips]
        await _until(lambda: all(rt.windows_scored >= 3 for rt in rts), 40)
        flaky.failing = True
        await _until(lambda: all(rt.degraded for rt in rts), 20)
        seen["during"] = pipeline.metrics.exposition().decode()
        scored_during = [rt.windows_scored for rt in rts]
        flaky.failing = False
        await _until(
            lambda: all(not rt.degraded and rt.windows_scored > n
                        for rt, n in zip(rts, scored_during, strict=True)),
            20,
        )  # fmt: skip
        seen["after"] = pipeline.metrics.exposition().decode()
        seen["statuses"] = pipeline.statuses()
        await pipeline.stop()

    asyncio.run(scenario())
    during, after = str(seen["during"]), str(seen["after"])
    for sid in clips:
        assert f'deepfake_stream_degraded{{stream="{sid}"}} 1.0' in during
        assert f'deepfake_stream_degraded{{stream="{sid}"}} 0.0' in after
        dropped = re.search(
            rf'deepfake_windows_dropped_total{{stage="backend",stream="{sid}"}} (\d+)', after
        )
        assert dropped is not None and int(dropped.group(1)) >= 1
    errors = re.search(r"deepfake_scorer_errors_total (\d+)", after)
    assert errors is not None and int(errors.group(1)) >= 1
    assert all(not s.degraded for s in seen["statuses"])  # type: ignore[attr-defined]
    inner.close()


async def _until(pred: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("stagger", [True, False])
def test_streams_opened_together_close_their_windows_at_different_moments(
    tmp_path: Path, stagger: bool
) -> None:
    """windows.stagger: each stream's windows after the first shift by its own fraction of
    the hop (slots 0, 1, 2 -> 0, 0.618, 0.236 of it), so the pipeline is not handed every
    stream's window at once; a freed slot is given to the next stream; off: one grid."""
    from monitor.backend import load_backend
    from monitor.live.config import MonitorConfig
    from monitor.live.pipeline import Pipeline
    from monitor.live.sources import make_source
    from tests.support.live_media import REAL, toy_model, write_clip

    backend = load_backend(toy_model(tmp_path / "model"), "onnxruntime")
    cfg = MonitorConfig.model_validate(
        {"model": "x", "windows": {"stagger": stagger}, "webrtc": {"enabled": False}}
    )
    pipeline = Pipeline(backend, cfg)
    clip = write_clip(tmp_path / "a.mp4", seconds=6.0, **REAL)
    starts: dict[str, list[float]] = {}
    on_result = pipeline.scorer.on_result

    def record(r: ScoredWindow) -> None:
        starts.setdefault(r.window.stream_id, []).append(r.window.start_s)
        on_result(r)

    pipeline.scorer.on_result = record
    slots: dict[str, int] = {}

    async def scenario() -> None:
        await pipeline.start()
        for sid in ("a", "b", "c"):
            pipeline.add_source(sid, make_source(str(clip), realtime=False))
        await _until(lambda: pipeline.sources_ended() and pipeline.idle(), 60)
        slots.update({sid: rt.slot for sid, rt in pipeline.streams.items()})
        pipeline.close_stream("b")
        pipeline.add_source("d", make_source(str(clip), realtime=False))
        slots["d"] = pipeline.streams["d"].slot
        await pipeline.stop()

    asyncio.run(scenario())
    backend.close()
    assert slots == {"a": 0, "b": 1, "c": 2, "d": 1}
    hop = backend.contract.hop_seconds
    for sid, offset in (("a", 0.0), ("b", 0.618), ("c", 0.236)):
        got = sorted(starts[sid])
        shift = offset * hop if stagger else 0.0
        want = [0.0] + [j * hop + shift for j in range(1, len(got))]
        assert len(got) >= 3 and got == pytest.approx(want, abs=0.01), (sid, got)
