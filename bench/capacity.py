"""Capacity on this machine's CPU: real-time streams kept with no window dropped.

    .venv/bin/python bench/capacity.py --model MODEL.onnx [--sizes 480p30,720p25] [--step-s 40]

For each stream size, a synthetic talking-head clip (moving head, sensor noise, a voice
tone) loops at real time in N file streams of the live service; N grows until a window
is dropped, the window-to-score p99 passes 300 ms, or the streams fall behind real time.
The stage costs (CPU ms per stream-second: decode, colour conversion, face detection and
crops, inference, and everything else) are measured on the same clip, and the capacity is
given as a share of decode-only capacity (all cores decoding, nothing else). Prints
markdown tables for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import sys
import tempfile
import threading
import time
from collections import defaultdict
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.backend import load_backend  # noqa: E402
from monitor.live.config import MonitorConfig  # noqa: E402
from monitor.live.crops import to_rgb  # noqa: E402
from monitor.live.scorer import ScoredWindow  # noqa: E402
from monitor.live.service import Service  # noqa: E402
from monitor.media.decode import open_media, stream_media  # noqa: E402
from monitor.media.faces import FaceCropper  # noqa: E402
from monitor.windows import frame_times  # noqa: E402
from tests.support.live_media import HEAD  # noqa: E402

SIZES = {"480p30": (854, 480, 30), "720p25": (1280, 720, 25), "360p25": (640, 360, 25)}
CLIP_S = 20.0
P99_LIMIT_S = 0.3
WARM_UP_S = 8.0


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def thread_cpu() -> dict[int, tuple[str, float]]:
    """{native thread id: (name, CPU seconds)} for every thread of this process. Python
    threads go by their name with the pool number dropped (scorer_0 -> scorer); native
    threads (onnxruntime's pool, the codecs') by their kernel name."""
    names = {t.native_id: re.sub(r"[-_]?\d+(_\d+)?$", "", t.name) for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float]] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            comm = (task / "comm").read_text().strip()
        except OSError:  # the thread ended meanwhile
            continue
        tid = int(task.name)
        out[tid] = (names.get(tid) or f"native:{comm}", (int(fields[11]) + int(fields[12])) / tick)
    return out


def busiest_threads(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], wall: float
) -> dict[str, float]:
    """Share of one core each thread group used between two thread_cpu() readings."""
    used: dict[str, float] = defaultdict(float)
    for tid, (name, cpu) in after.items():
        used[name] += cpu - before.get(tid, (name, 0.0))[1]
    return dict(sorted(((k, v / wall) for k, v in used.items()), key=lambda kv: -kv[1]))


async def sample_loop_lag(lags: list[float], period_s: float = 0.01) -> None:
    """How late the event loop wakes a 10-ms sleep: what every callback on it waits."""
    while True:
        t0 = time.monotonic()
        await asyncio.sleep(period_s)
        lags.append(time.monotonic() - t0 - period_s)


def make_clip(path: Path, width: int, height: int, fps: int) -> Path:
    """A head that moves and talks-ish over a noisy background; AAC voice tone."""
    rng = np.random.default_rng(0)
    head = cv2.resize(HEAD, None, fx=height / 480, fy=height / 480)
    base = np.full((height, width, 3), 110, np.uint8)
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"preset": "veryfast", "crf": "23"}
        a_s = out.add_stream("aac", rate=16000)
        a_s.layout = "mono"
        n = round(CLIP_S * fps)
        for i in range(n):
            frame = base.copy()
            x = int(width * 0.3 + 40 * np.sin(i / fps))
            y = int(height * 0.15 + 10 * np.cos(i / fps * 1.3))
            hh, hw = head.shape[:2]
            frame[y : y + hh, x : x + hw] = head
            noise = rng.integers(-6, 7, frame.shape, dtype=np.int16)
            frame = np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            for pkt in vs.encode(vf):
                out.mux(pkt)
        t = np.arange(round(CLIP_S * 16000)) / 16000
        tone = 0.2 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
        tone = tone.astype(np.float32)
        for a in range(0, tone.size, 1024):
            af = av.AudioFrame.from_ndarray(tone[None, a : a + 1024], format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = 16000, a, Fraction(1, 16000)
            for pkt in a_s.encode(af):
                out.mux(pkt)
        for s in (vs, a_s):
            for pkt in s.encode(None):
                out.mux(pkt)
    return path


def stage_costs(clip: Path, model: str) -> dict[str, float]:
    """CPU ms per stream-second of each stage, measured one by one on `clip`."""
    backend = load_backend(model, "onnxruntime")
    contract = backend.contract
    frames, t0 = [], cpu_s()
    with open_media(str(clip)) as c:
        audio = c.streams.audio[0] if c.streams.audio else None
        video = c.streams.video[0]
        for item in stream_media(c, audio, video, contract.sample_rate):
            if item.kind == "video":
                frames.append((item.t, item.data))
    decode = cpu_s() - t0
    # what the live path samples: K frame times per window, one window per hop
    times = []
    start = 0.0
    while start + contract.window_seconds <= CLIP_S:
        times += list(frame_times(start, contract))
        start += contract.hop_seconds
    ft = np.array([t for t, _ in frames])
    picked = [frames[int(np.abs(ft - t).argmin())][1] for t in times]
    t0 = cpu_s()
    rgbs = [to_rgb(f) for f in picked]
    convert = cpu_s() - t0
    cropper = FaceCropper.from_contract(contract, name="bench")
    t0 = cpu_s()
    crops = [np.asarray(cropper.crop(r).image) for r in rgbs]
    detect = cpu_s() - t0
    k = contract.k_crops
    n_windows = len(crops) // k
    faces = np.stack(crops[: n_windows * k]).reshape(n_windows, *contract.faces_shape)
    audio_w = np.zeros((n_windows, contract.window_samples), np.float32)
    backend.score(audio_w[:1], faces[:1])
    t0 = cpu_s()
    for i in range(n_windows):  # one window per call, as a lone live stream would
        backend.score(audio_w[i : i + 1], faces[i : i + 1])
    infer = cpu_s() - t0
    backend.close()
    per_s = 1000.0 / CLIP_S
    return {
        "decode": decode * per_s,
        "colour conversion": convert * per_s,
        "face detection + crops": detect * per_s,
        "inference": infer * per_s,
    }


async def run_streams(
    clip: Path, model: str, n: int, step_s: float, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    cfg = MonitorConfig.model_validate(
        {
            **(extra or {}),
            "model": model,
            "backend": "onnxruntime",
            "max_streams": 256,
            "webrtc": {"enabled": False},
            "streams": [{"id": f"s{i}", "url": str(clip), "loop": True} for i in range(n)],
        }
    )
    service = Service(cfg, serve_http=False)
    task = asyncio.create_task(service.run(install_signals=False, duration_s=step_s))
    await asyncio.sleep(WARM_UP_S)
    cpu0, wall0, threads0 = cpu_s(), time.monotonic(), thread_cpu()
    lags: list[float] = []
    lag_task = asyncio.create_task(sample_loop_lag(lags))
    p = service.pipeline
    assert p is not None
    # every scored window's latency and its split by stage, exact (not histogram buckets)
    results: list[ScoredWindow] = []
    on_result = p.scorer.on_result

    def record(r: ScoredWindow) -> None:
        results.append(r)
        on_result(r)

    p.scorer.on_result = record
    drop0 = sum(rt.windows_dropped for rt in p.streams.values())
    frames0 = {sid: rt.frames_seen for sid, rt in p.streams.items()}
    # frames per second over the whole measured stretch (the status's fps is the last
    # second's only), read before the service stops its streams
    await asyncio.sleep(max(1.0, step_s - WARM_UP_S - 2.0))
    frames_wall = time.monotonic() - wall0
    frames = [rt.frames_seen - frames0.get(sid, 0) for sid, rt in p.streams.items()]
    threads = busiest_threads(threads0, thread_cpu(), frames_wall)
    lag_task.cancel()
    await task
    wall = time.monotonic() - wall0
    dropped = sum(s.windows_dropped for s in service.final_statuses) - drop0
    fps = sum(frames) / max(1, n) / frames_wall
    split = [r.stage_s() or {} for r in results]
    stages = {k: [sp[k] for sp in split if k in sp] for k in ("crop", "batch_wait", "inference")}
    return {
        "dropped": float(dropped),
        "p99_s": _p99([r.latency_s for r in results]),
        **{f"p99_{k}_s": _p99(v) for k, v in stages.items()},
        "batch": len(results) / max(1, len({r.batch_at for r in results})),
        "fps": fps,
        "cpu_ms_per_stream_s": (cpu_s() - cpu0) * 1000.0 / (n * wall),
        "p99_loop_lag_s": _p99(lags),
        "threads": threads,
    }


def _p99(values: list[float]) -> float:
    return float(np.quantile(values, 0.99)) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--sizes", default="480p30,720p25")
    ap.add_argument("--step-s", type=float, default=40.0)
    ap.add_argument("--max-streams", type=int, default=16)
    ap.add_argument("--min-streams", type=int, default=1, help="start here (assumed kept)")
    ap.add_argument("--set", default="{}", help="JSON config for the service, e.g. "
                    '\'{"scorer": {"max_delay_ms": 0}}\'')  # fmt: skip
    args = ap.parse_args()
    extra = json.loads(args.set)
    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="capacity-"))
    for size in args.sizes.split(","):
        w, h, fps = SIZES[size]
        clip = make_clip(work / f"{size}.mp4", w, h, fps)
        costs = stage_costs(clip, args.model)
        decode_only = cores * 1000.0 / costs["decode"]
        best, last = 0, {}
        for n in range(args.min_streams, args.max_streams + 1):
            r = asyncio.run(run_streams(clip, args.model, n, args.step_s, extra))
            ok = r["dropped"] == 0 and r["p99_s"] <= P99_LIMIT_S and r["fps"] >= 0.95 * fps
            print(
                f"{size} N={n}: dropped {r['dropped']:.0f}, p99 {1000 * r['p99_s']:.0f} ms "
                f"(crop {1000 * r['p99_crop_s']:.0f}, "
                f"batch wait {1000 * r['p99_batch_wait_s']:.0f}, "
                f"inference {1000 * r['p99_inference_s']:.0f}; "
                f"{r['batch']:.1f} windows a batch), "
                f"{r['fps']:.1f} fps/stream, {r['cpu_ms_per_stream_s']:.0f} CPU ms per "
                f"stream-second -> {'ok' if ok else 'over'}",
                flush=True,
            )
            top = ", ".join(f"{k} {100 * v:.0f} %" for k, v in list(r["threads"].items())[:5])
            print(f"    event loop lag p99 {1000 * r['p99_loop_lag_s']:.0f} ms; busiest threads "
                  f"(% of one core): {top}", flush=True)  # fmt: skip
            if not ok:
                break
            best, last = n, r
        total = last.get("cpu_ms_per_stream_s", float("nan"))
        other = total - sum(costs.values())
        print(f"\n{size} ({w}x{h} @ {fps} fps), {cores} cores: capacity {best} streams, "
              f"decode-only {decode_only:.1f}, ratio {best / decode_only:.2f}")  # fmt: skip
        print("| stage | CPU ms per stream-second |\n|---|---|")
        for stage, ms in costs.items():
            print(f"| {stage} | {ms:.0f} |")
        print(f"| everything else | {other:.0f} |\n| total (live, at capacity) | {total:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
