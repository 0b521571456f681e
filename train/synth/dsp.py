"""Small vectorised DSP helpers for the synthesiser and the audio fakes (numpy only).

The STFT uses a periodic Hann window with a hop of a quarter window, for which plain
overlap-add of windowed frames reconstructs the signal up to a constant; `istft` divides
that constant out, so `istft(stft(x)) == x` away from the edges.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

OVERLAP = 4  # frames overlapping each sample: hop = n_fft // OVERLAP


def _window(n_fft: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def stft(x: np.ndarray, n_fft: int) -> np.ndarray:
    """Complex STFT [frames, n_fft // 2 + 1] of a mono signal, hop n_fft / 4.

    The signal is padded so that every sample lies under OVERLAP frames.
    """
    hop = n_fft // OVERLAP
    pad = n_fft - hop
    n_frames = int(np.ceil((pad + x.size) / hop))
    padded = np.zeros(pad + n_frames * hop + n_fft, np.float32)
    padded[pad : pad + x.size] = x
    frames = sliding_window_view(padded, n_fft)[: n_frames * hop : hop]
    return np.fft.rfft(frames * _window(n_fft), axis=1).astype(np.complex64)


def istft(spec: np.ndarray, n_fft: int, length: int) -> np.ndarray:
    """Inverse of `stft`: windowed overlap-add, trimmed to `length` samples."""
    hop = n_fft // OVERLAP
    frames = np.fft.irfft(spec, n=n_fft, axis=1).astype(np.float32) * _window(n_fft)
    n_frames = frames.shape[0]
    out = np.zeros((n_frames + OVERLAP) * hop, np.float32)
    chunks = frames.reshape(n_frames, OVERLAP, hop)
    for j in range(OVERLAP):
        out[j * hop : (j + n_frames) * hop] += chunks[:, j, :].reshape(-1)
    gain = float(np.sum(_window(n_fft) ** 2)) / hop  # constant OLA gain of window**2
    pad = n_fft - hop
    return out[pad : pad + length] / gain


def frame_times(n_frames: int, n_fft: int, rate: int) -> np.ndarray:
    """Centre time (seconds) of each STFT frame."""
    hop = n_fft // OVERLAP
    return (np.arange(n_frames) * hop + n_fft / 2 - (n_fft - hop)) / rate


def resonator_response(
    freqs_hz: np.ndarray, bandwidths_hz: np.ndarray, bins_hz: np.ndarray, rate: int
) -> np.ndarray:
    """Complex response [T, F] of a cascade of 2-pole resonators (unit gain at 0 Hz).

    freqs_hz: [T, K] resonance frequencies per frame; bandwidths_hz: [K].
    """
    r = np.exp(-np.pi * bandwidths_hz / rate).astype(np.float32)[None, :]  # [1, K]
    theta = (2.0 * np.pi / rate) * freqs_hz.astype(np.float32)  # [T, K]
    a1, a2 = (-2.0 * r * np.cos(theta)).astype(np.float32), np.broadcast_to(r * r, theta.shape)
    z1 = np.exp(-1j * 2.0 * np.pi * bins_hz / rate).astype(np.complex64)  # [F]
    z2 = z1 * z1
    h = np.ones((freqs_hz.shape[0], bins_hz.size), np.complex64)
    for k in range(freqs_hz.shape[1]):
        b0 = (1.0 + a1[:, k] + a2[:, k])[:, None]
        h *= b0 / (1.0 + a1[:, k, None] * z1[None, :] + a2[:, k, None] * z2[None, :])
    return h


def interp_frames(track: np.ndarray, track_rate: float, times_s: np.ndarray) -> np.ndarray:
    """Sample a control track (first axis = time at `track_rate` Hz) at `times_s`."""
    grid = np.arange(track.shape[0]) / track_rate
    if track.ndim == 1:
        return np.interp(times_s, grid, track).astype(np.float32)
    cols = [np.interp(times_s, grid, track[:, k]) for k in range(track.shape[1])]
    return np.stack(cols, axis=1).astype(np.float32)


def rms_db(x: np.ndarray) -> float:
    """RMS level in dBFS (full scale = 1.0)."""
    return float(20.0 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12))
