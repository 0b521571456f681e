"""One stream's ingest chain: sink (buffers) -> windower -> crop stage -> submit(Window).

Built here and only here, for the streams the scorer process ingests itself
(`monitor.live.pipeline`) and for those an ingest worker process ingests
(`monitor.live.ingest_process`). The stages are wired directly: the buffers notify the
windower, the windower hands raw windows to the crop stage and reports the stream's end
through `on_end` once its last window is out, and the crop stage submits model inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from monitor.contract import InputContract
from monitor.live.buffers import StreamBuffers
from monitor.live.crops import Cropper, CropStage
from monitor.live.windowing import Window, Windower


@dataclass(frozen=True)
class IngestSettings:
    """Per-stream ingest sizes (picklable: ingest worker processes receive them)."""

    audio_seconds: float  # audio ring per stream; at least two windows are kept
    video_frames: int  # sampled frames kept per stream
    hop_seconds: float | None  # window stride; None: the contract's hop


class IngestChain:
    """The buffers, windower and crop stage of one stream; `await run()` drives the crops."""

    def __init__(
        self,
        stream_id: str,
        contract: InputContract,
        settings: IngestSettings,
        cropper: Cropper,
        executor: Executor | None,
        *,
        submit: Callable[[Window], None],
        on_window_dropped: Callable[[int], None],
        on_media_dropped: Callable[[str, int], None],
        on_end: Callable[[str], None],
        offset_s: float = 0.0,
    ) -> None:
        self.buffers = StreamBuffers(
            stream_id,
            audio_seconds=max(settings.audio_seconds, 2 * contract.window_seconds),
            video_frames=settings.video_frames,
            sample_rate=contract.sample_rate,
        )
        self.buffers.on_drop = on_media_dropped
        self.crop = CropStage(
            stream_id, contract, cropper, executor, submit=submit, on_drop=on_window_dropped
        )
        self.windower = Windower(
            self.buffers,
            contract,
            self.crop.put,
            settings.hop_seconds,
            on_end=on_end,
            offset_s=offset_s,
        )

    @property
    def idle(self) -> bool:
        """No window waiting for or in the crop stage."""
        return self.crop.idle

    @property
    def frames_received(self) -> int:
        return self.buffers.video.received

    async def run(self) -> None:
        await self.crop.run()

    def release(self) -> None:
        """The stream was removed (its sink closed, its crop task cancelled): drop the media
        the chain still holds, and the links that make its parts, and the owner whose
        callbacks it was given, one reference cycle - so that reference counting frees
        them now. Otherwise a removed stream's decoded frames wait for a full cyclic
        garbage collection, which a process holding a model and its libraries runs rarely."""
        self.buffers.listener = None
        self.buffers.on_drop = None
        self.buffers.video.reset()
        self.windower.on_end = None
        self.crop.on_drop = None
        self.crop.clear()
