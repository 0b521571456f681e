"""Alert quality of a model at several false-alarm budgets, on calls built from a split.

    .venv/bin/python bench/calibration.py --model MODEL.onnx --data DATA_DIR \
        [--split val] [--budgets 1,0.1,0.01] [--holdout 0.5] [--workers N] [--write 1]

Scores the split's windows once, then for each budget runs `calibrate`'s choice on one
part of the clips and reports, on the held-out part: false ALERTs and SUSPICIOUS per
stream-hour, time to alert from the turn (median, p95), fake calls never alerted, and the
stream-hours of real calls each figure rests on. A budget the split is too small to
measure is reported as refused, with the hours it would need. Prints a markdown table for
BENCHMARKS.md / MODEL_CARD.md. `--write B` also stores budget B's result in the model,
exactly as `deepfake-monitor calibrate MODEL DATA --false-alerts-per-hour B` would (the
same choice, from the one scoring pass).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.backend import load_backend  # noqa: E402
from monitor.errors import DatasetError  # noqa: E402
from monitor.live.state import StateParams  # noqa: E402
from monitor.offline.scoring import default_workers  # noqa: E402
from train.calibration import calibrate_clips, write_calibration  # noqa: E402
from train.calibration.windows import score_clips  # noqa: E402
from train.splits import load_split  # noqa: E402


def _fmt(x: float | None, unit: str = "") -> str:
    return "–" if x is None else f"{x:.1f}{unit}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--budgets", default="1,0.1,0.01")
    ap.add_argument("--holdout", type=float, default=0.5)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--write", type=float, default=None, metavar="B", help="store budget B")
    args = ap.parse_args()
    backend = load_backend(args.model, "onnxruntime")
    index = load_split(args.data, args.split)
    t0 = time.monotonic()
    workers = default_workers() if args.workers is None else args.workers
    clips = list(score_clips(list(index.records), backend, workers, progress=True))
    scored_s = time.monotonic() - t0
    c = backend.contract
    backend.close()
    print(
        f"\n{args.model} on {args.data}/{index.split}: {len(clips)} clips scored in "
        f"{scored_s:.0f} s; held out {args.holdout:.0%} of the clips"
    )
    print(
        "| budget (false ALERTs / h) | held-out real calls | false ALERTs / h | SUSPICIOUS / h "
        "| time to alert median | p95 | fake calls never alerted | chosen |"
    )
    print("|---|---|---|---|---|---|---|---|")
    data = f"{Path(args.data).resolve().name}/{index.split} ({len(index)} clips)"
    for budget in (float(b) for b in args.budgets.split(",")):
        try:
            cal = calibrate_clips(
                clips,
                StateParams(),
                budget,
                c.window_seconds,
                c.hop_seconds,
                args.holdout,
                data=data,
            )
            if args.write == budget:
                print(f"(budget {budget:g} written to {write_calibration(Path(args.model), cal)})")
        except DatasetError as exc:
            print(f"| {budget:g} | refused: {exc} | | | | | | |")
            continue
        h, s = cal.held_out, cal.setting
        chosen = (
            f"{s.smoothing} {s.smoothing_arg:g}, hold {s.min_escalate_s:g} s, alert_on "
            + ", ".join(f"{k} {v:g}" for k, v in sorted(s.alert_on.items()) if k != "sync")
        )
        print(
            f"| {budget:g} | {h.real_hours:.2f} h | {h.false_alerts_per_hour:.2f} "
            f"({h.false_alerts}) | {h.suspicious_per_hour:.1f} | {_fmt(h.tta_median_s, ' s')} "
            f"| {_fmt(h.tta_p95_s, ' s')} | {h.missed_share:.1%} of {h.fake_calls} | {chosen} |"
        )
        for fam, f in h.by_family.items():
            med = f["tta_median_s"]
            print(
                f"|  ↳ {fam} | | | | {_fmt(med if isinstance(med, float) else None, ' s')} | "
                f"| {f['missed_share']:.1%} of {f['calls']} | |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
