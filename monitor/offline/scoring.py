"""Offline scoring: a folder (or list) of videos -> prediction.txt, fast, robust, resumable.

    inputs (sorted folder / list order) -> shard i/n -> skip what the journal has
      -> worker processes: monitor.media.clip.extract_windows (or keyframe sampling) per video
      -> main process: windows of finished videos batched into backend.score calls
      -> per batch: window scores appended to the journal, flushed and fsynced
      -> at the end, from the journal in input order: aggregate per video (monitor/
         aggregate.py), write OUT atomically, the errors report, the summary, and with
         labels the metrics and ROC plot

The windows, face crops and backend are the live monitor's and training's: the same
`extract_windows`, the same `FaceCropper`, the same `engines.load_backend`.

Documented fallbacks: a video that cannot be decoded (missing, corrupt, not media, not a
regular file) gets NEUTRAL_SCORE (0.5) and an errors-report entry; a video without audio
is scored on silent audio windows and one without video on blank face crops (both
counted in the summary); a video with a short track or capped windows is scored and
noted in the errors report and the summary; nothing of that stops the run.

The image track (FFDI): a folder or list of images is scored the same way, each image one
window (its face crop K times over silent audio, monitor/media/images.py), and the
prediction is the model's visual head: the fused head would mix in the audio head's
score of the silence. The outputs' name column is then `img_name`.

Outputs that cannot be written are found before any video is scored (`check_outputs`:
`--out` naming a directory, a read-only folder). A write that fails later (a full disk)
raises OutputError; the journal keeps every finished video, so `--resume` finishes the
run once the problem is fixed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monitor.backend import Backend, load_backend, model_identity
from monitor.errors import ConfigError, OutputError
from monitor.offline.aggregation import DEFAULT_RULE, AggregateRule
from monitor.offline.extraction import Extracted, ExtractJob, check_sampling, iter_extracted
from monitor.offline.inputs import (
    INPUT_IMAGE,
    Shard,
    VideoInput,
    input_kind,
    inputs_digest,
    list_inputs,
)
from monitor.offline.journal import STATUS_FAILED, STATUS_OK, Journal, VideoResult
from monitor.offline.predictions import (
    NEUTRAL_SCORE,
    os_reason,
    read_labels,
    write_errors,
    write_predictions,
)
from monitor.offline.report import (
    OutputPaths,
    Profile,
    ScoreSummary,
    Track,
    count_fallbacks,
    errors,
    label_metrics,
    notes,
    ordered_results,
    predictions,
    write_metrics,
    write_summary,
    write_windows_csv,
)

logger = logging.getLogger(__name__)

DEFAULT_BATCH_WINDOWS = 256  # windows per backend.score call (the GPU backends' sweet spot)
NONFINITE_REASON = "nonfinitescore"


def default_workers() -> int:
    """Decoder processes: one per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ScoreOptions:
    """Everything `score` needs besides the inputs; the CLI flags mirror these fields."""

    model: str  # .onnx / engine / checkpoint / folder / triton:// URL (engines.load_backend)
    out: Path  # prediction file; the other outputs sit beside it (offline_report.py)
    backend: str = "auto"  # auto | onnxruntime | torch | tensorrt | triton
    device: str = "auto"  # auto | cpu | cuda
    labels: Path | None = None  # video_name,target file: metrics and ROC plot
    video_dir: Path | None = None  # where a name list's videos are (default: guessed)
    sampling: str = "exact"  # exact | keyframe (monitor/offline/extraction.py)
    aggregate: str = DEFAULT_RULE  # window -> video rule (monitor/offline/aggregation.py)
    hop_seconds: float | None = None  # window stride, s; None: the model contract's hop
    max_windows: int | None = None  # windows per video, spread over it; None: all
    batch_windows: int = DEFAULT_BATCH_WINDOWS  # windows per backend call
    workers: int = field(default_factory=default_workers)  # decoder processes (0: inline)
    shard: Shard = field(default_factory=Shard)  # score only slice i of n
    resume: bool = False  # continue from the journal if there is one
    overwrite: bool = False  # discard an existing journal
    windows_out: Path | None = None  # also write per-window scores as CSV here
    progress: bool = True  # tqdm progress bar on stderr
    neutral_score: float = NEUTRAL_SCORE  # score of a video that cannot be decoded

    def __post_init__(self) -> None:
        check_sampling(self.sampling)
        AggregateRule.parse(self.aggregate)
        if self.batch_windows < 1:
            raise ConfigError(f"--batch-size {self.batch_windows}: must be >= 1")
        if self.workers < 0:
            raise ConfigError(f"--workers {self.workers}: must be >= 0")
        if self.max_windows is not None and self.max_windows < 1:
            raise ConfigError(f"--max-windows {self.max_windows}: must be >= 1")
        if self.hop_seconds is not None and self.hop_seconds <= 0:
            raise ConfigError(f"--hop {self.hop_seconds}: must be > 0")
        if not 0.0 <= self.neutral_score <= 1.0:
            raise ConfigError(f"neutral score {self.neutral_score} is not a probability")


class _Batcher:
    """Collects decoded videos and scores their windows in batches of `batch` windows."""

    def __init__(self, backend: Backend, journal: Journal, batch: int, bar: Any) -> None:
        self.backend, self.journal, self.batch, self.bar = backend, journal, batch, bar
        self.pending: list[Extracted] = []
        self.failed: list[VideoResult] = []
        self.windows = 0  # windows pending
        self.inference_s = 0.0
        self.batches = 0
        self.scored_windows = 0

    def add(self, x: Extracted) -> None:
        if not x.ok or x.n_windows == 0:
            reason = x.reason or "nowindows"
            self.failed.append(VideoResult(x.index, x.name, STATUS_FAILED, reason, x.detail))
        else:
            self.pending.append(x)
            self.windows += x.n_windows
        if self.windows >= self.batch:
            self.flush()

    def flush(self) -> None:
        done = self.failed + self._score_pending()
        self.failed, self.pending, self.windows = [], [], 0
        self.journal.append(done)  # durable before the bar moves
        self.bar.update(len(done))

    def _score_pending(self) -> list[VideoResult]:
        if not self.pending:
            return []
        audio = np.concatenate([x.audio for x in self.pending if x.audio is not None])
        faces = np.concatenate([x.faces for x in self.pending if x.faces is not None])
        n = audio.shape[0]
        out = np.empty((3, n), dtype=np.float64)
        t0 = time.perf_counter()
        for a in range(0, n, self.batch):
            b = min(a + self.batch, n)
            s = self.backend.score(audio[a:b], faces[a:b])
            out[0, a:b], out[1, a:b], out[2, a:b] = s.fused, s.audio, s.visual
            self.batches += 1
        self.inference_s += time.perf_counter() - t0
        self.scored_windows += n
        results, at = [], 0
        for x in self.pending:
            k = x.n_windows
            mine = out[:, at : at + k]
            at += k
            f, pa, pv = mine
            if not np.isfinite(mine).all():
                results.append(
                    VideoResult(
                        x.index, x.name, STATUS_FAILED, NONFINITE_REASON, "model output NaN/inf"
                    )
                )
                continue
            found = x.face_found.sum(axis=1) if x.face_found is not None else np.zeros(k)
            results.append(
                VideoResult(
                    index=x.index,
                    name=x.name,
                    status=STATUS_OK,
                    has_audio=x.has_audio,
                    has_video=x.has_video,
                    starts=tuple(float(t) for t in (x.starts if x.starts is not None else ())),
                    fused=tuple(np.clip(f, 0.0, 1.0).tolist()),
                    audio=tuple(np.clip(pa, 0.0, 1.0).tolist()),
                    visual=tuple(np.clip(pv, 0.0, 1.0).tolist()),
                    faces_found=tuple(int(c) for c in found),
                    notes=x.notes,
                )
            )
        return results


def _progress_bar(total: int, initial: int, enabled: bool, unit: str = "video") -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit=unit,
        desc="score",
        disable=not enabled,
        smoothing=0.05,
        dynamic_ncols=True,
    )


def _jobs(todo: Sequence[VideoInput], contract: Any, opts: ScoreOptions) -> list[ExtractJob]:
    return [
        ExtractJob(
            index=v.index,
            name=v.name,
            path=str(v.path),
            contract=contract,
            sampling=opts.sampling,
            hop_seconds=opts.hop_seconds,
            max_windows=opts.max_windows,
            kind=v.kind,
        )
        for v in todo
    ]


def _timed(it: Iterator[Extracted], clock: list[float]) -> Iterator[Extracted]:
    """Yield from `it`, adding the time spent waiting for each item to clock[0]."""
    while True:
        t0 = time.perf_counter()
        try:
            x = next(it)
        except StopIteration:
            return
        finally:
            clock[0] += time.perf_counter() - t0
        yield x


def check_outputs(paths: OutputPaths, windows_out: Path | None = None) -> None:
    """Raise OutputError now, before any work, if an output file cannot be written: a
    directory where a file goes, or a folder that refuses new files (read-only, no
    permission). A full disk can only show later; see `_write_outputs`."""
    named = (
        ("--out", paths.predictions, "prediction.txt"),
        ("--windows-out", windows_out, "windows.csv"),
    )
    for flag, f, example in named:
        if f is not None and f.is_dir():
            raise OutputError(
                f"{flag} {f} is a directory: name the file to write, e.g. {f / example}"
            )
    files = [paths.predictions, paths.errors, paths.summary, paths.journal]
    for f in files:
        if f.is_dir():
            raise OutputError(f"{f} is a directory in the way of an output file: remove it")
    for folder in sorted({f.parent for f in [*files, *([windows_out] if windows_out else [])]}):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".deepfake-monitor-", suffix=".tmp", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise OutputError(f"cannot write in {folder}: {os_reason(exc)}") from exc


@dataclass
class _Run:
    """What one pass over the pending videos produced (before the outputs are written)."""

    results: list[VideoResult]  # every input's result, in input order
    resumed: int  # videos the journal already had
    scored: int  # videos scored in this run
    loop_s: float  # wall time of the decode + score loop
    first_s: float  # until the first video's windows arrived
    decode_s: float  # decoding, summed over workers
    wait_s: float  # the main process waiting for decoded videos
    batcher: _Batcher


def score_videos(
    data: str | Path, opts: ScoreOptions, backend: Backend | None = None
) -> ScoreSummary:
    """Score every video of `data` (folder or name list) into `opts.out`; see the module doc.

    `backend`, if given, is used instead of loading `opts.model` (and not closed).
    """
    t_start = time.perf_counter()
    everything = list_inputs(data, opts.video_dir)
    track = Track.of(input_kind(everything))
    inputs = opts.shard.select(everything)
    labels = read_labels(opts.labels) if opts.labels is not None else None
    paths = OutputPaths.beside(opts.out)
    check_outputs(paths, opts.windows_out)
    own_backend = backend is None
    if backend is None:
        backend = load_backend(opts.model, opts.backend, opts.device)
    try:
        run = _score_pending(inputs, backend, opts, paths, track)
        head = backend.contract.output_names[2 if track.kind == INPUT_IMAGE else 0]
    finally:
        if own_backend:
            backend.close()
    whole = (len(everything), inputs_digest(everything))
    try:
        return _write_outputs(run, labels, paths, opts, backend.name, t_start, whole, track, head)
    except (OutputError, OSError) as exc:
        why = str(exc) if isinstance(exc, OutputError) else os_reason(exc)
        raise OutputError(
            f"{why}; every score is in the journal {paths.journal}: "
            "rerun the same command with --resume once this is fixed"
        ) from exc


def _score_pending(
    inputs: list[VideoInput],
    backend: Backend,
    opts: ScoreOptions,
    paths: OutputPaths,
    track: Track,
) -> _Run:
    """Score the inputs the journal does not have yet, appending each batch to it."""
    contract = backend.contract
    identity: dict[str, Any] = {
        "inputs_sha256": inputs_digest(inputs),
        "inputs": len(inputs),
        "shard": str(opts.shard),
        "model_sha256": model_identity(backend, opts.model),
        "contract": contract.to_dict(),
        "sampling": opts.sampling,
        "hop_seconds": opts.hop_seconds,
        "max_windows": opts.max_windows,
    }
    if track.kind == INPUT_IMAGE:  # videos' journals keep the identity they always had
        identity["track"] = track.kind
    with Journal.open(
        paths.journal, identity, resume=opts.resume, overwrite=opts.overwrite
    ) as journal:
        resumed = len(journal.results)
        todo = [v for v in inputs if v.index not in journal.results]
        logger.info(
            "%d %ss to score (%d done before), %d workers, backend %s, sampling %s",
            len(todo),
            track.noun,
            resumed,
            opts.workers,
            backend.name,
            opts.sampling,
        )
        waited = [0.0]
        decode_s = first_s = 0.0
        with _progress_bar(len(inputs), resumed, opts.progress, track.noun) as bar:
            batcher = _Batcher(backend, journal, opts.batch_windows, bar)
            t_loop = time.perf_counter()
            stream = iter_extracted(_jobs(todo, contract, opts), opts.workers)
            with contextlib.closing(stream):
                for x in _timed(stream, waited):
                    first_s = first_s or time.perf_counter() - t_loop
                    decode_s += x.seconds
                    batcher.add(x)
                batcher.flush()
            loop_s = time.perf_counter() - t_loop
        results = ordered_results(inputs, journal.results)
    return _Run(results, resumed, len(todo), loop_s, first_s, decode_s, waited[0], batcher)


def _write_outputs(
    run: _Run,
    labels: dict[str, int] | None,
    paths: OutputPaths,
    opts: ScoreOptions,
    backend_name: str,
    t_start: float,
    whole: tuple[int, str],
    track: Track,
    head: str,
) -> ScoreSummary:
    """Predictions, errors and notes, window scores, metrics and the summary (last: a
    shard with a summary is complete), from the results. `whole` is the size and hash of
    the whole input list, recorded so `merge` can check a set of shards; `track` the
    name column and the head the predictions come from (`head`: its output name)."""
    results = run.results
    rows = predictions(results, opts.aggregate, opts.neutral_score, track.head)
    paths.summary.unlink(missing_ok=True)  # an earlier run's: it would vouch for this one
    write_predictions(paths.predictions, rows, track.column)
    write_errors(paths.errors, errors(results), opts.neutral_score, notes(results))
    if opts.windows_out is not None:
        write_windows_csv(opts.windows_out, results, track.column)
    metrics = None
    if labels is not None:
        found = label_metrics(results, rows, labels, opts.aggregate, track.head)
        if found is not None:
            metrics, curves = found
            write_metrics(paths, metrics, curves, f"ROC of {paths.predictions.name}")
    profile = Profile(
        wall_s=time.perf_counter() - t_start,
        loop_s=run.loop_s,
        first_s=run.first_s,
        decode_s=run.decode_s,
        inference_s=run.batcher.inference_s,
        wait_s=run.wait_s,
        batches=run.batcher.batches,
        videos=run.scored,
        windows=run.batcher.scored_windows,
    )
    summary = ScoreSummary(
        out=str(paths.predictions),
        videos=len(rows),
        resumed=run.resumed,
        aggregate=opts.aggregate,
        sampling=opts.sampling,
        backend=backend_name,
        shard=str(opts.shard),
        neutral_score=opts.neutral_score,
        profile=profile,
        metrics=metrics,
        inputs_total=whole[0],
        inputs_sha256=whole[1],
        track=track.kind,
        head=head,
        **count_fallbacks(results, track.kind),
    )
    write_summary(paths, summary)
    return summary
