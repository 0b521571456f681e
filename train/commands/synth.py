"""`deepfake-monitor synth OUT --train N --val N --test N --seed S`: make a synthetic dataset."""

from __future__ import annotations

import argparse

HELP = "generate a synthetic competition-format dataset (talking heads, real and fake)"

METHOD_NAMES = (  # kept here so that --help needs no heavy import; checked in tests
    "vocoder",
    "voice_conversion",
    "face_swap",
    "face_lowres",
    "swap_vc",
    "lowres_vocoder",
    "desync_shift",
    "desync_other",
)


def _methods(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", metavar="OUT", help="output folder (trainset/, valset/, testset/, ...)")
    p.add_argument("--train", type=int, default=200, metavar="N", help="training clips (200)")
    p.add_argument("--val", type=int, default=50, metavar="N", help="validation clips (50)")
    p.add_argument("--test", type=int, default=50, metavar="N", help="test clips (50)")
    p.add_argument("--seed", type=int, default=0, help="root random seed (same seed, same data)")
    p.add_argument(
        "--workers", type=int, default=None, metavar="W", help="processes (default: all cores)"
    )
    p.add_argument(
        "--holdout",
        type=_methods,
        default=[],
        metavar="METHOD[,METHOD]",
        help="fake methods generated only in the test split (unseen in train/val); "
        f"methods: {', '.join(METHOD_NAMES)}",
    )
    p.add_argument(
        "--min-duration", type=float, default=3.0, metavar="S", help="shortest clip, s (3)"
    )
    p.add_argument(
        "--max-duration", type=float, default=10.0, metavar="S", help="longest clip, s (10)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in OUT")


def run(args: argparse.Namespace) -> int:
    from train.synth.dataset import generate_dataset

    summary = generate_dataset(
        args.out,
        args.train,
        args.val,
        args.test,
        args.seed,
        workers=args.workers,
        holdout=args.holdout,
        duration_s=(args.min_duration, args.max_duration),
        overwrite=args.overwrite,
    )
    for split, (real, fake) in summary.counts.items():
        print(f"{split}: {real + fake} clips ({real} real, {fake} fake)")
    rate = summary.n_clips / summary.seconds if summary.seconds > 0 else 0.0
    print(
        f"wrote {summary.n_clips} clips to {summary.root} in {summary.seconds:.1f} s "
        f"({rate:.2f} clips/s, {summary.workers} workers)"
    )
    return 0
