"""Window-end -> score latency of the live monitor, with file streams paced at real time.

    python bench/live_latency.py --model demo/model.onnx --streams 2 --seconds 60

Each stream loops a clip at real time, like a camera. A window's latency runs from the
moment its last media arrived (the window became complete) to the moment its scores were
available: RGB conversion + face crops (thread pool), the scorer's batching wait and the
backend call. Without --clips, two synthetic test clips are rendered with `train.synth`.
`--toy` swaps in the tiny hand-built ONNX detector (engines/toy.py) when no exported
model is at hand. Prints one JSON object (and writes it with --json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.contract import InputContract
from monitor.live.config import MonitorConfig
from monitor.live.scorer import ScoredWindow
from monitor.live.service import Service

DEFAULT_MODEL = "demo/model.onnx"
WARMUP_S = 5.0  # windows completed in the first seconds (cascade load, arenas) are ignored
CLIP_SECONDS = 10.0  # length of the generated clips


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def make_clips(folder: Path, n: int) -> list[Path]:
    from train.synth.dataset import generate_dataset

    generate_dataset(
        folder, 0, 0, max(2, n), seed=0, workers=1, duration_s=(CLIP_SECONDS, CLIP_SECONDS)
    )
    clips = sorted((folder / "testset").glob("*.mp4"))
    return [clips[i % len(clips)] for i in range(n)]


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    a = np.asarray(values) * 1000.0
    return {
        "p50": round(float(np.percentile(a, 50)), 1),
        "p90": round(float(np.percentile(a, 90)), 1),
        "p99": round(float(np.percentile(a, 99)), 1),
        "max": round(float(a.max()), 1),
    }


async def measure(cfg: MonitorConfig, seconds: float) -> dict[str, Any]:
    service = Service(cfg, serve_http=False)
    latencies: list[float] = []
    batches: list[int] = []
    infer: list[float] = []
    t_start: list[float] = []

    async def probe() -> None:
        while service.pipeline is None:
            await asyncio.sleep(0.05)
        p = service.pipeline
        t_start.append(time.monotonic())
        route, on_batch = p.scorer.on_result, p.scorer.on_batch

        def on_result(r: ScoredWindow) -> None:
            if r.window.ready_at - t_start[0] >= WARMUP_S:
                latencies.append(r.latency_s)
            route(r)

        def batch_hook(stats: Any) -> None:
            batches.append(stats.size)
            infer.append(stats.infer_s)
            if on_batch is not None:
                on_batch(stats)

        p.scorer.on_result = on_result
        p.scorer.on_batch = batch_hook

    task = asyncio.get_running_loop().create_task(probe())
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.monotonic()
    await service.run(duration_s=seconds + WARMUP_S, install_signals=False)
    wall = time.monotonic() - wall0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    task.cancel()
    statuses = service.final_statuses
    cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "windows_scored": sum(s.windows_scored for s in statuses),
        "windows_dropped": sum(s.windows_dropped for s in statuses),
        "windows_measured": len(latencies),
        "latency_ms": percentiles(latencies),
        "batch_size_mean": round(float(np.mean(batches)), 2) if batches else None,
        "inference_ms_p50": percentiles(infer)["p50"],
        "cpu_percent_of_one_core": round(100.0 * cpu_s / wall, 1),
        "states": {s.stream_id: s.state for s in statuses},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="exported model (.onnx + manifest)")
    ap.add_argument("--toy", action="store_true", help="use the toy ONNX detector instead")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--clips", nargs="*", type=Path, help="clips to loop (default: synthetic)")
    ap.add_argument("--streams", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=60.0, help="measured time (after warm-up)")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-delay-ms", type=float, default=50.0)
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if args.toy:
            from engines.toy import make_toy_onnx

            model = str(make_toy_onnx(InputContract(), Path(tmp) / "toy.onnx"))
        elif not Path(model).exists():
            print(f"{model} not found: export the demo model first, or pass --toy", file=sys.stderr)
            return 2
        clips = args.clips or make_clips(Path(tmp) / "clips", args.streams)
        streams = [
            {"id": f"s{i}", "url": str(clips[i % len(clips)]), "loop": True, "realtime": True}
            for i in range(args.streams)
        ]
        cfg = MonitorConfig.model_validate(
            {
                "model": model,
                "backend": args.backend,
                "scorer": {"max_batch": args.max_batch, "max_delay_ms": args.max_delay_ms},
                "webrtc": {"enabled": False},
                "streams": streams,
            }
        )
        result = asyncio.run(measure(cfg, args.seconds))
    result = {
        "bench": "live_latency",
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_name(), "python": platform.python_version()},
        "model": "toy" if args.toy else args.model,
        "backend": args.backend,
        "streams": args.streams,
        "seconds": args.seconds,
        "max_batch": args.max_batch,
        "max_delay_ms": args.max_delay_ms,
        **result,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
