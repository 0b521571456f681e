"""Windows: which stretch of audio and which frame times make up one scored window.

The same plan is used by training, offline scoring and the live monitor: a window is
`window_seconds` of audio starting at `start_s`, plus `k_crops` frames taken at the
centres of K equal slices of the window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from monitor.contract import InputContract

MIN_TAIL_FRACTION = 0.5  # a last partial window is kept if it covers this much of a window


@dataclass(frozen=True)
class WindowSpec:
    """One window of a clip or stream, in seconds from the start of the media."""

    index: int  # 0-based position in the clip or stream
    start_s: float
    end_s: float
    frame_times: tuple[float, ...]  # K times at which a face crop is taken


def frame_times(start_s: float, contract: InputContract) -> tuple[float, ...]:
    """Centres of K equal slices of the window starting at start_s."""
    step = contract.window_seconds / contract.k_crops
    return tuple(start_s + (i + 0.5) * step for i in range(contract.k_crops))


def plan_windows(
    duration_s: float, contract: InputContract, hop_seconds: float | None = None
) -> list[WindowSpec]:
    """Windows covering a clip of `duration_s` seconds.

    Windows start every hop; a clip shorter than one window gets one (zero-padded) window,
    and a final partial window is added when the tail left uncovered is long enough to
    matter, so the end of a clip is always looked at.
    """
    hop = contract.hop_seconds if hop_seconds is None else hop_seconds
    if hop <= 0:
        raise ValueError(f"hop_seconds must be > 0, got {hop}")
    w = contract.window_seconds
    if duration_s <= w:
        starts = [0.0]
    else:
        n = math.floor((duration_s - w) / hop + 1e-9) + 1
        starts = [i * hop for i in range(n)]
        tail = duration_s - (starts[-1] + w)
        if tail >= MIN_TAIL_FRACTION * hop:
            starts.append(duration_s - w)
    return [
        WindowSpec(index=i, start_s=s, end_s=s + w, frame_times=frame_times(s, contract))
        for i, s in enumerate(starts)
    ]


def cut_audio(audio: np.ndarray, start_s: float, contract: InputContract) -> np.ndarray:
    """The window's samples from a mono clip, zero-padded past its end (float32)."""
    n = contract.window_samples
    a = max(0, round(start_s * contract.sample_rate))
    seg = audio[a : a + n]
    if seg.shape[0] == n:
        return np.ascontiguousarray(seg, dtype=np.float32)
    out = np.zeros(n, dtype=np.float32)
    out[: seg.shape[0]] = seg
    return out
