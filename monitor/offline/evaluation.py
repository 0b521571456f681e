"""Detection metrics on per-clip scores: ROC curve, AUC, TPR at a fixed FPR, EER.

numpy only (offline scoring and the slim runtime use these too and must not import
torch). The competition ranks by ROC AUC and breaks ties by TPR at FPR = 1e-3, so both
are computed exactly from the empirical ROC, ties included: a fake and a real with the
same score count as half a correctly ordered pair.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

COMPETITION_FPR = 1e-3  # the competition's tie-break operating point
SECONDARY_FPR = 1e-2  # a looser operating point, reported beside it
PLOT_MIN_FPR = 1e-4  # left edge of the log-scale ROC panel
PLOT_DPI = 120  # dots per inch of the ROC PNG
METRIC_KEYS = ("auc", "tpr_at_fpr_1e-3", "tpr_at_fpr_1e-2", "eer")
BOOTSTRAP_KEYS = ("auc", "tpr_at_fpr_1e-3", "tpr_at_fpr_1e-2")  # given intervals
BOOTSTRAP_RESAMPLES = 1000  # resampled splits per interval
BOOTSTRAP_LEVEL = 0.95  # central coverage of the percentile interval


def _check(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} must be 1-D of equal length")
    if y.size == 0:
        raise ValueError("no samples to score")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinity")
    y = y.astype(np.int64)
    if y.min() == y.max():
        raise ValueError(
            f"ROC needs both classes, got only {'fakes' if y[0] else 'reals'} ({y.size} samples)"
        )
    return y, s


def has_both_classes(y_true: Any) -> bool:
    """True when a metric over these labels is defined (at least one real and one fake)."""
    y = np.asarray(y_true)
    return bool(y.size) and bool((y == 0).any()) and bool((y == 1).any())


def roc_curve(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empirical ROC: (fpr, tpr, thresholds), one point per distinct score plus (0, 0).

    Point i classifies `score >= thresholds[i]` as fake; tied scores move together, so a
    tie between classes shows up as a diagonal segment.
    """
    y, s = _check(y_true, y_score)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    # Last index of each run of equal scores: the curve only has points between runs.
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    thresholds = np.r_[np.inf, s[last]]
    return fpr, tpr, thresholds


def _area(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Trapezoidal area under ROC points (a tie's diagonal segment counts one half)."""
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def _tpr_within(fpr: np.ndarray, tpr: np.ndarray, max_fpr: float) -> float:
    """Best TPR among ROC points with FPR <= max_fpr."""
    return float(tpr[fpr <= max_fpr + 1e-12].max())


def roc_auc(y_true: Any, y_score: Any) -> float:
    """Area under the ROC curve (ties count one half)."""
    fpr, tpr, _ = roc_curve(y_true, y_score)
    return _area(fpr, tpr)


def tpr_at_fpr(y_true: Any, y_score: Any, max_fpr: float = COMPETITION_FPR) -> float:
    """Best true-positive rate of any threshold whose false-positive rate is <= max_fpr.

    No interpolation: with fewer than 1/max_fpr reals, only thresholds that pass no real
    at all qualify, which is the honest reading of a small validation set.
    """
    if not 0.0 <= max_fpr <= 1.0:
        raise ValueError(f"max_fpr={max_fpr} outside 0..1")
    fpr, tpr, _ = roc_curve(y_true, y_score)
    return _tpr_within(fpr, tpr, max_fpr)


def eer(y_true: Any, y_score: Any) -> float:
    """Equal error rate: where FPR equals FNR on the ROC, interpolated linearly."""
    fpr, tpr, _ = roc_curve(y_true, y_score)
    d = fpr - (1.0 - tpr)  # rises from -1 at (0, 0) to +1 at (1, 1)
    i = int(np.argmax(d >= 0.0))
    if i == 0 or d[i] == 0.0:
        return float(fpr[i])
    t = -d[i - 1] / (d[i] - d[i - 1])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def log_loss(y_true: Any, p_fake: Any, eps: float = 1e-6) -> float:
    """Mean binary cross-entropy of probabilities (clipped to [eps, 1 - eps]), in nats."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.clip(np.asarray(p_fake, dtype=np.float64), eps, 1.0 - eps)
    if y.size == 0:
        return float("nan")
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)))


def binary_metrics(y_true: Any, y_score: Any) -> dict[str, float | int]:
    """The figures every report carries, as a flat JSON-ready dict.

    auc, tpr@fpr=1e-3 / 1e-2 and eer are NaN when the labels hold a single class.
    """
    y = np.asarray(y_true)
    out: dict[str, float | int] = {
        "n": int(y.size),
        "n_fake": int((y == 1).sum()),
        "n_real": int((y == 0).sum()),
    }
    if not has_both_classes(y):
        for key in METRIC_KEYS:
            out[key] = float("nan")
        return out
    out["auc"] = roc_auc(y, y_score)
    out["tpr_at_fpr_1e-3"] = tpr_at_fpr(y, y_score, COMPETITION_FPR)
    out["tpr_at_fpr_1e-2"] = tpr_at_fpr(y, y_score, SECONDARY_FPR)
    out["eer"] = eer(y, y_score)
    return out


def bootstrap_intervals(
    y_true: Any,
    y_score: Any,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = BOOTSTRAP_LEVEL,
    seed: int = 0,
) -> dict[str, Any]:
    """Percentile bootstrap intervals of AUC and TPR at FPR = 1e-3 / 1e-2.

    Reals and fakes are resampled separately (each class keeps its count), so every
    resample is a split like the one measured. The interval says how much a figure rests
    on a few clips: TPR@1e-3 on 100 reals is decided by the single highest-scoring real,
    and its interval shows it. `fpr_floor` is the smallest non-zero FPR the split can
    resolve (1 / reals); below 1 / COMPETITION_FPR reals, TPR@1e-3 is TPR at FPR 0.
    Fixed seed: the same scores give the same intervals.
    """
    y, s = _check(y_true, y_score)
    if resamples < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"need resamples >= 1 and 0 < level < 1, got {resamples}, {level}")
    rng = np.random.default_rng(seed)
    real, fake = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    draws = np.empty((len(BOOTSTRAP_KEYS), resamples))
    for b in range(resamples):
        idx = np.r_[rng.choice(real, real.size), rng.choice(fake, fake.size)]
        fpr, tpr, _ = roc_curve(y[idx], s[idx])
        draws[0, b] = _area(fpr, tpr)
        draws[1, b] = _tpr_within(fpr, tpr, COMPETITION_FPR)
        draws[2, b] = _tpr_within(fpr, tpr, SECONDARY_FPR)
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(draws, [tail, 100.0 - tail], axis=1)
    out: dict[str, Any] = {
        key: [float(lo[i]), float(hi[i])] for i, key in enumerate(BOOTSTRAP_KEYS)
    }
    out.update(level=level, resamples=resamples, fpr_floor=1.0 / real.size)
    return out


def plot_roc(
    path: str | Path,
    curves: Mapping[str, tuple[Any, Any]],
    title: str = "ROC",
) -> Path:
    """Write a ROC plot (linear and log-FPR panels) as PNG; curves: label -> (y_true, y_score).

    Uses matplotlib's object API with the Agg canvas, so it touches no global pyplot
    state and needs no display.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(path)
    fig = Figure(figsize=(11, 5))
    FigureCanvasAgg(fig)
    lin, log = fig.subplots(1, 2)
    for label, (y, s) in curves.items():
        if not has_both_classes(y):
            logger.info("ROC plot: %s has a single class, left out", label)
            continue
        fpr, tpr, _ = roc_curve(y, s)
        name = f"{label} (AUC {roc_auc(y, s):.4f})"
        lin.plot(fpr, tpr, label=name)
        log.plot(np.maximum(fpr, PLOT_MIN_FPR), tpr, label=name, drawstyle="steps-post")
    lin.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    lin.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    log.set_xscale("log")
    log.set(xlabel="false positive rate (log)", xlim=(PLOT_MIN_FPR, 1), ylim=(0, 1.01))
    for x in (COMPETITION_FPR, SECONDARY_FPR):
        log.axvline(x, color="grey", linestyle="--", linewidth=1)
    for ax in (lin, log):
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=PLOT_DPI)
    return out
