"""The room and the microphone channel: reverb, background noise, stereo, bandwidth, level.

Applied identically to real and fake speech (the fakes manipulate the dry voice before
it reaches the room), so room noise, reverberation, bandwidth and loudness follow one
distribution for both classes and cannot give the label away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from train.synth.speech import AUDIO_RATE

FULL_BAND_HZ = AUDIO_RATE // 2  # no channel low-pass
BANDWIDTHS_HZ = (FULL_BAND_HZ, FULL_BAND_HZ, 11_025, 8_000, 7_000)  # sampled uniformly
TARGET_RMS_DB = (-32.0, -20.0)  # dBFS of the final stereo mix
PEAK_LIMIT = 0.98  # hard ceiling after levelling


@dataclass(frozen=True)
class Room:
    """Acoustics and capture chain of one call."""

    rt60_s: float  # reverberation time
    reverb_gain: float  # reverberant energy relative to the direct sound
    noise_db: float  # background noise level relative to the speech, dB
    noise_tilt: float  # 0 = white, 1 = brown-ish background
    hum_hz: float  # mains hum fundamental (0 = none)
    hum_db: float  # hum level relative to the speech, dB
    bandwidth_hz: int  # channel low-pass cut-off (FULL_BAND_HZ = none)
    highpass_hz: float  # microphone/codec high-pass
    stereo_width: float  # 0 = dual mono, 1 = independent channel reverbs and noise
    target_rms_db: float  # final level of the mix, dBFS


def sample_room(rng: np.random.Generator) -> Room:
    return Room(
        rt60_s=float(rng.uniform(0.12, 0.6)),
        reverb_gain=float(rng.uniform(0.05, 0.4)),
        noise_db=float(rng.uniform(-45.0, -18.0)),
        noise_tilt=float(rng.uniform(0.0, 1.0)),
        hum_hz=float(rng.choice([0.0, 0.0, 50.0, 60.0])),
        hum_db=float(rng.uniform(-50.0, -35.0)),
        bandwidth_hz=int(rng.choice(BANDWIDTHS_HZ)),
        highpass_hz=float(rng.uniform(50.0, 120.0)),
        stereo_width=float(rng.uniform(0.0, 0.8)),
        target_rms_db=float(rng.uniform(*TARGET_RMS_DB)),
    )


def _impulse_response(room: Room, rng: np.random.Generator) -> np.ndarray:
    """Exponentially decaying noise tail, darker as it decays (air absorption)."""
    n = int(room.rt60_s * 1.2 * AUDIO_RATE)
    t = np.arange(n) / AUDIO_RATE
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / room.rt60_s)
    tail = signal.lfilter([0.4], [1.0, -0.6], tail)
    tail[: int(0.003 * AUDIO_RATE)] = 0.0  # reverb starts after the direct sound
    return (tail / np.sqrt(np.sum(tail**2))).astype(np.float32)


def _background(room: Room, n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    dark = signal.lfilter([1.0], [1.0, -0.97], white) * 0.15
    noise = (1.0 - room.noise_tilt) * white + room.noise_tilt * dark
    return noise / (np.std(noise) + 1e-12)


def _hum(room: Room, n: int) -> np.ndarray:
    t = np.arange(n) / AUDIO_RATE
    wave = sum(np.sin(2 * np.pi * room.hum_hz * k * t) / k for k in (1, 2, 3))
    return np.asarray(wave) / np.sqrt(np.mean(np.square(wave)))


def apply_room(dry: np.ndarray, speech_rms: float, room: Room, seed: int) -> np.ndarray:
    """Dry mono speech -> stereo float32 [2, n] as a microphone in `room` records it.

    `speech_rms` is the RMS of the speech that the noise level refers to; pass the real
    clip's value for its fake too, so the noise floor does not depend on the manipulation.
    """
    rng = np.random.default_rng(seed)
    n = dry.size
    channels = []
    irs = [_impulse_response(room, rng) for _ in range(2)]
    common_bg = _background(room, n, rng)
    hum = _hum(room, n) if room.hum_hz > 0 else np.zeros(n)
    noise_amp = speech_rms * 10.0 ** (room.noise_db / 20.0)
    hum_amp = speech_rms * 10.0 ** (room.hum_db / 20.0)
    for c in range(2):
        # Dual mono at width 0; independent reverbs and noises at width 1.
        ir = (1.0 - room.stereo_width) * irs[0] + room.stereo_width * irs[c]
        wet = signal.fftconvolve(dry, ir)[:n] * np.sqrt(room.reverb_gain)
        own_bg = _background(room, n, rng) if room.stereo_width > 0 else common_bg
        bg = np.sqrt(1.0 - room.stereo_width) * common_bg + np.sqrt(room.stereo_width) * own_bg
        channels.append(dry + wet + noise_amp * bg + hum_amp * hum)
    out = np.stack(channels)
    sos = signal.butter(2, room.highpass_hz, "highpass", fs=AUDIO_RATE, output="sos")
    out = signal.sosfilt(sos, out, axis=1)
    if room.bandwidth_hz < FULL_BAND_HZ:
        sos = signal.butter(8, room.bandwidth_hz, "lowpass", fs=AUDIO_RATE, output="sos")
        out = signal.sosfilt(sos, out, axis=1)
    return out.astype(np.float32)


def level(stereo: np.ndarray, target_rms_db: float) -> np.ndarray:
    """Scale to `target_rms_db` dBFS RMS (both channels together), then limit peaks."""
    rms = float(np.sqrt(np.mean(np.square(stereo, dtype=np.float64))))
    gain = 10.0 ** (target_rms_db / 20.0) / max(rms, 1e-9)
    return np.clip(stereo * gain, -PEAK_LIMIT, PEAK_LIMIT).astype(np.float32)
