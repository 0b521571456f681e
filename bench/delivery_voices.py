"""Delivery is not evidence: real voices that reached the monitor another way stay real.

A real call may arrive over a telephone line (8 kHz band, G.711), as a low-bitrate Opus
or AAC stream, with lost packets concealed, through a call client's automatic gain
control or noise suppression. None of that makes it fake. For each such condition
(train/augment.py's DELIVERY, the same code the training augmentation uses), this
scores the real clips of a split twice, as they are and with every window's audio
delivered that way (faces unchanged), aggregates each clip's windows with the offline
rule, and reports the ROC AUC of the delivered reals against the untouched ones:
0.5 means the detector cannot tell, 1.0 that it calls every delivered real more fake.
Goal: AUC <= 0.6 on the fused score for every condition.

    .venv/bin/python bench/delivery_voices.py --model runs/x/best.pt --data data/synth1k
    .venv/bin/python bench/delivery_voices.py --model model.onnx --data DATA --split test \\
        --max-clips 50 --json delivery.json

--model takes what `score` takes (ONNX, engine, checkpoint, folder); --toy scores with
the toy ONNX detector of engines/toy.py instead (a smoke run of the bench itself).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from monitor.backend import Backend, Scores, load_backend
from monitor.contract import InputContract
from monitor.media.clip import extract_windows
from monitor.offline.aggregation import DEFAULT_RULE, AggregateRule
from monitor.offline.evaluation import roc_auc
from train.delivery import DELIVERY, delivery
from train.splits import load_split

GOAL_AUC = 0.6  # at most: delivered reals must not look more fake than untouched ones
BATCH = 32  # windows per backend call
MAX_WINDOWS = 8  # per clip, spread over it (as training caches them)


def _score(backend: Backend, audio: np.ndarray, faces: np.ndarray) -> Scores:
    parts = [
        backend.score(
            np.ascontiguousarray(audio[i : i + BATCH]), np.ascontiguousarray(faces[i : i + BATCH])
        )
        for i in range(0, len(audio), BATCH)
    ]
    return Scores.concat(parts)


def _clip_seed(name: str, condition: str, seed: int) -> list[int]:
    digest = hashlib.blake2b(f"{name}/{condition}".encode(), digest_size=8).digest()
    return [seed, int.from_bytes(digest, "little")]


def run_bench(
    backend: Backend,
    data: str | Path,
    split: str = "test",
    max_clips: int | None = 40,
    conditions: list[str] | None = None,
    rule: str = DEFAULT_RULE,
    seed: int = 0,
) -> dict[str, Any]:
    """Per condition: AUC of the delivered reals against the untouched ones (fused and
    voice head), and the mean change of the clip score."""
    contract: InputContract = backend.contract
    agg = AggregateRule.parse(rule)
    index = load_split(data, split)
    reals = [r for r in index.records if r.target == 0]
    reals.sort(key=lambda r: hashlib.sha1(r.name.encode()).hexdigest())
    if max_clips is not None:
        reals = reals[:max_clips]
    names = conditions or list(DELIVERY)
    clean: dict[str, list[float]] = {"fused": [], "audio": []}
    moved: dict[str, dict[str, list[float]]] = {c: {"fused": [], "audio": []} for c in names}
    started = time.monotonic()
    for rec in reals:
        cw = extract_windows(rec.path, contract, max_windows=MAX_WINDOWS)
        if len(cw) == 0:
            continue
        base = _score(backend, cw.audio, cw.faces)
        clean["fused"].append(agg(base.fused))
        clean["audio"].append(agg(base.audio))
        for c in names:
            rng = np.random.default_rng(_clip_seed(rec.name, c, seed))
            audio = np.stack([delivery(w, contract.sample_rate, rng, c) for w in cw.audio])
            got = _score(backend, audio.astype(np.float32), cw.faces)
            moved[c]["fused"].append(agg(got.fused))
            moved[c]["audio"].append(agg(got.audio))
    n = len(clean["fused"])
    rows: dict[str, Any] = {}
    for c in names:
        row: dict[str, Any] = {"n_clips": n}
        for head in ("fused", "audio"):
            before, after = np.array(clean[head]), np.array(moved[c][head])
            y = np.r_[np.zeros(n), np.ones(n)]
            row[f"{head}_auc"] = roc_auc(y, np.r_[before, after]) if n else float("nan")
            row[f"{head}_mean_change"] = float(np.mean(after - before)) if n else float("nan")
        row["ok"] = bool(row["fused_auc"] <= GOAL_AUC)
        rows[c] = row
    return {
        "data": str(data),
        "split": index.split,
        "rule": agg.name,
        "goal_auc_at_most": GOAL_AUC,
        "n_real_clips": n,
        "seconds": round(time.monotonic() - started, 1),
        "conditions": rows,
    }


def print_report(report: dict[str, Any], model: str) -> None:
    print(
        f"{model} on {report['data']} {report['split']}: {report['n_real_clips']} real clips, "
        f"clip rule {report['rule']}, {report['seconds']} s"
    )
    print(
        f"{'condition':18s} {'fused AUC':>9s} {'voice AUC':>9s} {'fused Δ':>8s} "
        f"{'voice Δ':>8s}  goal AUC <= {report['goal_auc_at_most']}"
    )
    for c, r in report["conditions"].items():
        print(
            f"{c:18s} {r['fused_auc']:9.3f} {r['audio_auc']:9.3f} "
            f"{r['fused_mean_change']:+8.3f} {r['audio_mean_change']:+8.3f}  "
            f"{'ok' if r['ok'] else 'OVER'}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="ONNX file, engine, checkpoint or folder")
    ap.add_argument("--toy", action="store_true", help="score with the toy ONNX detector")
    ap.add_argument("--data", required=True, help="competition-format folder")
    ap.add_argument("--split", default="test", help="split whose real clips are used (test)")
    ap.add_argument("--max-clips", type=int, default=40, help="real clips used (40; 0: all)")
    ap.add_argument(
        "--conditions", help=f"comma-separated subset of: {', '.join(DELIVERY)} (default all)"
    )
    ap.add_argument("--aggregate", default=DEFAULT_RULE, help="window -> clip rule")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the report here")
    args = ap.parse_args(argv)
    conditions = [c.strip() for c in args.conditions.split(",")] if args.conditions else None
    unknown = [c for c in conditions or () if c not in DELIVERY]
    if unknown or (args.model is None) == (not args.toy):
        ap.error(f"unknown condition(s) {unknown}" if unknown else "give --model or --toy")
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if args.toy:
            from engines.toy import make_toy_onnx

            model = str(make_toy_onnx(InputContract(), Path(tmp) / "toy.onnx"))
        backend = load_backend(model, args.backend)
        try:
            report = run_bench(
                backend,
                args.data,
                args.split,
                args.max_clips or None,
                conditions,
                args.aggregate,
                args.seed,
            )
        finally:
            backend.close()
    print_report(report, "toy" if args.toy else str(args.model))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
