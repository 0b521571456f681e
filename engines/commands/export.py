"""`deepfake-monitor export CHECKPOINT --out model.onnx [--fp16]`: checked ONNX export."""

from __future__ import annotations

import argparse

HELP = "export a checkpoint to ONNX (checker + parity vs torch; manifest written beside it)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="torch checkpoint written by training")
    p.add_argument("--out", required=True, metavar="FILE.onnx", help="ONNX file to write")
    p.add_argument(
        "--fp16",
        action="store_true",
        help="also write FILE.fp16.onnx (fp16 weights and math, fp32 front end) for GPU engines",
    )
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    p.add_argument(
        "--exporter",
        choices=("torchscript", "dynamo"),
        default="torchscript",
        help="torch exporter (default torchscript: fast and TensorRT-proven)",
    )
    p.add_argument(
        "--clip",
        action="append",
        default=[],
        metavar="MEDIA",
        help="also check parity on windows of this media file (repeatable)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="max |p_onnx - p_torch| accepted for the fp32 file (default 1e-3)",
    )


def run(args: argparse.Namespace) -> int:
    from engines.export import DEFAULT_OPSET, PARITY_TOLERANCE, describe, export_checkpoint

    result = export_checkpoint(
        args.checkpoint,
        args.out,
        fp16=args.fp16,
        opset=args.opset or DEFAULT_OPSET,
        exporter=args.exporter,
        clips=args.clip,
        tolerance=PARITY_TOLERANCE if args.tolerance is None else args.tolerance,
    )
    print(describe(result))
    return 0
