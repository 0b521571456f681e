"""A real RTSP server for tests and the demo: GStreamer's gst-rtsp-server serving one MP4 at /live.

Run with an interpreter that has PyGObject (`gi`, from Debian), not the venv; the
monitor finds one with `monitor.demo.cameras.gi_python()`:

    /usr/bin/python3 monitor/demo/rtsp_camera.py CLIP.mp4 PORT [--no-audio]

The clip must be MP4 with H.264 (+ AAC). Prints "ready" once listening. Kill the process
to simulate a camera going away; start it again to test reconnection. Debian packages:
gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-{good,bad,ugly} gstreamer1.0-libav.
"""

from __future__ import annotations

import sys


def main() -> int:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    clip, port = sys.argv[1], sys.argv[2]
    audio = "--no-audio" not in sys.argv[3:]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    launch = (
        f"( filesrc location={clip} ! qtdemux name=d "
        "d.video_0 ! queue ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 "
    )
    if audio:
        launch += "d.audio_0 ! queue ! aacparse ! rtpmp4apay name=pay1 pt=97 "
    factory.set_launch(launch + ")")
    factory.set_shared(True)
    server.get_mount_points().add_factory("/live", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on port {port}", file=sys.stderr, flush=True)
        return 1
    print("ready", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
