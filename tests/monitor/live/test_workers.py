"""Ingest spread over worker processes: windows cross a real multiprocessing queue to the
scorer process, which keeps state, metrics and events; workers stop with the service."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from monitor.live.config import MonitorConfig, StreamConfig
from monitor.live.service import Service
from monitor.live.state import ALERT, CLEAR
from tests.support.live_media import FAKE, REAL, toy_model, write_clip


@pytest.mark.slow
def test_two_ingest_workers_feed_one_scorer(tmp_path: Path) -> None:
    streams = [
        {
            "id": name,
            "url": str(write_clip(tmp_path / f"{name}.mp4", seconds=5.0, **look)),
            "realtime": False,
        }
        for name, look in (("fake", FAKE), ("real", REAL))
    ]
    cfg = MonitorConfig.model_validate(
        {
            "model": str(toy_model(tmp_path / "model")),
            "backend": "onnxruntime",
            "ingest_workers": 2,
            "webrtc": {"enabled": False},
            "events": {"path": str(tmp_path / "events.jsonl")},
            "streams": streams,
        }
    )
    service = Service(cfg, serve_http=False)
    seen: dict[str, object] = {}

    async def main() -> None:
        run = asyncio.create_task(service.run(install_signals=False))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            p = service.pipeline
            if p is not None and service.ready and p.sources_ended() and p.idle():
                break
            await asyncio.sleep(0.1)
        assert service.workers is not None
        workers = service.workers
        seen["procs"] = list(workers.procs)
        seen["received"] = workers.windows_received
        seen["metrics"] = service.metrics.exposition().decode()
        service.stop()
        await run

    asyncio.run(main())
    st = {s.stream_id: s for s in service.final_statuses}
    assert st["fake"].state == ALERT and st["real"].state == CLEAR
    # 5 s clips: windows at 0, 1, 2, 3 s for the first stream; the second stream's window
    # offset (windows.stagger, 0.618 s) reached its worker: 0, 1.618, 2.618 s
    assert st["fake"].windows_scored == 4 and st["real"].windows_scored == 3
    assert seen["received"] == 7
    procs = seen["procs"]
    assert isinstance(procs, list) and len(procs) == 2
    assert all(not p.is_alive() and p.exitcode == 0 for p in procs)  # stopped cleanly
    assert 'deepfake_source_up{stream="fake"}' in str(seen["metrics"])
    assert (tmp_path / "events.jsonl").read_text().count('"ALERT"') == 1


def test_streams_are_spread_round_robin(tmp_path: Path) -> None:
    from monitor.live.ingest_workers import IngestWorkers

    w = IngestWorkers.__new__(IngestWorkers)  # assign() needs no processes
    w.n_workers = 3
    streams = [StreamConfig(id=f"s{i}", url=f"{i}.mp4") for i in range(7)]
    groups = w.assign(streams)
    assert [[s.id for s in g] for g in groups] == [["s0", "s3", "s6"], ["s1", "s4"], ["s2", "s5"]]
    assert len(w.assign(streams[:2])) == 2  # no empty workers


def test_windows_dropped_on_the_worker_queue_are_counted_per_stream(tmp_path: Path) -> None:
    from monitor.backend import load_backend
    from monitor.live.ingest_workers import IngestWorkers
    from monitor.live.pipeline import Pipeline

    cfg = MonitorConfig.model_validate(
        {"model": str(toy_model(tmp_path / "model")), "webrtc": {"enabled": False}}
    )
    backend = load_backend(cfg.model, "onnxruntime")
    pipeline = Pipeline(backend, cfg)
    sid = pipeline.open_remote_stream("cam1")
    w = IngestWorkers.__new__(IngestWorkers)  # _dispatch needs only the pipeline
    w.pipeline = pipeline
    w._dispatch(("dropped", sid, "queue", 3))  # what a worker sends when its queue was full
    exposition = pipeline.metrics.exposition().decode()
    assert 'deepfake_windows_dropped_total{stage="queue",stream="cam1"} 3.0' in exposition
    assert pipeline.streams[sid].status().windows_dropped == 3
    backend.close()
