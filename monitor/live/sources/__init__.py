"""Live sources: RTSP and other URLs, files, (WebRTC peers in `monitor.live.sources.webrtc`).

`make_source` turns a location from the CLI or config into a `Source`;
`SourceSupervisor` keeps it running into a stream's sink.
"""

from __future__ import annotations

from monitor.live.sources.base import (
    DecodeThread,
    Source,
    is_valid_stream_id,
    redact,
    sanitize_stream_id,
)
from monitor.live.sources.file import FileSource
from monitor.live.sources.rtsp import (
    DEFAULT_OPEN_TIMEOUT_S,
    DEFAULT_READ_TIMEOUT_S,
    UrlSource,
    is_url,
)
from monitor.live.sources.supervisor import RetryPolicy, SourceEvents, SourceSupervisor
from monitor.redaction import register_url

__all__ = [
    "DecodeThread",
    "FileSource",
    "RetryPolicy",
    "Source",
    "SourceEvents",
    "SourceSupervisor",
    "UrlSource",
    "is_url",
    "is_valid_stream_id",
    "make_source",
    "redact",
    "sanitize_stream_id",
]


def make_source(
    location: str,
    *,
    loop: bool = False,
    realtime: bool = True,
    transport: str = "tcp",
    open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S,
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
) -> Source:
    """A URL (rtsp://, rtmp://, http(s):// HLS ...) becomes a live source; anything else a file."""
    if is_url(location) and not location.startswith("file://"):
        register_url(location)
        return UrlSource(
            location,
            transport=transport,
            open_timeout_s=open_timeout_s,
            read_timeout_s=read_timeout_s,
            kind="rtsp",
        )
    path = location.removeprefix("file://")
    return FileSource(path, loop=loop, realtime=realtime)


def default_stream_id(location: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """A readable, sanitized, unique id from a location (credentials and query dropped)."""
    base = redact(location).split("?", 1)[0].rstrip("/")
    name = base.rsplit("/", 1)[-1] or base
    name = name.rsplit(".", 1)[0] if "." in name and not is_url(location) else name
    stream_id = sanitize_stream_id(name)
    candidate, n = stream_id, 2
    while candidate in taken:
        suffix = f"-{n}"
        candidate = stream_id[: 64 - len(suffix)] + suffix
        n += 1
    return candidate
