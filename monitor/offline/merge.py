"""Merging shard outputs of `score --shard i/n` into one prediction file.

Every video must appear exactly once across the shards. Given the name list (or the
folder) that was scored, none may be missing and none may be extra, and the merged file
follows the list's order. Without it, the shards must prove they are one complete set:
each shard's summary (`SHARD.summary.json`, written last by `score`) says which shard of
how many it is, how many videos the whole input list holds and its hash. Merge refuses a
set with a shard missing or given twice, shards of different input lists, a shard whose
summary is absent, or a shard file with fewer or more rows than its slice; rows are then
sorted by name (the order `score` uses for a folder). Errors reports beside the shards
(`SHARD.errors.json`), errors and notes, are merged into `OUT.errors.json`.

Shards of the image track (`img_name,y_pred`) merge the same way into an `img_name,y_pred`
file; shards with different name columns (one track's and the other's) are refused.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.errors import ConfigError, DatasetError
from monitor.offline.inputs import Shard, list_inputs
from monitor.offline.predictions import (
    NEUTRAL_SCORE,
    ErrorEntry,
    Note,
    Prediction,
    read_errors,
    read_notes,
    read_prediction_file,
    write_errors,
    write_predictions,
)
from monitor.offline.report import OutputPaths

logger = logging.getLogger(__name__)

MAX_NAMES_IN_MESSAGE = 5  # names quoted in an error before "..."


@dataclass(frozen=True)
class MergeResult:
    out: Path
    rows: int
    shards: int
    errors: int  # entries in the merged errors report


@dataclass(frozen=True)
class ShardInfo:
    """What a shard's summary says about its place in the whole run."""

    path: Path  # the shard's prediction file
    shard: Shard
    inputs_total: int
    inputs_sha256: str
    videos: int  # rows the shard wrote

    @property
    def expected_rows(self) -> int:
        """Rows of slice i of n of a list of N: positions i, i+n, i+2n, ... below N."""
        return len(range(self.shard.index, self.inputs_total, self.shard.count))


def _show(name: str) -> str:
    """A name for a one-line message: control characters escaped."""
    return name if name.isprintable() else repr(name)


def _quote(names: Sequence[str]) -> str:
    more = len(names) - MAX_NAMES_IN_MESSAGE
    shown = ", ".join(_show(n) for n in names[:MAX_NAMES_IN_MESSAGE])
    return shown + (f", ... ({more} more)" if more > 0 else "")


def read_shard_info(shard: Path) -> ShardInfo:
    """The shard identity recorded in the summary beside a shard's prediction file."""
    summary = OutputPaths.beside(shard).summary
    if not summary.is_file():
        raise DatasetError(
            f"{shard}: no summary beside it ({summary.name}), so merge cannot tell which "
            "shard of how many it is: finish that shard (score ... --resume), or pass --names"
        )
    try:
        doc: Any = json.loads(summary.read_text(encoding="utf-8"))
        info = ShardInfo(
            path=shard,
            shard=Shard.parse(str(doc["shard"])),
            inputs_total=int(doc["inputs_total"]),
            inputs_sha256=str(doc["inputs_sha256"]),
            videos=int(doc["videos"]),
        )
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError,
            ValueError, ConfigError) as exc:  # fmt: skip
        raise DatasetError(
            f"{summary}: not a shard summary written by this version of `score` ({exc}); "
            "rescore that shard with --resume, or pass --names"
        ) from exc
    if not info.inputs_sha256 or info.inputs_total < 1:
        raise DatasetError(
            f"{summary}: records no input list (written by an older `score`); pass --names"
        )
    return info


def check_shard_set(shards: Sequence[Path]) -> list[ShardInfo]:
    """Refuse a set of shards that is not exactly slices 0..n-1 of one input list."""
    infos = [read_shard_info(s) for s in shards]
    first = infos[0]
    for info in infos[1:]:
        if (info.inputs_total, info.inputs_sha256) != (first.inputs_total, first.inputs_sha256):
            raise DatasetError(
                f"{info.path} and {first.path} are shards of different inputs "
                f"({info.inputs_total} and {first.inputs_total} videos, other names or order)"
            )
        if info.shard.count != first.shard.count:
            raise DatasetError(
                f"{info.path} is shard {info.shard} but {first.path} is shard {first.shard}: "
                "all shards of one run share the same n"
            )
    by_index: dict[int, ShardInfo] = {}
    for info in infos:
        if info.shard.index in by_index:
            raise DatasetError(
                f"shard {info.shard} is given twice ({by_index[info.shard.index].path} and "
                f"{info.path}): name each shard's file once"
            )
        by_index[info.shard.index] = info
    n = first.shard.count
    missing = [f"{i}/{n}" for i in range(n) if i not in by_index]
    if missing:
        raise DatasetError(
            f"shard {', '.join(missing)} missing: got {len(infos)} of {n} shards "
            f"({', '.join(str(i.shard) for i in sorted(infos, key=lambda i: i.shard.index))}); "
            "is a shard file missing or unfinished?"
        )
    return infos


def check_shard_rows(infos: Sequence[ShardInfo], rows: dict[Path, int]) -> None:
    """Refuse a shard file whose row count is not its slice's (unfinished or edited)."""
    for info in infos:
        got = rows[info.path]
        if got != info.expected_rows or got != info.videos:
            raise DatasetError(
                f"{info.path}: {got} rows, but shard {info.shard} of {info.inputs_total} "
                f"videos has {info.expected_rows}: an unfinished or edited shard file"
            )


def merge_shards(
    out: str | Path,
    shards: Sequence[str | Path],
    names: str | Path | None = None,
    video_dir: str | Path | None = None,
) -> MergeResult:
    """Combine shard prediction files into `out`; raise DatasetError on any gap or overlap."""
    if not shards:
        raise DatasetError("merge needs at least one shard file")
    paths = [Path(s) for s in shards]
    infos = check_shard_set(paths) if names is None else []
    where: dict[str, Path] = {}
    rows: dict[str, Prediction] = {}
    counts: dict[Path, int] = {}
    columns: dict[str, Path] = {}
    for shard in paths:
        column, shard_rows = read_prediction_file(shard)
        columns.setdefault(column, shard)
        if len(columns) > 1:
            (c0, p0), (c1, p1) = columns.items()
            raise DatasetError(
                f"{p0} has {c0} rows but {p1} has {c1} rows: shards of the audio-video and "
                "image tracks cannot be merged into one file"
            )
        counts[shard] = len(shard_rows)
        for row in shard_rows:
            if row.video_name in where:
                raise DatasetError(
                    f"{_show(row.video_name)} appears in both {where[row.video_name]} and "
                    f"{shard}: were the shards scored with overlapping --shard values?"
                )
            where[row.video_name] = shard
            rows[row.video_name] = row
    if names is not None:
        order = [v.name for v in list_inputs(names, video_dir)]
        missing = [n for n in order if n not in rows]
        listed = set(order)
        extra = sorted(n for n in rows if n not in listed)
        if missing:
            raise DatasetError(
                f"{len(missing)} of {len(order)} listed videos are in no shard: "
                f"{_quote(missing)}; is a shard file missing or unfinished?"
            )
        if extra:
            raise DatasetError(
                f"{len(extra)} videos in the shards are not in {names}: {_quote(extra)}"
            )
    else:
        check_shard_rows(infos, counts)
        order = sorted(rows)
    merged = [rows[n] for n in order]
    column = next(iter(columns))
    errs: list[ErrorEntry] = []
    notes: list[Note] = []
    reports = [OutputPaths.beside(s).errors for s in paths]
    for report in reports:
        if report.is_file():
            errs.extend(read_errors(report))
            notes.extend(read_notes(report))
    write_predictions(out, merged, column)
    if any(r.is_file() for r in reports):
        rank = {n: i for i, n in enumerate(order)}
        errs.sort(key=lambda e: rank.get(e.name, len(rank)))
        notes.sort(key=lambda e: rank.get(e.name, len(rank)))
        write_errors(OutputPaths.beside(out).errors, errs, NEUTRAL_SCORE, notes)
    logger.info("merged %d shards into %s: %d rows", len(paths), out, len(merged))
    return MergeResult(Path(out), len(merged), len(paths), len(errs))
