"""Training-step cost of the detector on the CPU, by variant, and of one training draw.

Times one optimiser step (forward with the sync pairs, backward, AdamW) of a batch of
random windows, and one eval forward, for the demo architecture with the options that
decide its cost: K, `visual_stride`, `visual_highpass`, `mouth_box`, and channels_last
weights. Variants run interleaved, `--rounds` times each, and the minimum and median
over all their steps are printed, because a shared VM's speed drifts between minutes.
The second table is the data side of a draw: reading one cached window and augmenting it.
Run from the repo root:

    .venv/bin/python bench/train_step.py [--steps 8] [--rounds 2] [--cache .cache/windows]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from monitor.contract import InputContract
from train.augment import Augmenter, color_jitter, gaussian_noise, jpeg_recompress, self_blend
from train.cache import load_window, load_windows
from train.config import AugmentConfig
from train.model import MOUTH_BOX, ModelConfig, build_model

BATCH = 32


@dataclass(frozen=True)
class Variant:
    name: str
    k: int
    stride: int
    highpass: bool
    mouth_box: tuple[float, float, float, float] | None
    channels_last: bool


VARIANTS = (
    Variant("K=4, whole crop, contiguous", 4, 1, False, None, False),
    Variant("K=8 s2, whole crop, contiguous", 8, 2, False, None, False),
    Variant("K=8 s2, whole crop, channels_last", 8, 2, False, None, True),
    Variant("K=8 s2, mouth box, contiguous", 8, 2, False, MOUTH_BOX, False),
    Variant("K=8 s2, high-pass, whole crop, contiguous", 8, 2, True, None, False),
    Variant("K=8 s2, high-pass, mouth box, contiguous", 8, 2, True, MOUTH_BOX, False),
)


class Bench:
    def __init__(self, v: Variant) -> None:
        contract = InputContract(k_crops=v.k)
        cfg = ModelConfig.demo().replace(
            visual_stride=v.stride, visual_highpass=v.highpass, mouth_box=v.mouth_box
        )
        torch.manual_seed(0)
        self.model = build_model(contract, cfg).train()
        if v.channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.opt = torch.optim.AdamW(self.model.parameters(), 1e-3)
        g = torch.Generator().manual_seed(0)
        self.audio = 0.1 * torch.randn(BATCH, contract.window_samples, generator=g)
        shape = (BATCH, *contract.faces_shape)
        self.faces = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
        self.train_s: list[float] = []
        self.eval_s: list[float] = []

    def step(self) -> None:
        self.model.train()
        out = self.model(self.audio, self.faces, sync_pairs=True)
        loss = sum(o.float().mean() for o in out)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    def forward(self) -> None:
        self.model.eval()
        with torch.no_grad():
            self.model(self.audio, self.faces)


def _timed(fn: Callable[[], object], n: int) -> list[float]:
    fn()  # warm-up: allocations, oneDNN primitive creation
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _ms(xs: list[float]) -> str:
    return f"{min(xs) * 1000:.0f} / {statistics.median(xs) * 1000:.0f}"


def bench_model(steps: int, rounds: int) -> None:
    benches = [(v, Bench(v)) for v in VARIANTS]
    for _ in range(rounds):
        for _, b in benches:
            b.train_s += _timed(b.step, steps)
            b.eval_s += _timed(b.forward, steps)
    print(
        f"| variant (batch {BATCH}, {torch.get_num_threads()} threads) | "
        "training step ms, min / median | eval forward ms, min / median |"
    )
    print("|---|---|---|")
    for v, b in benches:
        print(f"| {v.name} | {_ms(b.train_s)} | {_ms(b.eval_s)} |")


def bench_data(cache: str, n: int) -> None:
    entries = sorted(Path(cache).glob("*/*.npz"))
    files = [f for f in entries if load_window(f, 0)[1].shape[0] == 8]
    if not files:
        print(f"(no K = 8 cache entries under {cache}: data table skipped)")
        return
    files = files[:n]
    rng = np.random.default_rng(0)
    _, faces = load_window(files[0], 0)
    rows: list[tuple[str, Callable[[], object]]] = [
        ("read one cached window", lambda: [load_window(f, 3) for f in files]),
        ("read the clip's whole arrays (np.load)", lambda: [load_windows(f) for f in files]),
        ("JPEG round trip", lambda: [jpeg_recompress(faces, 70) for _ in files]),
        ("Gaussian noise", lambda: [gaussian_noise(faces, 4.0, rng) for _ in files]),
        ("colour jitter", lambda: [color_jitter(faces, 1.1, 0.9, 1.1) for _ in files]),
        ("self-blend", lambda: [self_blend(faces, rng) for _ in files]),
    ]
    aug = Augmenter(AugmentConfig())
    audio = np.zeros(32000, np.float32)
    rows.append(
        ("default augmentation (all draws)", lambda: [aug(audio, faces, rng) for _ in files])
    )
    print(f"\n| per K = 8 window ({len(files)} windows) | ms |")
    print("|---|---|")
    for name, fn in rows:
        xs = _timed(fn, 3)
        print(f"| {name} | {min(xs) / len(files) * 1000:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8, help="timed steps per variant and round")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds over the variants")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--cache", default=".cache/windows", help="window cache for the data table")
    p.add_argument("--windows", type=int, default=100, help="cached windows to time")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench_model(args.steps, args.rounds)
    bench_data(args.cache, args.windows)


if __name__ == "__main__":
    main()
