"""Merging shard outputs of `score --shard i/n` into one prediction file.

Every video must appear exactly once across the shards; given the name list (or the
folder) that was scored, none may be missing and none may be extra, and the merged
file follows the list's order. Without it, rows are sorted by name (the order `score`
uses for a folder). Errors reports beside the shards (`SHARD.errors.json`) are merged
into `OUT.errors.json`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from monitor.errors import DatasetError
from monitor.offline.inputs import list_inputs
from monitor.offline.predictions import (
    NEUTRAL_SCORE,
    ErrorEntry,
    Prediction,
    read_errors,
    read_predictions,
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


def _quote(names: Sequence[str]) -> str:
    more = len(names) - MAX_NAMES_IN_MESSAGE
    return ", ".join(names[:MAX_NAMES_IN_MESSAGE]) + (f", ... ({more} more)" if more > 0 else "")


def merge_shards(
    out: str | Path,
    shards: Sequence[str | Path],
    names: str | Path | None = None,
    video_dir: str | Path | None = None,
) -> MergeResult:
    """Combine shard prediction files into `out`; raise DatasetError on any gap or overlap."""
    if not shards:
        raise DatasetError("merge needs at least one shard file")
    where: dict[str, Path] = {}
    rows: dict[str, Prediction] = {}
    for shard in map(Path, shards):
        for row in read_predictions(shard):
            if row.video_name in where:
                raise DatasetError(
                    f"{row.video_name} appears in both {where[row.video_name]} and {shard}: "
                    "were the shards scored with overlapping --shard values?"
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
        order = sorted(rows)
    merged = [rows[n] for n in order]
    write_predictions(out, merged)
    errs: list[ErrorEntry] = []
    neutral = NEUTRAL_SCORE
    for shard in map(Path, shards):
        report = OutputPaths.beside(shard).errors
        if report.is_file():
            errs.extend(read_errors(report))
    if errs or any(OutputPaths.beside(s).errors.is_file() for s in map(Path, shards)):
        rank = {n: i for i, n in enumerate(order)}
        errs.sort(key=lambda e: rank.get(e.name, len(rank)))
        write_errors(OutputPaths.beside(out).errors, errs, neutral)
    logger.info("merged %d shards into %s: %d rows", len(shards), out, len(merged))
    return MergeResult(Path(out), len(merged), len(shards), len(errs))
