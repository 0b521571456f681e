"""File source for demos and tests: optionally looping, paced at real time or flat out.

Paced at real time (the default) a file behaves like a camera: media reaches the
pipeline no faster than it would play. With `realtime=False` the file is decoded as fast
as the machine allows, which exercises the scorer's backpressure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.live.sources.base import redact
from monitor.media.decode import open_media


@dataclass
class FileSource:
    """A local media file; EOF ends the stream unless `loop` is set."""

    path: str
    loop: bool = False
    realtime: bool = True
    kind: str = "file"
    live: bool = False

    def describe(self) -> str:
        return redact(str(self.path))

    def open(self) -> Any:
        return open_media(Path(self.path))
