"""How often the CNN cropper's detector finds the synthetic generator's faces.

    .venv/bin/python bench/faces_synth_rate.py DATA [--splits test] [--frames 8] [--seed S]

DATA is a folder written by `deepfake-monitor synth` (with its manifest.csv). For every
clip of the chosen splits, `--frames` frames spread over the clip go through face
detection alone (`FaceCropper.find_faces`, no tracking, cropper centerface-1). Prints the
share of frames with a face over all clips and per method, then every identity below
99 % with its hair style (`--seed`: the seed the data was generated with, to rebuild the
identities), then the clips that missed a frame, with the best face score of each frame.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.contract import CROPPER_CNN
from monitor.media.decode import iter_frames
from monitor.media.faces import FaceCropper
from train.synth.dataset import SPLITS, _identities


def frame_hits(path: Path, cropper: FaceCropper, n: int) -> list[float]:
    """Best face score of `n` evenly spread frames (0: no face)."""
    images = [f.image for f in iter_frames(path)]
    picks = np.linspace(0, len(images) - 1, n).round().astype(int)
    return [max((f.score for f in cropper.find_faces(images[i])), default=0.0) for i in picks]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--splits", default="test")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--seed", type=int, default=None, help="the data's synth seed")
    args = ap.parse_args()
    splits = args.splits.split(",")
    with open(args.data / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] in splits]
    cropper = FaceCropper(cropper=CROPPER_CNN)
    by_method: dict[str, list[float]] = defaultdict(list)
    by_identity: dict[tuple[str, str], list[float]] = defaultdict(list)
    missed = []
    for r in rows:
        scores = frame_hits(
            args.data / SPLITS[r["split"]][0] / r["video_name"], cropper, args.frames
        )
        rate = float(np.mean([s > 0 for s in scores]))
        by_method[r["method"]].append(rate)
        by_identity[(r["split"], r["identity"])].append(rate)
        if rate < 1.0:
            missed.append((r["video_name"], r["method"], r["identity"], rate, np.round(scores, 2)))
    every = [x for v in by_method.values() for x in v]
    print(f"frames with a face: {np.mean(every):.4f} over {len(every)} clips x {args.frames}")
    for method, rates in sorted(by_method.items()):
        print(f"  {method:18s} {np.mean(rates):.4f} ({len(rates)} clips)")
    pools: dict[str, dict[str, object]] = {}
    for (split, name), rates in sorted(by_identity.items(), key=lambda kv: np.mean(kv[1])):
        if np.mean(rates) >= 0.99:
            continue
        style = "?"
        if args.seed is not None:
            if split not in pools:
                n = sum(1 for r in rows if r["split"] == split)
                pool = _identities(args.seed, list(SPLITS).index(split), split, n)
                pools[split] = {i.name: i for i in pool}
            face = getattr(pools[split].get(name), "face", None)
            style = str(getattr(face, "hair_style", "photo"))
        print(f"  identity {split}/{name}: {np.mean(rates):.3f} ({len(rates)} clips), hair {style}")
    for clip in missed:
        print("  missed:", *clip)
    return 0


if __name__ == "__main__":
    sys.exit(main())
