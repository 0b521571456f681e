"""The demo's RTSP cameras: GStreamer's RTSP server (`rtsp_camera.py`) in its own process.

GStreamer's Python bindings (PyGObject, `gi`) come from Debian, not PyPI, so the camera
runs under an interpreter that has them: `$DEEPFAKE_MONITOR_GI_PYTHON` if set, else the
first of the system's `python3` and the `python3`s on PATH that can import
`GstRtspServer`. Without one, callers fall back to looping files.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

CAMERA_SCRIPT = Path(__file__).with_name("rtsp_camera.py")
GI_PYTHON_ENV = "DEEPFAKE_MONITOR_GI_PYTHON"
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's interpreter, where python3-gi installs
PROBE = (
    "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
)
PROBE_TIMEOUT_S = 60.0  # the first import of GStreamer scans its plugins
INSTALL_HINT = (
    "apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good "
    "gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav "
    "(scripts/system-deps.sh does it)"
)


def _candidates() -> list[str]:
    found = [os.environ.get(GI_PYTHON_ENV, ""), SYSTEM_PYTHON]
    for d in os.environ.get("PATH", "").split(os.pathsep):
        exe = shutil.which("python3", path=d)
        if exe:
            found.append(exe)
    seen: list[str] = []
    for c in found:
        if c and c not in seen and Path(c).is_file():
            seen.append(c)
    return seen


@functools.cache
def gi_python() -> tuple[str | None, str]:
    """(an interpreter that can run the RTSP camera, or None; why not, when None)."""
    errors = []
    for exe in _candidates():
        try:
            probe = subprocess.run(
                [exe, "-c", PROBE], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            errors.append(f"{exe}: {exc}")
            continue
        if probe.returncode == 0:
            return exe, ""
        last = probe.stderr.strip().splitlines()[-1:] or ["failed"]
        errors.append(f"{exe}: {last[0][-160:]}")
    return None, f"no Python with GStreamer's RTSP server ({'; '.join(errors)}); {INSTALL_HINT}"


def camera_command(clip: Path, port: int, audio: bool = True) -> list[str]:
    """The command that serves `clip` at rtsp://127.0.0.1:PORT/live (prints "ready")."""
    exe, why = gi_python()
    if exe is None:
        raise RuntimeError(why)
    cmd = [exe, str(CAMERA_SCRIPT), str(clip), str(port)]
    return cmd if audio else [*cmd, "--no-audio"]
