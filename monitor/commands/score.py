"""`deepfake-monitor score DATA --model MODEL --out prediction.txt`: competition predictions.

DATA is a folder of videos (scored in sorted name order) or a name/label list (scored in
its order). Writes `video_name,y_pred` with one row per input video, plus an errors
report, a summary and a journal beside it; see monitor/offline/scoring.py. A folder or
list of images (the challenge's image track, FFDI: `.jpg`/`.png`, `img_name,target`)
writes `img_name,y_pred`, each image scored by the model's visual head on its face crop;
videos and images together are refused. A problem with
the outputs (`--out` a directory, a read-only folder, a full disk) is one error line and
exit status 2, never a traceback; finished work stays in the journal for `--resume`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = (
    "score a folder or list of videos (or images) into a competition prediction file "
    "(video_name,y_pred or img_name,y_pred)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from monitor.offline.aggregation import CANDIDATE_RULES, DEFAULT_RULE

    p.add_argument(
        "data",
        metavar="DATA",
        help="folder of videos or of images (.jpg/.png: the image track), or a name/label list",
    )
    p.add_argument(
        "--model",
        default="default",
        help="exported model (.onnx, engine, checkpoint); default: the shipped detector",
    )
    p.add_argument("--out", required=True, type=Path, help="prediction file to write")
    p.add_argument(
        "--labels",
        type=Path,
        default=None,
        help="video_name,target (or img_name,target) file: metrics",
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "onnxruntime", "torch", "tensorrt", "triton"),
        help="inference backend (default auto)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument(
        "--video-dir", type=Path, default=None, help="where a list's videos (or images) are"
    )
    p.add_argument(
        "--sampling",
        default="exact",
        choices=("exact", "keyframe"),
        help="exact frames (as in training) or the keyframe at or before each (faster)",
    )
    p.add_argument(
        "--aggregate",
        default=DEFAULT_RULE,
        help=f"window -> video rule: {', '.join(CANDIDATE_RULES)} or topK (default {DEFAULT_RULE})",
    )
    p.add_argument("--hop", type=float, default=None, metavar="S", help="window stride, s")
    p.add_argument(
        "--max-windows", type=int, default=None, metavar="N", help="at most N windows per video"
    )
    p.add_argument(
        "--batch-size", type=int, default=None, metavar="W", help="windows per inference call"
    )
    p.add_argument(
        "--workers", type=int, default=None, metavar="N", help="decoder processes (0: inline)"
    )
    p.add_argument("--shard", default="0/1", metavar="I/N", help="score slice I of N (0-based)")
    p.add_argument("--resume", action="store_true", help="continue from the journal")
    p.add_argument("--overwrite", action="store_true", help="discard an existing journal")
    p.add_argument(
        "--windows-out", type=Path, default=None, metavar="CSV", help="also write window scores"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from monitor.errors import OutputError
    from monitor.models import describe_model, is_default
    from monitor.offline.inputs import Shard
    from monitor.offline.predictions import os_reason
    from monitor.offline.scoring import (
        DEFAULT_BATCH_WINDOWS,
        ScoreOptions,
        default_workers,
        score_videos,
    )

    if is_default(args.model):  # say so: nothing on the command line named it
        print(describe_model(args.model), file=sys.stderr, flush=True)
    opts = ScoreOptions(
        model=args.model,
        out=args.out,
        backend=args.backend,
        device=args.device,
        labels=args.labels,
        video_dir=args.video_dir,
        sampling=args.sampling,
        aggregate=args.aggregate,
        hop_seconds=args.hop,
        max_windows=args.max_windows,
        batch_windows=args.batch_size or DEFAULT_BATCH_WINDOWS,
        workers=default_workers() if args.workers is None else args.workers,
        shard=Shard.parse(args.shard),
        resume=args.resume,
        overwrite=args.overwrite,
        windows_out=args.windows_out,
        progress=not args.no_progress,
    )
    try:
        summary = score_videos(args.data, opts)
    except OSError as exc:  # any I/O failure not named nearer: one line, not a traceback
        where = exc.filename if exc.filename is not None else args.out
        raise OutputError(
            f"{where}: {os_reason(exc)}; finished videos are in the journal: "
            "rerun with --resume once this is fixed"
        ) from exc
    print(summary.describe(), flush=True)
    return 0
