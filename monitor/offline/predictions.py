"""Competition file formats: prediction files, label files, name lists, error reports.

A prediction file is CSV with the header `video_name,y_pred` and one row per video,
`y_pred` the probability of fake in [0, 1]. We always write `y_pred`; readers also accept
the header `video_name,score` that one public tutorial uses. Label files are
`video_name,target` (1 = fake). A name list (what a test split ships to score) is any CSV
whose header has a `video_name` column, or plain names one per line without a header.
The challenge's image track (FFDI) names its column `img_name` instead: `img_name,target`
label files and `img_name,y_pred` predictions. Every reader takes either name column, and
the writers write the one they are given (`score` picks it from the inputs).

Names are CSV fields (RFC 4180): a name holding a comma, a double quote, a line break or
white space at either end is written in double quotes (a quote doubled), so any file name
round-trips. Readers take a quoted field verbatim and trim white space around an unquoted
one (hand-edited files), and accept LF, CRLF and CR line ends and a UTF-8 BOM.

Every file we write goes through `atomic_write_text` (a temporary file beside the target,
fsync, os.replace), so a crash never leaves a torn prediction file behind; a write that
fails (read-only folder, full disk) raises OutputError naming the file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from monitor.errors import DatasetError, OutputError

logger = logging.getLogger(__name__)

NAME_COLUMN = "video_name"  # the audio-video track (FFDV)
IMAGE_NAME_COLUMN = "img_name"  # the image track (FFDI)
NAME_COLUMNS = (NAME_COLUMN, IMAGE_NAME_COLUMN)  # what we read, in order of preference
PREDICTION_COLUMN = "y_pred"  # what we write
SCORE_COLUMNS = ("y_pred", "score")  # what we read, in order of preference
LABEL_COLUMN = "target"
SCORE_DECIMALS = 6  # digits after the point in written probabilities
NEUTRAL_SCORE = 0.5  # written for a video that could not be scored: no evidence either way
_NEEDS_QUOTES = frozenset(',"\r\n')  # besides white space at either end
_LINE_END = re.compile(r"\r\n|\r|\n")


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


@dataclass(frozen=True)
class Note:
    """A video that was scored, but with something worth knowing (a short audio track)."""

    name: str  # video_name as listed
    kind: str  # short machine-readable kind, e.g. "shortaudio", "windowscapped"
    detail: str = ""  # what was found, for a human


def _write_and_sync(fh: IO[str], text: str) -> None:
    """Write, flush and fsync (tests replace this to simulate a full disk)."""
    fh.write(text)
    fh.flush()
    os.fsync(fh.fileno())


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` via a temporary file and os.replace (never a torn file).

    Raises OutputError naming the file when it cannot be written; nothing is left behind.
    """
    target = Path(path)
    tmp: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            _write_and_sync(fh, text)
        os.replace(tmp, target)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {os_reason(exc)}") from exc
    finally:
        if tmp is not None and os.path.lexists(tmp):  # not renamed: the write failed
            Path(tmp).unlink(missing_ok=True)
    return target


def os_reason(exc: OSError) -> str:
    """An OSError as a short phrase: 'No space left on device', not its repr."""
    return exc.strerror or str(exc) or type(exc).__name__


def read_text(path: Path) -> str:
    """A label/prediction file as text (BOM tolerated); DatasetError when unreadable."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from exc


def _read_raw(path: Path) -> str:
    """A CSV file as text with its line ends untouched (a quoted name may hold a CR)."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from exc


def check_video_name(name: str, where: str) -> str:
    """A stripped plain file name, no backslash either (a Windows path in a training label
    file); DatasetError naming `where` otherwise."""
    n = _check_name(name.strip(), where)
    if "\\" in n:
        raise DatasetError(f"{where}: video_name must be a plain file name, got {name!r}")
    return n


def _check_name(name: str, where: str) -> str:
    """A file name taken as it is (no stripping): anything a Linux file name may hold;
    DatasetError naming `where` otherwise."""
    if not name:
        raise DatasetError(f"{where}: empty video_name")
    if "/" in name or "\0" in name or name in (".", ".."):
        raise DatasetError(f"{where}: video_name must be a plain file name, got {name!r}")
    return name


def csv_field(text: str) -> str:
    """`text` as one CSV field: quoted when it holds a separator, a quote or a line break,
    or white space at either end (which readers would trim); as it is otherwise."""
    if text != text.strip() or any(c in _NEEDS_QUOTES for c in text):
        return '"' + text.replace('"', '""') + '"'
    return text


def parse_csv(text: str, where: str) -> list[tuple[int, list[str]]]:
    """RFC 4180 rows of `text` with the line each starts on; blank rows left out.

    A quoted field is taken verbatim (separators, quotes doubled, line breaks); white
    space around an unquoted field, or around the quotes of a quoted one, is trimmed.
    LF, CRLF and CR end a row; a row of unquoted empty fields is blank. `where` (the
    file) prefixes every error.
    """
    rows: list[tuple[int, list[str]]] = []
    if '"' not in text:  # no quoted field anywhere (the usual case): split lines, then fields
        for line, raw in enumerate(_LINE_END.split(text), start=1):
            cells = [f.strip(" \t") for f in raw.split(",")]
            if any(cells):
                rows.append((line, cells))
        return rows
    n, i, line = len(text), 0, 1
    while i < n:
        start_line = line
        fields: list[str] = []
        blank = True
        while True:  # one field per pass
            j = i
            while j < n and text[j] in " \t":
                j += 1
            if j < n and text[j] == '"':
                buf: list[str] = []
                k = j + 1
                while True:
                    q = text.find('"', k)
                    if q < 0:
                        raise DatasetError(
                            f"{where}:{start_line}: a quote opened here is never closed"
                        )
                    buf.append(text[k:q])
                    if q + 1 < n and text[q + 1] == '"':
                        buf.append('"')
                        k = q + 2
                        continue
                    break
                value = "".join(buf)
                line += value.count("\n") + value.count("\r") - value.count("\r\n")
                i = q + 1
                while i < n and text[i] in " \t":
                    i += 1
                if i < n and text[i] not in ",\r\n":
                    raise DatasetError(
                        f"{where}:{line}: text after a closing quote; "
                        'a quote inside a quoted name is written twice ("")'
                    )
                blank = False
            else:
                k = j
                while k < n and text[k] not in ",\r\n":
                    k += 1
                value = text[i:k].strip(" \t")
                blank = blank and not value
                i = k
            fields.append(value)
            if i < n and text[i] == ",":
                i += 1
                continue
            break
        if i < n:  # a line end
            i += 2 if text.startswith("\r\n", i) else 1
            line += 1
        if not blank:
            rows.append((start_line, fields))
    return rows


def _rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header (stripped) and the non-blank rows with their line numbers."""
    rows = parse_csv(_read_raw(path), str(path))
    if not rows:
        return [], []
    return [h.strip() for h in rows[0][1]], rows[1:]


def name_column(header: Sequence[str]) -> str | None:
    """The name column of a header: `video_name` or `img_name` (None when it has neither)."""
    return next((c for c in NAME_COLUMNS if c in header), None)


def check_name_column(column: str) -> str:
    if column not in NAME_COLUMNS:
        raise ValueError(f"name column {column!r} is not one of {NAME_COLUMNS}")
    return column


def read_prediction_file(path: str | Path) -> tuple[str, list[Prediction]]:
    """A prediction file's name column (`video_name` or `img_name`) and its rows; see
    `read_predictions`."""
    p = Path(path)
    header, rows = _rows(p)
    i_col = name_column(header)
    if i_col is None:
        raise DatasetError(
            f"{p}:1: header must start 'video_name,y_pred' (or 'img_name,y_pred'), got {header!r}"
        )
    col = next((c for c in SCORE_COLUMNS if c in header), None)
    if col is None:
        raise DatasetError(f"{p}:1: no score column (one of {SCORE_COLUMNS}) in {header!r}")
    i_name, i_score = header.index(i_col), header.index(col)
    seen: dict[str, int] = {}
    out: list[Prediction] = []
    for line, row in rows:
        where = f"{p}:{line}"
        if len(row) != len(header):
            raise DatasetError(
                f"{where}: {len(row)} columns, header has {len(header)} "
                "(a name holding a comma must be quoted)"
            )
        name = _check_name(row[i_name], where)
        try:
            value = float(row[i_score])
        except ValueError as exc:
            raise DatasetError(f"{where}: {col} {row[i_score]!r} is not a number") from exc
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise DatasetError(f"{where}: {col}={value} is not a probability in [0, 1]")
        if name in seen:
            raise DatasetError(f"{where}: {name!r} already listed on line {seen[name]}")
        seen[name] = line
        out.append(Prediction(name, value))
    return i_col, out


def read_predictions(path: str | Path) -> list[Prediction]:
    """Read a prediction file (`video_name,y_pred` or `video_name,score`; `img_name` for
    the image track), strictly.

    Errors name file:line: a missing column, a duplicate name, a score that is not a
    finite number in [0, 1].
    """
    return read_prediction_file(path)[1]


def format_predictions(rows: Iterable[Prediction], column: str = NAME_COLUMN) -> str:
    lines = [f"{check_name_column(column)},{PREDICTION_COLUMN}"]
    for r in rows:
        if not (math.isfinite(r.y_pred) and 0.0 <= r.y_pred <= 1.0):
            raise ValueError(f"{r.video_name!r}: y_pred={r.y_pred} is not a probability")
        lines.append(f"{csv_field(r.video_name)},{r.y_pred:.{SCORE_DECIMALS}f}")
    return "\n".join(lines) + "\n"


def write_predictions(
    path: str | Path, rows: Iterable[Prediction], column: str = NAME_COLUMN
) -> Path:
    """Write `video_name,y_pred` rows (`img_name,y_pred` with column=IMAGE_NAME_COLUMN)
    atomically, in the order given."""
    return atomic_write_text(path, format_predictions(rows, column))


def read_labels(path: str | Path) -> dict[str, int]:
    """A `video_name,target` (or `img_name,target`) label file as name -> 0/1 (file order
    kept)."""
    p = Path(path)
    header, rows = _rows(p)
    col = name_column(header)
    if col is None or LABEL_COLUMN not in header:
        raise DatasetError(
            f"{p}:1: header must be 'video_name,target' (or 'img_name,target'), got {header!r}"
        )
    i_name, i_target = header.index(col), header.index(LABEL_COLUMN)
    out: dict[str, int] = {}
    for line, row in rows:
        where = f"{p}:{line}"
        if len(row) != len(header):
            raise DatasetError(
                f"{where}: {len(row)} columns, header has {len(header)} "
                "(a name holding a comma must be quoted)"
            )
        name = _check_name(row[i_name], where)
        target = row[i_target].strip()
        if target not in ("0", "1"):
            raise DatasetError(f"{where}: target must be 0 or 1, got {row[i_target]!r}")
        if name in out:
            raise DatasetError(f"{where}: {name!r} listed twice")
        out[name] = int(target)
    if not out:
        raise DatasetError(f"{p}: label file lists no videos")
    return out


def read_name_list(path: str | Path) -> list[str]:
    """Video names to score, in file order: a CSV with a `video_name` column or bare names.

    A bare list has one name per row; a row with more fields (an unquoted comma) is an
    error rather than a name cut short.
    """
    return read_names(path)[1]


def read_names(path: str | Path) -> tuple[str | None, list[str]]:
    """`read_name_list`, with the name column the header has (`video_name` or `img_name`;
    None for bare names without a header)."""
    p = Path(path)
    all_rows = parse_csv(_read_raw(p), str(p))
    if not all_rows:
        raise DatasetError(f"{p}: name list is empty")
    header = [h.strip() for h in all_rows[0][1]]
    numbered: list[tuple[int, str]]
    column = name_column(header)
    if column is not None:
        col = header.index(column)
        numbered = [(line, row[col] if col < len(row) else "") for line, row in all_rows[1:]]
    else:
        # No header: the first row is already a name.
        numbered = []
        for line, row in all_rows:
            if len(row) != 1:
                raise DatasetError(
                    f"{p}:{line}: {len(row)} fields in a list of names without a header; "
                    "quote a name that holds a comma, or add the header 'video_name'"
                )
            numbered.append((line, row[0]))
    names: list[str] = []
    seen: dict[str, int] = {}
    for line, raw in numbered:
        where = f"{p}:{line}"
        name = _check_name(raw, where)
        if name in seen:
            raise DatasetError(f"{where}: {name!r} already listed on line {seen[name]}")
        seen[name] = line
        names.append(name)
    if not names:
        raise DatasetError(f"{p}: name list holds no names")
    return column, names


def write_errors(
    path: str | Path, errors: Sequence[ErrorEntry], neutral: float, notes: Sequence[Note] = ()
) -> Path:
    """The errors report: JSON with every unscored video and the score it was given, and
    the notes on videos that were scored (short tracks, capped windows)."""
    doc = {
        "count": len(errors),
        "neutral_score": neutral,
        "errors": [asdict(e) for e in errors],
        "notes_count": len(notes),
        "notes": [asdict(n) for n in notes],
    }
    return atomic_write_text(path, json.dumps(doc, indent=2) + "\n")


def _report(path: str | Path) -> tuple[Path, Any]:
    p = Path(path)
    try:
        return p, json.loads(read_text(p))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{p}: not an errors report written by `score`: {exc}") from exc


def read_errors(path: str | Path) -> list[ErrorEntry]:
    p, doc = _report(path)
    try:
        return [ErrorEntry(**e) for e in doc["errors"]]
    except (KeyError, TypeError) as exc:
        raise DatasetError(f"{p}: not an errors report written by `score`: {exc}") from exc


def read_notes(path: str | Path) -> list[Note]:
    """The notes of an errors report (none in a report written before notes existed)."""
    p, doc = _report(path)
    try:
        return [Note(**n) for n in doc.get("notes", [])]
    except (AttributeError, TypeError) as exc:
        raise DatasetError(f"{p}: not an errors report written by `score`: {exc}") from exc
