"""`deepfake-monitor watch URL_OR_FILE... --model MODEL`: score streams, print a live table.

Every second the table shows each stream's state, rolling fused/audio/visual/sync P(fake),
frames per second and window -> score latency; on a terminal it redraws in place, when
stdout is a file or pipe it prints plain lines. Files are paced at real time unless
`--fast`; the command ends after `--duration`, when every (non-looping) file has been
scored to its end, or on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import IO, Any

HELP = "score RTSP streams, URLs or files live and print a table of their states"
REFRESH_S = 1.0  # table refresh period
DRAIN_TIMEOUT_S = 30.0  # after the files end, wait this long for their last windows


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "sources", nargs="+", metavar="URL_OR_FILE", help="rtsp:// (or any PyAV URL) or a file"
    )
    p.add_argument(
        "--model",
        default="default",
        help="exported model (.onnx, engine or checkpoint); default: the shipped detector",
    )
    p.add_argument("--backend", default="auto", help="auto | onnxruntime | torch | tensorrt")
    p.add_argument(
        "--metrics-port", type=int, default=None, help="also serve /metrics on this port"
    )
    p.add_argument("--metrics-host", default="127.0.0.1", help="address for --metrics-port")
    p.add_argument("--events", default=None, metavar="FILE", help="append JSON-line events here")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    p.add_argument("--loop", action="store_true", help="loop files")
    p.add_argument("--fast", action="store_true", help="decode files as fast as possible")
    p.add_argument("--hop", type=float, default=None, metavar="S", help="window stride (s)")
    p.add_argument("--transport", choices=("tcp", "udp"), default="tcp", help="RTSP transport")


def format_row(s: Any) -> tuple[str, ...]:
    def f(x: float | None) -> str:
        return "-" if x is None or x != x else f"{x:.3f}"

    lat = "-" if s.latency_ms is None else f"{s.latency_ms:.0f}"
    return (
        s.stream_id,
        s.state,
        f(s.fused),
        f(s.audio),
        f(s.visual),
        f(s.sync),
        f"{s.fps:.1f}",
        lat,
        str(s.windows_scored),
        str(s.windows_dropped),
    )


HEADER = (
    "stream",
    "state",
    "fused",
    "audio",
    "visual",
    "sync",
    "fps",
    "lat_ms",
    "scored",
    "dropped",
)


def render_table(statuses: list[Any]) -> str:
    rows = [HEADER, *(format_row(s) for s in statuses)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


async def print_table(service: Any, out: IO[str], tty: bool) -> None:
    while True:
        await asyncio.sleep(REFRESH_S)
        pipeline = service.pipeline
        if pipeline is None:
            continue
        statuses = pipeline.statuses()
        if tty:
            out.write("\x1b[H\x1b[2J" + time.strftime("%H:%M:%S ") + "deepfake-monitor watch\n")
            out.write(render_table(statuses) + "\n")
        else:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            for s in statuses:
                out.write(stamp + " " + " ".join(format_row(s)) + "\n")
        out.flush()


def build_config(args: argparse.Namespace) -> Any:
    from monitor.live.config import (
        EventsConfig,
        MonitorConfig,
        ServerConfig,
        StreamConfig,
        WindowConfig,
    )
    from monitor.live.sources import default_stream_id

    taken: set[str] = set()
    streams = []
    for src in args.sources:
        sid = default_stream_id(src, taken)
        taken.add(sid)
        streams.append(StreamConfig(id=sid, url=src, loop=args.loop, realtime=not args.fast))
    return MonitorConfig(
        model=args.model,
        backend=args.backend,
        max_streams=max(64, len(streams)),
        server=ServerConfig(host=args.metrics_host, port=args.metrics_port or 0),
        events=EventsConfig(path=args.events),
        windows=WindowConfig(hop_seconds=args.hop),
        sources={"transport": args.transport},
        webrtc={"enabled": False},  # watch serves /metrics only; `serve` runs the WebRTC page
        streams=streams,
    )


async def watch(args: argparse.Namespace, backend: Any = None, cropper_factory: Any = None) -> int:
    from monitor.live.service import Service
    from monitor.models import describe_model, is_default

    cfg = build_config(args)
    if backend is None and is_default(cfg.model):  # say so: nothing named it
        print(describe_model(cfg.model), file=sys.stderr, flush=True)
    service = Service(
        cfg,
        backend=backend,
        cropper_factory=cropper_factory,
        serve_http=args.metrics_port is not None,
    )
    out = sys.stdout
    printer = asyncio.get_running_loop().create_task(print_table(service, out, out.isatty()))

    ended_at: list[float] = []

    def finished() -> bool:
        p = service.pipeline
        if p is None or not p.sources_ended():
            return False
        if not ended_at:
            ended_at.append(time.monotonic())
        return p.idle() or time.monotonic() - ended_at[0] > DRAIN_TIMEOUT_S

    try:
        await service.run(duration_s=args.duration, until=finished)
    finally:
        printer.cancel()
        await asyncio.gather(printer, return_exceptions=True)
    out.write(render_table(service.final_statuses) + "\n")
    out.flush()
    return 0


def run(args: argparse.Namespace) -> int:
    return asyncio.run(watch(args))
