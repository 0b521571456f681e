"""Audio manipulations applied to the dry voice: neural-vocoder-like re-synthesis and
voice conversion.

Both leave timing, pauses and loudness contour as they were (so the mouth still matches
and the clip's silences do not move) and leave forensic traces a detector can learn:

- `vocoder`: the voice goes through an 80-band mel spectrogram at a lower internal rate
  (band-limited), its magnitude is rebuilt by the filterbank's pseudo-inverse (harmonics
  smeared above ~1 kHz) and its phase by a few Griffin-Lim iterations from random phase
  (phasiness, smeared onsets);
- `voice_conversion`: pitch and formants moved to another identity's voice in the STFT
  domain (harmonics resampled, spectral envelope warped), with phase propagated from
  the shifted instantaneous frequencies (phase-vocoder artifacts).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import signal

from train.synth import dsp
from train.synth.speech import AUDIO_RATE, Voice

VOCODER_RATES = (16_000, 22_050, 24_000)  # Hz: internal rates of common TTS vocoders
VOCODER_FFT = 1024
MEL_BANDS = 80
GRIFFIN_LIM_ITERS = (2, 8)  # few iterations: audible phase artifacts remain
VC_FFT = 2048  # 46 ms at 44.1 kHz: resolves the harmonics of low voices
CEPSTRAL_LIFTER = 40  # quefrency bins kept for the spectral envelope (< one pitch period)


@dataclass(frozen=True)
class VocoderParams:
    rate: int  # internal sample rate, Hz
    iters: int  # Griffin-Lim iterations


def sample_vocoder(rng: np.random.Generator) -> VocoderParams:
    return VocoderParams(
        rate=int(rng.choice(VOCODER_RATES)), iters=int(rng.integers(*GRIFFIN_LIM_ITERS))
    )


@functools.lru_cache(maxsize=8)
def _mel_basis(n_fft: int, rate: int, n_mels: int) -> tuple[np.ndarray, np.ndarray]:
    """Triangular mel filterbank [n_mels, n_fft // 2 + 1] and its pseudo-inverse."""

    def mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    bins = np.fft.rfftfreq(n_fft, 1.0 / rate)
    edges = hz(np.linspace(mel(np.array(0.0)), mel(np.array(rate / 2.0)), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (bins[None, :] - lo) / (mid - lo)
    down = (hi - bins[None, :]) / (hi - mid)
    basis = np.clip(np.minimum(up, down), 0.0, None).astype(np.float32)
    return basis, np.linalg.pinv(basis).astype(np.float32)


def _resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    from math import gcd

    g = gcd(src, dst)
    return signal.resample_poly(x, dst // g, src // g).astype(np.float32)


def vocoder(dry: np.ndarray, params: VocoderParams, seed: int) -> np.ndarray:
    """Re-synthesise `dry` (mono, AUDIO_RATE) through a mel-spectrogram vocoder."""
    rng = np.random.default_rng(seed)
    low = _resample(dry, AUDIO_RATE, params.rate)
    spec = dsp.stft(low, VOCODER_FFT)
    basis, inverse = _mel_basis(VOCODER_FFT, params.rate, MEL_BANDS)
    mel = np.abs(spec) @ basis.T
    mag = np.clip(mel @ inverse.T, 0.0, None).astype(np.float32)
    phase = np.exp(2j * np.pi * rng.random(mag.shape)).astype(np.complex64)
    est = mag * phase
    for _ in range(params.iters):
        y = dsp.istft(est, VOCODER_FFT, low.size)
        rebuilt = dsp.stft(y, VOCODER_FFT)
        est = mag * np.exp(1j * np.angle(rebuilt)).astype(np.complex64)
    y = dsp.istft(est, VOCODER_FFT, low.size)
    out = _resample(y, params.rate, AUDIO_RATE)[: dry.size]
    if out.size < dry.size:
        out = np.pad(out, (0, dry.size - out.size))
    return out.astype(np.float32)


def _envelope(log_mag: np.ndarray) -> np.ndarray:
    """Cepstrally smoothed log-magnitude envelope, per frame."""
    cep = np.fft.irfft(log_mag, axis=1)
    cep[:, CEPSTRAL_LIFTER:-CEPSTRAL_LIFTER] = 0.0
    return np.fft.rfft(cep, axis=1).real[:, : log_mag.shape[1]].astype(np.float32)


def voice_conversion(dry: np.ndarray, source: Voice, target: Voice) -> np.ndarray:
    """Move `dry` from `source`'s pitch and formants to `target`'s."""
    pitch = target.f0_hz / source.f0_hz
    formant = target.formant_scale / source.formant_scale
    spec = dsp.stft(dry, VC_FFT)
    _n_frames, n_bins = spec.shape
    hop = VC_FFT // dsp.OVERLAP
    mag = np.abs(spec) + 1e-7
    log_env = _envelope(np.log(mag))
    fine = np.log(mag) - log_env
    # Instantaneous frequency (in bins) of every bin from the frame-to-frame phase advance.
    phase = np.angle(spec)
    k = np.arange(n_bins, dtype=np.float32)
    expected = 2.0 * np.pi * hop * k / VC_FFT
    dphi = np.diff(phase, axis=0, prepend=phase[:1]) - expected
    dphi = (dphi + np.pi) % (2.0 * np.pi) - np.pi
    inst_bins = k + dphi * VC_FFT / (2.0 * np.pi * hop)
    # Fine structure (harmonics) resampled by the pitch ratio, envelope by the formant ratio.
    src_fine = np.clip(k / pitch, 0, n_bins - 1)
    src_env = np.clip(k / formant, 0, n_bins - 1)
    lo, frac = np.floor(src_fine).astype(int), (src_fine - np.floor(src_fine))[None, :]
    hi = np.minimum(lo + 1, n_bins - 1)
    new_fine = fine[:, lo] * (1 - frac) + fine[:, hi] * frac
    e_lo, e_frac = np.floor(src_env).astype(int), (src_env - np.floor(src_env))[None, :]
    e_hi = np.minimum(e_lo + 1, n_bins - 1)
    new_env = log_env[:, e_lo] * (1 - e_frac) + log_env[:, e_hi] * e_frac
    new_mag = np.exp(new_fine + new_env)
    new_mag[:, k / pitch > n_bins - 1] = 0.0
    new_inst = inst_bins[:, np.rint(src_fine).astype(int)] * pitch
    new_phase = np.cumsum(2.0 * np.pi * hop * new_inst / VC_FFT, axis=0)
    out = dsp.istft((new_mag * np.exp(1j * new_phase)).astype(np.complex64), VC_FFT, dry.size)
    return out.astype(np.float32)
