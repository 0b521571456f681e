"""`deepfake-monitor train DATA_DIR --out runs/NAME`: train the detector on a competition folder.

Flags mirror TrainConfig fields and override the YAML given with --config (or, with
--resume, the run's own config.yaml). Runs unchanged under `torchrun` for several GPUs or
nodes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

HELP = "train the detector on a competition-format folder (trainset/ + valset/)"

# flag dest -> TrainConfig field, for flags that override the config file
_OVERRIDES = (
    "preset",
    "epochs",
    "batch_size",
    "lr",
    "seed",
    "workers",
    "loader_workers",
    "cache_dir",
    "device",
    "max_train_clips",
    "max_val_clips",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data_dir", metavar="DATA_DIR", help="folder with trainset/, valset/, labels")
    p.add_argument("--out", required=True, help="run folder, e.g. runs/NAME")
    p.add_argument(
        "--config", help="training config: a YAML file, or a recipe name (e.g. cpu224native)"
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    p.add_argument("--preset", choices=["demo", "default"], help="model preset")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="windows per step and process")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int, help="caching (and loading) processes")
    p.add_argument(
        "--loader-workers",
        type=int,
        help="processes that load training draws, if not --workers (0: in the training process)",
    )
    p.add_argument("--cache-dir", help="per-clip window cache folder")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--max-train-clips", type=int, help="train on a subset")
    p.add_argument("--max-val-clips", type=int, help="validate on a subset")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--check-config", action="store_true", help="validate the config, print it resolved, exit"
    )


def resolve_config(args: argparse.Namespace) -> Any:
    from train.config import load_config, make_config
    from train.loop import CONFIG_NAME

    overrides: dict[str, Any] = {
        k: getattr(args, k) for k in _OVERRIDES if getattr(args, k, None) is not None
    }
    if args.no_progress:
        overrides["progress"] = False
    saved = Path(args.out) / CONFIG_NAME
    if args.config:
        return load_config(args.config, overrides)
    if args.resume and saved.is_file():
        return load_config(saved, overrides)
    return make_config(overrides, "command line")


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    from train.loop import build_model_config, train

    if args.check_config:
        cfg.build_contract()  # raises ContractError / ConfigError naming the bad value
        build_model_config(cfg)
        sys.stdout.write(cfg.to_yaml())
        return 0

    result = train(args.data_dir, args.out, cfg, resume=args.resume)
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun, rank 0 reports
    if result.history:
        last = result.history[-1]
        val = last.get("val", {})
        print(
            f"trained {result.epochs_run} epoch(s) to epoch {last['epoch']}: "
            f"{last['clips_per_s']:.1f} clips/s, last val AUC {val.get('auc', float('nan')):.4f}, "
            f"best (AUC, TPR@1e-3) {result.best_score[0]:.4f}, {result.best_score[1]:.3f}"
        )
        if result.best_full_val is not None:
            full = result.best_full_val
            print(
                f"best.pt on every val window: AUC {full['auc']:.4f}, "
                f"TPR@1e-3 {full['tpr_at_fpr_1e-3']:.3f} (epochs were validated on "
                f"{cfg.val_windows} per clip)"
            )
    else:
        print(f"{args.out}: nothing to do, already trained for {cfg.epochs} epochs")
    for head, auc in result.weak_heads.items():
        print(
            f"warning: the {head} head of best.pt scores val AUC {auc:.3f}: its branch has not "
            "learnt (see the log above)"
        )
    skipped = ", ".join(f"{n} {what}" for what, n in result.skipped.items() if n)
    if skipped:
        print(f"skipped clips: {skipped}")
    print(f"best: {result.best}\nlast: {result.last}")
    return 0
