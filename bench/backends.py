"""Backend speed: windows/s and per-batch latency (p50/p99) per backend, batch size and preset.

For each model preset or training config (random weights; speed does not depend on
them) a checkpoint is saved and exported to ONNX (fp32, plus fp16 and a TensorRT engine
where a GPU and TensorRT exist), then every backend that can run here scores batches of
1, 8, 32 and 128 windows for about `--seconds` per cell after one warm-up call. Prints a
markdown table.
Run from the repo root:

    .venv/bin/python bench/backends.py [--presets demo,default,train/recipes/cpu224.yaml]
        [--batches 1,8,32,128] [--seconds 3] [--backends torch,onnxruntime,tensorrt]
        [--threads N]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.parity import random_inputs
from monitor.backend import Backend
from monitor.contract import InputContract
from train.config import TrainConfig, load_config, make_config

DEFAULT_BATCHES = (1, 8, 32, 128)
DEFAULT_SECONDS = 3.0  # timed seconds per cell (after one warm-up call)
MIN_CALLS = 2  # timed calls per cell even when one call takes longer than --seconds
DEFAULT_MAX_CALL_SECONDS = 60.0  # skip a cell whose calls would take longer than this each
MS = 1e3


@dataclass(frozen=True)
class Cell:
    preset: str
    crops: str  # K x size of the preset's contract
    backend: str
    device: str
    batch: int
    calls: int
    windows_per_s: float
    p50_ms: float
    p99_ms: float


def time_backend(
    backend: Backend, contract: InputContract, batch: int, seconds: float
) -> tuple[int, float, float, float]:
    """(calls, windows/s, p50 ms, p99 ms) for one batch size."""
    audio, faces = random_inputs(contract, batch)
    backend.score(audio, faces)  # warm-up: allocations, autotuning, graph capture
    lat: list[float] = []
    start = time.perf_counter()
    while len(lat) < MIN_CALLS or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        backend.score(audio, faces)
        lat.append(time.perf_counter() - t0)
    total = sum(lat)
    p50, p99 = np.percentile(np.array(lat) * MS, [50, 99])
    return len(lat), batch * len(lat) / total, float(p50), float(p99)


def resolve(spec: str) -> tuple[str, TrainConfig]:
    """(label, training config) of a preset name or a training config YAML file."""
    if spec.endswith((".yaml", ".yml")):
        return Path(spec).stem, load_config(spec)
    return spec, make_config({"preset": spec})


def prepare(preset: str, train_cfg: TrainConfig, folder: Path, want_trt: bool) -> dict[str, Path]:
    """Checkpoint, ONNX (and fp16 ONNX + engine on a GPU with TensorRT) for one preset."""
    import torch

    from engines.export import export_checkpoint
    from train.checkpoint import save_checkpoint
    from train.loop import build_model_config
    from train.model import build_model

    contract = train_cfg.build_contract()
    cfg = build_model_config(train_cfg)
    torch.manual_seed(0)
    files = {"checkpoint": folder / f"{preset}.pt"}
    save_checkpoint(files["checkpoint"], build_model(contract, cfg), contract, cfg)
    gpu = torch.cuda.is_available()
    result = export_checkpoint(files["checkpoint"], folder / f"{preset}.onnx", fp16=gpu)
    files["onnx"] = result.onnx_path
    if result.fp16_path is not None:
        files["fp16_onnx"] = result.fp16_path
    if want_trt and gpu:
        from engines.trt_build import BuildOptions, build_engine

        files["plan"] = folder / f"{preset}.plan"
        build_engine(
            files.get("fp16_onnx", files["onnx"]),
            files["plan"],
            BuildOptions(
                fp16=True, max_batch=max(DEFAULT_BATCHES), timing_cache=folder / "timing.cache"
            ),
        )
    return files


def backends_for(
    files: dict[str, Path], names: list[str], contract: InputContract, threads: int = 0
) -> list[tuple[str, str, Backend]]:
    """(label, device, backend) for every requested backend that can run here."""
    import torch

    from engines.loader import SystemProbe
    from engines.ort_backend import OnnxRuntimeBackend
    from engines.torch_backend import TorchBackend
    from monitor.errors import DeepfakeMonitorError

    out: list[tuple[str, str, Backend]] = []
    gpu = torch.cuda.is_available()
    if "torch" in names:
        out.append(
            ("torch", "cpu", TorchBackend.from_checkpoint(files["checkpoint"], device="cpu"))
        )
        if gpu:
            out.append(
                (
                    "torch fp16+graphs",
                    "cuda",
                    TorchBackend.from_checkpoint(files["checkpoint"], device="cuda"),
                )
            )
    if "onnxruntime" in names:
        out.append(
            (
                "onnxruntime",
                "cpu",
                OnnxRuntimeBackend(files["onnx"], contract, device="cpu", intra_op_threads=threads),
            )
        )
        try:
            if gpu:
                out.append(
                    (
                        "onnxruntime fp16",
                        "cuda",
                        OnnxRuntimeBackend(files["fp16_onnx"], contract, device="cuda"),
                    )
                )
        except DeepfakeMonitorError as exc:
            logging.info("onnxruntime CUDA skipped: %s", exc)
    if "tensorrt" in names and "plan" in files and SystemProbe().has_tensorrt():
        from engines import load_backend

        out.append(("tensorrt fp16", "cuda", load_backend(files["plan"], backend="tensorrt")))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--presets",
        default="demo,default",
        help="comma-separated: demo, default or training config YAML files",
    )
    ap.add_argument("--batches", default=",".join(map(str, DEFAULT_BATCHES)))
    ap.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="timed seconds per cell")
    ap.add_argument("--backends", default="torch,onnxruntime,tensorrt")
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for torch and onnxruntime (0: their defaults); 1 is steadier on a "
        "busy machine, where OpenMP's spinning threads fight other processes",
    )
    ap.add_argument(
        "--max-call-seconds",
        type=float,
        default=DEFAULT_MAX_CALL_SECONDS,
        help="skip batch sizes whose estimated time per call (from the previous batch size, "
        "scaled linearly) exceeds this; a 2-core CPU needs minutes per ResNet-18 batch of 128",
    )
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    names = args.backends.split(",")
    cells: list[Cell] = []
    skipped: list[tuple[str, str, str, int, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench_backends_") as tmp:
        for spec in args.presets.split(","):
            # each preset's own contract: the default one takes 8 crops per window
            preset, train_cfg = resolve(spec)
            contract = train_cfg.build_contract()
            crops = f"{contract.k_crops}x{contract.crop_size}²"
            files = prepare(preset, train_cfg, Path(tmp), "tensorrt" in names)
            for label, device, backend in backends_for(files, names, contract, args.threads):
                per_window_s = 0.0
                for b in batches:
                    estimate = per_window_s * b
                    if estimate > args.max_call_seconds:
                        what = f"{preset:8s} {label:18s} batch {b:4d}"
                        print(f"  {what}: skipped (~{estimate:.0f} s/call)")
                        skipped.append((preset, label, device, b, estimate))
                        continue
                    calls, wps, p50, p99 = time_backend(backend, contract, b, args.seconds)
                    per_window_s = 1.0 / wps
                    cells.append(Cell(preset, crops, label, device, b, calls, wps, p50, p99))
                    line = f"{preset:8s} {label:18s} batch {b:4d}: {wps:9.1f} windows/s"
                    print(f"  {line}, p50 {p50:8.1f} ms", flush=True)
                backend.close()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    cpu = platform.processor() or platform.machine()
    print(
        f"\nMachine: {cpu}, {os.cpu_count()} CPU cores, {gpu}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); a window is {contract.window_seconds:g} s of "
        "audio and the crops below\n"
    )
    print(
        "| preset | crops | backend | device | batch | windows/s | p50 ms/batch | p99 ms/batch "
        "| calls |"
    )
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    for c in cells:
        print(
            f"| {c.preset} | {c.crops} | {c.backend} | {c.device} | {c.batch} | "
            f"{c.windows_per_s:,.1f} | "
            f"{c.p50_ms:,.1f} | {c.p99_ms:,.1f} | {c.calls} |"
        )
    for preset, label, device, b, est in skipped:
        print(f"| {preset} | | {label} | {device} | {b} | skipped: ~{est:.0f} s per call | | | |")


if __name__ == "__main__":
    main()
