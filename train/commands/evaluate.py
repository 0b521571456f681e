"""`deepfake-monitor evaluate CHECKPOINT DATA_DIR --split val`: metrics, scores and ROC plot."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

HELP = (
    "score a labelled split with a checkpoint: AUC, TPR@FPR, EER, per-modality/method AUC,"
    " per voice engine and speaker"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoint", metavar="CHECKPOINT", help="a .pt checkpoint (e.g. runs/x/best.pt)"
    )
    p.add_argument("data_dir", metavar="DATA_DIR", help="competition-format folder")
    p.add_argument("--split", default="val", help="train, val, test or a split folder name")
    p.add_argument("--out", help="report folder (default: CHECKPOINT's folder/eval_SPLIT)")
    p.add_argument("--cache-dir", help="per-clip window cache (default: the training run's)")
    p.add_argument("--workers", type=int, default=2, help="decoding processes")
    p.add_argument("--batch-size", type=int, default=64, help="windows per forward pass")
    p.add_argument(
        "--max-windows", type=int, help="windows scored per clip (default: the training run's)"
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    from monitor.offline.aggregation import CANDIDATE_RULES, DEFAULT_RULE

    p.add_argument(
        "--aggregate",
        default=DEFAULT_RULE,
        help=f"window -> clip rule: {', '.join(CANDIDATE_RULES)} or topK (default {DEFAULT_RULE};"
        " the report compares them all)",
    )


def _fmt(x: Any) -> str:
    return "   n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def print_voice_breakdown(m: dict[str, Any]) -> None:
    """Per engine (held-out ones marked), the held-out engines pooled, and per speaker."""
    engines = m.get("per_engine", {})
    if engines:
        print("fakes by voice engine (against all reals; voice head AUC on the same clips):")
    for engine, v in engines.items():
        mark = "  held out" if v.get("held_out") else ""
        print(
            f"  {engine:24s} AUC {_fmt(v['auc'])}  TPR@1e-3 {_fmt(v['tpr_at_fpr_1e-3'])}  "
            f"voice head AUC {_fmt(v.get('audio_auc'))}  n={v['n_fake']}{mark}"
        )
    held = m.get("held_out_engines")
    if held:
        print(
            f"  held-out engines ({', '.join(held['engines'])}) AUC {_fmt(held['auc'])}  "
            f"TPR@1e-3 {_fmt(held['tpr_at_fpr_1e-3'])}  voice head AUC "
            f"{_fmt(held.get('audio_auc'))}  n={held['n_fake']}"
        )
    speakers = m.get("per_speaker", {})
    if speakers:
        print("per speaker (the speaker's fakes against the speaker's reals):")
    for speaker, v in speakers.items():
        print(
            f"  {speaker:24s} AUC {_fmt(v['auc'])}  TPR@1e-3 {_fmt(v['tpr_at_fpr_1e-3'])}  "
            f"voice head AUC {_fmt(v.get('audio_auc'))}  n={v['n_real']}+{v['n_fake']}"
        )


def run(args: argparse.Namespace) -> int:
    from monitor.offline.aggregation import AggregateRule
    from monitor.offline.evaluation import COMPETITION_FPR
    from train.evaluate import evaluate_checkpoint

    AggregateRule.parse(args.aggregate)  # refuse an unknown rule before any decoding

    report = evaluate_checkpoint(
        args.checkpoint,
        args.data_dir,
        split=args.split,
        out_dir=args.out,
        cache_dir=args.cache_dir,
        workers=args.workers,
        batch_size=args.batch_size,
        max_windows=args.max_windows,
        device=args.device,
        progress=True,
        aggregate=args.aggregate,
    )
    m = report["metrics"]
    f = m["fused"]
    print(
        f"{report['split']}: {report['clips_scored']} clips scored "
        f"({report['clips_missing']} missing, {report['clips_failed']} undecodable); "
        f"windows aggregated by {report['aggregate']}"
    )
    print(
        f"fused   AUC {_fmt(f['auc'])}  TPR@1e-3 {_fmt(f['tpr_at_fpr_1e-3'])}  "
        f"TPR@1e-2 {_fmt(f['tpr_at_fpr_1e-2'])}  EER {_fmt(f['eer'])}"
    )
    ci = m.get("fused_intervals")
    if ci:
        pct = round(100 * ci["level"])
        print(
            f"        {pct}% bootstrap intervals: AUC [{ci['auc'][0]:.4f}, {ci['auc'][1]:.4f}]  "
            f"TPR@1e-3 [{ci['tpr_at_fpr_1e-3'][0]:.4f}, {ci['tpr_at_fpr_1e-3'][1]:.4f}]  "
            f"TPR@1e-2 [{ci['tpr_at_fpr_1e-2'][0]:.4f}, {ci['tpr_at_fpr_1e-2'][1]:.4f}]"
        )
        if f.get("n_real", 0) and f["n_real"] * COMPETITION_FPR < 1:
            print(
                f"        {f['n_real']} reals: no threshold passes a real at FPR 1e-3, so "
                "TPR@1e-3 is TPR at FPR 0 (the highest-scoring real decides it)"
            )
    for head in ("audio", "visual"):
        if head in m:
            print(f"{head:7s} AUC {_fmt(m[head]['auc'])} (head vs its modality label)")
    for method, v in m.get("per_method", {}).items():
        tpr = _fmt(v["tpr_at_fpr_1e-3"])
        print(f"  {method:24s} AUC {_fmt(v['auc'])}  TPR@1e-3 {tpr}  n={v['n_fake']}")
    print_voice_breakdown(m)
    sizes = m.get("by_face_size", {})
    if sizes:
        print("fakes by face height (against all reals):")
    for label, v in sizes.items():
        f, vis = v["fused"], v.get("visual")
        line = f"  {label:24s} AUC {_fmt(f['auc'])}  TPR@1e-3 {_fmt(f['tpr_at_fpr_1e-3'])}"
        line += f"  n={f['n_fake']}"
        if vis is not None:
            line += f"  visual head AUC {_fmt(vis['auc'])} (n={vis['n_fake']})"
        print(line)
    rules = m.get("rules", {})
    if rules:
        print("window -> clip rules on the same window scores (fused head):")
    for name, v in rules.items():
        mark = "  <- used above" if name == report["aggregate"] else ""
        print(
            f"  {name:12s} AUC {_fmt(v['auc'])}  TPR@1e-3 {_fmt(v['tpr_at_fpr_1e-3'])}  "
            f"TPR@1e-2 {_fmt(v['tpr_at_fpr_1e-2'])}{mark}"
        )
    print(json.dumps(report["files"]))
    return 0
