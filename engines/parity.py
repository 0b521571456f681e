"""Inputs for numeric parity checks, and the comparison itself.

Export compares the exported file with the torch model on two kinds of input:

- random: uniform pixels and noise at several loudness levels, plus the extremes that
  stress a log-mel front end (digital silence, full-scale clipping, black and white crops);
- natural: a real photograph through the monitor's own face cropper (scikit-image's
  astronaut, shifted and re-lit) and a voiced, formant-filtered synthetic utterance, or the
  windows of real media clips when paths are given.

Needs numpy (and opencv/scikit-image/scipy for natural inputs); no torch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitor.backend import Scores
from monitor.contract import InputContract

logger = logging.getLogger(__name__)

HEADS = ("fused", "audio", "visual", "sync")  # output order

PARITY_SEED = 20240  # fixed, so every export is checked on the same inputs
DEFAULT_PARITY_WINDOWS = 8  # windows per input set
F0_HZ = 125.0  # fundamental of the synthetic voice
FORMANTS_HZ = ((700.0, 130.0), (1220.0, 70.0), (2600.0, 160.0))  # (centre, bandwidth) of /a/
SYLLABLE_HZ = 4.0  # syllable rate of the amplitude envelope
NOISE_FLOOR = 1e-3  # additive noise, full scale = 1

Batch = tuple[np.ndarray, np.ndarray]  # (audio float32 [B, S], faces uint8 [B, K, H, W, 3])
ScoreFn = Callable[[np.ndarray, np.ndarray], Scores]


def random_inputs(
    contract: InputContract, n: int = DEFAULT_PARITY_WINDOWS, seed: int = PARITY_SEED
) -> Batch:
    """Noise at log-spaced levels; the first rows are silence, clipping, black and white."""
    rng = np.random.default_rng(seed)
    s, shape = contract.window_samples, contract.faces_shape
    levels = np.logspace(-4, 0, n).astype(np.float32)[:, None]
    audio = np.clip(rng.standard_normal((n, s)).astype(np.float32) * levels, -1.0, 1.0)
    faces = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    audio[0] = 0.0  # digital silence: the power floor and top-dB clamp decide everything
    faces[0] = 0
    if n > 1:
        audio[1] = np.sign(rng.standard_normal(s)).astype(np.float32)  # full-scale square noise
        faces[1] = 255
    return audio, faces


def synthetic_voice(contract: InputContract, n: int, seed: int = PARITY_SEED) -> np.ndarray:
    """Voiced /a/ with vibrato and syllable envelope, n windows of it (float32 [n, S])."""
    rng = np.random.default_rng(seed)
    sr, s = contract.sample_rate, contract.window_samples
    t = np.arange(n * s) / sr
    f0 = F0_HZ * (1.0 + 0.05 * np.sin(2 * np.pi * 5.0 * t))
    phase = np.cumsum(f0 / sr)
    pulses = (np.diff(np.floor(phase), prepend=0.0) > 0).astype(np.float64)
    # Formants as two-pole resonators applied in the frequency domain (numpy only: scipy's
    # import alone costs seconds on a small machine).
    z = np.exp(-1j * 2 * np.pi * np.fft.rfftfreq(t.size, 1.0 / sr))
    response = np.ones_like(z)
    for fc, bw in FORMANTS_HZ:
        r, theta = np.exp(-np.pi * bw / sr), 2 * np.pi * fc / sr
        response *= (1.0 - r) / (1.0 - 2 * r * np.cos(theta) * z + r * r * z * z)
    voice = np.fft.irfft(np.fft.rfft(pulses) * response, n=t.size)
    envelope = 0.5 * (1 - np.cos(2 * np.pi * SYLLABLE_HZ * t)) ** 2
    voice = voice * envelope
    voice = 0.5 * voice / (np.max(np.abs(voice)) + 1e-9) + NOISE_FLOOR * rng.standard_normal(t.size)
    return np.clip(voice, -1.0, 1.0).astype(np.float32).reshape(n, s)


def photo_faces(contract: InputContract, n: int) -> np.ndarray:
    """Crops of a real photograph made by the monitor's face cropper (uint8 [n, K, H, W, 3])."""
    from skimage import data

    from monitor.media.faces import FaceCropper

    photo = np.ascontiguousarray(data.astronaut())
    h, w = photo.shape[:2]
    out = np.zeros((n, *contract.faces_shape), dtype=np.uint8)
    cropper = FaceCropper.from_contract(contract)  # one track over all frames, as on a stream
    for i in range(n):
        for k in range(contract.k_crops):
            dx, dy = (i * 7 + k * 3) % 24, (i * 5 + k * 2) % 16  # a head moving a little
            gain = 0.7 + 0.6 * ((i + k) % 5) / 4  # exposure changes
            frame = np.zeros_like(photo)
            frame[dy:, dx:] = photo[: h - dy, : w - dx]
            frame = np.clip(frame.astype(np.float32) * gain, 0, 255).astype(np.uint8)
            out[i, k] = cropper.crop(frame).image
    return out


def natural_inputs(contract: InputContract, n: int = DEFAULT_PARITY_WINDOWS) -> Batch:
    return synthetic_voice(contract, n), photo_faces(contract, n)


def clip_inputs(
    paths: Sequence[str | Path], contract: InputContract, max_windows: int = DEFAULT_PARITY_WINDOWS
) -> Batch:
    """Windows of real media files, cut exactly as offline scoring cuts them."""
    from monitor.media.clip import extract_windows

    audio, faces = [], []
    for p in paths:
        cw = extract_windows(p, contract, max_windows=max_windows)
        audio.append(cw.audio)
        faces.append(cw.faces)
    return np.concatenate(audio), np.concatenate(faces)


@dataclass(frozen=True)
class Comparison:
    """Largest absolute probability difference of one input set, per head."""

    name: str
    windows: int
    max_abs_diff: float
    per_output: tuple[float, ...]  # fused, audio, visual (and sync when both have it)


def compare(
    name: str,
    reference: ScoreFn,
    candidate: ScoreFn,
    batch: Batch,
    chunk: int = DEFAULT_PARITY_WINDOWS,
) -> Comparison:
    """Run both scorers on the same windows (in chunks) and compare their probabilities."""
    audio, faces = batch
    worst: list[float] = []
    for a in range(0, len(audio), chunk):
        ref = reference(audio[a : a + chunk], faces[a : a + chunk])
        got = candidate(audio[a : a + chunk], faces[a : a + chunk])
        pairs = [(ref.fused, got.fused), (ref.audio, got.audio), (ref.visual, got.visual)]
        if ref.sync is not None and got.sync is not None:
            pairs.append((ref.sync, got.sync))
        worst += [0.0] * (len(pairs) - len(worst))
        for i, (r, g) in enumerate(pairs):
            diff = float(np.max(np.abs(r.astype(np.float64) - g.astype(np.float64))))
            worst[i] = max(worst[i], diff) if np.isfinite(diff) else np.inf
    c = Comparison(name, len(audio), max(worst), tuple(worst))
    logger.info(
        "parity on %s (%d windows): max |diff| %.3g (%s)",
        name,
        c.windows,
        c.max_abs_diff,
        ", ".join(f"{h} {d:.3g}" for h, d in zip(HEADS, worst, strict=False)),
    )
    return c
