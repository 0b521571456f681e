"""Score every window of a labelled split once, with the variants calls need.

Each clip is cut into windows by the offline extractor (the window plan, audio conversion
and face cropper the live monitor uses) and scored with the model being calibrated.
Some real clips are also scored muted (audio zeroed) and with the camera off (black
crops, no face found): a real call has pauses and camera-off stretches that the monitor
must not call fake, and the model's answer on them is part of what is calibrated.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from monitor.backend import Backend
from monitor.offline.extraction import Extracted, ExtractJob, iter_extracted
from train.splits import ClipRecord

logger = logging.getLogger(__name__)

BATCH_WINDOWS = 32  # windows per backend call
VARIANT_SHARE = 0.35  # real clips also scored muted and camera-off (chosen by name hash)
N_HEADS = 4  # fused, audio, visual, sync (NaN when the model has no sync output)


@dataclass(frozen=True)
class ClipWindows:
    """One clip's window scores and what the state machine's gates look at."""

    name: str
    target: int  # 1 fake, 0 real
    family: str  # "real", or the fake's family: audio, face, both, sync ("fake": unknown)
    scores: np.ndarray  # float32 [N, 4]: fused, audio, visual, sync
    face_fraction: np.ndarray  # float32 [N]: share of the window's crops with a face
    rms: np.ndarray  # float32 [N]: audio RMS of the window
    has_audio: bool
    has_video: bool
    muted: np.ndarray | None = None  # [N, 4] scores with the audio zeroed (some reals)
    camera_off: np.ndarray | None = None  # [N, 4] scores with black crops (some reals)

    @property
    def n(self) -> int:
        return int(self.scores.shape[0])


def family_of(record: ClipRecord) -> str:
    if record.target == 0:
        return "real"
    return record.family if record.family in ("audio", "face", "both", "sync") else "fake"


def gets_variants(name: str, share: float = VARIANT_SHARE) -> bool:
    """A fixed pseudo-random share of clips, whatever the order they come in."""
    return int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share


def _score(backend: Backend, audio: np.ndarray, faces: np.ndarray) -> np.ndarray:
    out = np.full((audio.shape[0], N_HEADS), np.nan, dtype=np.float32)
    for a in range(0, audio.shape[0], BATCH_WINDOWS):
        b = min(a + BATCH_WINDOWS, audio.shape[0])
        s = backend.score(audio[a:b], faces[a:b])
        out[a:b, 0], out[a:b, 1], out[a:b, 2] = s.fused, s.audio, s.visual
        if s.sync is not None:
            out[a:b, 3] = s.sync
    return out


def _clip(x: Extracted, record: ClipRecord, backend: Backend) -> ClipWindows:
    assert x.audio is not None and x.faces is not None and x.face_found is not None
    audio = x.audio.astype(np.float32, copy=False)
    rms = np.sqrt(np.mean(np.square(audio, dtype=np.float64), axis=1)).astype(np.float32)
    face_fraction = x.face_found.mean(axis=1).astype(np.float32)
    scores = _score(backend, audio, x.faces)
    muted = camera_off = None
    if record.target == 0 and gets_variants(record.name):
        muted = _score(backend, np.zeros_like(audio), x.faces)
        camera_off = _score(backend, audio, np.zeros_like(x.faces))
    return ClipWindows(
        record.name,
        record.target,
        family_of(record),
        scores,
        face_fraction,
        rms,
        x.has_audio,
        x.has_video,
        muted,
        camera_off,
    )


def score_clips(
    records: list[ClipRecord], backend: Backend, workers: int, progress: bool = True
) -> Iterator[ClipWindows]:
    """Every clip's windows, scored; a clip that cannot be decoded is logged and skipped."""
    from tqdm import tqdm

    jobs = [ExtractJob(i, r.name, str(r.path), backend.contract) for i, r in enumerate(records)]
    failed = 0
    with tqdm(total=len(jobs), unit="clip", disable=not progress, desc="scoring") as bar:
        for x in iter_extracted(jobs, workers):
            bar.update(1)
            if not x.ok or x.n_windows == 0:
                failed += 1
                logger.warning("%s: skipped (%s) %s", x.name, x.reason or "no windows", x.detail)
                continue
            yield _clip(x, records[x.index], backend)
    if failed:
        logger.warning("%d of %d clips could not be used", failed, len(jobs))
