"""Opt-in evidence: on ALERT, the stream's last seconds of audio and video, kept on disk.

By default the monitor stores no media at all, only scores and events. With `evidence:
{enabled: true}` each PyAV-read stream (RTSP, URLs, files) keeps its last `seconds` of
demuxed packets in memory (`PacketRing`: the compressed bitstream, a few MB for a 720p
camera), and on ALERT the decode thread, which holds the open container, remuxes them
into `<dir>/<stream>-<UTC time>.mp4` without decoding. The event names the file. File
names come from the stream id (never from a URL, so never a credential), and the folder
is pruned to `max_files` files and `max_age_hours`. WebRTC callers are decoded by aiortc
and have no packets to keep: they get no evidence file.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

EVIDENCE_SUFFIX = ".mp4"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*-\d{8}T\d{6}\d{3}Z\.mp4$")  # ours only
KEYFRAME_SLACK_S = 4.0  # keep this much more than asked, so the clip starts at a keyframe


@dataclass(frozen=True)
class EvidenceSettings:
    folder: Path
    seconds: float  # how much before the ALERT
    max_files: int
    max_age_s: float


def evidence_name(stream_id: str, when: float) -> str:
    stamp = datetime.fromtimestamp(when, tz=UTC).strftime("%Y%m%dT%H%M%S%f")[:-3]
    return f"{stream_id}-{stamp}Z{EVIDENCE_SUFFIX}"


class PacketRing:
    """The last seconds of one stream's demuxed packets; written on request by the thread
    that demuxes (it owns the container the packets and stream templates belong to)."""

    def __init__(self, stream_id: str, settings: EvidenceSettings) -> None:
        self.stream_id = stream_id
        self.settings = settings
        self._packets: deque[tuple[float, Any]] = deque()  # (stream time s, av.Packet)
        self._lock = threading.Lock()
        self._requests: list[Path] = []
        self.reading = False  # a demux thread is adding packets (and can write)
        self.written: list[Path] = []
        self.failed = 0

    # -- demux thread ----------------------------------------------------------------

    def add(self, packet: Any) -> None:
        if packet.dts is None or packet.size == 0 or packet.time_base is None:
            return
        t = float(packet.dts * packet.time_base)
        keep_s = self.settings.seconds + KEYFRAME_SLACK_S
        with self._lock:
            self.reading = True
            if self._packets and t < self._packets[-1][0] - KEYFRAME_SLACK_S:
                self._packets.clear()  # the clock went back: a looped file, a new session
            self._packets.append((t, packet))
            while self._packets and self._packets[0][0] < t - keep_s:
                self._packets.popleft()
            pending = self._requests
            self._requests = []
        for path in pending:
            self._write(path)

    def flush(self) -> None:
        """Write what was asked for: the demux thread calls this before it closes its
        container (the stream ended or failed), then the ring waits for the next one."""
        with self._lock:
            pending, self._requests = self._requests, []
            self.reading = False
        for path in pending:
            self._write(path)

    def _write(self, path: Path) -> None:
        import av

        with self._lock:
            packets = list(self._packets)
        if not packets:
            return
        end = packets[-1][0]
        start = end - self.settings.seconds
        # start at the last video keyframe at or before `start` (or the first one after)
        video = [(t, p) for t, p in packets if p.stream.type == "video"]
        keys = [t for t, p in video if p.is_keyframe]
        before = [t for t in keys if t <= start]
        first = before[-1] if before else (keys[0] if keys else start)
        chosen = [(t, p) for t, p in packets if t >= first]
        tmp = path.with_suffix(".part")
        try:
            with av.open(str(tmp), "w", format="mp4") as out:
                streams: dict[int, Any] = {}
                for _, p in chosen:
                    if p.stream.index not in streams:
                        streams[p.stream.index] = out.add_stream_from_template(p.stream)
                origin = {i: None for i in streams}
                for _, p in chosen:
                    s = streams[p.stream.index]
                    if origin[p.stream.index] is None:
                        origin[p.stream.index] = p.dts
                    shift = origin[p.stream.index]
                    copy = av.Packet(bytes(p))
                    copy.pts = None if p.pts is None else p.pts - shift
                    copy.dts = p.dts - shift
                    copy.time_base = p.time_base
                    copy.is_keyframe = p.is_keyframe
                    copy.stream = s
                    out.mux(copy)
            tmp.replace(path)
            self.written.append(path)
            logger.info("stream %s: evidence %s (%d packets)", self.stream_id, path, len(chosen))
        except (av.FFmpegError, OSError, ValueError) as exc:
            self.failed += 1
            tmp.unlink(missing_ok=True)
            logger.error("stream %s: evidence %s not written: %s", self.stream_id, path, exc)
        prune(self.settings)

    # -- event loop ------------------------------------------------------------------

    def request(self, when: float) -> Path | None:
        """Ask for the last seconds up to now, written by the demux thread at its next
        packet; the path it will have, or None when no thread is reading (the stream
        ended before the ALERT was decided: its packets went with its container)."""
        path = self.settings.folder / evidence_name(self.stream_id, when)
        with self._lock:
            if not self.reading:
                logger.warning(
                    "stream %s: ALERT after the stream ended; no evidence", self.stream_id
                )
                return None
            self._requests.append(path)
        return path


def prune(settings: EvidenceSettings, now: float | None = None) -> list[Path]:
    """Remove evidence files beyond max_files (oldest first) or older than max_age."""
    now = time.time() if now is None else now
    folder = settings.folder
    if not folder.is_dir():
        return []
    ours = sorted(
        (p for p in folder.iterdir() if p.is_file() and NAME_RE.match(p.name)),
        key=lambda p: p.stat().st_mtime,
    )
    doomed = [p for p in ours if now - p.stat().st_mtime > settings.max_age_s]
    keep = [p for p in ours if p not in doomed]
    doomed += keep[: max(0, len(keep) - settings.max_files)]
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed
