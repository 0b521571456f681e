"""Callers that join and leave leave nothing behind.

A real aiortc caller joins through the real WebRTC routes into the real Pipeline (toy
ONNX detector, face crops, scoring) and hangs up, again and again. With the cyclic
garbage collector switched off, so that anything held only by a reference cycle stays
(and fails the test) instead of waiting for a full collection: every stream's runtime,
buffers, peer session and aiortc connection is freed as the caller leaves, the pipeline
and the WebRTC server hold no entry for it, /metrics has no series of it, and the number
of tasks comes back to where it was. The number of threads does too (give or take a
pool's lazily started worker), counted after one collection, which frees the caller's
own connection; a stream's audio converter starting no thread at all is
tests/monitor/media/test_media.py's.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiohttp import ClientSession, web

from monitor.live.crops import to_rgb
from tests.support.live_media import REAL, toy_model, write_clip
from tests.support.webrtc_peers import join, player_pc, wait_until

CALLS = 4  # after a first one that starts the pools and threads the process keeps
WINDOWS_PER_CALL = 2  # scored windows: the caller's frames were decoded, kept and cropped
THREAD_SLACK = 2  # thread pools grow lazily (a second concurrent job); a leak grows per call
TASK_DIR = Path("/proc/self/task")

pytestmark = pytest.mark.skipif(not TASK_DIR.is_dir(), reason="counts threads in /proc")


def os_threads() -> int:
    """Threads of this process, native ones included (swscale, codecs, onnxruntime)."""
    return len(os.listdir(TASK_DIR))


def test_converting_a_frame_leaves_no_thread_behind(tmp_path: Path) -> None:
    # PyAV's own frame.to_ndarray(format="rgb24") starts swscale worker threads that live
    # as long as the frame: a stream's buffers holding frames would hold threads too
    clip = write_clip(tmp_path / "clip.mp4", seconds=1.0, **REAL)
    with av.open(str(clip)) as container:
        frames = list(container.decode(video=0))
    before = os_threads()
    rgbs = [to_rgb(frame) for frame in frames]
    assert os_threads() == before  # the frames are all still alive here
    assert rgbs[0].dtype == np.uint8 and rgbs[0].shape == (frames[0].height, frames[0].width, 3)
    assert np.array_equal(rgbs[-1], frames[-1].to_ndarray(format="rgb24"))


@pytest.mark.slow
def test_callers_joining_and_leaving_leave_nothing_behind(tmp_path: Path) -> None:
    from monitor.backend import load_backend
    from monitor.live.config import MonitorConfig
    from monitor.live.pipeline import Pipeline
    from monitor.live.sources.webrtc import WEBRTC_SERVER, WebRTCConfig, add_webrtc_routes

    clip = write_clip(tmp_path / "caller.mp4", seconds=20.0, **REAL)
    cfg = MonitorConfig.model_validate({"model": str(toy_model(tmp_path / "model"))})
    backend = load_backend(cfg.model, "onnxruntime")

    async def scenario() -> None:
        pipeline = Pipeline(backend, cfg)
        await pipeline.start()
        app = web.Application()
        add_webrtc_routes(app, pipeline, WebRTCConfig())  # type: ignore[arg-type]
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        server = app[WEBRTC_SERVER]
        baseline: dict[str, int] = {}
        try:
            async with ClientSession() as http:
                for call in range(CALLS + 1):
                    pc, player = player_pc(clip)
                    sid = await join(http, base, pc, name=f"call{call}")
                    rt = pipeline.streams[sid]
                    await wait_until(
                        lambda rt=rt: rt.windows_scored >= WINDOWS_PER_CALL,  # type: ignore[misc]
                        30,
                        f"{WINDOWS_PER_CALL} windows of {sid} scored",
                    )
                    assert rt.ingest is not None
                    session = server.peers[sid]
                    kept: dict[str, weakref.ref[Any]] = {
                        "StreamRuntime": weakref.ref(rt),
                        "StreamBuffers": weakref.ref(rt.ingest.buffers),
                        "PeerSession": weakref.ref(session),
                        "RTCPeerConnection": weakref.ref(session.pc),
                    }
                    del rt, session
                    await pc.close()  # hang up: RTCP BYE
                    for track in (player.audio, player.video):
                        if track is not None:
                            track.stop()  # and the caller's own file reader thread
                    del pc, player
                    await wait_until(lambda sid=sid: sid not in pipeline.streams, 15, "removal")

                    if call == 0:  # pools, the scorer and the backend's threads are up now
                        # Pools start workers lazily, up to their size (the loop's default
                        # pool serves aiortc's address lookups): start them all now, so a
                        # later call growing a pool is not read as a leak.
                        await fill_pool(None)
                        await fill_pool(pipeline._executor)
                        gc.collect()
                        gc.disable()  # from here on only reference counting frees anything
                        baseline["threads"] = os_threads()
                        base_tids = set(os.listdir(TASK_DIR))
                        base_types = live_types()
                        baseline["tasks"] = len(asyncio.all_tasks())
                        continue

                    def alive(kept: dict[str, weakref.ref[Any]] = kept) -> list[str]:
                        return [name for name, ref in kept.items() if ref() is not None]

                    # cancelled tasks and stopping threads get a moment to finish
                    assert await settled(lambda: not alive()), f"{sid} kept: {alive()}"
                    assert await settled(lambda: len(asyncio.all_tasks()) <= baseline["tasks"]), (
                        asyncio.all_tasks()
                    )
                    # Threads are counted after a collection: the caller's own aiortc
                    # connection is a reference cycle, and with PyAV 18.1.1 its audio
                    # resamplers' filter graphs, each holding a thread per CPU, are too.
                    # What the stream's own objects hold was freed above without one.
                    gc.collect()
                    assert await settled(
                        lambda: os_threads() <= baseline["threads"] + THREAD_SLACK
                    ), (os_threads(), baseline, new_threads(base_tids), types_grown(base_types))
                    assert sid not in pipeline.streams and server.peers == {}
                    assert pipeline.scorer.pending == 0
                    assert sid not in pipeline.metrics.exposition().decode()
                    assert pipeline.status(sid) is None
        finally:
            gc.enable()
            await runner.cleanup()
            await pipeline.stop()

    try:
        asyncio.run(scenario())
    finally:
        gc.enable()
        backend.close()


def new_threads(before: set[str]) -> list[str]:
    """Threads started since `before` (their TIDs): a Python thread's name, else "native"."""
    named = {str(t.native_id): t.name for t in threading.enumerate()}
    return [
        f"{tid}:{named.get(tid, 'native')}" for tid in sorted(set(os.listdir(TASK_DIR)) - before)
    ]


def live_types() -> dict[str, int]:
    """Objects the collector tracks, counted by type, for the libraries that start threads."""
    counts: dict[str, int] = {}
    for obj in gc.get_objects():
        kind = type(obj)
        mod = getattr(kind, "__module__", None)
        if not isinstance(mod, str):
            continue
        if mod.split(".")[0] in ("aiortc", "av", "monitor", "onnxruntime", "aioice"):
            name = f"{mod}.{kind.__qualname__}"
            counts[name] = counts.get(name, 0) + 1
    return counts


def types_grown(before: dict[str, int]) -> dict[str, int]:
    now = live_types()
    return {k: n - before.get(k, 0) for k, n in now.items() if n > before.get(k, 0)}


async def fill_pool(executor: ThreadPoolExecutor | None) -> None:
    """Make a thread pool (None: the loop's default one) start every worker it may start."""
    loop = asyncio.get_running_loop()
    if executor is None:  # the loop makes its default pool on first use
        await loop.run_in_executor(None, int)
        executor = loop._default_executor  # type: ignore[attr-defined]
    assert executor is not None
    size = executor._max_workers  # type: ignore[attr-defined]
    barrier = threading.Barrier(size, timeout=10)
    await asyncio.gather(*(loop.run_in_executor(executor, barrier.wait) for _ in range(size)))


async def settled(done: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Whether `done()` holds within `timeout_s` (polled on the loop)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True
