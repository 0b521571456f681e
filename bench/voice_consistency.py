"""Speaker consistency across windows: does it find a synthesizer the voice head misses?

A recorded speaker's voice varies from window to window (prosody, effort, phrasing); a
speech synthesizer is more uniform. Per clip this takes the same 2-s windows at a 0.5-s
hop as offline scoring, describes each window by MFCC statistics over its speech frames
(mean and standard deviation of coefficients 1-19, frames within 30 dB of the window's
loudest), standardised over the clips scored, and measures the clip's dispersion: the
mean cosine distance of its windows to their centroid. It then combines that dispersion
with the voice head's clip score by a two-weight logistic fit on the validation split and
reports voice AUCs (fake voices against every clip with a real voice) on validation and
test, overall and per engine, for the head alone, uniformity alone (the negative
dispersion: above 0.5 when fakes are more uniform than real voices) and both.

It reads the clip scores `evaluate` writes (run it on both splits first):

    deepfake-monitor evaluate runs/x/best.pt data/synthrv --split val
    deepfake-monitor evaluate runs/x/best.pt data/synthrv --split test
    .venv/bin/python bench/voice_consistency.py --run runs/x --data data/synthrv
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch
import torchaudio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.contract import SAMPLE_RATE
from monitor.media.decode import load_audio
from monitor.offline.evaluation import roc_auc

WINDOW = 2 * SAMPLE_RATE
HOP = SAMPLE_RATE // 2
FRAME, STEP = 400, 160  # 25-ms frames at a 10-ms step
SPEECH_DB = 30.0  # frames within this of the window's loudest count as speech
MIN_FRAMES = 10
SPLITS = {"val": "valset", "test": "testset"}


def window_stats(audio: np.ndarray, mfcc: torchaudio.transforms.MFCC) -> np.ndarray:
    """[windows, 38]: mean and std of MFCC 1-19 over each window's speech frames."""
    out = []
    for start in range(0, max(1, len(audio) - WINDOW + 1), HOP):
        w = torch.from_numpy(np.ascontiguousarray(audio[start : start + WINDOW], np.float32))
        if w.numel() < 10 * FRAME:
            continue
        coeffs = mfcc(w)
        level = 10 * torch.log10((w.unfold(0, FRAME, STEP) ** 2).mean(1) + 1e-10)
        n = min(coeffs.shape[1], level.shape[0])
        speech = coeffs[1:, :n][:, level[:n] > level[:n].max() - SPEECH_DB]
        if speech.shape[1] >= MIN_FRAMES:
            out.append(torch.cat([speech.mean(1), speech.std(1)]).numpy())
    return np.array(out)


def dispersion(stats: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> float:
    """Mean cosine distance of a clip's standardised windows to their centroid."""
    if len(stats) < 2:
        return 0.0
    z = (stats - mu) / sd
    c = z.mean(0)
    cos = (z @ c) / (np.linalg.norm(z, axis=1) * np.linalg.norm(c) + 1e-9)
    return float(np.mean(1.0 - cos))


def logistic_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = xt @ w + b
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, yt)
        loss = loss + 1e-3 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), float(b.item())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="run folder with eval_val/test")
    parser.add_argument("--data", type=Path, required=True, help="synth --voices real folder")
    args = parser.parse_args()
    with (args.data / "manifest.csv").open() as fh:
        manifest = {r["video_name"]: r for r in csv.DictReader(fh)}
    mfcc = torchaudio.transforms.MFCC(
        SAMPLE_RATE, n_mfcc=20, melkwargs={"n_fft": 512, "hop_length": STEP, "n_mels": 40}
    )
    per_split = {}
    for split, folder in SPLITS.items():
        scores_csv = args.run / f"eval_{split}" / f"scores_{split}set.csv"
        if not scores_csv.is_file():
            raise SystemExit(f"{scores_csv} is missing: run evaluate with --split {split}")
        with scores_csv.open() as fh:
            head = {r["video_name"]: float(r["p_audio"]) for r in csv.DictReader(fh)}
        names = sorted(head)
        stats = {n: window_stats(load_audio(args.data / folder / n), mfcc) for n in names}
        per_split[split] = (names, head, stats)
    pooled = np.concatenate([s for _, _, st in per_split.values() for s in st.values() if len(s)])
    mu, sd = pooled.mean(0), pooled.std(0) + 1e-6
    table = {}
    for split, (names, head, stats) in per_split.items():
        p = np.clip([head[n] for n in names], 1e-6, 1 - 1e-6)
        x = np.stack([np.log(p / (1 - p)), [-dispersion(stats[n], mu, sd) for n in names]], 1)
        y = np.array([int(manifest[n]["audio_fake"]) for n in names])
        engine = np.array([manifest[n]["engine"] for n in names])
        table[split] = (x, y, engine)
    x, y, _ = table["val"]
    m, s = x.mean(0), x.std(0) + 1e-9
    w, _ = logistic_fit((x - m) / s, y)
    print(f"{args.run}: weights on validation, head {w[0]:+.3f}, uniformity {w[1]:+.3f}")
    print("| split | fakes | n | voice head | uniformity | both |")
    print("|---|---|---|---|---|---|")
    for split, (x, y, engine) in table.items():
        both = ((x - m) / s) @ w
        groups = [("all", y == 1)] + [
            (e, (y == 1) & (engine == e)) for e in sorted(set(engine[y == 1]))
        ]
        for name, fake in groups:
            keep = fake | (y == 0)
            yy = fake[keep].astype(int)
            aucs = [roc_auc(yy, v[keep]) for v in (x[:, 0], x[:, 1], both)]
            print(
                f"| {split} | {name} | {int(fake.sum())} | "
                + " | ".join(f"{a:.3f}" for a in aucs)
                + " |"
            )


if __name__ == "__main__":
    main()
