"""train/default_model.py, the builder behind `make model`: its data records and the merged
calibration split (the full build takes about 1.5 h and is not run here)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from monitor.errors import DatasetError
from tests.support.tiny_dataset import write_dataset
from train.default_model import (
    CALIBRATION_DATA,
    CALIBRATION_PARTS,
    TRAIN_DATA,
    data_record,
    merge_val_splits,
    recipe_checksum,
)
from train.splits import load_split


def test_merged_calibration_split_holds_every_part(tmp_path: Path) -> None:
    parts = [write_dataset(tmp_path / f"p{i}", {"real": 2, "face_swap": 2}, seed=i) for i in (1, 2)]
    # synth names clips by hashes of their seed; the tiny sets name them by method
    with pytest.raises(DatasetError, match="in two of the merged splits"):
        merge_val_splits(parts, tmp_path / "clash")
    _rename(parts[1], "val_", "second_")
    merged = merge_val_splits(parts, tmp_path / "merged")
    split = load_split(merged, "val")
    want = sum(len(load_split(p, "val").records) for p in parts)
    assert len(split.records) == want and want >= 4
    assert all(r.path.is_file() for r in split.records)
    with (merged / "manifest.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == want  # one header, every part's val rows
    record = data_record(merged, CALIBRATION_DATA)
    assert record["recipe_sha256"] == recipe_checksum(*CALIBRATION_DATA)
    assert set(record["label_files_sha256"]) == {"val_label.txt", "manifest.csv"}
    assert record["command"].count("deepfake-monitor synth") == len(CALIBRATION_PARTS)


def _rename(root: Path, old: str, new: str) -> None:
    for clip in (root / "valset").glob(f"{old}*.mp4"):
        clip.rename(clip.with_name(clip.name.replace(old, new, 1)))
    for name in ("val_label.txt", "manifest.csv"):
        (root / name).write_text((root / name).read_text().replace(old, new))


def test_recipes_have_distinct_checksums_that_follow_their_arguments() -> None:
    name, args = TRAIN_DATA
    assert recipe_checksum(name, args) == recipe_checksum(name, list(args))
    assert recipe_checksum(name, args) != recipe_checksum(name, [*args[:-1], "real"])
    assert recipe_checksum(*TRAIN_DATA) != recipe_checksum(*CALIBRATION_DATA)
