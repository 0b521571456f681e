"""`deepfake-monitor demo [--dir demo] [--seconds S]`: the product's main job on the CPU.

Generates the two camera clips and serves them as looping cameras (one real, one fake)
scored by the shipped detector; `--train` trains and serves the small demo model
instead. See monitor/demo/run.py. `make demo` runs this, `make demo-train` with --train.
"""

from __future__ import annotations

import argparse

HELP = "run the demo: two RTSP cameras (real, fake) served and scored live by the shipped model"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", default="demo", help="working folder (data, run, model, config)")
    p.add_argument("--seconds", type=float, default=None, help="stop serving after S seconds")
    p.add_argument(
        "--train",
        action="store_true",
        help="train and serve the small demo model instead of the shipped one (~10 min)",
    )


def run(args: argparse.Namespace) -> int:
    from monitor.demo.run import run as run_demo

    return run_demo(args)
