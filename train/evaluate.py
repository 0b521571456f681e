"""Score a labelled split with a detector and report what the competition measures.

Per clip, each head's window probabilities are aggregated with the offline scorer's
rule (monitor/offline/aggregation.py's DEFAULT_RULE unless told otherwise), so the figure training
validates and `evaluate` reports is the figure prediction.txt gets; the report also
compares every candidate rule on the same window scores (`rules`). Reported: ROC AUC,
TPR at FPR 1e-3 and 1e-2, EER for the fused head; with a manifest, the audio head
against `audio_fake`, the visual head against `video_fake` (sync-family fakes left out:
their frames are untouched), and each generation method's fakes against all reals (the
per-method AUC shows which attacks the detector has not learnt). When the manifest
gives each clip's face height, the fakes are also scored by face size against all reals:
a crop shrinks a big face more, and with it the pixel-level traces a re-rendered face
leaves (MODEL_CARD.md, By face size). When the manifest names what made each voice
(`engine`: a speech synthesizer, `dsp` conversions, `recording`, `procedural`) and the
scene's real `speaker` (`synth --voices real`), the report also gives each engine's fakes
against all reals (`per_engine`; engines whose fakes the training split never had are
marked `held_out` and pooled in `held_out_engines`) and, per speaker, that speaker's
fakes against that speaker's reals (`per_speaker`).
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from monitor.errors import ConfigError
from monitor.offline.aggregation import DEFAULT_RULE, AggregateRule, compare_rules
from monitor.offline.evaluation import (
    binary_metrics,
    bootstrap_intervals,
    has_both_classes,
    plot_roc,
)
from train.cache import CachedClip, CacheSpec, build_cache, load_windows
from train.config import DEFAULT_CACHE_DIR, DEFAULT_MAX_WINDOWS
from train.sampling import SYNC_FAMILY
from train.splits import ClipRecord, find_manifest, load_split

logger = logging.getLogger(__name__)

DEFAULT_EVAL_BATCH = 64  # windows per forward pass when scoring
REAL_METHOD = "real"  # manifest method name of genuine clips (reals are found by target)
# Face-height bin edges, px, of the by-face-size breakdown: a 160-px crop (face box plus
# 25 % on every side) shows a face of up to about 107 px at full resolution.
FACE_SIZE_EDGES_PX = (120.0, 160.0, 200.0)


@dataclass(frozen=True)
class ClipScores:
    """Per-clip P(fake) of each head (window scores aggregated by `rule`), in the order of
    `records`."""

    records: tuple[ClipRecord, ...]
    fused: np.ndarray  # float64 [n_clips]
    audio: np.ndarray
    visual: np.ndarray
    n_windows: np.ndarray  # int [n_clips]
    rule: str = DEFAULT_RULE
    # per clip, float64 [3, n_windows]: the window probabilities of fused, audio, visual
    windows: tuple[np.ndarray, ...] = ()


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto` -> this process's CUDA device when there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' asked for but torch sees no CUDA GPU; use 'cpu'")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(name)


def _autocast(device: torch.device, amp: bool) -> Any:
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast(device.type, enabled=False)


def spread_indices(n: int, k: int) -> np.ndarray:
    """k distinct indices of 0..n-1 evenly spread, first and last included (all if k >= n)."""
    if k >= n:
        return np.arange(n)
    if k == 1:
        return np.array([(n - 1) // 2])
    return np.unique(np.round(np.linspace(0, n - 1, k)).astype(np.int64))


@torch.inference_mode()
def score_clips(
    model: nn.Module,
    clips: Sequence[CachedClip],
    device: torch.device,
    batch_size: int = DEFAULT_EVAL_BATCH,
    amp: bool = False,
    max_windows: int | None = None,
    rule: str = DEFAULT_RULE,
) -> ClipScores:
    """Run the model over every cached window and aggregate each clip's window
    probabilities with `rule` (monitor/offline/aggregation.py), head by head.

    With `max_windows`, a clip with more windows is scored on that many of them, evenly
    spread from its first to its last (per-epoch validation on a CPU, where scoring every
    window can take a third of the epoch). A clip without windows scores 0."""
    agg = AggregateRule.parse(rule)
    was_training = model.training
    model.eval()
    n = len(clips)
    probs: list[np.ndarray] = []  # float64 [3, batch] per forward pass
    owners_done: list[np.ndarray] = []
    pending_a: list[np.ndarray] = []
    pending_f: list[np.ndarray] = []
    owners: list[np.ndarray] = []

    def flush() -> None:
        audio = torch.from_numpy(np.concatenate(pending_a)).to(device)
        faces = torch.from_numpy(np.concatenate(pending_f)).to(device)
        with _autocast(device, amp):
            logits = model(audio, faces)
        p = torch.stack([torch.sigmoid(head.float()) for head in logits]).cpu().numpy()
        probs.append(p.astype(np.float64))
        owners_done.append(np.concatenate(owners))
        pending_a.clear()
        pending_f.clear()
        owners.clear()

    queued = 0
    for i, clip in enumerate(clips):
        w = load_windows(clip.npz)
        audio_w, faces_w = w.audio, w.faces
        if max_windows is not None and audio_w.shape[0] > max_windows:
            keep = spread_indices(audio_w.shape[0], max_windows)
            audio_w, faces_w = audio_w[keep], faces_w[keep]
        for start in range(0, audio_w.shape[0], batch_size):
            a, f = audio_w[start : start + batch_size], faces_w[start : start + batch_size]
            pending_a.append(a)
            pending_f.append(f)
            owners.append(np.full(len(a), i))
            queued += len(a)
            if queued >= batch_size:
                flush()
                queued = 0
    if queued:
        flush()
    model.train(was_training)
    every = np.concatenate(probs, axis=1) if probs else np.zeros((3, 0))
    who = np.concatenate(owners_done) if owners_done else np.zeros(0, dtype=np.int64)
    counts = np.bincount(who, minlength=n)
    order = np.argsort(who, kind="stable")  # windows grouped by clip, in window order
    per_clip = tuple(np.split(every[:, order], np.cumsum(counts)[:-1], axis=1)) if n else ()
    heads = np.zeros((3, n), dtype=np.float64)
    for i, clip_probs in enumerate(per_clip):
        if clip_probs.shape[1]:
            heads[:, i] = [agg(clip_probs[h]) for h in range(3)]
    return ClipScores(
        tuple(c.record for c in clips), heads[0], heads[1], heads[2], counts, agg.name, per_clip
    )


def _labelled(records: Sequence[ClipRecord], attr: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices and labels of the clips whose per-modality label `attr` is known.

    For `video_fake`, sync-family fakes are left out: their frames are untouched, the
    visual head is not taught on them (train.sampling.head_labels), and the sync head is
    what catches them."""
    idx = [
        i
        for i, r in enumerate(records)
        if getattr(r, attr) is not None and not (attr == "video_fake" and r.family == SYNC_FAMILY)
    ]
    return np.array(idx, dtype=np.int64), np.array(
        [getattr(records[i], attr) for i in idx], dtype=np.int64
    )


def clip_metrics(
    scores: ClipScores, intervals: bool = False, seen_engines: Iterable[str] | None = None
) -> dict[str, Any]:
    """The report: fused metrics, per-modality AUCs and per-method AUCs (NaN when undefined);
    with `intervals`, also bootstrap intervals of the fused figures (`fused_intervals`).
    With engines and speakers in the records, `per_engine` and `per_speaker` too; with
    `seen_engines` (the engines of the training split's fakes), engines outside it are
    held out (`held_out_engines`)."""
    recs = scores.records
    y = np.array([r.target for r in recs], dtype=np.int64)
    out: dict[str, Any] = {"fused": binary_metrics(y, scores.fused)}
    if intervals and has_both_classes(y):
        out["fused_intervals"] = bootstrap_intervals(y, scores.fused)
    for head, attr in (("audio", "audio_fake"), ("visual", "video_fake")):
        idx, lab = _labelled(recs, attr)
        if idx.size:
            out[head] = binary_metrics(lab, getattr(scores, head)[idx])
    methods = sorted({r.method for r in recs if r.target == 1 and r.method})
    reals = y == 0
    per_method: dict[str, Any] = {}
    for m in methods:
        sel = reals | np.array([r.method == m and r.target == 1 for r in recs])
        per_method[m] = binary_metrics(y[sel], scores.fused[sel])
    if per_method:
        out["per_method"] = per_method
    by_size = face_size_metrics(scores)
    if by_size:
        out["by_face_size"] = by_size
    out.update(voice_metrics(scores, seen_engines))
    return out


def voice_metrics(scores: ClipScores, seen_engines: Iterable[str] | None = None) -> dict[str, Any]:
    """Per engine: its fakes against all reals (fused head; `audio_auc`: the voice head on
    the same clips); engines not in `seen_engines` are `held_out` and their fakes pooled in
    `held_out_engines`. Per speaker: the speaker's fakes against the speaker's reals. Empty
    without engines or speakers in the records."""
    recs = scores.records
    y = np.array([r.target for r in recs], dtype=np.int64)
    reals = y == 0
    out: dict[str, Any] = {}
    engines = sorted({r.engine for r in recs if r.target == 1 and r.engine})
    seen = None if seen_engines is None else set(seen_engines)
    per_engine: dict[str, Any] = {}
    for e in engines:
        sel = reals | np.array([r.target == 1 and r.engine == e for r in recs])
        row: dict[str, Any] = dict(binary_metrics(y[sel], scores.fused[sel]))
        row["audio_auc"] = binary_metrics(y[sel], scores.audio[sel])["auc"]
        if seen is not None:
            row["held_out"] = e not in seen
        per_engine[e] = row
    if per_engine:
        out["per_engine"] = per_engine
    held = [e for e in engines if seen is not None and e not in seen]
    if held:
        sel = reals | np.array([r.target == 1 and r.engine in held for r in recs])
        pooled: dict[str, Any] = {"engines": held}
        pooled.update(binary_metrics(y[sel], scores.fused[sel]))
        pooled["audio_auc"] = binary_metrics(y[sel], scores.audio[sel])["auc"]
        out["held_out_engines"] = pooled
    speakers = sorted({r.speaker for r in recs if r.speaker})
    per_speaker: dict[str, Any] = {}
    for sp in speakers:
        sel = np.array([r.speaker == sp for r in recs])
        row = dict(binary_metrics(y[sel], scores.fused[sel]))
        row["audio_auc"] = binary_metrics(y[sel], scores.audio[sel])["auc"]
        per_speaker[sp] = row
    if per_speaker:
        out["per_speaker"] = per_speaker
    return out


def training_engines(data_dir: str | Path) -> set[str] | None:
    """Engines of the training split's fakes, from the dataset's manifest (None: the
    manifest has no engine or split column, or no training fakes)."""
    path = find_manifest(data_dir)
    if path is None:
        return None
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not {"engine", "split", "target"} <= set(reader.fieldnames or ()):
            return None
        engines = {
            (row.get("engine") or "").strip()
            for row in reader
            if row.get("split") == "train" and (row.get("target") or "").strip() == "1"
        }
    engines.discard("")
    return engines or None


def face_size_bins(edges: Sequence[float] = FACE_SIZE_EDGES_PX) -> list[tuple[str, float, float]]:
    """(label, low, high) of each face-height bin: [low, high) px."""
    bounds = [0.0, *edges, math.inf]
    out = []
    for lo, hi in itertools.pairwise(bounds):
        if lo == 0.0:
            label = f"<{hi:g}px"
        elif math.isinf(hi):
            label = f">={lo:g}px"
        else:
            label = f"{lo:g}-{hi:g}px"
        out.append((label, lo, hi))
    return out


def face_size_metrics(
    scores: ClipScores, edges: Sequence[float] = FACE_SIZE_EDGES_PX
) -> dict[str, Any]:
    """Per face-height bin: that bin's fakes against all reals (fused head), and its
    visually faked clips against all visually real ones (visual head). Empty without
    face heights for the fakes."""
    recs = scores.records
    px = np.array([np.nan if r.face_px is None else r.face_px for r in recs], dtype=np.float64)
    y = np.array([r.target for r in recs], dtype=np.int64)
    if not np.isfinite(px[y == 1]).any():
        return {}
    vis = np.full(len(recs), -1, dtype=np.int64)  # -1: not a visual example
    v_idx, v_lab = _labelled(recs, "video_fake")
    vis[v_idx] = v_lab
    out: dict[str, Any] = {}
    for label, lo, hi in face_size_bins(edges):
        inside = np.isfinite(px) & (px >= lo) & (px < hi)
        sel = (y == 0) | ((y == 1) & inside)
        row: dict[str, Any] = {"fused": binary_metrics(y[sel], scores.fused[sel])}
        vsel = (vis == 0) | ((vis == 1) & inside)
        if (vis == 1).any():
            row["visual"] = binary_metrics(vis[vsel], scores.visual[vsel])
        out[label] = row
    return out


def headline(metrics: dict[str, Any]) -> dict[str, float]:
    """The few numbers logged every epoch."""
    f = metrics["fused"]
    line = {
        "auc": f["auc"],
        "tpr_at_fpr_1e-3": f["tpr_at_fpr_1e-3"],
        "tpr_at_fpr_1e-2": f["tpr_at_fpr_1e-2"],
        "eer": f["eer"],
    }
    for head in ("audio", "visual"):
        if head in metrics:
            line[f"{head}_auc"] = metrics[head]["auc"]
    return line


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_report(
    out_dir: Path, split: str, scores: ClipScores, metrics: dict[str, Any], meta: dict[str, Any]
) -> dict[str, Path]:
    """metrics JSON (NaN as null), per-clip scores CSV, ROC plot PNG and, when the scores
    keep them, every window's scores (windows CSV: for trying other aggregations)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / f"metrics_{split}.json",
        "csv": out_dir / f"scores_{split}.csv",
        "png": out_dir / f"roc_{split}.png",
    }
    if scores.windows:
        paths["windows"] = out_dir / f"windows_{split}.csv"
        with paths["windows"].open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["video_name", "window", "p_fused", "p_audio", "p_visual", "target"])
            for r, probs in zip(scores.records, scores.windows, strict=True):
                for j in range(probs.shape[1]):
                    fused, audio, visual = (f"{v:.6f}" for v in probs[:, j])
                    w.writerow([r.name, j, fused, audio, visual, r.target])
    paths["json"].write_text(
        json.dumps(_json_safe({**meta, "metrics": metrics}), indent=2, sort_keys=False) + "\n"
    )
    with paths["csv"].open("w", newline="") as f:
        w = csv.writer(f)
        header = ["video_name", "y_pred", "p_audio", "p_visual", "target", "method", "windows"]
        w.writerow([*header, "engine", "speaker"])
        for i, r in enumerate(scores.records):
            w.writerow(
                [
                    r.name,
                    f"{scores.fused[i]:.6f}",
                    f"{scores.audio[i]:.6f}",
                    f"{scores.visual[i]:.6f}",
                    r.target,
                    r.method or "",
                    int(scores.n_windows[i]),
                    r.engine or "",
                    r.speaker or "",
                ]
            )
    y = np.array([r.target for r in scores.records])
    curves: dict[str, tuple[Any, Any]] = {"fused": (y, scores.fused)}
    for head, attr in (("audio head", "audio_fake"), ("visual head", "video_fake")):
        idx, lab = _labelled(scores.records, attr)
        if idx.size and has_both_classes(lab):
            values = scores.audio if attr == "audio_fake" else scores.visual
            curves[f"{head} vs {attr}"] = (lab, values[idx])
    plot_roc(paths["png"], curves, title=f"ROC on {split} ({len(y)} clips)")
    return paths


def evaluate_checkpoint(
    checkpoint: str | Path,
    data_dir: str | Path,
    split: str = "val",
    out_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    workers: int = 0,
    batch_size: int = DEFAULT_EVAL_BATCH,
    max_windows: int | None = None,
    device: str = "auto",
    progress: bool = False,
    aggregate: str = DEFAULT_RULE,
) -> dict[str, Any]:
    """Score `split` of a competition folder with a checkpoint; write and return the report.

    Cache folder, windows per clip and cached audio type default to the checkpoint's
    training config, so evaluating a run's own valset reuses the windows it trained on.
    """
    from train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    dev = resolve_device(device)
    model = ckpt.model.to(dev)
    index = load_split(data_dir, split)
    trained = ckpt.extra.get("train_config") or {}
    spec = CacheSpec(
        Path(cache_dir or trained.get("cache_dir") or DEFAULT_CACHE_DIR),
        ckpt.contract,
        max_windows=max_windows or int(trained.get("max_windows", DEFAULT_MAX_WINDOWS)),
        audio_dtype=str(trained.get("cache_audio_dtype", "float16")),
    )
    cache = build_cache(index.records, spec, workers=workers, progress=progress, what=index.split)
    scores = score_clips(
        model, cache.clips, dev, batch_size, amp=dev.type == "cuda", rule=aggregate
    )
    seen = training_engines(data_dir) if index.split != "trainset" else None
    metrics = clip_metrics(scores, intervals=True, seen_engines=seen)
    labels = {r.name: r.target for r in scores.records}
    windows = {r.name: w[0] for r, w in zip(scores.records, scores.windows, strict=True)}
    metrics["rules"] = compare_rules(windows, labels)
    meta = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": ckpt.sha256,
        "data_dir": str(data_dir),
        "split": index.split,
        "clips_listed": len(index.records) + len(index.missing),
        "clips_missing": len(index.missing),
        "clips_failed": len(cache.failed),
        "clips_scored": len(cache.clips),
        "aggregate": scores.rule,
        "contract": ckpt.contract.to_dict(),
    }
    target = Path(out_dir) if out_dir is not None else Path(checkpoint).parent / f"eval_{split}"
    paths = write_report(target, index.split, scores, metrics, meta)
    logger.info("%s: wrote %s", index.split, ", ".join(str(p) for p in paths.values()))
    return {**meta, "metrics": metrics, "files": {k: str(v) for k, v in paths.items()}}
