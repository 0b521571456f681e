"""Decode side of offline scoring: videos -> model inputs, in parallel worker processes.

Each worker runs `extract_job` on one video at a time and sends back its windows (audio
[N, S] float32, crops [N, K, H, W, 3] uint8). Sampling modes:

    exact     `monitor.media.clip.extract_windows`, the path training and the live monitor use:
              every sampled frame is the frame nearest to the window's crop time.
    keyframe  each crop time gets the keyframe at or before it (`media.sample_keyframes`):
              one intra-frame decode per distinct keyframe instead of decoding every frame
              between keyframes. Several times-faster on long GOPs; the crop may be up to
              one GOP earlier than in `exact`, so measure the score difference before use.

Audio is always decoded in full (cheap). Failures never escape a worker: a video that
cannot be decoded comes back as a failed `Extracted` with a reason for the errors report.
A video that is scored but worth a remark comes back with notes: an audio or video track
more than 20 % shorter than the other (`shortaudio`, `shortvideo`: scored as it is, with
silence or the last frame past the track's end), or a video so long that only
LONG_VIDEO_MAX_WINDOWS windows spread over it were scored (`windowscapped`; an explicit
`max_windows` is the caller's choice and is not noted).
A worker process that dies (a crash inside a decoder) is replaced; the videos in flight
are retried one at a time, so the one that kills its decoder is found and reported.

An image (the image track, `kind="image"`) is one window: `monitor.media.images` decodes
it (hostile-input checks before any pixel is decoded), the shared cropper crops its face
once, the K crops are that crop repeated and the audio is silence. An image where no face
was found is scored on the centre crop and noted (`noface`).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Generator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from monitor.contract import InputContract
from monitor.errors import ConfigError, MediaError
from monitor.media.decode import SHORT_TRACK_FRACTION, Frame
from monitor.offline.inputs import INPUT_IMAGE, INPUT_VIDEO

if TYPE_CHECKING:
    from monitor.media.clip import ClipWindows

logger = logging.getLogger(__name__)

SAMPLING_MODES = ("exact", "keyframe")
PREFETCH_PER_WORKER = 2  # videos in flight per worker: keeps workers busy, memory bounded
WORKER_CRASH_REASON = "workercrashed"
# Windows per video when no max_windows is given: a longer video (over about 17 min at a
# 1 s hop) is scored on this many windows spread over it, so one video's arrays stay
# bounded (about 290 MB at the default contract) instead of growing with its length.
LONG_VIDEO_MAX_WINDOWS = 1024
NOTE_SHORT_AUDIO, NOTE_SHORT_VIDEO, NOTE_WINDOWS_CAPPED = (
    "shortaudio",
    "shortvideo",
    "windowscapped",
)
NOTE_NO_FACE = "noface"  # an image without a detected face: scored on its centre crop
PR_SET_PDEATHSIG = 1  # prctl option: signal this process when its parent exits
POOL_START_METHOD = "spawn"  # never fork a parent that holds inference-runtime threads


@dataclass(frozen=True)
class ExtractJob:
    """One video for a worker."""

    index: int  # position in the input list
    name: str
    path: str
    contract: InputContract
    sampling: str = "exact"
    hop_seconds: float | None = None  # None: the contract's hop
    max_windows: int | None = None  # None: every window, up to LONG_VIDEO_MAX_WINDOWS
    kind: str = INPUT_VIDEO  # INPUT_IMAGE: a still image, one window (see the module doc)


@dataclass(frozen=True)
class Extracted:
    """A worker's answer for one video: its windows, or why there are none."""

    index: int
    name: str
    ok: bool
    reason: str = ""  # for a failure: short machine-readable reason
    detail: str = ""  # for a failure: the error message
    starts: np.ndarray | None = None  # float64 [N] window start times, s
    audio: np.ndarray | None = None  # float32 [N, window_samples]
    faces: np.ndarray | None = None  # uint8 [N, K, S, S, 3]
    face_found: np.ndarray | None = None  # bool [N, K]
    has_audio: bool = True
    has_video: bool = True
    duration_s: float = 0.0
    seconds: float = 0.0  # worker time spent on this video
    notes: tuple[tuple[str, str], ...] = ()  # (kind, detail): scored, but worth a remark

    @property
    def n_windows(self) -> int:
        return 0 if self.starts is None else int(self.starts.shape[0])


FrameSampler = Callable[[str, Sequence[float]], list[Frame]]
WindowArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool, bool, float]


def windows_with_sampler(
    path: str,
    contract: InputContract,
    sampler: FrameSampler,
    hop_seconds: float | None = None,
    max_windows: int | None = None,
) -> WindowArrays:
    """`extract_windows` with another frame sampler, as plain arrays: (starts, audio,
    faces, found, has_audio, has_video, duration)."""
    from monitor.media.clip import extract_windows

    cw = extract_windows(
        path, contract, hop_seconds=hop_seconds, max_windows=max_windows, sampler=sampler
    )
    starts = np.array([w.start_s for w in cw.windows], dtype=np.float64)
    return starts, cw.audio, cw.faces, cw.face_found, cw.has_audio, cw.has_video, cw.duration_s


def clip_notes(cw: ClipWindows, capped: bool) -> tuple[tuple[str, str], ...]:
    """The notes on a scored clip: a short track, windows capped (see the module doc)."""
    notes: list[tuple[str, str]] = []
    if cw.has_audio and cw.has_video:
        video = cw.video_s or cw.duration_s  # no per-track length declared: the container's
        if cw.audio_s < SHORT_TRACK_FRACTION * video:
            notes.append(
                (
                    NOTE_SHORT_AUDIO,
                    f"audio track {cw.audio_s:.2f}s of {video:.2f}s; silence after it",
                )
            )
        elif 0 < cw.video_s < SHORT_TRACK_FRACTION * cw.audio_s:
            notes.append(
                (
                    NOTE_SHORT_VIDEO,
                    f"video track {cw.video_s:.2f}s of {cw.audio_s:.2f}s; last frame held after it",
                )
            )
    if capped:
        notes.append(
            (
                NOTE_WINDOWS_CAPPED,
                f"{len(cw.windows)} of {cw.planned} windows scored, spread over "
                f"{cw.duration_s:.0f}s (--max-windows sets the number)",
            )
        )
    return tuple(notes)


def _image_arrays(job: ExtractJob) -> Extracted:
    """One image as one window (see the module doc); MediaError for a bad image."""
    from monitor.media.faces import FaceCropper
    from monitor.media.images import image_window, load_image

    rgb = load_image(job.path)
    win = image_window(rgb, job.contract, FaceCropper.from_contract(job.contract, name=job.name))
    notes: tuple[tuple[str, str], ...] = ()
    if not win.crop.found:
        h, w = rgb.shape[:2]
        notes = ((NOTE_NO_FACE, f"no face found in the {w}x{h} image; scored on its centre crop"),)
    return Extracted(
        job.index,
        job.name,
        True,
        starts=np.zeros(1, dtype=np.float64),
        audio=win.audio,
        faces=win.faces,
        face_found=win.found,
        has_audio=False,
        has_video=True,
        notes=notes,
    )


def _video_arrays(job: ExtractJob) -> Extracted:
    """One video's windows (exact or keyframe sampling); MediaError for a bad video."""
    from monitor.media.clip import extract_windows
    from monitor.media.decode import check_regular_file, sample_frames, sample_keyframes

    check_regular_file(job.path)  # a directory or FIFO must never reach the demuxer
    cap = LONG_VIDEO_MAX_WINDOWS if job.max_windows is None else job.max_windows
    cw = extract_windows(
        job.path,
        job.contract,
        hop_seconds=job.hop_seconds,
        max_windows=cap,
        sampler=sample_keyframes if job.sampling == "keyframe" else sample_frames,
    )
    return Extracted(
        job.index,
        job.name,
        True,
        starts=np.array([w.start_s for w in cw.windows], dtype=np.float64),
        audio=cw.audio,
        faces=cw.faces,
        face_found=cw.face_found,
        has_audio=cw.has_audio,
        has_video=cw.has_video,
        duration_s=cw.duration_s,
        notes=clip_notes(cw, capped=job.max_windows is None and cw.planned > cap),
    )


def extract_job(job: ExtractJob) -> Extracted:
    """Decode and crop one video (or image); never raises for a bad input (returns
    ok=False)."""
    t0 = time.perf_counter()
    try:
        x = _image_arrays(job) if job.kind == INPUT_IMAGE else _video_arrays(job)
    except MediaError as exc:
        from monitor.media.decode import media_error_reason

        logger.info("%s: cannot score: %s", job.name, exc)
        return Extracted(
            job.index,
            job.name,
            False,
            media_error_reason(exc),
            str(exc),
            seconds=time.perf_counter() - t0,
        )
    except Exception as exc:  # a decoder or cropper bug on one file must not stop the run
        logger.warning("%s: unexpected %s while decoding: %s", job.name, type(exc).__name__, exc)
        return Extracted(
            job.index,
            job.name,
            False,
            type(exc).__name__,
            f"{job.path}: unexpected {type(exc).__name__}: {exc}",
            seconds=time.perf_counter() - t0,
        )
    for kind, detail in x.notes:
        logger.info("%s: %s: %s", job.name, kind, detail)
    return replace(x, seconds=time.perf_counter() - t0)


def _die_with_parent(parent: int) -> None:
    """Have Linux kill this worker when its parent dies (kill -9, OOM): no orphans."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: orphans exit at their next task read
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _init_worker(parent: int) -> None:
    _die_with_parent(parent)
    # Ctrl-C goes to the whole process group: the parent handles it and stops the pool,
    # workers must not die mid-video printing tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import cv2

    cv2.setNumThreads(1)  # one worker per core already; OpenCV's own pool would oversubscribe
    # Pay imports and the face cascade load at pool start, not on each worker's first video.
    import monitor.media.clip  # noqa: F401  (PyAV, OpenCV, the cropper)
    from monitor.media.faces import load_cascade

    load_cascade()


def check_sampling(mode: str) -> str:
    if mode not in SAMPLING_MODES:
        raise ConfigError(f"--sampling {mode!r}: choose from {', '.join(SAMPLING_MODES)}")
    return mode


def iter_extracted(
    jobs: Sequence[ExtractJob],
    workers: int,
    run: Callable[[ExtractJob], Extracted] = extract_job,
) -> Generator[Extracted, None, None]:
    """Extract every job, yielding results as they finish (not in job order).

    workers=0 runs in this process (debugging, tests); otherwise a pool of `workers`
    spawned processes with at most PREFETCH_PER_WORKER videos in flight each. When a
    worker process dies, the videos in flight are retried one at a time in a fresh pool,
    so a video that kills its decoder is identified and reported, and the others are
    scored. Closing the iterator (Ctrl-C, an error downstream) cancels what has not
    started.
    """
    if workers <= 0:
        for job in jobs:
            yield run(job)
        return
    queue = list(reversed(jobs))  # pop() from the end = job order
    isolated: set[int] = set()  # indices in flight at a crash: rerun alone
    limit = workers * PREFETCH_PER_WORKER
    ctx = multiprocessing.get_context(POOL_START_METHOD)
    while queue:
        pool = concurrent.futures.ProcessPoolExecutor(
            workers, ctx, initializer=_init_worker, initargs=(os.getpid(),)
        )
        inflight: dict[concurrent.futures.Future[Extracted], ExtractJob] = {}
        try:
            while queue or inflight:
                while queue and len(inflight) < limit:
                    if any(j.index in isolated for j in inflight.values()):
                        break
                    if queue[-1].index in isolated and inflight:
                        break
                    job = queue.pop()
                    inflight[pool.submit(run, job)] = job
                done, _ = concurrent.futures.wait(
                    inflight, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for fut in done:
                    result = fut.result()  # BrokenProcessPool here: the job stays in flight
                    del inflight[fut]
                    yield result
        except BrokenProcessPool:
            lost = sorted(inflight.values(), key=lambda j: j.index)
            if len(lost) == 1 and lost[0].index in isolated:
                job = lost[0]
                logger.warning("%s: the decoder process died on this video", job.name)
                yield Extracted(
                    job.index,
                    job.name,
                    False,
                    WORKER_CRASH_REASON,
                    "the decoder process died while decoding this video",
                )
            else:
                logger.warning(
                    "a decoder process died; retrying its %d videos one at a time", len(lost)
                )
                isolated.update(j.index for j in lost)
                queue.extend(reversed(lost))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
