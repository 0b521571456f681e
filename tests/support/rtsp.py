"""A real RTSP camera for tests: GStreamer's RTSP server (monitor/demo/rtsp_camera.py) in
a process of its own; kill it to make the camera go away, start it again to come back."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from monitor.demo.cameras import camera_command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RtspServer:
    """The helper process; start() waits for its "ready" line."""

    def __init__(self, clip: Path, port: int) -> None:
        self.clip, self.port = clip, port
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/live"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            camera_command(self.clip, self.port),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until "ready" (or the process dies)
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"RTSP server did not start: {line!r}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
