"""Crop stage: raw windows -> model inputs (`Window`), off the event loop.

Frames are converted to RGB only here, and face crops go through the stream's own
`FaceCropper` (it tracks faces, so calls stay in time order, one at a time per stream).
If cropping falls behind, the oldest waiting windows are dropped and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Protocol

import numpy as np
from av.video.reformatter import VideoReformatter

from monitor.contract import InputContract
from monitor.live.buffers import time_key
from monitor.live.windowing import RawWindow, Window

logger = logging.getLogger(__name__)

CROP_QUEUE_WINDOWS = 4  # raw windows waiting for cropping per stream before dropping oldest
CROP_CACHE_FRAMES = 16  # overlapping windows share sample times: crop each time once


class Cropper(Protocol):
    """What `monitor.media.faces.FaceCropper` offers: crop(rgb) -> result with .image, .found."""

    def crop(self, rgb: np.ndarray) -> Any: ...


def to_rgb(frame: Any, reformatter: VideoReformatter | None = None) -> np.ndarray:
    """An RGB uint8 image from an av.VideoFrame (or an RGB ndarray, returned as is).

    Converts on the calling thread with `reformatter` (a fresh one when None). Not with
    `frame.to_ndarray(format="rgb24")`: PyAV >= 17 then gives every frame its own swscale
    context with a worker thread per CPU, started for that frame and kept until the frame
    is freed - threads started and stopped for every frame (about 3 ms a frame on two
    cores, against 0.1 ms for the conversion) and held by every frame a stream keeps."""
    if isinstance(frame, np.ndarray):
        return frame
    reformatter = reformatter if reformatter is not None else VideoReformatter()
    return np.asarray(reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray())


def audio_rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0


class CropStage:
    """Per stream: RawWindow -> Window in a thread pool, in order, bounded, drop-oldest."""

    def __init__(
        self,
        stream_id: str,
        contract: InputContract,
        cropper: Cropper,
        executor: Executor | None,
        submit: Callable[[Window], None],
        on_drop: Callable[[int], None] | None = None,
        max_waiting: int = CROP_QUEUE_WINDOWS,
    ) -> None:
        self.stream_id = stream_id
        self.contract = contract
        self.cropper = cropper
        self.executor = executor
        self.submit = submit
        self.on_drop = on_drop
        self._queue: deque[RawWindow] = deque()
        self._max_waiting = max_waiting
        self._wake = asyncio.Event()
        self._cache: OrderedDict[float, tuple[np.ndarray, bool]] = OrderedDict()
        self._reformatter = VideoReformatter()  # one at a time: prepare() runs in order
        self._busy = False
        self.dropped = 0
        self.prepared = 0
        self.errors = 0

    @property
    def idle(self) -> bool:
        return not self._queue and not self._busy

    @property
    def waiting(self) -> int:
        """Raw windows queued for cropping."""
        return len(self._queue)

    def clear(self) -> None:
        """Forget the waiting windows and cached crops (the stream is gone)."""
        self._queue.clear()
        self._cache.clear()

    def put(self, raw: RawWindow) -> None:
        """Called on the loop by the Windower; never blocks."""
        if len(self._queue) >= self._max_waiting:
            self._queue.popleft()
            self.dropped += 1
            if self.on_drop is not None:
                self.on_drop(1)
        self._queue.append(raw)
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            raw = self._queue.popleft()
            self._busy = True
            try:
                window = await loop.run_in_executor(self.executor, self.prepare, raw)
            except (ValueError, RuntimeError, OSError) as exc:
                # Per-stream boundary: one bad frame must not end the stream.
                self.errors += 1
                logger.warning(
                    "stream %s: window %d not prepared: %s", self.stream_id, raw.index, exc
                )
                continue
            finally:
                self._busy = False
            self.prepared += 1
            self.submit(window)

    def prepare(self, raw: RawWindow) -> Window:
        """RGB conversion + face crops for one window (runs in a worker thread)."""
        k, s = self.contract.k_crops, self.contract.crop_size
        faces = np.zeros((k, s, s, 3), dtype=np.uint8)
        found = np.zeros(k, dtype=bool)
        for j, sampled in enumerate(raw.frames):
            if sampled is None:
                continue
            key = time_key(sampled.t)
            cached = self._cache.get(key)
            if cached is None:
                result = self.cropper.crop(to_rgb(sampled.frame, self._reformatter))
                cached = (np.asarray(result.image, dtype=np.uint8), bool(result.found))
                self._cache[key] = cached
                while len(self._cache) > CROP_CACHE_FRAMES:
                    self._cache.popitem(last=False)
            faces[j], found[j] = cached
        rms = audio_rms(raw.audio) if raw.has_audio else 0.0
        return Window(
            stream_id=raw.stream_id,
            index=raw.index,
            start_s=raw.start_s,
            end_s=raw.end_s,
            audio=raw.audio,
            faces=faces,
            face_found=found,
            audio_rms=rms,
            has_audio=raw.has_audio,
            has_video=raw.has_video,
            ready_at=raw.ready_at,
            cropped_at=time.monotonic(),
        )
