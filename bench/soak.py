"""Soak: looping RTSP cameras and WebRTC callers joining and leaving, for a long while.

    .venv/bin/python bench/soak.py [--minutes 30] [--cameras 3] [--sample-s 10] [--samples CSV]

Runs `deepfake-monitor serve` (the toy detector, CPU) on real GStreamer RTSP cameras and
aiortc callers that join and leave through `/offer`, with the event log and a webhook
receiver, and samples the service's RSS, open files and threads. Reports the growth
after warm-up (MB per hour, from a least-squares line; also over each half of that time:
a leak grows at the same rate in both, an allocator settling slows down), events logged
against events delivered to the webhook (lost), and tracebacks / errors in the
service's log. Needs Debian's GStreamer RTSP server (scripts/system-deps.sh). Prints a
markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support: clips, cameras, the aiortc caller

from tests.support.live_media import FAKE, REAL, toy_model, write_clip  # noqa: E402
from tests.support.rtsp import RtspServer, free_port  # noqa: E402

WARM_UP_S = 300.0  # growth is measured after this
CALLER = ROOT / "tests" / "support" / "webrtc_caller.py"


def proc_stats(pid: int) -> tuple[float, int, int]:
    """(RSS MB, open files, threads) of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1])
    threads = int(next(x for x in status.splitlines() if x.startswith("Threads")).split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss_kb / 1024.0, fds, threads


class Receiver:
    """Counts webhook deliveries by event id."""

    def __init__(self) -> None:
        self.port = free_port()
        self.ids: list[str] = []
        ids = self.ids

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                ids.append(body["id"])
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--cameras", type=int, default=3)
    ap.add_argument("--sample-s", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=Path, help="also write every sample here (CSV)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    total_s = args.minutes * 60.0
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    clip_s = total_s + 120.0  # one pass covers the run: the cameras never restart
    looks = [FAKE, REAL]
    cams = []
    for i in range(args.cameras):
        clip = write_clip(work / f"cam{i}.mp4", seconds=clip_s, **looks[i % 2])
        cam = RtspServer(clip, free_port())
        cam.start()
        cams.append(cam)
    caller_clip = write_clip(work / "caller.mp4", seconds=120.0, **REAL)
    receiver = Receiver()
    port = free_port()
    events = work / "events" / "events.jsonl"
    cfg = work / "monitor.yaml"
    lines = [
        f"model: {toy_model(work / 'model')}",
        "backend: onnxruntime",
        f"server: {{port: {port}}}",
        f"events: {{path: {events}, webhook_url: 'http://127.0.0.1:{receiver.port}/hook'}}",
        "webrtc: {enabled: true, max_peers: 8}",
        "streams:",
        *(f"  - {{id: cam{i}, url: '{c.url}'}}" for i, c in enumerate(cams)),
    ]
    cfg.write_text("\n".join(lines) + "\n")
    log = work / "serve.log"
    with log.open("wb") as fh:
        serve = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "-v", "serve", "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=fh,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    t0 = time.monotonic()
    samples: list[tuple[float, float, int, int, int]] = []
    callers: list[tuple[subprocess.Popen[bytes], float]] = []
    joined = 0
    next_join = t0 + 20.0
    try:
        while time.monotonic() - t0 < total_s:
            now = time.monotonic()
            if now >= next_join and len(callers) < 3:
                proc = subprocess.Popen(
                    [sys.executable, str(CALLER), base, str(caller_clip), f"soak{joined}"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                callers.append((proc, now + rng.uniform(30.0, 90.0)))
                joined += 1
                next_join = now + rng.uniform(20.0, 60.0)
            for proc, leave_at in list(callers):
                if now >= leave_at:  # half hang up, half vanish
                    proc.send_signal(signal.SIGTERM if rng.random() < 0.5 else signal.SIGKILL)
                    proc.wait(timeout=10)
                    callers.remove((proc, leave_at))
            rss, fds, threads = proc_stats(serve.pid)
            samples.append((now - t0, rss, fds, threads, joined))
            time.sleep(args.sample_s)
    finally:
        for proc, _ in callers:
            proc.kill()
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
        for cam in cams:
            cam.stop()
        time.sleep(2.0)
    t = np.array([s[0] for s in samples])
    rss_mb = np.array([s[1] for s in samples])
    after = t >= min(WARM_UP_S, t[-1] / 2)
    slope_mb_h = growth_mb_h(t[after], rss_mb[after])
    half = t[after][0] + (t[-1] - t[after][0]) / 2.0 if after.any() else t[-1]
    first, second = after & (t < half), t >= half
    if args.samples is not None:
        with args.samples.open("w") as fh:
            fh.write("t_s,rss_mb,open_files,threads,callers_joined\n")
            for row in samples:
                fh.write(f"{row[0]:.1f},{row[1]:.1f},{row[2]},{row[3]},{row[4]}\n")
    logged = (
        [json.loads(x)["id"] for x in events.read_text().splitlines()] if events.exists() else []
    )
    text = log.read_text(errors="replace")
    lost = len(set(logged) - set(receiver.ids))
    print(
        f"\nsoak: {args.minutes:g} min, {args.cameras} RTSP cameras, {joined} WebRTC callers "
        f"joined and left, sampled every {args.sample_s:g} s (after {WARM_UP_S:g} s warm-up)"
    )
    warm = [s for s, a in zip(samples, after, strict=True) if a]
    logs = (text.count("Traceback"), text.count(" ERROR "))
    rows = [
        ("RSS at warm-up end / at the end", f"{rss_mb[after][0]:.0f} MB / {rss_mb[-1]:.0f} MB"),
        ("RSS growth after warm-up (least squares)", f"{slope_mb_h:+.1f} MB/hour"),
        (
            "RSS growth, first / second half of that",
            f"{growth_mb_h(t[first], rss_mb[first]):+.1f} / "
            f"{growth_mb_h(t[second], rss_mb[second]):+.1f} MB/hour",
        ),
        (
            "open files min-max after warm-up",
            f"{min(s[2] for s in warm)}-{max(s[2] for s in warm)}",
        ),
        ("threads min-max after warm-up", f"{min(s[3] for s in warm)}-{max(s[3] for s in warm)}"),
        ("events logged / delivered / lost", f"{len(logged)} / {len(set(receiver.ids))} / {lost}"),
        ("tracebacks / ERROR lines in the log", f"{logs[0]} / {logs[1]}"),
        ("service exit code", str(serve.returncode)),
    ]
    print("| figure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print(f"(work folder: {work})")
    return 0


def growth_mb_h(t: np.ndarray, rss_mb: np.ndarray) -> float:
    """The least-squares slope of RSS (MB) over time (s), in MB per hour (0 if too few)."""
    return float(np.polyfit(t, rss_mb, 1)[0] * 3600.0) if len(t) > 2 else 0.0


if __name__ == "__main__":
    sys.exit(main())
