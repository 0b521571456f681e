"""The detector shipped with the package (monitor/models/default/): its files, its
provenance, the commands that run it when no model is given, and what it detects on
synthetic calls of a seed it was never trained on."""

from __future__ import annotations

import csv
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engines.manifest import load_onnx_manifest
from monitor.errors import ModelFormatError
from monitor.models import DEFAULT_CARD, DEFAULT_DIR, DEFAULT_MODEL, describe_model, resolve_model
from monitor.offline.evaluation import roc_auc
from tests.support import REPO_ROOT

MAX_BYTES = 10 * 1024 * 1024  # small enough for the repository
UNSEEN_SEED = 23  # the model was trained on synth1k (seed 1) and calibrated on seed 11
UNSEEN_CLIPS = 32


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
    )


def test_the_shipped_files_match_their_manifest_and_card() -> None:
    manifest = load_onnx_manifest(DEFAULT_MODEL)  # verifies the sha256 itself
    assert hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest() == manifest.onnx_sha256
    assert DEFAULT_MODEL.stat().st_size <= MAX_BYTES
    assert manifest.parity is not None and manifest.parity.ok
    assert manifest.contract.output_names[-1] == "p_sync"  # all four heads
    # where it came from: the data recipe and its checksum, the training config and seed
    from train.default_model import CALIBRATION_DATA, TRAIN_DATA, recipe_checksum

    prov = manifest.provenance
    assert prov is not None
    assert prov["data"]["recipe_sha256"] == recipe_checksum(*TRAIN_DATA)
    assert prov["calibration_data"]["recipe_sha256"] == recipe_checksum(*CALIBRATION_DATA)
    assert set(prov["data"]["label_files_sha256"]) >= {"train_label.txt", "manifest.csv"}
    assert prov["train_config"]["seed"] == 0 and prov["recipe"] == "default"
    assert prov["train_config"]["contract"]["crop_size"] == manifest.contract.crop_size
    # calibrated alert settings travel with it
    assert manifest.calibration is not None
    assert manifest.calibration["false_alerts_per_hour"] == 1.0
    # the card names the file it describes
    card = DEFAULT_CARD.read_text()
    assert manifest.onnx_sha256[:16] in card and "make model" in card


def test_a_damaged_copy_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "model.onnx"
    shutil.copyfile(DEFAULT_MODEL, copy)
    shutil.copyfile(DEFAULT_DIR / "model.onnx.json", tmp_path / "model.onnx.json")
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(ModelFormatError, match="sha256"):
        load_onnx_manifest(copy)


def test_no_model_means_the_shipped_one_and_commands_say_so(tmp_path: Path) -> None:
    assert resolve_model(None) == resolve_model("default") == str(DEFAULT_MODEL)
    assert resolve_model("x.onnx") == "x.onnx"
    assert describe_model("default").startswith("model: embedded default")
    assert describe_model("runs/x/model.onnx") == "model: runs/x/model.onnx"
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text("webrtc: {enabled: false}\nstreams: []\n")  # no `model:`
    done = _cli("serve", "--config", str(cfg), "--check-config", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "model: embedded default" in done.stdout and "calibrated settings" in done.stdout


@pytest.fixture(scope="module")
def unseen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic set of a seed the shipped model never saw (its test split)."""
    root = tmp_path_factory.mktemp("unseen") / "data"
    done = _cli(
        "synth", str(root), "--train", "0", "--val", "0", "--test", str(UNSEEN_CLIPS),
        "--seed", str(UNSEEN_SEED), "--min-duration", "3", "--max-duration", "5",
        "--voices", "procedural",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return root


@pytest.mark.slow
def test_it_tells_unseen_fakes_from_reals(unseen: Path, tmp_path: Path) -> None:
    out = tmp_path / "prediction.txt"
    done = _cli("score", str(unseen / "testset"), "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "embedded default" in done.stderr
    with out.open(newline="") as f:
        scores = {r["video_name"]: float(r["y_pred"]) for r in csv.DictReader(f)}
    with (unseen / "test_label.txt").open(newline="") as f:
        labels = {r["video_name"]: int(r["target"]) for r in csv.DictReader(f)}
    assert set(scores) == set(labels) and len(scores) == UNSEEN_CLIPS
    names = sorted(labels)
    auc = roc_auc([labels[n] for n in names], [scores[n] for n in names])
    assert auc >= 0.95, auc


def test_replay_without_a_model_runs_the_shipped_one(unseen: Path, tmp_path: Path) -> None:
    clip = sorted((unseen / "testset").glob("*.mp4"))[0]
    done = _cli("replay", str(clip), "--out", str(tmp_path / "replay"))
    assert done.returncode == 0, done.stderr
    assert "model: embedded default" in done.stderr
    assert list((tmp_path / "replay").glob("*/timeline.csv"))
