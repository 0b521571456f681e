"""`deepfake-monitor build-engine model.onnx --out model.plan`: TensorRT engine + manifest.

`--if-stale` keeps an existing plan when its manifest says it was built from this ONNX
file (sha256 and calibration), with this TensorRT version, for this GPU (name and compute
capability), with the asked precision and batch profile; otherwise it builds. The GPU
image's entrypoint runs it at every start, so a new GPU, a new container or a new model
rebuilds the engine and nothing else does.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engines.trt_build import BuildOptions
    from engines.trt_plan import RuntimeInfo

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
    p.add_argument(
        "--if-stale",
        action="store_true",
        help="keep an existing --out plan (exit 0) when its manifest matches this ONNX file, "
        "GPU, TensorRT version, precision and batch profile; build otherwise",
    )


def wanted_precision(onnx_precision: str, fp16: bool) -> str:
    """The precision a build gives: an fp16 ONNX is always fp16; `--fp16` allows it."""
    return "fp16" if onnx_precision == "fp16" or fp16 else "fp32"


def stale_reasons(
    plan: Path,
    onnx_sha256: str,
    here: RuntimeInfo,
    *,
    precision: str,
    min_batch: int,
    opt_batch: int,
    max_batch: int,
    calibration: dict[str, Any] | None = None,
) -> list[str]:
    """Why the plan at `plan` must be (re)built; empty when it is current.

    Current means: the plan exists and matches its manifest (sha256), and the manifest
    records this ONNX file's sha256 and calibration, this machine's TensorRT version, GPU
    name and compute capability, and the asked precision and batch profile. Needs no
    TensorRT: `here` holds the runtime facts.
    """
    from engines.manifest import load_engine_manifest
    from monitor.errors import ContractError, ModelFormatError

    if not plan.is_file():
        return [f"{plan} does not exist"]
    try:
        m = load_engine_manifest(plan)  # also checks the plan's sha256 against it
    except (ModelFormatError, ContractError) as exc:
        return [str(exc)]
    reasons = []
    if m.onnx_sha256 != onnx_sha256:
        reasons.append(
            f"it was built from another ONNX file (sha256 {m.onnx_sha256[:12]}…, "
            f"this one {onnx_sha256[:12]}…)"
        )
    if m.calibration != calibration:
        reasons.append("the ONNX file's calibration changed since it was built")
    if m.tensorrt_version != here.tensorrt_version:
        reasons.append(
            f"it was built with TensorRT {m.tensorrt_version}, this is {here.tensorrt_version}"
        )
    if m.gpu_name != here.gpu_name or m.compute_capability != here.compute_capability:
        reasons.append(
            f"it was built for {m.gpu_name} (sm {m.compute_capability}), this GPU is "
            f"{here.gpu_name} (sm {here.compute_capability})"
        )
    if m.precision != precision:
        reasons.append(f"it is {m.precision}, {precision} was asked for")
    built = (m.min_batch, m.opt_batch, m.max_batch)
    if built != (min_batch, opt_batch, max_batch):
        reasons.append(
            "its batch profile is {}/{}/{}, {}/{}/{} was asked for".format(
                *built, min_batch, opt_batch, max_batch
            )
        )
    return reasons


def run(args: argparse.Namespace) -> int:
    from engines.trt_build import BuildOptions, build_engine

    opts = BuildOptions(
        fp16=args.fp16,
        max_batch=args.max_batch,
        opt_batch=args.opt_batch,
        workspace_mib=args.workspace_mib,
        timing_cache=Path(args.timing_cache) if args.timing_cache else None,
        device_index=args.device,
    )
    if args.if_stale and _current(Path(args.onnx), Path(args.out), opts):
        return 0
    m = build_engine(args.onnx, args.out, opts)
    print(
        f"{args.out}: TensorRT {m.tensorrt_version}, {m.precision}, {m.gpu_name} "
        f"(sm {m.compute_capability}), batch {m.min_batch}/{m.opt_batch}/{m.max_batch}, "
        f"sha256 {m.plan_sha256[:16]}…\n  manifest: {args.out}.json"
    )
    return 0


def _current(onnx: Path, plan: Path, opts: BuildOptions) -> bool:
    """True (and says so) when the plan needs no rebuild; logs why otherwise."""
    from engines.manifest import load_onnx_manifest
    from engines.trt_common import runtime_info
    from engines.trt_plan import Profile

    source = load_onnx_manifest(onnx)  # verifies the ONNX file against its manifest
    here = runtime_info(opts.device_index)
    profile = Profile.for_max_batch(opts.max_batch, opts.opt_batch)
    reasons = stale_reasons(
        plan,
        source.onnx_sha256,
        here,
        precision=wanted_precision(source.precision, opts.fp16),
        min_batch=profile.min_batch,
        opt_batch=profile.opt_batch,
        max_batch=profile.max_batch,
        calibration=source.calibration,
    )
    if not reasons:
        print(
            f"{plan}: current (built from {onnx.name} with TensorRT {here.tensorrt_version} "
            f"for {here.gpu_name}, sm {here.compute_capability}); not rebuilt",
            flush=True,
        )
        return True
    print(f"{plan}: building, because " + "; ".join(reasons), flush=True)
    return False
