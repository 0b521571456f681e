"""Ingest in worker processes: decode + windowing + face crops away from the scorer.

One Python process cannot decode hundreds of streams (BENCHMARKS.md, decode rates), so with
`ingest_workers: N` the configured RTSP/file streams are spread over N processes. Each
worker runs the same ingest chain as the in-process path (supervisor, decode thread,
`monitor.live.ingest.IngestChain` with its own face croppers) and sends only what
the scorer needs - `Window` objects (audio + K crops, ~0.3 MB) and small source events -
over one bounded multiprocessing queue. The scorer process keeps the streams' state,
metrics and events (`Pipeline.open_remote_stream`). When the queue is full a worker drops
the window and counts it; nothing queues without bound. Workers are started with the
"spawn" method (the parent has threads) and stopped with a message, then terminated if
they do not exit in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import queue
import threading
import time
from typing import Any

from monitor.live.config import MonitorConfig, StreamConfig
from monitor.live.ingest_process import WorkerSpec, WorkerStream, worker_main
from monitor.live.pipeline import Pipeline, ingest_settings, retry_policy, window_offset
from monitor.live.windowing import Window

logger = logging.getLogger(__name__)

QUEUE_WINDOWS = 256  # messages in flight from all workers to the scorer process
STOP_GRACE_S = 3.0  # a worker that has not exited by then is terminated


class IngestWorkers:
    """The scorer process's side: starts workers, feeds their windows to the pipeline."""

    def __init__(self, pipeline: Pipeline, cfg: MonitorConfig, n_workers: int) -> None:
        self.pipeline = pipeline
        self.cfg = cfg
        self.n_workers = max(1, n_workers)
        self._ctx = multiprocessing.get_context("spawn")
        self._out: Any = self._ctx.Queue(maxsize=QUEUE_WINDOWS)
        self._ctl: list[Any] = []
        self.procs: list[Any] = []
        self._reader: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.windows_received = 0

    def assign(self, streams: list[StreamConfig]) -> list[tuple[StreamConfig, ...]]:
        """Round-robin: stream i goes to worker i % n (empty workers are not started)."""
        groups: list[list[StreamConfig]] = [[] for _ in range(self.n_workers)]
        for i, s in enumerate(streams):
            groups[i % self.n_workers].append(s)
        return [tuple(g) for g in groups if g]

    def start(self, streams: list[StreamConfig]) -> None:
        self._loop = asyncio.get_running_loop()
        contract = self.pipeline.contract.to_dict()
        cfg = self.cfg
        offsets = {}
        for s in streams:
            rt = self.pipeline.streams[self.pipeline.open_remote_stream(s.id)]
            rt.supervised = True
            offsets[s.id] = window_offset(cfg, self.pipeline.contract, rt.slot)
        for index, group in enumerate(self.assign(streams)):
            ctl = self._ctx.Queue()
            spec = WorkerSpec(
                index=index,
                contract=contract,
                streams=tuple(
                    WorkerStream(s.id, s.url, s.loop, s.realtime, offsets[s.id]) for s in group
                ),
                retry=retry_policy(cfg),
                ingest=ingest_settings(cfg),
                crop_workers=cfg.windows.crop_workers,
                transport=cfg.sources.transport,
                open_timeout_s=cfg.sources.open_timeout_s,
                read_timeout_s=cfg.sources.read_timeout_s,
            )
            proc = self._ctx.Process(
                target=worker_main,
                args=(spec, self._out, ctl, logging.getLogger().getEffectiveLevel()),
                name=f"ingest-{index}",
                daemon=True,
            )
            proc.start()
            self._ctl.append(ctl)
            self.procs.append(proc)
            logger.info("ingest worker %d (pid %s): %s", index, proc.pid, [s.id for s in group])
        self._reader = threading.Thread(target=self._read, name="ingest-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._loop is not None
        while True:
            msg = self._out.get()
            if msg is None:
                return
            try:
                self._loop.call_soon_threadsafe(self._dispatch, msg)
            except RuntimeError:  # the loop is gone: we are shutting down
                return

    def _dispatch(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "window":
            window: Window = msg[1]
            self.windows_received += 1
            self.pipeline.submit_window(window)
            return
        rt = self.pipeline.streams.get(msg[1])
        if rt is None:
            return
        if kind == "up":
            rt.source_up()
        elif kind == "down":
            rt.source_down(msg[2])
        elif kind == "reconnect":
            rt.reconnect()
        elif kind == "stall":
            rt.stall()
        elif kind == "media_dropped":
            rt.media_dropped(msg[2], msg[3])
        elif kind == "dropped":
            rt.window_dropped(msg[2], msg[3])
        elif kind == "frames":
            rt.remote_frames(msg[2], time.monotonic())
        elif kind == "ended":
            rt.on_close(msg[2])

    async def stop(self, timeout_s: float = STOP_GRACE_S) -> None:
        for ctl in self._ctl:
            with contextlib.suppress(OSError, ValueError):
                ctl.put_nowait("stop")
        deadline = time.monotonic() + timeout_s
        for proc in self.procs:
            await asyncio.to_thread(proc.join, max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                logger.warning("ingest worker %s did not stop in time; terminating it", proc.name)
                proc.terminate()
                await asyncio.to_thread(proc.join, 1.0)
        with contextlib.suppress(OSError, ValueError, queue.Full):
            self._out.put_nowait(None)  # ends the reader thread
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join, 1.0)
