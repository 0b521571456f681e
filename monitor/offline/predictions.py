"""Competition file formats: prediction files, label files, name lists, error reports.

A prediction file is CSV with the header `video_name,y_pred` and one row per video,
`y_pred` the probability of fake in [0, 1]. We always write `y_pred`; readers also accept
the header `video_name,score` that one public tutorial uses. Label files are
`video_name,target` (1 = fake). A name list (what a test split ships to score) is any CSV
whose header has a `video_name` column, or plain names one per line without a header.

Every file we write goes through `atomic_write_text` (a temporary file beside the target,
fsync, os.replace), so a crash never leaves a torn prediction file behind.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from monitor.errors import DatasetError

logger = logging.getLogger(__name__)

NAME_COLUMN = "video_name"
PREDICTION_COLUMN = "y_pred"  # what we write
SCORE_COLUMNS = ("y_pred", "score")  # what we read, in order of preference
LABEL_COLUMN = "target"
SCORE_DECIMALS = 6  # digits after the point in written probabilities
NEUTRAL_SCORE = 0.5  # written for a video that could not be scored: no evidence either way


@dataclass(frozen=True)
class Prediction:
    """One row of a prediction file."""

    video_name: str
    y_pred: float  # P(fake) in [0, 1]


@dataclass(frozen=True)
class ErrorEntry:
    """One video that could not be scored (it still got the neutral score)."""

    name: str  # video_name as listed
    reason: str  # short machine-readable reason, e.g. "corruptmedia", "medianotfound"
    detail: str = ""  # the error message, for a human


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` via a temporary file and os.replace (never a torn file)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_text(path: Path) -> str:
    """A label/prediction file as text (BOM tolerated); DatasetError when unreadable."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from exc


def check_video_name(name: str, where: str) -> str:
    """A stripped plain file name; DatasetError naming `where` otherwise."""
    n = name.strip()
    if not n:
        raise DatasetError(f"{where}: empty video_name")
    if "/" in n or "\\" in n or n in (".", ".."):
        raise DatasetError(f"{where}: video_name must be a plain file name, got {name!r}")
    return n


def _rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header (stripped) and the non-blank rows with their line numbers."""
    reader = csv.reader(io.StringIO(read_text(path)))
    header = [h.strip() for h in next(reader, [])]
    rows = []
    for row in reader:
        if row and any(c.strip() for c in row):
            rows.append((reader.line_num, row))
    return header, rows


def read_predictions(path: str | Path) -> list[Prediction]:
    """Read a prediction file (`video_name,y_pred` or `video_name,score`), strictly.

    Errors name file:line: a missing column, a duplicate name, a score that is not a
    finite number in [0, 1].
    """
    p = Path(path)
    header, rows = _rows(p)
    if NAME_COLUMN not in header:
        raise DatasetError(f"{p}:1: header must start 'video_name,y_pred', got {header!r}")
    col = next((c for c in SCORE_COLUMNS if c in header), None)
    if col is None:
        raise DatasetError(f"{p}:1: no score column (one of {SCORE_COLUMNS}) in {header!r}")
    i_name, i_score = header.index(NAME_COLUMN), header.index(col)
    seen: dict[str, int] = {}
    out: list[Prediction] = []
    for line, row in rows:
        where = f"{p}:{line}"
        if len(row) != len(header):
            raise DatasetError(f"{where}: {len(row)} columns, header has {len(header)}")
        name = check_video_name(row[i_name], where)
        try:
            value = float(row[i_score])
        except ValueError as exc:
            raise DatasetError(f"{where}: {col} {row[i_score]!r} is not a number") from exc
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise DatasetError(f"{where}: {col}={value} is not a probability in [0, 1]")
        if name in seen:
            raise DatasetError(f"{where}: {name} already listed on line {seen[name]}")
        seen[name] = line
        out.append(Prediction(name, value))
    return out


def format_predictions(rows: Iterable[Prediction]) -> str:
    lines = [f"{NAME_COLUMN},{PREDICTION_COLUMN}"]
    for r in rows:
        if not (math.isfinite(r.y_pred) and 0.0 <= r.y_pred <= 1.0):
            raise ValueError(f"{r.video_name}: y_pred={r.y_pred} is not a probability")
        if "," in r.video_name or "\n" in r.video_name:
            raise ValueError(f"{r.video_name!r}: names with commas or newlines cannot be written")
        lines.append(f"{r.video_name},{r.y_pred:.{SCORE_DECIMALS}f}")
    return "\n".join(lines) + "\n"


def write_predictions(path: str | Path, rows: Iterable[Prediction]) -> Path:
    """Write `video_name,y_pred` rows atomically, in the order given."""
    return atomic_write_text(path, format_predictions(rows))


def read_labels(path: str | Path) -> dict[str, int]:
    """A `video_name,target` label file as name -> 0/1 (file order kept)."""
    p = Path(path)
    header, rows = _rows(p)
    if NAME_COLUMN not in header or LABEL_COLUMN not in header:
        raise DatasetError(f"{p}:1: header must be 'video_name,target', got {header!r}")
    i_name, i_target = header.index(NAME_COLUMN), header.index(LABEL_COLUMN)
    out: dict[str, int] = {}
    for line, row in rows:
        where = f"{p}:{line}"
        if len(row) != len(header):
            raise DatasetError(f"{where}: {len(row)} columns, header has {len(header)}")
        name = check_video_name(row[i_name], where)
        target = row[i_target].strip()
        if target not in ("0", "1"):
            raise DatasetError(f"{where}: target must be 0 or 1, got {row[i_target]!r}")
        if name in out:
            raise DatasetError(f"{where}: {name} listed twice")
        out[name] = int(target)
    if not out:
        raise DatasetError(f"{p}: label file lists no videos")
    return out


def read_name_list(path: str | Path) -> list[str]:
    """Video names to score, in file order: a CSV with a `video_name` column or bare names."""
    p = Path(path)
    header, rows = _rows(p)
    if not header and not rows:
        raise DatasetError(f"{p}: name list is empty")
    if NAME_COLUMN in header:
        col = header.index(NAME_COLUMN)
        numbered = [(line, row[col] if col < len(row) else "") for line, row in rows]
    else:
        # No header: the first line is already a name.
        numbered = [(1, header[0] if header else "")]
        numbered += [(line, row[0]) for line, row in rows]
    names: list[str] = []
    seen: dict[str, int] = {}
    for line, raw in numbered:
        where = f"{p}:{line}"
        name = check_video_name(raw, where)
        if name in seen:
            raise DatasetError(f"{where}: {name} already listed on line {seen[name]}")
        seen[name] = line
        names.append(name)
    if not names:
        raise DatasetError(f"{p}: name list holds no names")
    return names


def write_errors(path: str | Path, errors: Sequence[ErrorEntry], neutral: float) -> Path:
    """The errors report: JSON with every unscored video and the score it was given."""
    doc = {
        "count": len(errors),
        "neutral_score": neutral,
        "errors": [asdict(e) for e in errors],
    }
    return atomic_write_text(path, json.dumps(doc, indent=2) + "\n")


def read_errors(path: str | Path) -> list[ErrorEntry]:
    p = Path(path)
    try:
        doc: Any = json.loads(read_text(p))
        return [ErrorEntry(**e) for e in doc["errors"]]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DatasetError(f"{p}: not an errors report written by `score`: {exc}") from exc
