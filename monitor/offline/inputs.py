"""What offline scoring scores: the ordered list of input videos, and a shard of it.

DATA may be a folder of videos (scored in sorted name order) or a file listing names
(a label file `video_name,target`, a name list such as `testset1seen_nolabel.txt`, or
bare names), scored in the file's order. A listed name need not exist: it is kept, so
it still gets a row (the neutral score) and an entry in the errors report. Likewise
every entry of a folder with a video suffix is listed, whatever it is (a directory, a
symlink loop, a dangling symlink, a FIFO): it gets a row and an errors entry saying
what it is. A file name that is not valid UTF-8 is written with U+FFFD in place of the
bad bytes (the prediction file is UTF-8); the file itself is still scored.

The videos of a list are looked for in `video_dir` if given, else in the folder the list
names by convention (`testset1seen_nolabel.txt` -> `testset1seen/`, `val_label.txt` ->
`valset/`), else beside the list.

The image track (FFDI) is read the same way: a folder of images (IMAGE_SUFFIXES) or a
list of image names (an `img_name,target` label file, an `img_name` list, or bare names
ending in an image suffix). Every input of one run is of one kind (`INPUT_VIDEO` or
`INPUT_IMAGE`): a folder or list holding both videos and images is refused with one line
naming a few of each, since the two tracks are scored, written and submitted separately.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from monitor.errors import ConfigError, DatasetError
from monitor.offline.predictions import IMAGE_NAME_COLUMN, NAME_COLUMN, read_names
from monitor.shard import Shard as BaseShard

logger = logging.getLogger(__name__)

# Suffixes of files taken from a folder (case-insensitive); other files are ignored.
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".ts"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})  # the image track (FFDI)
INPUT_VIDEO, INPUT_IMAGE = "video", "image"  # what an input is, and so how it is scored
MIXED_EXAMPLES = 3  # names of each kind quoted when a folder or list mixes them
LIST_SUFFIXES = ("_nolabel", "_label", "_labels", "_names")  # stripped to find the video folder


@dataclass(frozen=True)
class VideoInput:
    """One video to score."""

    index: int  # position in the full input list (not the shard): the output order
    name: str  # video_name (img_name) as written to the prediction file
    path: Path  # where it should be on disk (may not exist)
    kind: str = INPUT_VIDEO  # INPUT_VIDEO or INPUT_IMAGE (the same for every input of a run)


@dataclass(frozen=True)
class Shard(BaseShard):
    """Slice `index` of `count`: the inputs whose position modulo `count` is `index`.

    Round-robin rather than contiguous blocks, so a list sorted by name (and so by
    whatever correlates with names) spreads evenly over the shards.
    """

    @classmethod
    def parse(cls, text: str) -> Shard:
        base = BaseShard.parse(text)
        return cls(base.index, base.count)

    def select(self, inputs: Sequence[VideoInput]) -> list[VideoInput]:
        return [v for v in inputs if self.takes_position(v.index)]


def printable_name(name: str) -> str:
    """A file name as it can be written to a UTF-8 file: bytes that are not UTF-8 (kept by
    the OS as surrogate escapes) become U+FFFD."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def suffix_kind(name: str) -> str | None:
    """INPUT_VIDEO or INPUT_IMAGE by a name's suffix (case-insensitive); None for others."""
    suffix = Path(name).suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return INPUT_VIDEO
    if suffix in IMAGE_SUFFIXES:
        return INPUT_IMAGE
    return None


def _refuse_mixed(where: Path, names: Sequence[str], what: str) -> None:
    videos = [n for n in names if suffix_kind(n) == INPUT_VIDEO]
    images = [n for n in names if suffix_kind(n) == INPUT_IMAGE]
    if videos and images:

        def some(ns: list[str]) -> str:
            more = len(ns) - MIXED_EXAMPLES
            shown = ", ".join(printable_name(n) for n in ns[:MIXED_EXAMPLES])
            return shown + (f", ... ({more} more)" if more > 0 else "")

        raise DatasetError(
            f"{where}: {what} both videos ({len(videos)}: {some(videos)}) and images "
            f"({len(images)}: {some(images)}); the audio-video and image tracks are scored "
            "separately: give each its own folder or list"
        )


def list_folder(folder: Path) -> list[VideoInput]:
    """Every entry of a folder with a video or image suffix, sorted by name (hidden entries
    and other suffixes skipped; videos and images together refused). Entries that are not
    regular files are kept: they get a row and an errors entry, never silently nothing."""
    try:
        entries = sorted(
            n for n in os.listdir(folder) if not n.startswith(".") and suffix_kind(n) is not None
        )
    except OSError as exc:
        raise DatasetError(f"{folder}: cannot list this folder: {exc.strerror or exc}") from exc
    if not entries:
        raise DatasetError(
            f"{folder}: no video files ({', '.join(sorted(VIDEO_SUFFIXES))}) or image files "
            f"({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder"
        )
    _refuse_mixed(folder, entries, "holds")
    kind = suffix_kind(entries[0]) or INPUT_VIDEO
    inputs: list[VideoInput] = []
    seen: set[str] = set()
    for n in entries:
        name = printable_name(n)
        if name != n:
            logger.warning("%s: file name is not valid UTF-8; written as %r", folder, name)
        while name in seen:  # two undecodable names that look alike: keep rows distinct
            name = f"{Path(name).stem}~{Path(name).suffix}"
        seen.add(name)
        inputs.append(VideoInput(len(inputs), name, folder / n, kind))
    return inputs


def list_kind(list_file: Path, column: str | None, names: Sequence[str]) -> str:
    """What a name list holds: its header says (`img_name`: images, `video_name`: videos),
    else the names' suffixes (videos unless they are images). A list naming both, or a
    header contradicting every name, is refused."""
    _refuse_mixed(list_file, names, "lists")
    by_suffix = {k for n in names if (k := suffix_kind(n)) is not None}
    if column is None:
        return INPUT_IMAGE if by_suffix == {INPUT_IMAGE} else INPUT_VIDEO
    kind = INPUT_IMAGE if column == IMAGE_NAME_COLUMN else INPUT_VIDEO
    if by_suffix and kind not in by_suffix:
        right = NAME_COLUMN if kind == INPUT_IMAGE else IMAGE_NAME_COLUMN
        raise DatasetError(
            f"{list_file}:1: the header's {column!r} column is for {kind}s, but the listed "
            f"names are not {kind}s: use the header {right!r}"
        )
    return kind


def input_kind(inputs: Sequence[VideoInput]) -> str:
    """The kind of a run's inputs (one kind per run; INPUT_VIDEO for none)."""
    return inputs[0].kind if inputs else INPUT_VIDEO


def guess_video_dir(list_file: Path) -> Path:
    """The folder a name list refers to: `X_nolabel.txt` -> `X/`, `val_label.txt` -> `valset/`."""
    stem = list_file.stem
    bases = [stem]
    for suffix in LIST_SUFFIXES:
        if stem.endswith(suffix):
            bases.insert(0, stem[: -len(suffix)])
            break
    for base in bases:
        for cand in (base, f"{base}set"):
            folder = list_file.parent / cand
            if cand and folder.is_dir():
                return folder
    return list_file.parent


def list_inputs(data: str | Path, video_dir: str | Path | None = None) -> list[VideoInput]:
    """The ordered inputs named by DATA (a folder or a list file); see the module doc."""
    src = Path(data)
    if src.is_dir():
        if video_dir is not None:
            raise ConfigError("--video-dir applies to a name list, not to a folder")
        return list_folder(src)
    if not src.is_file():
        raise DatasetError(f"{src}: no such folder of videos or images, or name list")
    folder = Path(video_dir) if video_dir is not None else guess_video_dir(src)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: media folder for {src.name} not found; pass --video-dir")
    column, names = read_names(src)
    kind = list_kind(src, column, names)
    inputs = [VideoInput(i, n, folder / n, kind) for i, n in enumerate(names)]
    missing = sum(1 for v in inputs if not v.path.is_file())
    logger.info("%s: %d %ss in %s (%d missing)", src, len(names), kind, folder, missing)
    if missing == len(inputs):
        raise DatasetError(
            f"{src}: none of the {len(inputs)} listed {kind}s is in {folder}; pass --video-dir"
        )
    return inputs


def inputs_digest(inputs: Sequence[VideoInput]) -> str:
    """A hash of the ordered (index, name) list: identifies what a journal belongs to."""
    h = hashlib.sha256()
    for v in inputs:
        h.update(f"{v.index}\t{v.name}\n".encode())
    return h.hexdigest()
