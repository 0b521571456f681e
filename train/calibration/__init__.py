"""`calibrate`: the state machine's settings for a false-alarm budget, chosen on calls.

    windows.py   score every window of a labelled split once (plus muted / camera-off)
    calls.py     continuous real, fake and turn-fake calls from those windows
    search.py    replay calls through the live state machine; choose the setting

`calibrate_model` chooses on one part of the split and reports on the held-out part,
then writes the chosen settings into the model (its manifest, or a checkpoint's extra),
where `serve`, `watch` and `replay` find them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.backend import Backend
from monitor.errors import DatasetError
from monitor.live.state import HEADS, StateParams
from train.calibration.calls import Call, build_calls, held_out, real_hours
from train.calibration.search import Figures, Setting, choose, figures, run_all, thresholds_for
from train.calibration.windows import ClipWindows, score_clips
from train.splits import load_split

logger = logging.getLogger(__name__)

DEFAULT_HOLDOUT = 0.5  # share of clips (by name hash) the figures are reported on


@dataclass
class Calibration:
    """The chosen setting, its figures on the part it was chosen on and on the held-out
    part, and what they rest on."""

    budget: float  # false ALERTs per stream-hour asked for
    setting: Setting
    state: dict[str, Any]  # StateConfig fields (the `state:` section a config would hold)
    chosen_on: Figures
    held_out: Figures
    heads: tuple[str, ...]  # heads whose thresholds were calibrated
    data: str
    clips: int

    def to_dict(self) -> dict[str, Any]:
        # through JSON: plain python types only (a checkpoint's extra must hold no numpy)
        return json.loads(json.dumps(self._record()))

    def _record(self) -> dict[str, Any]:
        return {
            "false_alerts_per_hour": self.budget,
            "state": self.state,
            "heads_calibrated": list(self.heads),
            "data": self.data,
            "clips": self.clips,
            "chosen_on": self.chosen_on.to_dict(),
            "held_out": self.held_out.to_dict(),
        }

    def describe(self) -> str:
        h = self.held_out
        tta = "-" if h.tta_median_s is None else f"{h.tta_median_s:.1f} s"
        p95 = "-" if h.tta_p95_s is None else f"{h.tta_p95_s:.1f} s"
        lines = [
            f"budget {self.budget:g} false ALERTs per stream-hour; chosen: "
            f"{self.setting.smoothing} {self.setting.smoothing_arg:g}, hold "
            f"{self.setting.min_escalate_s:g} s, alert_on "
            + ", ".join(f"{k} {v:g}" for k, v in sorted(self.setting.alert_on.items())),
            f"held out ({h.real_hours:.2f} h of real calls, {h.fake_calls} fake calls): "
            f"{h.false_alerts_per_hour:.2f} false ALERTs/h ({h.false_alerts}), "
            f"{h.suspicious_per_hour:.2f} SUSPICIOUS/h, time to alert median {tta}, p95 {p95}, "
            f"never alerted {h.missed_share:.1%}",
        ]
        for fam, f in h.by_family.items():
            md = f["tta_median_s"]
            lines.append(
                f"  {fam:6s} {f['calls']} calls, never alerted {f['missed_share']:.1%}, "
                f"median {'-' if md is None else f'{md:.1f} s'}"
            )
        return "\n".join(lines)


def state_section(setting: Setting, base: StateParams) -> dict[str, Any]:
    """The setting as a `state:` config section (thresholds capped at 1.0: never)."""
    params = setting.params(base)
    section: dict[str, Any] = {
        "smoothing": params.smoothing,
        "ema_alpha": params.ema_alpha,
        "median_windows": params.median_windows,
        "min_escalate_s": params.min_escalate_s,
        "min_deescalate_s": params.min_deescalate_s,
        "heads": {},
    }
    for head in HEADS:
        th = thresholds_for(setting.alert_on.get(head, 1.0))
        section["heads"][head] = {
            k: min(1.0, round(getattr(th, k), 4))
            for k in ("suspicious_on", "suspicious_off", "alert_on", "alert_off")
        }
    return section


def _split_parts(
    clips: list[ClipWindows], fraction: float
) -> tuple[list[ClipWindows], list[ClipWindows]]:
    choose_part = [c for c in clips if not held_out(c.name, fraction)]
    hold_part = [c for c in clips if held_out(c.name, fraction)]
    return choose_part, hold_part


def check_size(calls: list[Call], budget: float, hop_s: float, part: str) -> None:
    """Refuse a part with fewer real-call hours than one false alert per budget needs."""
    hours = real_hours(calls, hop_s)
    need = 1.0 / budget
    if hours < need:
        raise DatasetError(
            f"the {part} part has {hours:.2f} stream-hours of real calls; measuring "
            f"{budget:g} false ALERTs per hour needs at least {need:.2f} h (one alert's "
            "worth): use a bigger split, a larger budget or a different --holdout"
        )


def calibrate_clips(
    clips: list[ClipWindows],
    base: StateParams,
    budget: float,
    window_s: float,
    hop_s: float,
    holdout: float = DEFAULT_HOLDOUT,
    seed: int = 0,
    data: str = "",
) -> Calibration:
    """Choose on one part of the clips, report on the other (see the module docstring)."""
    if not any(c.target == 0 for c in clips) or not any(c.target == 1 for c in clips):
        raise DatasetError("calibration needs real and fake clips in the split")
    per_modality = any(c.family not in ("real", "fake") for c in clips)
    heads = ("fused", "audio", "visual") if per_modality else ("fused",)
    choose_part, hold_part = _split_parts(clips, holdout)
    calls_choose = build_calls(choose_part, seed)
    calls_hold = build_calls(hold_part, seed + 1)
    check_size(calls_choose, budget, hop_s, "choosing")
    check_size(calls_hold, budget, hop_s, "held-out")
    setting, chosen_on = choose(calls_choose, base, budget, window_s, hop_s, heads)
    held = figures(run_all(calls_hold, setting.params(base), window_s, hop_s), hop_s)
    return Calibration(
        budget, setting, state_section(setting, base), chosen_on, held, heads, data, len(clips)
    )


def calibrate_model(
    backend: Backend,
    data_dir: str | Path,
    split: str,
    budget: float,
    *,
    base: StateParams | None = None,
    holdout: float = DEFAULT_HOLDOUT,
    workers: int = 0,
    seed: int = 0,
    progress: bool = True,
    limit: int | None = None,
) -> Calibration:
    """Score the split's windows with `backend`, then `calibrate_clips`."""
    if not budget > 0 or math.isinf(budget):
        raise DatasetError(f"--false-alerts-per-hour must be a positive number, got {budget}")
    index = load_split(data_dir, split, limit=limit)
    clips = list(score_clips(list(index.records), backend, workers, progress))
    c = backend.contract
    return calibrate_clips(
        clips,
        base or StateParams(),
        budget,
        c.window_seconds,
        c.hop_seconds,
        holdout,
        seed,
        data=f"{Path(data_dir).resolve().name}/{index.split} ({len(index)} clips)",
    )


def write_calibration(model: Path, calibration: Calibration) -> Path:
    """Store the calibration with the model: the manifest beside an ONNX file or engine,
    or the extra of a checkpoint. Returns the file written."""
    record = calibration.to_dict()
    if model.suffix == ".pt":
        from train.checkpoint import update_extra

        update_extra(model, {"calibration": record})
        return model
    from engines.manifest import (
        find_manifest,
        load_engine_manifest,
        load_onnx_manifest,
        write_manifest,
    )

    path = find_manifest(model)
    if path is None:
        raise DatasetError(f"{model} has no manifest to write the calibration into")
    raw = json.loads(path.read_text())
    loaded: Any = (
        load_engine_manifest(model) if raw.get("plan") is not None else load_onnx_manifest(model)
    )
    return write_manifest(model, dataclasses.replace(loaded, calibration=record))
