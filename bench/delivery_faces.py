"""Delivery is not evidence: real clips re-delivered worse must not score as fakes.

Calls and uploads arrive at low resolution, low frame rate and low bitrate; a detector
that reads those as "fake" flags honest callers on a bad line. This bench takes real
clips (synthetic reals: `deepfake-monitor synth`, or a folder you give), re-encodes each
under every delivery condition, scores originals and copies with a model through the
same windows and face crops as offline scoring (the model's own cropper), and prints, per
condition, the AUC of the degraded copies against the originals: 0.5 means delivery tells
the model nothing; the goal is <= 0.6 on the fused and face-head (visual) scores. Two
conditions keep the picture and move the voice (an honest call's audio-video skew). The
voice head (a control: the audio is only re-encoded) and the lip-sync head are shown too,
with the share of crops that found a face. With `--fakes DATA`, the face fakes of that
synthetic folder's split are delivered the same way, and a last column gives what is left
of the face head's power: the AUC of delivered face fakes against reals delivered alike.
Run from the repo root:

    .venv/bin/python bench/delivery_faces.py --model runs/NAME/model.onnx [--data DIR]
        [--clips 24 --seed 21] [--keep DIR] [--fakes DATA --fake-split test]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engines.loader import load_backend
from monitor.backend import Backend
from monitor.media.clip import extract_windows
from monitor.media.decode import iter_frames, load_audio, probe
from monitor.offline.aggregation import DEFAULT_RULE, aggregate
from train.augment import av_offset
from train.synth.encode import write_mp4
from train.synth.speech import AUDIO_RATE

BASE_CRF = 23  # the re-encode of the control condition: the synthetic clips' own range
AUDIO_BITRATE = 96_000  # bit/s, every copy (the voice is not what is tested here)
MAX_WINDOWS = 8  # windows scored per clip, spread over it
GOAL_AUC = 0.6


@dataclass(frozen=True)
class Condition:
    name: str
    scale: float = 1.0  # frame side factor
    fps: float | None = None  # None: the clip's own
    crf: int = BASE_CRF  # x264 constant rate factor: higher = fewer bits
    av_offset_s: float = 0.0  # the voice this much later than the picture (< 0: earlier)


CONDITIONS = (
    Condition("re-encode (control)"),
    Condition("half resolution", scale=0.5),
    Condition("third resolution", scale=1 / 3),
    Condition("10 fps", fps=10),
    Condition("5 fps", fps=5),
    Condition("low bitrate (crf 38)", crf=38),
    Condition("very low bitrate (crf 45)", crf=45),
    Condition("call: half res, 10 fps, crf 38", scale=0.5, fps=10, crf=38),
    # audio-video skew inside what viewers accept (ITU-R BT.1359: about 0.19 s late, 0.09 s
    # early): an honest call's voice is rarely on the frame
    Condition("voice 0.1 s late", av_offset_s=0.1),
    Condition("voice 0.05 s early", av_offset_s=-0.05),
)


def reals_from(data: Path) -> list[Path]:
    """The real clips of a synthetic (or competition-layout) folder."""
    out = []
    for split, labels in (("trainset", "train_label.txt"), ("valset", "val_label.txt")):
        label_file = data / labels
        if not label_file.is_file():
            continue
        with label_file.open() as f:
            for row in csv.DictReader(f):
                if row["target"] == "0" and (data / split / row["video_name"]).is_file():
                    out.append(data / split / row["video_name"])
    return sorted(out)


def degrade(src: Path, dst: Path, cond: Condition) -> int:
    """Re-encode `src` under `cond` into `dst`; returns the video bitrate, kbit/s."""
    info = probe(src)
    frames = list(iter_frames(src))
    fps_in = len(frames) / max(info.duration_s, 1e-6)
    fps = round(cond.fps if cond.fps is not None else fps_in)
    h, w = frames[0].image.shape[:2]
    out_w = max(16, round(w * cond.scale / 2) * 2)
    out_h = max(16, round(h * cond.scale / 2) * 2)
    n_out = max(1, round(info.duration_s * fps))

    def images() -> list[np.ndarray]:
        picked = []
        for i in range(n_out):
            t = i / fps
            j = min(len(frames) - 1, int(t * fps_in + 1e-6))
            img = frames[j].image
            if (out_w, out_h) != (w, h):
                img = cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_AREA)
            picked.append(np.ascontiguousarray(img))
        return picked

    mono = av_offset(load_audio(src, AUDIO_RATE), round(cond.av_offset_s * AUDIO_RATE))
    write_mp4(dst, images(), np.stack([mono, mono]), fps, out_w, out_h, cond.crf, AUDIO_BITRATE)
    video_bytes = dst.stat().st_size - AUDIO_BITRATE / 8 * info.duration_s
    return round(max(0.0, video_bytes) * 8 / 1000 / max(info.duration_s, 1e-6))


def face_fakes_from(data: Path, split: str, most: int) -> list[Path]:
    """Up to `most` fakes of a synthetic folder's split whose face is manipulated (not the
    desync family, whose frames are untouched), from its manifest."""
    manifest = data / "manifest.csv"
    if not manifest.is_file():
        raise SystemExit(f"no manifest.csv in {data}: --fakes takes a synthetic folder")
    folder = data / f"{split}set"
    with manifest.open() as f:
        rows = [
            r
            for r in csv.DictReader(f)
            if r["split"] == split and r["video_fake"] == "1" and r["family"] != "sync"
        ]
    return sorted(folder / r["video_name"] for r in rows)[:most]


HEADS = ("fused", "visual", "audio", "sync")  # table order; sync is absent from 3-output models


def score_clip(backend: Backend, path: Path) -> dict[str, float]:
    """Aggregated P(fake) of one clip per head (nan for an absent sync head), and `found`,
    the share of crops with a face."""
    cw = extract_windows(path, backend.contract, max_windows=MAX_WINDOWS)
    s = backend.score(cw.audio, cw.faces)
    heads = {"fused": s.fused, "visual": s.visual, "audio": s.audio, "sync": s.sync}
    out = {k: float("nan") if v is None else aggregate(v, DEFAULT_RULE) for k, v in heads.items()}
    out["found"] = float(cw.face_found.mean()) if cw.face_found.size else 0.0
    return out


def auc(positive: list[float], negative: list[float]) -> float:
    """P(a positive scores above a negative), ties counted half; nan for an absent head."""
    p, n = np.asarray(positive)[:, None], np.asarray(negative)[None, :]
    if np.isnan(p).any() or np.isnan(n).any():
        return float("nan")
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="ONNX file, checkpoint or model folder")
    parser.add_argument("--data", type=Path, help="a folder with real clips (synth layout)")
    parser.add_argument("--clips", type=int, default=24, help="synth clips to make (half real)")
    parser.add_argument("--seed", type=int, default=21, help="synth seed")
    parser.add_argument("--keep", type=Path, help="keep the degraded copies here")
    parser.add_argument("--fakes", type=Path, help="a synthetic folder whose face fakes to deliver")
    parser.add_argument("--fake-split", default="test", help="its split (default: test)")
    parser.add_argument("--max-fakes", type=int, default=40, help="face fakes taken (default 40)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="delivery-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = args.data
        if data is None:
            data = work / "synth"
            cmd = [sys.executable, "-m", "monitor.cli", "synth", str(data), "--train",
                   str(args.clips), "--val", "0", "--test", "0", "--seed", str(args.seed),
                   "--min-duration", "3", "--max-duration", "5", "--overwrite"]  # fmt: skip
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        reals = reals_from(data)
        if not reals:
            raise SystemExit(f"no real clips in {data}")
        backend = load_backend(args.model, backend="auto", device="cpu")
        t0 = time.perf_counter()
        fakes = face_fakes_from(args.fakes, args.fake_split, args.max_fakes) if args.fakes else []
        if args.fakes and not fakes:
            raise SystemExit(f"no face fakes in the {args.fake_split} split of {args.fakes}")
        base = [score_clip(backend, p) for p in reals]
        fbase = [score_clip(backend, p) for p in fakes]
        print(
            f"model {args.model} ({backend.name}, cropper {backend.contract.cropper}), "
            f"{len(reals)} real clips from {data}, rule {DEFAULT_RULE}"
            + (f"; {len(fakes)} face fakes from {args.fakes}" if fakes else "")
        )
        print()
        power = " face fakes vs reals, face head |" if fakes else ""
        print(
            "| condition | video kbit/s | fused AUC | face-head AUC | voice-head AUC "
            f"| sync-head AUC | faces found | verdict |{power}"
        )
        print("|---|---|---|---|---|---|---|---|" + ("---|" if fakes else ""))

        def told_apart(fake_rows: list[dict[str, float]], real_rows: list[dict[str, float]]) -> str:
            if not fakes:
                return ""
            a = auc([r["visual"] for r in fake_rows], [r["visual"] for r in real_rows])
            return f" {a:.3f} |"

        def deliver(
            clips: list[Path], cond: Condition, prefix: str
        ) -> tuple[list[dict[str, float]], list[int]]:
            """Each clip re-encoded under `cond` and scored; and each copy's kbit/s."""
            rows, kbps = [], []
            for i, src in enumerate(clips):
                dst = work / f"{prefix}{i:03d}.mp4"
                kbps.append(degrade(src, dst, cond))
                rows.append(score_clip(backend, dst))
            return rows, kbps

        found0 = np.mean([b["found"] for b in base])
        print(f"| original | - | - | - | - | - | {found0:.0%} | |{told_apart(fbase, base)}")
        for cond in CONDITIONS:
            tag = f"{cond.name.split()[0]}-{abs(hash(cond)) % 10**6}"
            rows, kbps = deliver(reals, cond, f"{tag}-")
            frows, _ = deliver(fakes, cond, f"{tag}-fake-")
            aucs = {h: auc([r[h] for r in rows], [b[h] for b in base]) for h in HEADS}
            found = np.mean([r["found"] for r in rows])
            verdict = (
                "ok" if max(aucs["fused"], aucs["visual"]) <= GOAL_AUC else f"above {GOAL_AUC}"
            )
            cells = " | ".join("-" if np.isnan(aucs[h]) else f"{aucs[h]:.3f}" for h in HEADS)
            print(
                f"| {cond.name} | {np.median(kbps):.0f} | {cells} | {found:.0%} | {verdict} |"
                + told_apart(frows, rows)
            )
        print()
        print(f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
