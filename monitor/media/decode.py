"""Media decoding with PyAV, shared by training, offline scoring and the live monitor.

Audio comes out as mono float32 at the contract's sample rate, whatever the source's
rate and channel layout. Video comes out as RGB uint8 frames with presentation times in
seconds; `sample_frames` converts only the frames asked for and seeks over long gaps, so
scoring never holds a whole clip's frames in memory.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from monitor.contract import SAMPLE_RATE
from monitor.errors import (
    BadDimensionsError,
    CorruptMediaError,
    MediaError,
    MediaNotFoundError,
    NoAudioStreamError,
    NotAFileError,
    NotMediaError,
    NoVideoStreamError,
    ZeroDurationError,
)

logger = logging.getLogger(__name__)

MIN_DIMENSION = 16  # px; smaller frames cannot hold a face worth scoring
MAX_DIMENSION = 8192  # px; beyond 8K is a broken header or a decompression bomb
# FFmpeg refuses to allocate frames above this many pixels, so a header that lies about
# the picture size (or a stream that switches to a huge one) fails instead of taking GBs.
MAX_PIXELS = MAX_DIMENSION * MAX_DIMENSION
_LIMITS = {"max_pixels": str(MAX_PIXELS)}
SEEK_AHEAD_SECONDS = 2.0  # seek instead of decoding through gaps longer than this
# Which frame `sample_frames` gives a time; caches of crops record it (train/cache.py).
FRAME_PICK = "nearest"  # before 2026-12-07: the frame on screen at that time
TRUNCATION_TOLERANCE = 0.8  # decoded/declared duration below this means a truncated file
SHORT_TRACK_FRACTION = 0.8  # a track shorter than this share of the other is worth a note
# Leading bytes of containers we recognise, to tell "corrupt media" from "not media".
_MEDIA_MAGIC = (b"ftyp", b"moov", b"mdat", b"\x1a\x45\xdf\xa3", b"RIFF", b"OggS", b"ID3", b"FLV")


@dataclass(frozen=True)
class MediaInfo:
    """What `probe` found in a file or stream."""

    path: str
    container: str
    duration_s: float
    audio_codec: str | None = None
    audio_rate: int = 0  # Hz
    audio_channels: int = 0
    video_codec: str | None = None
    width: int = 0
    height: int = 0
    fps: float = 0.0
    audio_duration_s: float = 0.0  # the audio track's own declared length; 0: not declared
    video_duration_s: float = 0.0  # the video track's own declared length; 0: not declared

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None

    @property
    def has_video(self) -> bool:
        return self.video_codec is not None

    def describe(self) -> str:
        parts = [f"{self.path}: {self.container} {self.duration_s:.2f}s"]
        if self.has_video:
            parts.append(f"video {self.video_codec} {self.width}x{self.height} {self.fps:.2f}fps")
        else:
            parts.append("video none")
        if self.has_audio:
            parts.append(f"audio {self.audio_codec} {self.audio_rate}Hz {self.audio_channels}ch")
        else:
            parts.append("audio none")
        note = self.short_track()
        if note:
            parts.append(f"note: {note}")
        return " | ".join(parts)

    def short_track(self) -> str:
        """'audio track 2.00s of 4.00s' when one declared track is much shorter than the
        other (scored as it is: silence or the last frame past its end), else ''."""
        a, v = self.audio_duration_s, self.video_duration_s
        if not (self.has_audio and self.has_video and a > 0 and v > 0):
            return ""
        if a < SHORT_TRACK_FRACTION * v:
            return f"audio track {a:.2f}s of {v:.2f}s"
        if v < SHORT_TRACK_FRACTION * a:
            return f"video track {v:.2f}s of {a:.2f}s"
        return ""


@dataclass(frozen=True)
class Frame:
    """One decoded video frame: presentation time in seconds and an RGB uint8 image."""

    t: float
    image: np.ndarray  # [H, W, 3] uint8 RGB


def _is_url(path: str) -> bool:
    return "://" in path


def _looks_like_media(path: Path) -> bool:
    try:
        head = path.read_bytes()[:16] if path.stat().st_size < 64 else path.open("rb").read(16)
    except OSError:
        return False
    return any(m in head for m in _MEDIA_MAGIC)


def check_regular_file(path: str | Path) -> int:
    """The size of a regular file (symlinks followed); else the MediaError that says what
    is there instead: nothing, a dangling symlink, a directory, a FIFO, a symlink loop."""
    src = str(path)
    try:
        st = os.stat(src)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotAFileError(src, "a symlink loop") from exc
        if exc.errno == errno.ENOENT and os.path.islink(src):
            raise MediaNotFoundError(src, f"dangling symlink to {os.readlink(src)}") from exc
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise MediaNotFoundError(src) from exc
        raise MediaNotFoundError(src, exc.strerror or str(exc)) from exc
    if stat.S_ISREG(st.st_mode):
        return st.st_size
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))
    kind = next((k for test, k in kinds if test(st.st_mode)), "a device")
    raise NotAFileError(src, kind)


def open_media(
    path: str | Path, options: dict[str, str] | None = None, timeout: float | None = None
) -> Any:
    """Open a file or URL for reading, turning PyAV's errors into typed MediaErrors.

    Frame buffers are capped at MAX_PIXELS while the streams are probed, so a header
    claiming a huge picture cannot make FFmpeg allocate gigabytes.
    """
    src = str(path)
    if not _is_url(src) and check_regular_file(src) == 0:
        raise NotMediaError(src, "empty file")
    try:
        return av.open(src, mode="r", options={**_LIMITS, **(options or {})}, timeout=timeout)
    except (av.error.InvalidDataError, av.error.EOFError) as exc:
        if not _is_url(src) and _looks_like_media(Path(src)):
            raise CorruptMediaError(src, str(exc)) from exc
        raise NotMediaError(src, str(exc)) from exc
    except av.error.FileNotFoundError as exc:
        raise MediaNotFoundError(src, str(exc)) from exc
    except av.error.PermissionError as exc:
        raise MediaNotFoundError(src, f"cannot read: {exc}") from exc
    except av.FFmpegError as exc:
        raise CorruptMediaError(src, str(exc)) from exc


def _duration_s(container: Any) -> float:
    if container.duration is not None and container.duration > 0:
        return float(container.duration) / av.time_base
    best = 0.0
    for s in container.streams:
        if s.duration is not None and s.time_base is not None:
            best = max(best, float(s.duration * s.time_base))
    return best


def _stream_duration_s(stream: Any) -> float:
    """A stream's own declared length in seconds; 0.0 when the container does not say."""
    if stream is None or stream.duration is None or stream.time_base is None:
        return 0.0
    return max(0.0, float(stream.duration * stream.time_base))


def _check_dimensions(src: str, width: int, height: int) -> None:
    if not (MIN_DIMENSION <= width <= MAX_DIMENSION and MIN_DIMENSION <= height <= MAX_DIMENSION):
        raise BadDimensionsError(
            src, f"{width}x{height}, allowed {MIN_DIMENSION}..{MAX_DIMENSION} px per side"
        )


def probe(path: str | Path) -> MediaInfo:
    """Read stream metadata without decoding; raises a MediaError for unusable input."""
    src = str(path)
    with open_media(src) as container:
        a = container.streams.audio[0] if container.streams.audio else None
        v = container.streams.video[0] if container.streams.video else None
        if a is None and v is None:
            raise NotMediaError(src, "no audio or video stream")
        if v is not None:  # before the duration: a raw stream with a huge SPS has none
            _check_dimensions(src, int(v.codec_context.width), int(v.codec_context.height))
        duration = _duration_s(container)
        if duration <= 0.0:
            raise ZeroDurationError(src)
        info = MediaInfo(
            path=src,
            container=container.format.name,
            duration_s=duration,
            audio_duration_s=_stream_duration_s(a),
            video_duration_s=_stream_duration_s(v),
        )
        kwargs: dict[str, Any] = {}
        if a is not None:
            ctx = a.codec_context
            kwargs.update(
                audio_codec=ctx.name,
                audio_rate=int(ctx.sample_rate or 0),
                audio_channels=int(ctx.channels or 0),
            )
        if v is not None:
            ctx = v.codec_context
            rate = v.average_rate or v.guessed_rate
            kwargs.update(
                video_codec=ctx.name,
                width=int(ctx.width),
                height=int(ctx.height),
                fps=float(rate) if rate else 0.0,
            )
        return MediaInfo(**{**info.__dict__, **kwargs})


class AudioConverter:
    """Stateful converter from decoded audio frames to mono float32 at `sample_rate`.

    Resamples each channel with libswresample (keeping the layout), then averages the
    channels: an equal-weight downmix, so a stereo source is as loud as the same mono one
    (swresample's own stereo->mono matrix adds +3 dB to correlated channels). Use one
    converter per stream: the resampler carries filter state between frames.
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE) -> None:
        self.sample_rate = sample_rate
        self._resampler: Any = None
        self._source: tuple[str, int, str] | None = None  # layout, rate, sample format

    def convert(self, frame: Any) -> np.ndarray:
        """One av.AudioFrame -> mono float32 samples (possibly empty while filters fill)."""
        source = (frame.layout.name, int(frame.sample_rate), frame.format.name)
        if self._resampler is None or source != self._source:
            # A layout, rate or format change mid-stream (WebRTC renegotiation, a new AAC
            # configuration in a transport stream) restarts the filter; what the old one
            # still held comes first, so no samples are lost.
            tail = self.flush()
            # One filter thread: the default starts one idle thread per CPU for each
            # stream's resampler, and PyAV 18.1.1 frees a resampler's filter graph (and
            # so those threads) only when the cyclic collector runs.
            self._resampler = av.AudioResampler(
                format="fltp", layout=source[0], rate=self.sample_rate, threads=1
            )
            self._source = source
            head = self._collect(self._resampler.resample(frame))
            return np.concatenate([tail, head]) if tail.size else head
        return self._collect(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        return self._collect(self._resampler.resample(None))

    @staticmethod
    def _collect(frames: list[Any]) -> np.ndarray:
        if not frames:
            return np.zeros(0, dtype=np.float32)
        planes = np.concatenate([f.to_ndarray() for f in frames], axis=1)  # [channels, n]
        return planes.mean(axis=0, dtype=np.float32)


AUDIO_RESYNC_S = 0.2  # re-anchor audio time when the decoder's clock jumps more than this


@dataclass(frozen=True)
class MediaItem:
    """One decoded item of a stream, on the stream's clock."""

    kind: str  # "audio" (mono float32 samples at the converter's rate) | "video" (av.VideoFrame)
    data: Any
    t: float  # stream time (s) of the first sample / of the frame
    end: float  # stream time just after it (audio: t + duration; video: t)


def stream_media(
    container: Any,
    audio: Any,
    video: Any,
    sample_rate: int,
    offset: float = 0.0,
    on_packet: Callable[[Any], None] | None = None,
) -> Iterator[MediaItem]:
    """One pass over a container's audio and video streams, in demux order, with stream
    times rebased to start at `offset`. Audio keeps its own sample clock (re-anchored when
    the decoder's clock jumps), so resampling never drifts against the video. The live
    decode thread and `replay` both read media through this. `on_packet` sees every
    demuxed packet before it is decoded (the evidence ring keeps them)."""
    streams = [s for s in (audio, video) if s is not None]
    converter = AudioConverter(sample_rate) if audio is not None else None
    t0: float | None = None
    audio_next: float | None = None  # stream time of the next resampled sample
    for packet in container.demux(streams):
        if on_packet is not None:
            on_packet(packet)
        for frame in packet.decode():
            if frame.time is None:
                continue
            raw_t = float(frame.time)
            if t0 is None:
                t0 = raw_t
            t = max(offset, raw_t - t0 + offset)
            if isinstance(frame, av.AudioFrame) and converter is not None:
                if audio_next is None or abs(t - audio_next) > AUDIO_RESYNC_S:
                    audio_next = t
                samples = converter.convert(frame)
                if samples.size:
                    start = audio_next
                    audio_next += samples.shape[0] / sample_rate
                    yield MediaItem("audio", samples, start, audio_next)
            elif isinstance(frame, av.VideoFrame):
                yield MediaItem("video", frame, t, t)


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode the first audio stream to mono float32 at `sample_rate` Hz."""
    src = str(path)
    with open_media(src) as container:
        if not container.streams.audio:
            raise NoAudioStreamError(src)
        stream = container.streams.audio[0]
        # The audio track's own length, not the container's: a valid file may carry a
        # shorter audio track than video track. Unknown (0) when the container does not
        # declare per-track lengths; then nothing can be judged truncated here.
        declared = _stream_duration_s(stream)
        converter = AudioConverter(sample_rate)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                chunks.append(converter.convert(frame))
            chunks.append(converter.flush())
        except av.FFmpegError as exc:
            raise CorruptMediaError(src, f"audio decode failed: {exc}") from exc
    audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    if audio.shape[0] == 0:
        raise ZeroDurationError(src, "no audio samples decoded")
    decoded = audio.shape[0] / sample_rate
    if declared > 1.0 and decoded < TRUNCATION_TOLERANCE * declared:
        raise CorruptMediaError(
            src, f"decoded {decoded:.2f}s of audio, its track header says {declared:.2f}s"
        )
    return audio


def limit_video_decoder(stream: Any, src: str) -> None:
    """Check a video stream's declared size (BadDimensionsError naming `src`) and cap the
    frames its decoder may allocate at MAX_PIXELS, so a stream that switches to a huge
    picture fails to decode instead of taking gigabytes. Call before the first decode."""
    ctx = stream.codec_context
    _check_dimensions(src, int(ctx.width), int(ctx.height))
    ctx.options = {**ctx.options, **_LIMITS}


def _video_stream(container: Any, src: str) -> Any:
    if not container.streams.video:
        raise NoVideoStreamError(src)
    stream = container.streams.video[0]
    limit_video_decoder(stream, src)
    stream.thread_type = "AUTO"
    return stream


def iter_frames(path: str | Path) -> Iterator[Frame]:
    """Decode every video frame in order (use `sample_frames` when only some are needed)."""
    src = str(path)
    with open_media(src) as container:
        stream = _video_stream(container, src)
        n = 0
        try:
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                n += 1
                yield Frame(float(frame.time), frame.to_ndarray(format="rgb24"))
        except av.FFmpegError as exc:
            raise CorruptMediaError(src, f"video decode failed after {n} frames: {exc}") from exc
        if n == 0:
            raise ZeroDurationError(src, "no video frames decoded")


def sample_frames(path: str | Path, times: Sequence[float]) -> list[Frame]:
    """Return, for each time in seconds, the frame nearest to it (of two equally near, the
    earlier), as the live `FrameSampler` picks: a file scored offline and the same media
    streamed get the same crops. Not the frame on screen at that time, which lags it by
    half a frame interval on average (0.1 s at 5 fps), and the lip-sync head reads a lag.

    Frames are decoded in order and converted to RGB only when chosen; when the next
    requested time lies more than SEEK_AHEAD_SECONDS ahead, the decoder seeks to the
    keyframe before it instead of decoding the gap. Times past the end get the last frame.
    """
    src = str(path)
    if not times:
        return []
    order = sorted(range(len(times)), key=lambda i: times[i])
    out: list[Frame | None] = [None] * len(times)
    with open_media(src) as container:
        stream = _video_stream(container, src)
        tb = stream.time_base
        k = 0  # index into `order` of the next time to fill
        prev: Any = None  # last decoded av.VideoFrame not after the next target
        last_t = 0.0  # time of the last decoded frame (0 before any: decode from the start)
        n = 0
        sought = -1  # index k we last sought for: never seek twice for one target

        def _emit(frame: Any) -> Frame:
            return Frame(float(frame.time), frame.to_ndarray(format="rgb24"))

        try:
            while k < len(order):
                target = times[order[k]]
                if target - last_t > SEEK_AHEAD_SECONDS and tb is not None and sought != k:
                    container.seek(int(target / tb), stream=stream, backward=True)
                    prev, sought = None, k
                exhausted = True
                for frame in container.decode(stream):
                    if frame.time is None:
                        continue
                    n += 1
                    t = float(frame.time)
                    while k < len(order) and t > times[order[k]] + 1e-6:
                        target = times[order[k]]
                        early = prev is not None and target - float(prev.time) <= t - target
                        out[order[k]] = _emit(prev if early else frame)
                        k += 1
                    prev, last_t = frame, t
                    if k >= len(order) or (
                        times[order[k]] - t > SEEK_AHEAD_SECONDS and sought != k
                    ):
                        exhausted = False
                        break
                if exhausted:
                    # End of stream: times past the last frame get the last frame.
                    if prev is not None:
                        final = _emit(prev)
                        while k < len(order):
                            out[order[k]] = final
                            k += 1
                    break
        except av.FFmpegError as exc:
            raise CorruptMediaError(src, f"video decode failed after {n} frames: {exc}") from exc
    if n == 0 or any(f is None for f in out):
        raise ZeroDurationError(src, "no video frames decoded")
    return [f for f in out if f is not None]


def media_error_reason(exc: BaseException) -> str:
    """Short machine-readable reason for error reports."""
    if isinstance(exc, MediaError):
        return type(exc).__name__.removesuffix("Error").lower()
    return type(exc).__name__


def sample_keyframes(path: str | Path, times: Sequence[float]) -> list[Frame]:
    """Like `sample_frames`, but each time gets the keyframe at or before it.

    Keyframe-anchored sampling for fast offline scoring: the demuxer reads packets
    without decoding them, and only the keyframes some time needs are sent to the decoder
    (with `skip_frame = "NONKEY"`, so nothing else is ever decoded). Each sampled frame
    costs one intra-frame decode instead of decoding from the last keyframe up to it;
    the price is that the frame shown may be up to one GOP earlier than asked for.
    Frame.t is the keyframe's time. Times before the first keyframe get the first one,
    times past the last keyframe get the last one.
    """
    src = str(path)
    if not times:
        return []
    order = sorted(range(len(times)), key=lambda i: times[i])
    wanted: dict[int, list[int]] = {}  # keyframe pts -> indices into `times` it answers
    with open_media(src) as container:
        stream = _video_stream(container, src)
        # Slice threads only: frame threading would hold frames back across the few
        # packets sent, and offline scoring runs one decoder per worker process anyway.
        stream.thread_type = "SLICE"
        ctx = stream.codec_context
        ctx.skip_frame = "NONKEY"
        decoded: dict[int, Any] = {}  # pts -> av.VideoFrame
        k = 0  # index into `order` of the next time to assign
        prev: Any = None  # last keyframe packet seen, not yet known to be needed

        def _take(packet: Any, below: float | None) -> None:
            """Assign to `packet` every pending time before `below` (all if None); decode it."""
            nonlocal k
            taken: list[int] = []
            while k < len(order) and (below is None or times[order[k]] < below - 1e-6):
                taken.append(order[k])
                k += 1
            if taken:
                wanted.setdefault(int(packet.pts), []).extend(taken)
                for frame in ctx.decode(packet):
                    decoded[int(frame.pts)] = frame

        try:
            for packet in container.demux(stream):
                if not packet.is_keyframe or packet.size == 0 or packet.pts is None:
                    continue
                t = float(packet.pts * packet.time_base)
                if prev is None:
                    prev = packet  # times before the first keyframe get the first keyframe
                    continue
                _take(prev, t)
                prev = packet
                if k >= len(order):
                    break
            if prev is not None and k < len(order):
                _take(prev, None)
            for frame in ctx.decode(None):  # drain frames the decoder held back
                decoded[int(frame.pts)] = frame
        except av.FFmpegError as exc:
            raise CorruptMediaError(src, f"keyframe decode failed: {exc}") from exc
        out: list[Frame | None] = [None] * len(times)
        for pts, indices in wanted.items():
            frame = decoded.get(pts)
            if frame is None:
                continue
            # Frames from codec_context.decode carry no time base: use the stream's.
            f = Frame(float(pts * stream.time_base), frame.to_ndarray(format="rgb24"))
            for i in indices:
                out[i] = f
    if any(f is None for f in out):
        raise ZeroDurationError(src, "no keyframes decoded")
    return [f for f in out if f is not None]
