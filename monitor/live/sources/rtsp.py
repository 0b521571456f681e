"""Network sources: RTSP cameras and any other URL PyAV opens (RTMP, HLS, HTTP, SRT).

Opened with explicit timeouts so a dead camera fails instead of hanging: PyAV's
`timeout=(open_s, read_s)` interrupts a blocked connect or read. RTSP goes over TCP by
default (interleaved RTP survives NAT and packet loss better than UDP for monitoring).
Errors carry the redacted URL only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import av
import av.error

from monitor.errors import StreamError
from monitor.live.sources.base import redact
from monitor.media.decode import MAX_PIXELS

logger = logging.getLogger(__name__)

DEFAULT_OPEN_TIMEOUT_S = 10.0  # connect + handshake
DEFAULT_READ_TIMEOUT_S = 5.0  # one blocked read before PyAV gives up
RTSP_SCHEMES = ("rtsp://", "rtsps://")
# Demuxer options that keep latency low on live input (no long probing, no reordering wait).
LOW_LATENCY_OPTIONS = {
    "fflags": "nobuffer",
    "analyzeduration": "1000000",
    "probesize": "500000",
    # passed to the decoders too: a camera (or an attacker) declaring absurd frame sizes
    # gets an error, not gigabytes of frame buffers
    "max_pixels": str(MAX_PIXELS),
}


def is_url(location: str) -> bool:
    return "://" in location


@dataclass
class UrlSource:
    """A live URL: EOF or failure means "reconnect", never "finished"."""

    url: str
    transport: str = "tcp"  # RTSP lower transport: "tcp" | "udp"
    open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    extra_options: dict[str, str] = field(default_factory=dict)
    kind: str = "rtsp"
    live: bool = True
    realtime: bool = False  # live input arrives at its own pace
    loop: bool = False

    def describe(self) -> str:
        return redact(self.url)

    def options(self) -> dict[str, str]:
        opts = dict(LOW_LATENCY_OPTIONS)
        if self.url.lower().startswith(RTSP_SCHEMES):
            opts["rtsp_transport"] = self.transport
        opts.update(self.extra_options)
        return opts

    def open(self) -> Any:
        try:
            return av.open(
                self.url,
                mode="r",
                options=self.options(),
                timeout=(self.open_timeout_s, self.read_timeout_s),
            )
        except av.FFmpegError as exc:
            # FFmpeg's messages can quote the URL; never let credentials through.
            raise StreamError(self.describe(), redact(f"cannot open: {exc}")) from None
        except OSError as exc:
            raise StreamError(self.describe(), redact(f"cannot open: {exc}")) from None
