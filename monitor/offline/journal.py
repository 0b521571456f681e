"""The scoring journal: finished videos appended as JSON lines, so no finished work is lost.

Line 1 is a header naming what the journal belongs to (model file hash, ordered input
list hash, shard, sampling, windows); every further line is one finished video with its
per-window scores. Lines are appended per inference batch, then flushed and fsynced,
so Ctrl-C, a crash or a killed pod loses at most the batch being scored. `--resume`
reads the journal back, refuses one written for other inputs or another model, drops a
torn last line, and scores only what is not in it. The aggregation rule is not part of
the identity: the journal keeps window scores, so a resumed run may change the rule.

Lines are written with plain os.write calls (no buffer that could hold half a line), and
a write that fails (full disk, read-only folder) raises OutputError at once: the journal
then ends with at most one torn line, which `--resume` drops once space is back.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from monitor.errors import ConfigError, OutputError

logger = logging.getLogger(__name__)

JOURNAL_KIND = "deepfake-monitor-score-journal"
JOURNAL_VERSION = 1  # bump when the line layout changes; old journals are then refused
STATUS_OK, STATUS_FAILED = "ok", "failed"


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte (os.write may write fewer); tests replace this to fill the disk."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _cannot_write(p: Path, exc: OSError) -> OutputError:
    why = exc.strerror or str(exc)
    return OutputError(
        f"cannot write the journal {p}: {why}; finished videos are kept in it: "
        "fix this and rerun with --resume"
    )


@dataclass(frozen=True)
class VideoResult:
    """One finished video: its window scores, or why it has none."""

    index: int  # position in the input list
    name: str
    status: str  # "ok" or "failed"
    reason: str = ""  # failed: short machine-readable reason
    detail: str = ""  # failed: the error message
    has_audio: bool = True  # False: scored on silent audio windows (fallback)
    has_video: bool = True  # False: scored on blank face crops (fallback)
    starts: tuple[float, ...] = ()  # window start times, s
    fused: tuple[float, ...] = ()  # P(fake) per window, fused head
    audio: tuple[float, ...] = ()  # audio head
    visual: tuple[float, ...] = ()  # visual head
    faces_found: tuple[int, ...] = ()  # crops per window with a detected or tracked face
    notes: tuple[tuple[str, str], ...] = ()  # (kind, detail): scored, but worth a remark

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VideoResult:
        kw = dict(d)
        for key in ("starts", "fused", "audio", "visual", "faces_found"):
            kw[key] = tuple(kw.get(key, ()))
        kw["notes"] = tuple((str(k), str(d)) for k, d in kw.get("notes", ()))
        return cls(**kw)


class Journal:
    """Append-only JSON-lines record of finished videos for one scoring run."""

    def __init__(self, path: Path, identity: Mapping[str, Any], fh: IO[bytes]) -> None:
        self.path = path
        self.identity = dict(identity)
        self._fh = fh  # unbuffered: every write goes straight to the file
        self.results: dict[int, VideoResult] = {}

    @classmethod
    def open(
        cls, path: str | Path, identity: Mapping[str, Any], *, resume: bool, overwrite: bool
    ) -> Journal:
        """Start a journal, or continue one with `resume` (a missing journal starts afresh).

        Without `resume` or `overwrite`, an existing journal is an error: it holds finished
        work that starting over would throw away.
        """
        p = Path(path)
        ident = json.loads(json.dumps(dict(identity)))  # as it will read back from JSON
        if p.is_dir():
            raise OutputError(f"cannot write the journal {p}: it is a directory")
        if p.exists() and resume:
            results, good_bytes, newline = cls._read(p, ident)
            try:
                os.truncate(p, good_bytes)  # drop a torn last line before appending
                fh = p.open("ab", buffering=0)
            except OSError as exc:
                raise _cannot_write(p, exc) from exc
            journal = cls(p, ident, fh)
            if newline:  # the last good line lost only its newline
                journal._write(b"\n")
            journal.results = results
            logger.info("%s: resuming, %d videos already done", p, len(results))
            return journal
        if p.exists() and not overwrite:
            raise ConfigError(
                f"{p} exists (finished work of an earlier run): pass --resume to continue "
                "it, or --overwrite to start again"
            )
        header = {"kind": JOURNAL_KIND, "version": JOURNAL_VERSION, "identity": ident}
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            fh = p.open("wb", buffering=0)
        except OSError as exc:
            raise _cannot_write(p, exc) from exc
        journal = cls(p, ident, fh)
        try:
            journal._write((json.dumps(header, sort_keys=True) + "\n").encode())
        except OutputError:
            p.unlink(missing_ok=True)  # no finished work in it, and a torn header
            raise
        return journal

    @staticmethod
    def _read(p: Path, identity: Mapping[str, Any]) -> tuple[dict[int, VideoResult], int, bool]:
        data = p.read_bytes()
        lines = data.split(b"\n")
        try:
            header = json.loads(lines[0])
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{p}: not a scoring journal ({exc}); use --overwrite") from exc
        if header.get("kind") != JOURNAL_KIND or header.get("version") != JOURNAL_VERSION:
            raise ConfigError(f"{p}: not a version-{JOURNAL_VERSION} scoring journal")
        saved = header.get("identity", {})
        if saved != identity:
            diffs = sorted(
                f"{k}: {saved.get(k)!r} -> {identity.get(k)!r}"
                for k in set(saved) | set(identity)
                if saved.get(k) != identity.get(k)
            )
            raise ConfigError(
                f"{p} was written by a different run ({'; '.join(diffs)}); "
                "resume with the same inputs, model and options, or pass --overwrite"
            )
        results: dict[int, VideoResult] = {}
        good = len(lines[0]) + 1
        for i, raw in enumerate(lines[1:], start=2):
            if not raw.strip():
                good += len(raw) + 1
                continue
            try:
                r = VideoResult.from_dict(json.loads(raw))
            except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
                if i == len(lines) or (i == len(lines) - 1 and not lines[-1]):
                    logger.warning("%s: dropping a torn last line (%s)", p, exc)
                    break
                raise ConfigError(f"{p}:{i}: unreadable journal line: {exc}") from exc
            results[r.index] = r
            good += len(raw) + 1
        return results, min(good, len(data)), good > len(data)

    def append(self, results: Iterable[VideoResult]) -> int:
        """Write finished videos and make them durable (fsync); returns the count.

        Raises OutputError when the write fails; the videos are then not in `results`.
        """
        done = list(results)
        if done:
            self._write("".join(r.to_json() + "\n" for r in done).encode())
            self.results.update((r.index, r) for r in done)
        return len(done)

    def _write(self, data: bytes) -> None:
        """Write and fsync; on failure close the file and raise OutputError."""
        if self._fh.closed:
            raise OutputError(f"{self.path}: the journal was closed after a failed write")
        try:
            _write_all(self._fh.fileno(), data)
            os.fsync(self._fh.fileno())
        except OSError as exc:
            self._fh.close()  # unbuffered: nothing left to flush
            raise _cannot_write(self.path, exc) from exc

    def close(self) -> None:
        if not self._fh.closed:
            try:
                os.fsync(self._fh.fileno())
            except OSError as exc:  # every append was already fsynced
                logger.warning("%s: fsync at close failed: %s", self.path, exc)
            self._fh.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
