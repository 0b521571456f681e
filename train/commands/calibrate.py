"""`deepfake-monitor calibrate MODEL DATA_DIR --false-alerts-per-hour X [--split val]`.

Builds continuous real, fake and turn-fake calls from a labelled split, replays them
through the live state machine for every candidate setting, chooses the one that keeps
false ALERTs per stream-hour within X on one part of the split while alerting soonest,
reports it on the held-out part, and writes it into the model (its manifest, or a
checkpoint's extra); see train/calibration/.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "choose the state machine's settings for a false-alarm budget; write them into the model"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, metavar="MODEL", help="exported model (.onnx, .plan, .pt)")
    p.add_argument("data_dir", metavar="DATA_DIR", help="competition-format folder")
    p.add_argument("--split", default="val", help="split to build calls from (default val)")
    p.add_argument(
        "--false-alerts-per-hour",
        type=float,
        required=True,
        metavar="X",
        help="false ALERTs per stream-hour allowed on real calls",
    )
    p.add_argument(
        "--holdout", type=float, default=0.5, metavar="F", help="share of clips reported on"
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "onnxruntime", "torch", "tensorrt", "triton"),
        help="inference backend (default auto)",
    )
    p.add_argument("--workers", type=int, default=None, metavar="N", help="decoder processes")
    p.add_argument("--seed", type=int, default=0, help="call building seed")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="use N clips of the split")
    p.add_argument("--out", type=Path, default=None, help="also write the report JSON here")
    p.add_argument("--dry-run", action="store_true", help="report only; do not write the model")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from monitor.backend import load_backend
    from monitor.offline.scoring import default_workers
    from train.calibration import calibrate_model, write_calibration

    if not 0.0 < args.holdout < 1.0:
        print("deepfake-monitor calibrate: error: --holdout must be between 0 and 1")
        return 2
    backend = load_backend(args.model, args.backend)
    try:
        result = calibrate_model(
            backend,
            args.data_dir,
            args.split,
            args.false_alerts_per_hour,
            holdout=args.holdout,
            workers=default_workers() if args.workers is None else args.workers,
            seed=args.seed,
            progress=not args.no_progress,
            limit=args.limit,
        )
    finally:
        backend.close()
    print(result.describe(), flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    if not args.dry_run:
        written = write_calibration(args.model, result)
        print(f"calibration written to {written}", flush=True)
    return 0
