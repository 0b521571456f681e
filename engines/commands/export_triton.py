"""`deepfake-monitor export-triton MODEL --out REPO_DIR`: a Triton model repository."""

from __future__ import annotations

import argparse

HELP = "write a Triton Inference Server model repository for an ONNX file or TensorRT plan"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from engines.triton_repo import (
        DEFAULT_MAX_BATCH,
        DEFAULT_MODEL_NAME,
        DEFAULT_PREFERRED_BATCHES,
        DEFAULT_QUEUE_DELAY_US,
    )

    p.add_argument("model", metavar="MODEL", help="MODEL.onnx or MODEL.plan (with its manifest)")
    p.add_argument("--out", required=True, metavar="REPO_DIR", help="model repository folder")
    p.add_argument("--name", default=DEFAULT_MODEL_NAME, help="model name in the repository")
    p.add_argument(
        "--max-batch",
        type=int,
        default=DEFAULT_MAX_BATCH,
        metavar="N",
        help=f"max_batch_size (default {DEFAULT_MAX_BATCH})",
    )
    p.add_argument(
        "--preferred-batch",
        type=int,
        action="append",
        default=None,
        metavar="N",
        help=f"dynamic batcher's preferred size, repeatable (default {DEFAULT_PREFERRED_BATCHES})",
    )
    p.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=DEFAULT_QUEUE_DELAY_US,
        metavar="US",
        help=f"how long a request may wait to be batched (default {DEFAULT_QUEUE_DELAY_US})",
    )
    p.add_argument("--instances", type=int, default=1, help="model instances per device")
    p.add_argument("--kind", choices=("gpu", "cpu"), default="gpu", help="instance kind")


def run(args: argparse.Namespace) -> int:
    from engines.triton_repo import DEFAULT_PREFERRED_BATCHES, TritonOptions, export_triton

    try:
        opts = TritonOptions(
            name=args.name,
            max_batch=args.max_batch,
            preferred_batches=tuple(args.preferred_batch or DEFAULT_PREFERRED_BATCHES),
            queue_delay_us=args.max_queue_delay_us,
            instances=args.instances,
            kind=args.kind,
        )
    except ValueError as exc:
        from monitor.errors import ConfigError

        raise ConfigError(str(exc)) from exc
    model_dir = export_triton(args.model, args.out, opts)
    print(f"{model_dir}: Triton model {opts.name!r}; serve with: see {model_dir.parent}/README.md")
    return 0
