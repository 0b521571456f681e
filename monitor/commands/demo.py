"""`deepfake-monitor demo [--dir demo] [--seconds S]`: the product's main job on the CPU.

Generates a small dataset, trains and exports the demo model, and serves two looping
cameras (one real, one fake); see monitor/demo/run.py. `make demo` runs this.
"""

from __future__ import annotations

import argparse

HELP = "run the demo: small dataset, demo model, two RTSP cameras served and scored live"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", default="demo", help="working folder (data, run, model, config)")
    p.add_argument("--seconds", type=float, default=None, help="stop serving after S seconds")


def run(args: argparse.Namespace) -> int:
    from monitor.demo.run import run as run_demo

    return run_demo(args)
