"""Synthetic dataset speed: clips/s of `generate_dataset` with about 5 s clips.

Generates `--clips` clips (80 % train, 10 % val, 10 % test) into a temporary folder with
`--workers` processes and prints wall time, clips/s, CPU seconds per clip (parent plus
workers, so a loaded machine shows up as wall >> CPU / workers) and the projected time
for 200 clips. Run from the repo root:

    .venv/bin/python bench/synth_speed.py [--clips 40] [--workers 2] [--seconds 4.5 5.5]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from train.synth import generate_dataset

TARGET_CLIPS = 200  # the budget: 200 clips of about 5 s ...
TARGET_SECONDS = 180.0  # ... in under 3 minutes on 2 cores


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=40, help="clips to generate (default 40)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--seconds", type=float, nargs=2, default=(4.5, 5.5), metavar=("MIN", "MAX"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", type=Path, default=None, help="write here instead of a temp dir")
    args = p.parse_args()
    n_val = n_test = max(1, args.clips // 10)
    n_train = max(1, args.clips - n_val - n_test)
    with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp:
        out = args.keep or Path(tmp)
        cpu0, t0 = _cpu_seconds(), time.monotonic()
        summary = generate_dataset(
            out,
            n_train,
            n_val,
            n_test,
            args.seed,
            workers=args.workers,
            duration_s=tuple(args.seconds),
            overwrite=True,
        )
        wall = time.monotonic() - t0
        cpu = _cpu_seconds() - cpu0
        size = sum(f.stat().st_size for f in out.rglob("*.mp4"))
    n = summary.n_clips
    rate = n / wall
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {load:.1f} at the end"
    )
    print(f"clips: {n} of {args.seconds[0]:.1f}-{args.seconds[1]:.1f} s, {args.workers} workers")
    print(f"wall: {wall:.1f} s -> {rate:.2f} clips/s")
    print(f"cpu: {cpu:.1f} s -> {cpu / n:.2f} CPU s per clip ({size / n / 1e3:.0f} kB per clip)")
    projected = TARGET_CLIPS / rate
    print(
        f"projected {TARGET_CLIPS} clips: {projected:.0f} s at this wall rate, "
        f"{TARGET_CLIPS * cpu / n / args.workers:.0f} s on {args.workers} idle cores "
        f"(budget {TARGET_SECONDS:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
