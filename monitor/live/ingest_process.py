"""The ingest worker process: sources -> `IngestChain` (buffers, windower, crops) -> a queue.

Started by `monitor.live.ingest_workers.IngestWorkers` (spawn). It imports only the ingest side
(PyAV, numpy, OpenCV through the face cropper) - not the config schema, the web stack or
an inference runtime - so a worker starts fast and stays small. Settings arrive as a
frozen, picklable `WorkerSpec`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from monitor.contract import InputContract
from monitor.live.ingest import IngestChain, IngestSettings
from monitor.live.sources import RetryPolicy, SourceSupervisor, make_source
from monitor.live.windowing import Window

logger = logging.getLogger(__name__)

STATS_INTERVAL_S = 1.0  # how often a worker reports frame counts and queue drops


@dataclass(frozen=True)
class WorkerStream:
    """One stream a worker ingests."""

    id: str
    url: str
    loop: bool = False  # files: start again at the end
    realtime: bool = True  # files: pace at the media's own rate
    offset_s: float = 0.0  # window offset (windows.stagger)


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker process needs (picklable; built from the MonitorConfig)."""

    index: int
    contract: dict[str, Any]  # the model's InputContract
    streams: tuple[WorkerStream, ...]
    retry: RetryPolicy
    ingest: IngestSettings  # per-stream buffer sizes and hop
    crop_workers: int  # threads for RGB conversion + crops
    transport: str  # RTSP lower transport
    open_timeout_s: float
    read_timeout_s: float


class _Outbox:
    """The worker's side of the queue: never blocks, counts what it had to drop."""

    def __init__(self, q: Any) -> None:
        self.q = q
        self.dropped: dict[str, int] = {}

    def send(self, msg: tuple[Any, ...]) -> bool:
        try:
            self.q.put_nowait(msg)
            return True
        except queue.Full:
            if msg[0] == "window":
                sid = msg[1].stream_id
                self.dropped[sid] = self.dropped.get(sid, 0) + 1
            return False


class _RemoteStream:
    """Ingest of one stream inside a worker; reports to the scorer process."""

    def __init__(
        self,
        stream: WorkerStream,
        spec: WorkerSpec,
        contract: InputContract,
        out: _Outbox,
        pool: ThreadPoolExecutor,
    ) -> None:
        from monitor.media.faces import FaceCropper  # OpenCV: imported in the worker only

        self.id = stream.id
        self.out = out
        self.chain = IngestChain(
            stream.id,
            contract,
            spec.ingest,
            FaceCropper.from_contract(contract, name=stream.id),
            pool,
            submit=self._submit,
            on_window_dropped=self._crop_dropped,
            on_media_dropped=self.media_dropped,
            on_end=self._ended,
            offset_s=stream.offset_s,
        )
        source = make_source(
            stream.url,
            loop=stream.loop,
            realtime=stream.realtime,
            transport=spec.transport,
            open_timeout_s=spec.open_timeout_s,
            read_timeout_s=spec.read_timeout_s,
        )
        self.supervisor = SourceSupervisor(
            stream.id,
            source,
            self.chain.buffers,
            spec.retry,
            self,
            sample_rate=contract.sample_rate,
        )
        self.ended: asyncio.Event = asyncio.Event()
        self.end_reason = ""

    def _submit(self, window: Window) -> None:
        self.out.send(("window", window))

    def _crop_dropped(self, n: int) -> None:
        self.out.send(("dropped", self.id, "crop", n))

    def _ended(self, reason: str) -> None:
        self.end_reason = reason
        self.ended.set()

    # SourceEvents
    def source_up(self) -> None:
        self.out.send(("up", self.id))

    def source_down(self, reason: str) -> None:
        self.out.send(("down", self.id, reason))

    def reconnect(self) -> None:
        self.out.send(("reconnect", self.id))

    def stall(self) -> None:
        self.out.send(("stall", self.id))

    def media_dropped(self, kind: str, n: int) -> None:
        self.out.send(("media_dropped", self.id, kind, n))

    async def run(self) -> None:
        crop = asyncio.get_running_loop().create_task(self.chain.run())
        sup = asyncio.get_running_loop().create_task(self.supervisor.run())
        try:
            await self.ended.wait()
            while not self.chain.idle:  # the last windows go out before "ended"
                await asyncio.sleep(0.02)
            self.out.send(("ended", self.id, self.end_reason))
            await asyncio.Event().wait()  # keep the tasks until the worker stops
        finally:
            crop.cancel()
            sup.cancel()


async def _worker(spec: WorkerSpec, out_q: Any, ctl_q: Any) -> None:
    contract = InputContract.from_dict(spec.contract)
    out = _Outbox(out_q)
    pool = ThreadPoolExecutor(spec.crop_workers, thread_name_prefix="crop")
    streams = [_RemoteStream(s, spec, contract, out, pool) for s in spec.streams]
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(s.run()) for s in streams]
    stop = asyncio.Event()

    def wait_for_stop() -> None:  # a daemon thread: never holds the process open
        ctl_q.get()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_stop, name="ingest-control", daemon=True).start()
    parent = os.getppid()
    reported: dict[str, int] = {}
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), STATS_INTERVAL_S)
        if os.getppid() != parent:
            logger.warning("ingest worker %d: scorer process is gone, exiting", spec.index)
            break
        for s in streams:
            out.send(("frames", s.id, s.chain.frames_received))
            lost = out.dropped.get(s.id, 0)
            if lost > reported.get(s.id, 0):
                out.send(("dropped", s.id, "queue", lost - reported.get(s.id, 0)))
                reported[s.id] = lost
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    pool.shutdown(wait=False, cancel_futures=True)


def worker_main(spec: WorkerSpec, out_q: Any, ctl_q: Any, log_level: int) -> None:
    """Entry point of a worker process."""
    logging.basicConfig(
        level=log_level,
        format=f"%(asctime)s %(levelname)s ingest-{spec.index} %(name)s: %(message)s",
    )
    with contextlib.suppress(KeyboardInterrupt):  # the parent handles Ctrl-C and stops us
        asyncio.run(_worker(spec, out_q, ctl_q))
