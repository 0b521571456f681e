"""`deepfake-monitor replay FILE... --model MODEL --out DIR`: a recorded call, analysed.

Runs each file through the live pipeline (windower, crops, scorer, state machine) as fast
as the CPU allows, and writes DIR/<name>/timeline.csv, timeline.png and events.jsonl;
see monitor/live/replay.py. The state machine's settings come from --config (a `serve`
config file) or the defaults.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "replay recorded calls through the live pipeline: per-window timeline CSV and plot"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="recorded calls")
    p.add_argument(
        "--model",
        default=None,
        help="exported model (.onnx, engine, checkpoint); default: the config's model, else "
        "the shipped detector",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--config", type=Path, default=None, help="a serve config: state machine, windows"
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "onnxruntime", "torch", "tensorrt", "triton"),
        help="inference backend (default auto)",
    )
    p.add_argument("--hop", type=float, default=None, metavar="S", help="window stride (s)")


def run(args: argparse.Namespace) -> int:
    import asyncio

    from monitor.backend import load_backend
    from monitor.live.config import MonitorConfig, load_config
    from monitor.live.replay import replay_files
    from monitor.models import DEFAULT_NAME, describe_model, is_default

    if args.config is not None:
        cfg = load_config(args.config)
        model = args.model or cfg.model
        cfg = cfg.model_copy(update={"model": model, "streams": []})
    else:
        model = args.model or DEFAULT_NAME
        cfg = MonitorConfig(model=model, webrtc={"enabled": False})
    if is_default(model):  # say so: nothing named it
        print(describe_model(model), file=sys.stderr, flush=True)
    if args.hop is not None:
        cfg = cfg.model_copy(
            update={"windows": cfg.windows.model_copy(update={"hop_seconds": args.hop})}
        )
    backend = load_backend(model, args.backend)
    try:
        results = asyncio.run(replay_files(list(args.files), backend, cfg, args.out))
    finally:
        backend.close()
    for r in results:
        print(r.describe(), flush=True)
    return 1 if any(r.error for r in results) else 0
