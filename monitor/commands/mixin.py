"""`deepfake-monitor mixin [--config mixin.yaml] --out DIR [--check]`: the monitoring mixin.

Renders the Prometheus rules, the Alertmanager example and the Grafana dashboard (with its
provisioning files) from the mixin settings; see monitor/mixin/. `--check` writes nothing
and fails when a file under DIR is missing or differs (stale after a settings change).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "render the Prometheus rules, Alertmanager example and Grafana dashboard (mixin)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="mixin settings YAML")
    p.add_argument(
        "--out", type=Path, required=True, help="folder to write, e.g. deploy/monitoring"
    )
    p.add_argument("--check", action="store_true", help="compare with DIR instead of writing")


def run(args: argparse.Namespace) -> int:
    from monitor.mixin import check_files, load_mixin_config, write_files

    cfg = load_mixin_config(args.config)
    if args.check:
        problems = check_files(args.out, cfg)
        for line in problems:
            print(f"deepfake-monitor mixin: {line}", file=sys.stderr)
        if problems:
            print("regenerate with: deepfake-monitor mixin --config ... --out ...", file=sys.stderr)
            return 1
        print(f"{args.out}: up to date")
        return 0
    for path in write_files(args.out, cfg):
        print(path)
    return 0
