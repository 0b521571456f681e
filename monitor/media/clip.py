"""Whole-clip window extraction: the one path from a media file to model inputs.

Training caches, offline scoring and file sources in tests all call `extract_windows`, so
the detector sees identical audio windows and face crops wherever it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitor.contract import InputContract
from monitor.errors import NotMediaError
from monitor.media.decode import Frame, load_audio, probe, sample_frames
from monitor.media.faces import FaceCropper
from monitor.windows import WindowSpec, cut_audio, plan_windows

logger = logging.getLogger(__name__)

FrameSampler = Callable[[str, Sequence[float]], list[Frame]]  # (path, sorted times) -> frames


@dataclass
class ClipWindows:
    """Model inputs for every window of one clip."""

    path: str
    duration_s: float
    windows: list[WindowSpec]
    audio: np.ndarray  # float32 [N, window_samples]
    faces: np.ndarray  # uint8 [N, K, S, S, 3]
    face_found: np.ndarray  # bool [N, K]: a face was detected or tracked (not a fallback)
    has_audio: bool
    has_video: bool
    audio_s: float = 0.0  # seconds of audio decoded (0 without an audio stream)
    video_s: float = 0.0  # the video track's declared length, s (0: not declared)
    planned: int = 0  # windows covering the clip, before `max_windows` kept some of them

    def __len__(self) -> int:
        return len(self.windows)


def extract_windows(
    path: str | Path,
    contract: InputContract,
    *,
    hop_seconds: float | None = None,
    max_windows: int | None = None,
    cropper: FaceCropper | None = None,
    sampler: FrameSampler = sample_frames,
) -> ClipWindows:
    """Decode a clip once and cut it into the contract's windows.

    A clip without audio gets silent windows and a clip without video gets blank crops
    (both recorded in the result, so callers can count and report the fallback); a file
    with neither raises NotMediaError. Tracks of different lengths are scored as they are:
    windows cover the longer one, audio past its end is silence and frames past the end
    of the video repeat its last frame (`audio_s` and `video_s` let callers note it).
    `sampler` picks the frames for the crop times: exact frames (as in training) or e.g.
    `media.sample_keyframes` for fast offline scoring.
    """
    src = str(path)
    info = probe(src)
    if not info.has_audio and not info.has_video:
        raise NotMediaError(src, "no audio or video stream")
    if info.has_audio:
        audio = load_audio(src, contract.sample_rate)
    else:
        logger.info("%s: no audio stream, scoring silent audio windows", src)
        audio = np.zeros(0, dtype=np.float32)
    audio_s = audio.shape[0] / contract.sample_rate
    duration = max(info.duration_s, audio_s)
    windows = plan_windows(duration, contract, hop_seconds)
    planned = len(windows)
    if max_windows is not None and len(windows) > max_windows:
        # Keep windows spread over the whole clip rather than just its start.
        keep = np.linspace(0, len(windows) - 1, max_windows).round().astype(int)
        windows = [windows[i] for i in sorted(set(keep.tolist()))]
    n, k, s = len(windows), contract.k_crops, contract.crop_size
    audio_w = np.stack([cut_audio(audio, w.start_s, contract) for w in windows])
    faces = np.zeros((n, k, s, s, 3), dtype=np.uint8)
    found = np.zeros((n, k), dtype=bool)
    if info.has_video:
        # Overlapping windows share frame times: decode and crop each distinct time once,
        # in time order, so the cropper's tracker only ever moves forward.
        wanted = [round(t, 6) for w in windows for t in w.frame_times]
        unique = sorted(set(wanted))
        frames = sampler(src, unique)
        cropper = cropper or FaceCropper.from_contract(contract)
        # A keyframe sampler maps several times to one frame: crop each frame once.
        by_frame: dict[float, tuple[np.ndarray, bool]] = {}
        by_time: dict[float, tuple[np.ndarray, bool]] = {}
        for t, frame in zip(unique, frames, strict=True):
            if frame.t not in by_frame:
                res = cropper.crop(frame.image)
                by_frame[frame.t] = (res.image, res.found)
            by_time[t] = by_frame[frame.t]
        for j, t in enumerate(wanted):
            faces[j // k, j % k], found[j // k, j % k] = by_time[t]
    else:
        logger.info("%s: no video stream, scoring blank face crops", src)
    return ClipWindows(
        path=src,
        duration_s=duration,
        windows=windows,
        audio=audio_w,
        faces=faces,
        face_found=found,
        has_audio=info.has_audio,
        has_video=info.has_video,
        audio_s=audio_s,
        video_s=info.video_duration_s,
        planned=planned,
    )
