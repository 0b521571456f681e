"""From window scores to one score per video: the aggregation rules offline scoring offers.

A video is cut into windows (monitor/windows.py) and each window gets P(fake); the
prediction file needs one number per video. Candidate rules:

    mean        mean of the window probabilities (the default; see below)
    median      median of the window probabilities
    max         the most suspicious window
    topK        mean of the K highest windows (e.g. top3), all windows if fewer
    logit_mean  sigmoid of the mean logit (a confident window weighs more than in `mean`)

How a rule is chosen: `score --labels` prints the AUC of every candidate rule on the
same window scores (and saves them in OUT.metrics.json), so rules are compared on a
validation split without scoring twice. Measured on the synthetic validation split
(data/synth1k/valset, 200 clips of 3-5 s, 2-4 windows each) with the demo detector
trained on its train split: mean 0.7146, median 0.7139, max 0.7145, top3 0.7145,
logit_mean 0.7145 - a tie within noise, since every synthetic fake is faked over the
whole clip. The default is therefore `mean`: the lowest-variance rule, and the one
training's per-epoch validation reports (train/evaluate.py averages window
probabilities), so the figure seen while training is the figure the file gets (0.7146
here against training's 0.7143). `max` and `topK` are for test data with partially faked
clips: compare them with `score --labels` on a validation split that has such clips.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from monitor.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_RULE = "mean"
CANDIDATE_RULES = ("mean", "median", "max", "top3", "logit_mean")  # compared under --labels
LOGIT_CLIP = 1e-6  # probabilities are clipped to [eps, 1 - eps] before taking logits
_TOPK = re.compile(r"^top(\d+)$")


@dataclass(frozen=True)
class AggregateRule:
    """A parsed rule name."""

    name: str  # as given, e.g. "top3"
    kind: str  # "mean" | "median" | "max" | "topk" | "logit_mean"
    k: int = 0  # windows averaged by "topk"

    @classmethod
    def parse(cls, text: str) -> AggregateRule:
        t = text.strip().lower()
        if t in ("mean", "median", "max", "logit_mean"):
            return cls(t, t)
        m = _TOPK.match(t)
        if m and int(m.group(1)) >= 1:
            return cls(t, "topk", int(m.group(1)))
        raise ConfigError(
            f"unknown aggregation rule {text!r}: use mean, median, max, logit_mean or topK "
            "(e.g. top3: the mean of the 3 highest windows)"
        )

    def __call__(self, window_scores: Sequence[float] | np.ndarray) -> float:
        """One video's score from its window probabilities (at least one window)."""
        p = np.asarray(window_scores, dtype=np.float64)
        if p.size == 0:
            raise ValueError("cannot aggregate a video with no windows")
        if self.kind == "mean":
            v = p.mean()
        elif self.kind == "median":
            v = np.median(p)
        elif self.kind == "max":
            v = p.max()
        elif self.kind == "topk":
            v = np.sort(p)[-self.k :].mean()
        else:
            q = np.clip(p, LOGIT_CLIP, 1.0 - LOGIT_CLIP)
            v = 1.0 / (1.0 + np.exp(-np.log(q / (1.0 - q)).mean()))
        return float(np.clip(v, 0.0, 1.0))


def aggregate(window_scores: Sequence[float] | np.ndarray, rule: str = DEFAULT_RULE) -> float:
    return AggregateRule.parse(rule)(window_scores)


def compare_rules(
    windows: Mapping[str, Sequence[float]],
    labels: Mapping[str, int],
    rules: Sequence[str] = CANDIDATE_RULES,
) -> dict[str, dict[str, float | int]]:
    """AUC and TPR at FPR 1e-3 and 1e-2 of each rule on the labelled videos that have
    windows."""
    from monitor.evaluation import binary_metrics

    names = [n for n in windows if n in labels and len(windows[n]) > 0]
    y = np.array([labels[n] for n in names], dtype=np.int64)
    out: dict[str, dict[str, float | int]] = {}
    for rule in rules:
        r = AggregateRule.parse(rule)
        scores = np.array([r(windows[n]) for n in names], dtype=np.float64)
        m = binary_metrics(y, scores)
        keys = ("n", "auc", "tpr_at_fpr_1e-3", "tpr_at_fpr_1e-2")
        out[r.name] = {k: m[k] for k in keys}
    return out
