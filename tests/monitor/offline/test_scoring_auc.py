"""A trained detector scores a generated test split: file format, order, AUC, sampling modes.

The session fixture `tiny_detector` (tests/conftest.py, shared with the live end-to-end
tests) trains a tiny demo detector with the training engineer's API (train.loop.train on
tests/tiny_dataset) and writes a labelled test split; scoring goes through the engines'
torch backend on its checkpoint (the ONNX export is tested in the engines tests;
skipping it here saves its parity checks). Scores are also checked against training's
own evaluation of the same clips: the same windows and crops must give the same
per-clip numbers.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from monitor.cli import main
from monitor.offline.evaluation import roc_auc
from monitor.offline.predictions import read_labels, read_predictions

pytestmark = pytest.mark.slow

MIN_AUC = 0.9  # the artefacts are easy; a model that learnt them separates the split
EVAL_MATCH = 5e-3  # |our clip score - train.evaluate's| (its cache stores audio in float16)


@pytest.fixture(scope="module")
def trained(tiny_detector: dict[str, Path]) -> dict[str, Path]:
    return tiny_detector


def score(
    trained: dict[str, Path], out: Path, *extra: str, workers: int = 2
) -> list[tuple[str, float]]:
    data = trained["data"]
    rc = main(
        [
            "score", str(data / "testset"), "--model", str(trained["checkpoint"]),
            "--backend", "torch", "--device", "cpu", "--out", str(out),
            "--labels", str(data / "test_label.txt"), "--workers", str(workers), "--no-progress",
            *extra,
        ]
    )  # fmt: skip
    assert rc == 0
    return [(r.video_name, r.y_pred) for r in read_predictions(out)]


def test_trained_model_scores_test_split(trained: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "prediction.txt"
    rows = score(trained, out)
    assert out.read_text().splitlines()[0] == "video_name,y_pred"
    labels = read_labels(trained["data"] / "test_label.txt")
    assert [n for n, _ in rows] == sorted(labels)  # every clip once, sorted
    y = np.array([labels[n] for n, _ in rows])
    s = np.array([p for _, p in rows])
    assert ((s >= 0) & (s <= 1)).all()
    auc = roc_auc(y, s)
    metrics = json.loads(out.with_name(out.name + ".metrics.json").read_text())
    assert metrics["metrics"]["auc"] == pytest.approx(auc)
    pairs = [(int(t), round(float(p), 3)) for t, p in zip(y, s, strict=True)]
    assert auc >= MIN_AUC, f"AUC {auc:.3f} on the test split, (label, score): {pairs}"
    assert "tpr_at_fpr_1e-3" in metrics["metrics"]

    # The same clips through training's evaluation (its window cache, its torch model):
    # same windows and crops, so the same per-clip scores.
    from train.evaluate import evaluate_checkpoint

    report = evaluate_checkpoint(
        trained["checkpoint"],
        trained["data"],
        split="test",
        out_dir=tmp_path / "eval",
        cache_dir=trained["cache"],
        max_windows=3,
        device="cpu",
    )
    with open(report["files"]["csv"], newline="") as fh:
        theirs = {r["video_name"]: float(r["y_pred"]) for r in csv.DictReader(fh)}
    ours = dict(rows)
    assert set(theirs) == set(ours)
    worst = max(abs(theirs[n] - ours[n]) for n in ours)
    assert worst <= EVAL_MATCH, f"offline and training evaluation differ by {worst:.2e}"


def test_keyframe_sampling_against_exact(trained: dict[str, Path], tmp_path: Path) -> None:
    """Keyframe-anchored sampling on the same split: AUC kept, score shift reported."""
    exact = dict(score(trained, tmp_path / "exact.txt", workers=0))
    key = dict(score(trained, tmp_path / "key.txt", "--sampling", "keyframe", workers=0))
    labels = read_labels(trained["data"] / "test_label.txt")
    names = sorted(labels)
    y = np.array([labels[n] for n in names])
    auc_exact = roc_auc(y, [exact[n] for n in names])
    auc_key = roc_auc(y, [key[n] for n in names])
    diffs = np.array([abs(exact[n] - key[n]) for n in names])
    print(
        f"AUC exact {auc_exact:.3f} keyframe {auc_key:.3f}; "
        f"|score diff| mean {diffs.mean():.4f} max {diffs.max():.4f}"
    )
    assert auc_key >= MIN_AUC
    assert diffs.max() < 0.2  # the stripes are on every frame: the first one shows them too
