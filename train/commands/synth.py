"""`deepfake-monitor synth OUT --train N --val N --test N --seed S`: make a synthetic dataset.

`--voices real` voices the calls with real recordings and speech synthesizers from Debian
packages (train/synth/voices.py); `auto` (the default) does so where they are installed.
"""

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
    "tts_espeak_ng",
    "tts_flite",
    "tts_festival",
)
ENGINE_NAMES = ("espeak-ng", "flite", "festival")  # checked in tests against voices.py
SPEAKER_NAMES = ("allison", "june", "carlo", "ivrvoice", "armelle", "menardi", "july")
VOICE_CHOICES = ("auto", "procedural", "real")


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
        metavar="NAME[,NAME]",
        help="fake methods generated only in the test split (unseen in train/val); "
        f"methods: {', '.join(METHOD_NAMES)}; with real voices also a synthesizer engine "
        f"({', '.join(ENGINE_NAMES)}: its method and every voice of it) or a speaker "
        f"({', '.join(SPEAKER_NAMES)})",
    )
    p.add_argument(
        "--voices",
        choices=VOICE_CHOICES,
        default="auto",
        help="procedural: source-filter speech; real: recordings of real speakers for real "
        "calls, speech synthesizers and conversions of the recordings for fakes (Debian "
        "packages, see scripts/system-deps.sh); auto (default): real where installed",
    )
    p.add_argument(
        "--min-duration", type=float, default=3.0, metavar="S", help="shortest clip, s (3)"
    )
    p.add_argument(
        "--max-duration", type=float, default=10.0, metavar="S", help="longest clip, s (10)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in OUT")


def run(args: argparse.Namespace) -> int:
    import sys

    from train.synth import voices
    from train.synth.dataset import generate_dataset

    if args.voices == "auto":
        missing = voices.missing_packages()
        if missing:
            print(
                f"synth: procedural voices (real voices need: {voices.install_hint(missing)})",
                file=sys.stderr,
            )
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
        voices=args.voices,
    )
    for split, (real, fake) in summary.counts.items():
        print(f"{split}: {real + fake} clips ({real} real, {fake} fake)")
    rate = summary.n_clips / summary.seconds if summary.seconds > 0 else 0.0
    print(
        f"wrote {summary.n_clips} clips to {summary.root} in {summary.seconds:.1f} s "
        f"({rate:.2f} clips/s, {summary.workers} workers, {summary.voices} voices)"
    )
    return 0
