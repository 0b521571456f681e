"""Replay a recorded call through the live pipeline, as fast as the CPU allows.

Each file becomes one stream of a `Pipeline`: the same buffers, windower, crop stage,
scorer and state machine as a live stream. Media is read with `stream_media` (what the
live decode thread reads through) and pushed without pacing; instead of dropping when a
stage falls behind, as a live stream must, replay waits for it, so every window is scored.
Per file it writes `timeline.csv` (one row per window), `events.jsonl` and `timeline.png`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from monitor.backend import Backend
from monitor.errors import MediaError
from monitor.live.config import MonitorConfig
from monitor.live.events import EventDispatcher, EventLog
from monitor.live.pipeline import Pipeline
from monitor.live.sources import sanitize_stream_id
from monitor.live.state import ALERT
from monitor.live.timeline import plot_timeline, read_timeline
from monitor.media.decode import open_media, stream_media

logger = logging.getLogger(__name__)

MAX_CROPS_WAITING = 2  # windows queued for cropping before the reader waits
POLL_S = 0.005


@dataclass
class ReplayResult:
    """What one replayed file produced."""

    source: str
    stream_id: str
    folder: Path
    windows: int = 0
    states: list[str] = field(default_factory=list)  # in order of appearance
    first_alert_s: float | None = None  # stream time of the first ALERT
    raised_by: str | None = None  # what raised the first ALERT
    plot: Path | None = None
    error: str | None = None  # why the file could not be replayed

    def describe(self) -> str:
        if self.error is not None:
            return f"{self.source}: error: {self.error}"
        alert = (
            "never ALERT"
            if self.first_alert_s is None
            else f"ALERT at {self.first_alert_s:.1f} s ({self.raised_by})"
        )
        return (
            f"{self.source}: {self.windows} windows, states {' > '.join(self.states)}; "
            f"{alert}; {self.folder}"
        )


def _unique_ids(files: list[Path]) -> list[str]:
    ids: list[str] = []
    for f in files:
        base = sanitize_stream_id(f.stem)
        sid, n = base, 1
        while sid in ids:
            n += 1
            sid = f"{base}-{n}"
        ids.append(sid)
    return ids


async def _feed(pipeline: Pipeline, stream_id: str, path: Path) -> None:
    """Push one file's media into its stream, waiting whenever cropping or scoring lags."""
    sink = pipeline.open_stream(stream_id, "file")
    rt = pipeline.streams[sink.stream_id]
    assert rt.ingest is not None
    crop = rt.ingest.crop
    sr = pipeline.contract.sample_rate
    with open_media(str(path)) as container:
        audio = container.streams.audio[0] if container.streams.audio else None
        video = container.streams.video[0] if container.streams.video else None
        sink.declare_tracks(audio is not None, video is not None)
        for item in stream_media(container, audio, video, sr):
            if item.kind == "audio":
                sink.push_audio(item.data, item.t)
            else:
                sink.push_video(item.data, item.t)
            while crop.waiting >= MAX_CROPS_WAITING or (
                pipeline.scorer.pending >= pipeline.cfg.scorer.max_batch
            ):
                await asyncio.sleep(POLL_S)
    sink.close("eof")
    while not pipeline.idle():
        await asyncio.sleep(POLL_S)


async def replay_files(
    files: list[Path], backend: Backend, cfg: MonitorConfig, out: Path
) -> list[ReplayResult]:
    """Replay each file into `out/<stream id>/`; see the module docstring."""
    results = []
    for path, sid in zip(files, _unique_ids(files), strict=True):
        folder = out / sid
        try:
            open_media(str(path)).close()  # a missing or broken file: its error, nothing written
        except MediaError as exc:
            results.append(ReplayResult(str(path), sid, folder, error=str(exc)))
            continue
        folder.mkdir(parents=True, exist_ok=True)
        timeline = folder / "timeline.csv"
        timeline.unlink(missing_ok=True)
        one = cfg.model_copy(update={"timeline": cfg.timeline.model_copy(update={"dir": folder})})
        events = EventDispatcher(EventLog(folder / "events.jsonl"))
        pipeline = Pipeline(backend, one, events=events)
        await pipeline.start()
        try:
            await _feed(pipeline, sid, path)
        except MediaError as exc:  # one bad file costs its own result, not the others'
            results.append(ReplayResult(str(path), sid, folder, error=str(exc)))
            continue
        finally:
            await pipeline.stop()
        th = pipeline.state_params.thresholds("fused")
        thresholds = {"alert_on": th.alert_on, "suspicious_on": th.suspicious_on}
        (folder / f"{sid}.csv").replace(timeline)
        rows = read_timeline(timeline)
        result = ReplayResult(str(path), sid, folder, windows=len(rows))
        for r in rows:
            if not result.states or result.states[-1] != r["state"]:
                result.states.append(r["state"])
            if r["state"] == ALERT and result.first_alert_s is None:
                result.first_alert_s, result.raised_by = r["stream_time"], r["raised_by"]
        try:
            result.plot = plot_timeline(rows, folder / "timeline.png", path.name, thresholds)
        except ImportError:
            logger.warning("matplotlib is not installed: %s has no timeline.png", sid)
        results.append(result)
    return results
