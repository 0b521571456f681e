"""Delivery conditions of a real voice: what the way to the monitor does to it.

A telephone line, a low-bitrate stream (Opus, AAC), lost packets with concealment, a call
client's gain control and noise suppression. A real voice that arrives so is still real:
training applies them to every class alike (`augment.audio_delivery_prob`,
train/augment.py), and bench/delivery_voices.py scores real clips through each of them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import cv2
import numpy as np
from scipy import signal

from train.synth import dsp

AUDIO_CLIP = 1.0  # float audio full scale; augmented audio is clipped to +-this
SILENCE_RMS = 1e-4  # below this RMS a window is treated as silent (no SNR-relative noise)
# P(a window arrives through one delivery condition): `augment.audio_delivery_prob`, 0 (off)
# for a config without that field; DELIVERY_PROB is the value recommended for training.
DELIVERY_PROB = 0.3
TELEPHONE_BAND_HZ = (300.0, (3_200.0, 3_600.0))  # high-pass, low-pass range
TELEPHONE_RATE = 8_000
MU_LAW = 255.0  # G.711 mu-law companding constant
OPUS_KBPS = (6, 16)
AAC_KBPS = (16, 32)
PLC_FRAME_S = 0.02  # one packet of speech
PLC_LOSS = (0.02, 0.15)  # packet loss rate
PLC_BURST = 0.35  # P(the packet after a lost one is lost too)
PLC_FADE_S = 0.003  # cross-fade into and out of a concealed packet
PLC_DECAY = 0.6  # gain of each further concealed packet of a burst
AGC_TARGET_DBFS = (-26.0, -16.0)
AGC_MAX_GAIN_DB = 24.0
AGC_ATTACK_S = 0.01
AGC_RELEASE_S = (0.2, 0.8)
NS_FFT = 512  # 32 ms at 16 kHz
NS_OVERSUBTRACT = (1.0, 3.0)
NS_FLOOR = (0.03, 0.3)  # least gain of a suppressed bin
NS_NOISE_SNR_DB = (5.0, 25.0)  # background the suppressor removes (added half the time)


def _same_length(x: np.ndarray, n: int) -> np.ndarray:
    return x[:n] if x.size >= n else np.pad(x, (0, n - x.size))


def _resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    from math import gcd

    g = gcd(src, dst)
    return signal.resample_poly(x, dst // g, src // g).astype(np.float32)


def telephone(audio: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A telephone line: 300-3400 Hz (corner drawn), 8 kHz, G.711 mu-law, back to `rate`."""
    low, (hi_min, hi_max) = TELEPHONE_BAND_HZ
    band = [low, float(rng.uniform(hi_min, hi_max))]
    x = _resample(audio, rate, TELEPHONE_RATE)
    sos = signal.butter(6, band, "bandpass", fs=TELEPHONE_RATE, output="sos")
    x = np.clip(signal.sosfilt(sos, x), -1.0, 1.0)
    coded = np.sign(x) * np.log1p(MU_LAW * np.abs(x)) / np.log1p(MU_LAW)
    coded = np.round(coded * 127.0) / 127.0  # 8 bits a sample
    x = np.sign(coded) * np.expm1(np.abs(coded) * np.log1p(MU_LAW)) / MU_LAW
    return _same_length(_resample(x.astype(np.float32), TELEPHONE_RATE, rate), audio.size)


def _roundtrip(audio: np.ndarray, rate: int, codec: str, bitrate: int) -> np.ndarray:
    """Encode and decode with FFmpeg's `codec` (PyAV) at `rate`: the codec's delay kept."""
    import av

    enc = av.CodecContext.create(codec, "w")
    enc.sample_rate = rate  # type: ignore[attr-defined]
    enc.layout = "mono"  # type: ignore[attr-defined]
    enc.format = "s16" if codec == "libopus" else "fltp"  # type: ignore[attr-defined]
    enc.bit_rate = bitrate
    enc.open()
    size = int(enc.frame_size or 1024)  # type: ignore[attr-defined]
    x = np.pad(np.clip(audio, -1.0, 1.0), (0, (-audio.size) % size + size))
    packets = []
    for start in range(0, x.size, size):
        chunk = x[start : start + size][None, :]
        if codec == "libopus":
            pcm = np.round(chunk * 32767.0).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        else:
            frame = av.AudioFrame.from_ndarray(
                chunk.astype(np.float32), format="fltp", layout="mono"
            )
        frame.sample_rate, frame.pts = rate, start
        packets.extend(enc.encode(frame))  # type: ignore[attr-defined]
    packets.extend(enc.encode(None))  # type: ignore[attr-defined]
    dec = av.CodecContext.create(codec, "r")
    dec.sample_rate = rate  # type: ignore[attr-defined]
    dec.layout = "mono"  # type: ignore[attr-defined]
    parts, out_rate = [], rate
    for packet in packets:
        for f in dec.decode(packet):  # type: ignore[attr-defined]
            a = f.to_ndarray().reshape(-1)
            out_rate = int(f.sample_rate)  # libopus decodes at 48 kHz
            parts.append(a.astype(np.float32) / (32768.0 if a.dtype == np.int16 else 1.0))
    y = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return _resample(y, out_rate, rate)


@functools.cache
def _codec_delay(codec: str, rate: int) -> int:
    """The codec's delay in samples (priming, look-ahead), measured once on noise."""
    probe = np.random.default_rng(0).standard_normal(rate).astype(np.float32) * 0.1
    y = _roundtrip(probe, rate, codec, 32_000)
    corr = signal.correlate(y[: rate // 2 + 4096], probe[: rate // 2], "valid")
    return int(np.argmax(corr))


def _codec_roundtrip(audio: np.ndarray, rate: int, codec: str, bitrate: int) -> np.ndarray:
    """Encode and decode with `codec`, undelayed, same length."""
    y = _roundtrip(audio, rate, codec, bitrate)
    return _same_length(y[_codec_delay(codec, rate) :], audio.size)


def opus(audio: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A low-bitrate Opus stream (6-16 kbit/s), as WebRTC calls send."""
    kbps = int(rng.integers(OPUS_KBPS[0], OPUS_KBPS[1] + 1))
    return _codec_roundtrip(audio, rate, "libopus", kbps * 1000)


def aac(audio: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A low-bitrate AAC stream (16-32 kbit/s), as a streaming encoder sends."""
    kbps = int(rng.integers(AAC_KBPS[0], AAC_KBPS[1] + 1))
    return _codec_roundtrip(audio, rate, "aac", kbps * 1000)


def packet_loss(audio: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Lost 20 ms packets (bursty), concealed as a VoIP receiver does: the last good packet
    repeated, cross-faded in and out, fading over a burst."""
    hop = round(PLC_FRAME_S * rate)
    n = audio.size // hop
    loss = float(rng.uniform(*PLC_LOSS))
    lost = np.zeros(n, bool)
    for i in range(1, n):
        p = PLC_BURST if lost[i - 1] else loss
        lost[i] = rng.random() < p
    out = audio.copy()
    fade = max(1, round(PLC_FADE_S * rate))
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    for i in np.flatnonzero(lost).tolist():
        start = i * hop
        gain = PLC_DECAY if lost[i - 1] else 1.0  # a burst fades packet by packet
        patch = out[start - hop : start] * np.float32(gain)  # the last played packet
        seg = out[start : start + hop]
        seg[:] = patch
        seg[:fade] = ramp * patch[:fade] + (1.0 - ramp) * out[start - 1]
        after = start + hop
        if after + fade <= out.size and (i + 1 >= n or not lost[i + 1]):
            out[after : after + fade] = (1.0 - ramp) * seg[-1] + ramp * out[after : after + fade]
    return out


def agc(audio: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Automatic gain control: a gain that follows the level (fast attack, slow release)
    towards a target, so quiet stretches and the noise between words are pulled up."""
    target = 10.0 ** (float(rng.uniform(*AGC_TARGET_DBFS)) / 20.0)
    attack = np.exp(-1.0 / (AGC_ATTACK_S * rate))
    release = np.exp(-1.0 / (float(rng.uniform(*AGC_RELEASE_S)) * rate))
    hop = rate // 200  # 5 ms control blocks
    n = audio.size // hop + 1
    rms = np.sqrt(
        np.mean(np.square(np.pad(audio, (0, n * hop - audio.size)).reshape(n, hop)), axis=1)
    )
    level = np.empty(n, np.float64)
    env = float(rms[0])
    a_block, r_block = attack**hop, release**hop
    for i, r in enumerate(rms):
        coef = a_block if r > env else r_block
        env = coef * env + (1.0 - coef) * float(r)
        level[i] = env
    max_gain = 10.0 ** (AGC_MAX_GAIN_DB / 20.0)
    gain = np.clip(target / np.maximum(level, 1e-6), 1.0 / max_gain, max_gain)
    per_sample = np.interp(np.arange(audio.size), (np.arange(n) + 0.5) * hop, gain)
    return np.clip(audio * per_sample.astype(np.float32), -AUDIO_CLIP, AUDIO_CLIP)


def noise_suppression(audio: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A call client's noise suppressor: the background (half the time added first) is
    estimated per frequency and gated out of the voice, leaving its musical-noise and
    muffled-consonant traces on a real voice."""
    x = audio
    if rng.random() < 0.5:
        x = audio_noise(x, float(rng.uniform(*NS_NOISE_SNR_DB)), rng)
    spec = dsp.stft(x, NS_FFT)
    power = np.square(np.abs(spec))
    noise = np.percentile(power, 10, axis=0)[None, :] + 1e-12
    over = float(rng.uniform(*NS_OVERSUBTRACT))
    floor = float(rng.uniform(*NS_FLOOR))
    gain = np.clip(1.0 - over * noise / (power + 1e-12), floor, 1.0)
    gain = cv2.blur(gain.astype(np.float32), (3, 3))  # frames are rows: smooth both ways
    out = dsp.istft((spec * gain).astype(np.complex64), NS_FFT, x.size)
    return np.clip(out, -AUDIO_CLIP, AUDIO_CLIP).astype(np.float32)


DeliveryFn = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
DELIVERY: dict[str, DeliveryFn] = {
    "telephone": telephone,
    "opus": opus,
    "aac": aac,
    "packet_loss": packet_loss,
    "agc": agc,
    "noise_suppression": noise_suppression,
}


def delivery(
    audio: np.ndarray, rate: int, rng: np.random.Generator, condition: str | None = None
) -> np.ndarray:
    """`audio` as it arrives through one delivery condition (drawn when None), same length
    and dtype."""
    name = condition or list(DELIVERY)[int(rng.integers(len(DELIVERY)))]
    out = DELIVERY[name](audio.astype(np.float32, copy=False), rate, rng)
    return np.asarray(out, dtype=np.float32)


def rms(x: np.ndarray) -> float:
    """Root mean square of a signal, in float64."""
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def audio_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white noise `snr_db` below the window's RMS level (nothing for a silent window)."""
    level = rms(audio)
    if level < SILENCE_RMS:
        return audio
    std = level / (10.0 ** (snr_db / 20.0))
    noisy = audio + rng.normal(0.0, std, size=audio.shape).astype(np.float32)
    return np.clip(noisy, -AUDIO_CLIP, AUDIO_CLIP)
