"""What a scoring run writes at the end: predictions, errors, window scores, summary, metrics.

All of it is derived from the journal's per-video results, in input order, so a run that
was interrupted and resumed writes exactly what an uninterrupted run writes. Files sit
beside the prediction file `OUT`:

    OUT                    video_name,y_pred - one row per input video, input order
    OUT.errors.json        videos that could not be scored (they got the neutral score),
                           and notes on videos scored with a remark (a short track)
    OUT.summary.json       counts (scored, failed, fallbacks, notes), timings, profile, and
                           which shard of how many inputs this is (merge checks it)
    OUT.journal.jsonl      the journal (kept: it holds every window score; see --resume)
    OUT.metrics.json       with labels: AUC, TPR@FPR=1e-3, per-rule and per-head AUCs
    OUT.roc.png            with labels: the ROC plot

For the image track (FFDI) the same files are written with `img_name` for `video_name`;
each image is one window and its score is the visual head's (`HEAD_VISUAL`), not the
fused head's: see monitor/media/images.py.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monitor.offline.aggregation import AggregateRule, compare_rules
from monitor.offline.inputs import INPUT_IMAGE, INPUT_VIDEO, VideoInput
from monitor.offline.journal import VideoResult
from monitor.offline.predictions import (
    IMAGE_NAME_COLUMN,
    NAME_COLUMN,
    ErrorEntry,
    Note,
    Prediction,
    atomic_write_text,
    csv_field,
)

logger = logging.getLogger(__name__)

WINDOW_DECIMALS = 6  # digits of window probabilities in the windows CSV
NOT_RUN_REASON = "notscored"  # an input with no journal entry (cannot happen after a full run)
HEAD_FUSED, HEAD_VISUAL = "fused", "visual"  # VideoResult fields a prediction can come from


@dataclass(frozen=True)
class Track:
    """What a run scores: the challenge track, its name column and the head it reports."""

    kind: str  # INPUT_VIDEO (audio-video track, FFDV) or INPUT_IMAGE (image track, FFDI)
    column: str  # name column of every CSV written: video_name or img_name
    head: str  # VideoResult head the prediction aggregates: fused or visual
    noun: str  # "video" or "image", for messages

    @classmethod
    def of(cls, kind: str) -> Track:
        if kind == INPUT_IMAGE:
            return cls(INPUT_IMAGE, IMAGE_NAME_COLUMN, HEAD_VISUAL, "image")
        return cls(INPUT_VIDEO, NAME_COLUMN, HEAD_FUSED, "video")


@dataclass(frozen=True)
class OutputPaths:
    """Every file a run with prediction file `out` writes."""

    predictions: Path
    errors: Path
    summary: Path
    journal: Path
    metrics: Path
    roc: Path

    @classmethod
    def beside(cls, out: str | Path) -> OutputPaths:
        p = Path(out)
        return cls(
            predictions=p,
            errors=p.with_name(p.name + ".errors.json"),
            summary=p.with_name(p.name + ".summary.json"),
            journal=p.with_name(p.name + ".journal.jsonl"),
            metrics=p.with_name(p.name + ".metrics.json"),
            roc=p.with_name(p.name + ".roc.png"),
        )


@dataclass(frozen=True)
class Profile:
    """Where this call's time went (seconds; worker time summed over processes)."""

    wall_s: float = 0.0  # the whole call: listing, model load, scoring, writing outputs
    loop_s: float = 0.0  # first video submitted -> last batch journaled (the throughput)
    first_s: float = 0.0  # first video submitted -> first video decoded (pool start-up)
    decode_s: float = 0.0  # worker time: probe + audio decode + frame sampling + crops
    inference_s: float = 0.0  # backend.score calls in the main process
    wait_s: float = 0.0  # main process waiting for decoded videos
    batches: int = 0  # backend.score calls
    videos: int = 0  # videos processed by this call (not taken from the journal)
    windows: int = 0  # windows scored by this call

    @property
    def videos_per_s(self) -> float:
        return self.videos / self.loop_s if self.loop_s > 0 else 0.0

    @property
    def steady_videos_per_s(self) -> float:
        """Throughput after the first video: without the worker pool's start-up."""
        span = self.loop_s - self.first_s
        return (self.videos - 1) / span if self.videos > 1 and span > 0 else 0.0


@dataclass(frozen=True)
class ScoreSummary:
    """What a scoring run did; also written as OUT.summary.json."""

    out: str
    videos: int  # rows written (every input of this shard)
    scored: int  # videos with model scores
    failed: int  # videos given the neutral score (see the errors report)
    resumed: int  # videos taken from an earlier run's journal
    no_audio: int  # scored with silent audio windows (no audio stream)
    no_video: int  # scored with blank face crops (no video stream)
    windows: int  # windows scored, all videos
    windows_without_face: int  # windows where no crop found a face (centre-crop fallback)
    aggregate: str
    sampling: str
    backend: str
    shard: str  # "i/n": slice i of n of the input list
    neutral_score: float
    profile: Profile = field(default_factory=Profile)
    metrics: dict[str, Any] | None = None
    notes: int = 0  # scored videos with a note in the errors report
    short_audio: int = 0  # scored with an audio track >20 % shorter than the video
    short_video: int = 0  # scored with a video track >20 % shorter than the audio
    windows_capped: int = 0  # long videos scored on a capped number of windows
    inputs_total: int = 0  # videos in the whole input list (all shards)
    inputs_sha256: str = ""  # hash of the whole ordered input list (all shards)
    track: str = INPUT_VIDEO  # INPUT_IMAGE: `videos` etc. count images (one window each)
    head: str = "p_fused"  # the model output the predictions come from (images: p_visual)
    no_face: int = 0  # images scored on their centre crop (no face found; noted)

    def describe(self) -> str:
        p = self.profile
        noun = Track.of(self.track).noun
        lines = [
            f"{self.out}: {self.videos} {noun}s ({self.scored} scored, {self.failed} failed -> "
            f"{self.neutral_score}, {self.resumed} from the journal), {self.windows} windows, "
            f"scores from {self.head}",
        ]
        if self.track == INPUT_IMAGE:
            lines.append(
                f"  notes: {self.no_face} images without a face (scored on the centre crop)"
            )
        else:
            lines += [
                f"  fallbacks: {self.no_audio} without audio (silent windows), {self.no_video} "
                f"without video (blank crops), {self.windows_without_face} windows without "
                "a face",
                f"  notes: {self.notes} videos ({self.short_audio} short audio, "
                f"{self.short_video} short video, {self.windows_capped} long videos on capped "
                "windows)",
            ]
        lines += [
            f"  {p.videos} {noun}s in {p.loop_s:.1f} s = {p.videos_per_s:.2f} {noun}s/s "
            f"({p.steady_videos_per_s:.2f} after the first) "
            f"({self.backend}, sampling {self.sampling}, aggregate {self.aggregate}, "
            f"shard {self.shard})",
            f"  time: decode+crop {p.decode_s:.1f} worker-s, inference {p.inference_s:.1f} s "
            f"in {p.batches} batches, waiting for decode {p.wait_s:.1f} s, "
            f"whole run {p.wall_s:.1f} s",
        ]
        if self.metrics:
            m = self.metrics["metrics"]
            lines.append(
                f"  labels: {m['n']} {noun}s, AUC {_fmt(m['auc'])}, "
                f"TPR@FPR=1e-3 {_fmt(m['tpr_at_fpr_1e-3'])}, EER {_fmt(m['eer'])}"
            )
            rules = self.metrics.get("rules", {})
            if rules:
                lines.append(
                    "  AUC / TPR@FPR=1e-3 by aggregation rule: "
                    + ", ".join(
                        f"{k} {_fmt(v['auc'])} / {_fmt(v['tpr_at_fpr_1e-3'])}"
                        for k, v in rules.items()
                    )
                )
        return "\n".join(lines)


def _fmt(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def ordered_results(
    inputs: Sequence[VideoInput], results: Mapping[int, VideoResult]
) -> list[VideoResult]:
    """One result per input, in input order (an input without one is a failure)."""
    out = []
    for v in inputs:
        r = results.get(v.index)
        if r is None:
            r = VideoResult(v.index, v.name, "failed", NOT_RUN_REASON, "no result was recorded")
        out.append(r)
    return out


def predictions(
    results: Sequence[VideoResult], rule: str, neutral: float, head: str = HEAD_FUSED
) -> list[Prediction]:
    """One row per result: `rule` over the windows of `head` (an image's one window: its
    value), or `neutral` for a failure."""
    agg = AggregateRule.parse(rule)
    return [Prediction(r.name, agg(getattr(r, head)) if r.ok else neutral) for r in results]


def errors(results: Sequence[VideoResult]) -> list[ErrorEntry]:
    return [ErrorEntry(r.name, r.reason, r.detail) for r in results if not r.ok]


def notes(results: Sequence[VideoResult]) -> list[Note]:
    return [Note(r.name, kind, detail) for r in results if r.ok for kind, detail in r.notes]


def write_windows_csv(
    path: str | Path, results: Sequence[VideoResult], column: str = NAME_COLUMN
) -> Path:
    """Per-window scores: video_name,window,start_s,p_fused,p_audio,p_visual,faces_found
    (`column` names the first column: img_name for images).

    Names are quoted as in the prediction file (`csv_field`), so any name round-trips.
    """
    lines = [f"{column},window,start_s,p_fused,p_audio,p_visual,faces_found"]
    d = WINDOW_DECIMALS
    for r in results:
        name = csv_field(r.name)
        for i, start in enumerate(r.starts):
            lines.append(
                f"{name},{i},{start:.3f},{r.fused[i]:.{d}f},{r.audio[i]:.{d}f},"
                f"{r.visual[i]:.{d}f},{r.faces_found[i]}"
            )
    return atomic_write_text(path, "\n".join(lines) + "\n")


def label_metrics(
    results: Sequence[VideoResult],
    rows: Sequence[Prediction],
    labels: Mapping[str, int],
    rule: str,
    head: str = HEAD_FUSED,
) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, np.ndarray]]] | None:
    """(metrics, ROC curves) of the written scores on the labelled videos, None if none.
    `head` is the head the written scores come from (per-rule AUCs are computed on it)."""
    from monitor.offline.evaluation import binary_metrics

    idx = [i for i, r in enumerate(rows) if r.video_name in labels]
    if not idx:
        logger.warning("no scored video appears in the label file: no metrics")
        return None
    y = np.array([labels[rows[i].video_name] for i in idx], dtype=np.int64)
    s = np.array([rows[i].y_pred for i in idx], dtype=np.float64)
    names = {r.video_name for r in rows}
    out: dict[str, Any] = {
        "aggregate": rule,
        "metrics": binary_metrics(y, s),
        "labels_not_scored": sum(1 for n in labels if n not in names),
        "failed_in_labelled": sum(1 for i in idx if not results[i].ok),
    }
    ok = [results[i] for i in idx if results[i].ok]
    out["head"] = head
    out["rules"] = compare_rules({r.name: getattr(r, head) for r in ok}, labels)
    heads: dict[str, Any] = {}
    for head in ("audio", "visual"):
        y_ok = np.array([labels[r.name] for r in ok], dtype=np.int64)
        s_ok = np.array([float(np.mean(getattr(r, head))) for r in ok], dtype=np.float64)
        heads[head] = binary_metrics(y_ok, s_ok) if ok else None
    out["heads_mean_vs_target"] = heads
    return out, {f"{head} ({rule})": (y, s)}


def write_metrics(
    paths: OutputPaths,
    metrics: dict[str, Any],
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    title: str,
) -> None:
    from monitor.offline.evaluation import plot_roc

    atomic_write_text(paths.metrics, json.dumps(_json_safe(metrics), indent=2) + "\n")
    try:
        plot_roc(paths.roc, curves, title=title)
    except ImportError as exc:  # matplotlib comes with the `train` extra, not the slim runtime
        logger.warning("no ROC plot (%s): pip install matplotlib to get %s", exc, paths.roc)


def write_summary(paths: OutputPaths, summary: ScoreSummary) -> Path:
    doc = asdict(summary)
    doc["profile"]["videos_per_s"] = summary.profile.videos_per_s
    doc["profile"]["steady_videos_per_s"] = summary.profile.steady_videos_per_s
    text = json.dumps(_json_safe(doc), indent=2) + "\n"
    return atomic_write_text(paths.summary, text)


def count_fallbacks(results: Sequence[VideoResult], kind: str = INPUT_VIDEO) -> dict[str, int]:
    """The summary's counts. An image's silent audio is its input, not a fallback:
    `no_audio` stays 0 for images, and `no_face` counts images without a face."""
    ok = [r for r in results if r.ok]
    image = kind == INPUT_IMAGE

    def noted(kind: str) -> int:
        return sum(1 for r in ok if any(k == kind for k, _ in r.notes))

    return {
        "scored": len(ok),
        "failed": len(results) - len(ok),
        "no_audio": 0 if image else sum(1 for r in ok if not r.has_audio),
        "no_video": sum(1 for r in ok if not r.has_video),
        "windows": sum(len(r.starts) for r in ok),
        "windows_without_face": sum(sum(1 for f in r.faces_found if f == 0) for r in ok),
        "notes": sum(1 for r in ok if r.notes),
        "short_audio": noted("shortaudio"),
        "short_video": noted("shortvideo"),
        "windows_capped": noted("windowscapped"),
        "no_face": noted("noface") if image else 0,
    }
