"""Training-step and inference throughput of the detector's configurations on a CUDA GPU.

For each configuration (a preset, or a training YAML such as `train/recipes/cpu224.yaml`)
this times, on random windows already on the GPU, so that only the model's own cost is
measured:

- one training step (forward with the sync pairs, backward, AdamW), in fp32 (TF32 off)
  and under the autocast that `train` uses (bf16 where the GPU has it, else fp16);
- one eval forward pass under the same autocast, at a larger batch.

It prints windows/s (median over the timed steps, CUDA-synchronised) and the peak memory
allocated. `train` is input-bound when its epochs' `clips_per_s` in metrics.jsonl stays
well under the training-step figure here: compare the two. Run from the repo root:

    python bench/gpu_train.py [--config default --config train/recipes/cpu224.yaml]
        [--batch 32 --batch 128] [--steps 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from train.config import TrainConfig, load_config
from train.loop import build_model_config
from train.model import build_model


def _config(name: str) -> TrainConfig:
    if name in ("demo", "default"):
        return TrainConfig(preset=name)
    return load_config(name)


def _median_s(fn: Callable[[], object], steps: int) -> float:
    for _ in range(3):  # warm-up: cuDNN autotuning, allocator
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench(name: str, batch: int, amp: bool, steps: int, eval_batch: int) -> dict[str, Any]:
    cfg = _config(name)
    contract = cfg.build_contract()
    torch.manual_seed(0)
    dev = torch.device("cuda")
    model = build_model(contract, build_model_config(cfg)).to(dev)
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp and dtype == torch.float16)

    def batch_of(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        audio = 0.1 * torch.randn(n, contract.window_samples, device=dev)
        faces = torch.randint(0, 256, (n, *contract.faces_shape), dtype=torch.uint8, device=dev)
        return audio, faces

    audio, faces = batch_of(batch)

    def step() -> None:
        model.train()
        with torch.autocast("cuda", dtype=dtype, enabled=amp):
            out = model(audio, faces, sync_pairs=True)
        loss = sum(o.float().mean() for o in out)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    torch.cuda.reset_peak_memory_stats()
    train_s = _median_s(step, steps)
    train_mem = torch.cuda.max_memory_allocated() / 2**30
    eval_audio, eval_faces = batch_of(eval_batch)

    def forward() -> None:
        model.eval()
        with torch.no_grad(), torch.autocast("cuda", dtype=dtype, enabled=amp):
            model(eval_audio, eval_faces)

    eval_s = _median_s(forward, steps)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return {
        "params_m": params,
        "train_wps": batch / train_s,
        "train_ms": train_s * 1000,
        "train_gib": train_mem,
        "eval_wps": eval_batch / eval_s,
        "dtype": str(dtype).removeprefix("torch.") if amp else "fp32",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--config",
        action="append",
        help="preset name or training YAML (repeatable; default: default, cpu224.yaml)",
    )
    p.add_argument("--batch", type=int, action="append", help="training batch (repeatable)")
    p.add_argument("--eval-batch", type=int, default=256, help="windows per eval forward")
    p.add_argument("--steps", type=int, default=20, help="timed steps per cell")
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_train.py needs a CUDA GPU (torch.cuda.is_available() is False)")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    configs = args.config or ["default", "train/recipes/cpu224.yaml"]
    batches = args.batch or [32, 128]
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(
        "| config | params | batch | precision | training step | windows/s, training | "
        "peak GiB | windows/s, eval forward |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in configs:
        for batch in batches:
            for amp in (False, True):
                r = bench(name, batch, amp, args.steps, args.eval_batch)
                torch.cuda.empty_cache()
                prec = f"autocast {r['dtype']}" if amp else "fp32"
                print(
                    f"| {name} | {r['params_m']:.2f} M | {batch} | {prec} | "
                    f"{r['train_ms']:.1f} ms | {r['train_wps']:.0f} | {r['train_gib']:.2f} | "
                    f"{r['eval_wps']:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
