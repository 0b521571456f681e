"""`deepfake-monitor build-engine model.onnx --out model.plan`: TensorRT engine + manifest."""

from __future__ import annotations

import argparse

HELP = "build a TensorRT engine from an exported ONNX file (on the GPU that will run it)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from engines.trt_plan import DEFAULT_MAX_BATCH, DEFAULT_WORKSPACE_MIB

    p.add_argument("onnx", metavar="MODEL.onnx", help="ONNX file written by `export`")
    p.add_argument("--out", required=True, metavar="FILE.plan", help="engine file to write")
    p.add_argument(
        "--fp16", action="store_true", help="allow fp16 kernels (an fp16 ONNX is always fp16)"
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=DEFAULT_MAX_BATCH,
        metavar="N",
        help=f"largest batch of the optimization profile (default {DEFAULT_MAX_BATCH})",
    )
    p.add_argument(
        "--opt-batch",
        type=int,
        default=None,
        metavar="N",
        help="batch size the kernels are tuned for (default min(32, max batch))",
    )
    p.add_argument(
        "--timing-cache",
        default=None,
        metavar="FILE",
        help="TensorRT timing cache, read if present and updated after the build",
    )
    p.add_argument(
        "--workspace-mib",
        type=int,
        default=DEFAULT_WORKSPACE_MIB,
        metavar="N",
        help=f"builder workspace limit in MiB (default {DEFAULT_WORKSPACE_MIB})",
    )
    p.add_argument("--device", type=int, default=0, metavar="INDEX", help="GPU index (default 0)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from engines.trt_build import BuildOptions, build_engine

    m = build_engine(
        args.onnx,
        args.out,
        BuildOptions(
            fp16=args.fp16,
            max_batch=args.max_batch,
            opt_batch=args.opt_batch,
            workspace_mib=args.workspace_mib,
            timing_cache=Path(args.timing_cache) if args.timing_cache else None,
            device_index=args.device,
        ),
    )
    print(
        f"{args.out}: TensorRT {m.tensorrt_version}, {m.precision}, {m.gpu_name} "
        f"(sm {m.compute_capability}), batch {m.min_batch}/{m.opt_batch}/{m.max_batch}, "
        f"sha256 {m.plan_sha256[:16]}…\n  manifest: {args.out}.json"
    )
    return 0
