"""Competition-format dataset folders: split directories, label files, manifest.

Layout (see COMPETITION.md): `trainset/`, `valset/`, `testset/` of `.mp4` clips with
label files `train_label.txt` or `trainset_label.txt` (likewise val/test) holding CSV
`video_name,target` (1 = fake); the same under a `phase1/` folder is found too. An
optional `manifest.csv` (written by the synthetic generator) adds per-modality labels
(`audio_fake`, `video_fake`), the generation `method` of each clip and its `family`
(audio, face, both, sync; real); an optional `face_height_px` column (the face's height
in the frame) lets `evaluate` break detection down by face size; optional `engine` (what
made the voice: recording, procedural, dsp or a speech synthesizer) and `speaker` (the
scene's real speaker) columns, per engine and per speaker.

Label files are parsed strictly: a malformed row raises DatasetError with file:line,
because a silently dropped or mis-read label corrupts every figure computed later.
Clips listed but absent on disk are different: public copies of the data ship with
such gaps, so they are counted, logged and skipped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from monitor.errors import DatasetError
from monitor.offline.predictions import check_video_name, read_text

logger = logging.getLogger(__name__)

SPLIT_DIRS = {"train": "trainset", "val": "valset", "test": "testset"}  # short -> folder
LABEL_HEADER = ("video_name", "target")
IMAGE_LABEL_HEADER = ("img_name", "target")  # the image track's (FFDI): refused, see read_labels
MANIFEST_NAME = "manifest.csv"
PHASE_DIRS = ("phase1",)  # sub-folders the organisers' archives unpack into
MANIFEST_LABEL_COLUMNS = ("audio_fake", "video_fake")
LOG_EXAMPLES = 5  # names quoted in a log line before "..."


@dataclass(frozen=True)
class ClipRecord:
    """One labelled clip of a split."""

    name: str  # file name as listed in the label file, e.g. "6e14...ab9.mp4"
    path: Path  # where it is on disk
    target: int  # 1 = fake (any modality), 0 = real
    audio_fake: int | None = None  # 1/0 from the manifest; None when unknown
    video_fake: int | None = None  # 1/0 from the manifest; None when unknown
    method: str | None = None  # generation method from the manifest ("real" for reals)
    family: str | None = None  # method family from the manifest: audio, face, both, sync, real
    face_px: float | None = None  # face height in the frame, px, from the manifest
    engine: str | None = None  # what made the voice, from the manifest (real voices)
    speaker: str | None = None  # the scene's real speaker, from the manifest (real voices)


@dataclass(frozen=True)
class ManifestRow:
    target: int
    audio_fake: int | None
    video_fake: int | None
    method: str | None
    line: int  # line in manifest.csv, for error messages
    family: str | None = None
    face_px: float | None = None
    engine: str | None = None
    speaker: str | None = None


@dataclass(frozen=True)
class SplitIndex:
    """The usable clips of one split, and what was left out."""

    split: str  # folder name, e.g. "valset"
    clip_dir: Path
    label_file: Path
    records: tuple[ClipRecord, ...]
    missing: tuple[str, ...]  # listed in the label file but not on disk
    manifest: Path | None  # manifest.csv that supplied per-modality labels, if any

    def __len__(self) -> int:
        return len(self.records)

    @property
    def n_fake(self) -> int:
        return sum(r.target for r in self.records)

    @property
    def n_real(self) -> int:
        return len(self.records) - self.n_fake


def resolve_root(data_dir: str | Path) -> Path:
    """The folder holding the split folders: `data_dir` itself or its `phase1/`."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    if any((root / d).is_dir() for d in SPLIT_DIRS.values()):
        return root
    for phase in PHASE_DIRS:
        if any((root / phase / d).is_dir() for d in SPLIT_DIRS.values()):
            return root / phase
    return root


def split_exists(data_dir: str | Path, split: str) -> bool:
    """True when the split's clip folder exists (its label file may still be bad)."""
    return (resolve_root(data_dir) / SPLIT_DIRS.get(split, split)).is_dir()


def find_split(data_dir: str | Path, split: str) -> tuple[Path, Path]:
    """(clip folder, label file) of a split given as `train`/`val`/`test` or a folder name."""
    root = resolve_root(data_dir)
    folder = SPLIT_DIRS.get(split, split)
    short = next((k for k, v in SPLIT_DIRS.items() if v == folder), folder)
    clip_dir = root / folder
    if not clip_dir.is_dir():
        raise DatasetError(
            f"{root}: no '{folder}/' folder for split '{split}' "
            f"(expected a competition layout: {', '.join(SPLIT_DIRS.values())})"
        )
    candidates = [root / f"{short}_label.txt", root / f"{folder}_label.txt"]
    for label_file in candidates:
        if label_file.is_file():
            return clip_dir, label_file
    names = " or ".join(c.name for c in dict.fromkeys(candidates))
    raise DatasetError(f"{root}: no label file for split '{split}' (looked for {names})")


def _parse_bit(value: str, where: str, column: str, allow_empty: bool = False) -> int | None:
    v = value.strip()
    if allow_empty and v in ("", "-", "NA", "na", "None"):
        return None
    if v not in ("0", "1"):
        raise DatasetError(f"{where}: {column} must be 0 or 1, got {value!r}")
    return int(v)


def _parse_size(value: str | None, where: str, column: str) -> float | None:
    """A positive size in pixels; empty or absent -> None."""
    v = (value or "").strip()
    if not v:
        return None
    try:
        size = float(v)
    except ValueError:
        size = math.nan
    if not math.isfinite(size) or size <= 0:
        raise DatasetError(f"{where}: {column} must be a positive number of pixels, got {v!r}")
    return size


def read_labels(path: str | Path) -> list[tuple[str, int]]:
    """Parse a `video_name,target` label file strictly; errors name file:line."""
    p = Path(path)
    reader = csv.reader(io.StringIO(read_text(p)))
    header = next(reader, None)
    if header is not None and tuple(h.strip() for h in header) == IMAGE_LABEL_HEADER:
        raise DatasetError(
            f"{p}:1: an image-track (FFDI) label file (img_name,target): the detector trains "
            "on videos only; image-track data can be scored (deepfake-monitor score), not "
            "trained on"
        )
    if header is None or tuple(h.strip() for h in header) != LABEL_HEADER:
        raise DatasetError(f"{p}:1: header must be 'video_name,target', got {header!r}")
    seen: dict[str, int] = {}
    out: list[tuple[str, int]] = []
    for row in reader:
        where = f"{p}:{reader.line_num}"
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(LABEL_HEADER):
            raise DatasetError(
                f"{where}: expected 2 columns (video_name,target), got {len(row)}: {row!r}"
            )
        name = check_video_name(row[0], where)
        target = _parse_bit(row[1], where, "target")
        if name in seen:
            raise DatasetError(f"{where}: {name} already listed on line {seen[name]}")
        seen[name] = reader.line_num
        out.append((name, int(target or 0)))
    if not out:
        raise DatasetError(f"{p}: label file lists no clips")
    return out


def read_manifest(path: str | Path) -> dict[str, ManifestRow]:
    """Parse manifest.csv: video_name, target and optional audio_fake, video_fake, method,
    family."""
    p = Path(path)
    reader = csv.DictReader(io.StringIO(read_text(p)))
    cols = [c.strip() for c in (reader.fieldnames or [])]
    for need in LABEL_HEADER:
        if need not in cols:
            raise DatasetError(f"{p}:1: manifest needs a '{need}' column, has {cols}")
    reader.fieldnames = cols
    rows: dict[str, ManifestRow] = {}
    for rec in reader:
        line = reader.line_num
        where = f"{p}:{line}"
        if None in rec or any(v is None for v in rec.values()):
            raise DatasetError(f"{where}: row has {len(rec)} columns, header has {len(cols)}")
        name = check_video_name(rec["video_name"], where)
        if name in rows:
            raise DatasetError(f"{where}: {name} already listed on line {rows[name].line}")
        labels = {
            c: _parse_bit(rec[c], where, c, allow_empty=True) if c in rec else None
            for c in MANIFEST_LABEL_COLUMNS
        }
        method = (rec.get("method") or "").strip() or None
        family = (rec.get("family") or "").strip() or None
        target = _parse_bit(rec["target"], where, "target")
        face_px = _parse_size(rec.get("face_height_px"), where, "face_height_px")
        rows[name] = ManifestRow(
            int(target or 0),
            labels["audio_fake"],
            labels["video_fake"],
            method,
            line,
            family,
            face_px,
            (rec.get("engine") or "").strip() or None,
            (rec.get("speaker") or "").strip() or None,
        )
    return rows


def find_manifest(data_dir: str | Path) -> Path | None:
    root = resolve_root(data_dir)
    for d in dict.fromkeys((root, Path(data_dir))):
        if (d / MANIFEST_NAME).is_file():
            return d / MANIFEST_NAME
    return None


def _files_in(folder: Path) -> set[str]:
    # One directory scan instead of one stat per listed clip (the real train set has ~242k).
    with os.scandir(folder) as it:
        return {e.name for e in it if e.is_file()}


def _examples(names: list[str]) -> str:
    more = len(names) - LOG_EXAMPLES
    return ", ".join(names[:LOG_EXAMPLES]) + (f", ... ({more} more)" if more > 0 else "")


def load_split(data_dir: str | Path, split: str, limit: int | None = None) -> SplitIndex:
    """Read a split's labels (and the manifest when present); skip and count missing clips.

    `limit` keeps a fixed pseudo-random subset of N present clips, for quick runs.
    """
    clip_dir, label_file = find_split(data_dir, split)
    labels = read_labels(label_file)
    manifest_path = find_manifest(data_dir)
    manifest = read_manifest(manifest_path) if manifest_path else {}
    present = _files_in(clip_dir)
    records: list[ClipRecord] = []
    missing: list[str] = []
    unlabelled = 0
    for name, target in labels:
        if name not in present:
            missing.append(name)
            continue
        m = manifest.get(name)
        if m is None:
            unlabelled += 1
            records.append(ClipRecord(name, clip_dir / name, target))
            continue
        if m.target != target:
            raise DatasetError(
                f"{manifest_path}:{m.line}: {name} has target {m.target} but "
                f"{label_file.name} says {target}; the manifest and labels disagree"
            )
        records.append(
            ClipRecord(
                name,
                clip_dir / name,
                target,
                m.audio_fake,
                m.video_fake,
                m.method,
                m.family,
                m.face_px,
                m.engine,
                m.speaker,
            )
        )
    if missing:
        logger.warning(
            "%s: %d of %d listed clips are missing on disk and skipped: %s",
            label_file.name,
            len(missing),
            len(labels),
            _examples(missing),
        )
    if manifest and unlabelled:
        logger.warning(
            "%s: %d clips of %s have no manifest row (no per-modality labels)",
            manifest_path,
            unlabelled,
            clip_dir.name,
        )
    if limit is not None and limit < len(records):
        # A hash order is a fixed pseudo-random subset, whatever order the label file has.
        records = sorted(records, key=lambda r: hashlib.sha1(r.name.encode()).hexdigest())[:limit]
    if not records:
        raise DatasetError(f"{label_file}: none of the {len(labels)} listed clips is on disk")
    index = SplitIndex(
        split=clip_dir.name,
        clip_dir=clip_dir,
        label_file=label_file,
        records=tuple(records),
        missing=tuple(missing),
        manifest=manifest_path if manifest else None,
    )
    logger.info(
        "%s: %d clips (%d fake, %d real), %d missing",
        clip_dir.name,
        len(index),
        index.n_fake,
        index.n_real,
        len(missing),
    )
    return index
