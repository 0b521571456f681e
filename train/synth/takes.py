"""One take of a voice for `synth --voices real`: from a voicing plan to its audio and mouth.

Every voice, real or fake, goes through one chain, so that nothing but the voice itself
tells the classes apart:

1. **Fill the speaking span.** Segments (a recorded prompt, a synthesised sentence) are
   trimmed to their speech, resampled to WORK_RATE and laid end to end from the scene's
   lead silence on, with pauses of PAUSE_S between them; the last one is cut, with a
   fade, where the scene's trailing silence begins. Duration, leading and trailing
   silence are therefore the scene's, whatever the source.
2. **The channel** (`voices.Channel`, drawn per scene, shared by its real and fake clip):
   wideband (16 kHz, low-passed at 6.0-7.2 kHz, G.722 round trip) or narrowband (8 kHz,
   300 Hz to 3.3-3.7 kHz, GSM 06.10 round trip), band-limited before and after the codec
   (whose quantisation noise fills its whole band) by an elliptic filter 70 dB down within
   ~15 % of its corner. Sample rate and bandwidth are the channel's, not the source's.
3. **Level**: the active speech (frames within TRIM_DB of the loudest) is set to
   ACTIVE_DBFS. Then the room, the microphone and the AAC encoder (room.py, encode.py)
   treat both clips alike, as in procedural mode.

The mouth follows the voice the clip plays (`mouth_utterance`): the speech envelope
(300-3000 Hz, 10 ms frames, in dB below the clip's loud frames) mapped to a jaw opening
and smoothed like the procedural jaw. A fake with a new voice gets a mouth that follows
its own voice, as a lip-synced deepfake has.
"""

from __future__ import annotations

import math
import subprocess
import tempfile
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import signal

from train.synth.speech import AUDIO_RATE, CONTROL_RATE, NOISE_KINDS, Utterance
from train.synth.voices import (
    SOUNDS_DIR,
    TEXTS,
    WIDE_RATE,
    Channel,
    TtsPlan,
    VoicePlan,
    prompt_files,
)

WORK_RATE = 16_000  # Hz: segments are assembled at this rate (no source is wider than 8 kHz)
MIN_SEGMENT_S = 0.25  # a trimmed segment shorter than this is skipped
TRIM_DB = 35.0  # a 10 ms frame is speech within this many dB of the loudest frame
TRIM_MARGIN_S = 0.02  # kept around the speech of each segment
PAUSE_S = (0.15, 0.6)  # pause between two segments
END_FADE_S = 0.03  # fade where the last segment is cut
ACTIVE_DBFS = -20.0  # level of the active speech after the channel
NARROW_HIGHPASS_HZ = 300.0
CHANNEL_ORDER = 8  # elliptic band limit of the channel
CHANNEL_STOP_DB = 70.0
G722_BITRATE = 64_000
GSM_FRAME = 160  # samples per GSM 06.10 frame
MOUTH_BAND_HZ = (300.0, 3_000.0)
MOUTH_RANGE_DB = 30.0  # envelope range mapped onto a closed..open mouth
MOUTH_SMOOTH_S = 0.04  # as the procedural jaw (speech.JAW_SMOOTH_S)
TTS_TIMEOUT_S = 120.0


def resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    if src == dst:
        return x.astype(np.float32, copy=False)
    g = math.gcd(src, dst)
    return signal.resample_poly(x, dst // g, src // g).astype(np.float32)


def load_recording(path: Path) -> tuple[np.ndarray, int]:
    """A prompt file (raw G.722 or GSM 06.10) as float32 mono and its rate."""
    import av

    fmt = "gsm" if path.suffix == ".gsm" else "g722"
    with av.open(str(path), format=fmt) as container:
        stream = container.streams.audio[0]
        rate = int(stream.rate)
        parts = [f.to_ndarray().reshape(-1) for f in container.decode(stream)]
    if not parts:
        return np.zeros(0, np.float32), rate
    x = np.concatenate(parts)
    scale = 32768.0 if x.dtype == np.int16 else 1.0
    return (x.astype(np.float32) / scale).astype(np.float32), rate


def _frame_db(x: np.ndarray, rate: int) -> np.ndarray:
    hop = rate // 100
    n = x.size // hop
    if n == 0:
        return np.zeros(0)
    energy = np.square(x[: n * hop].reshape(n, hop), dtype=np.float64).mean(axis=1)
    return np.asarray(10.0 * np.log10(energy + 1e-12))


def trim(x: np.ndarray, rate: int) -> np.ndarray:
    """The speech of a segment: from its first to its last frame within TRIM_DB of the
    loudest, with TRIM_MARGIN_S on each side."""
    db = _frame_db(x, rate)
    if db.size == 0:
        return x[:0]
    active = np.flatnonzero(db > db.max() - TRIM_DB)
    hop = rate // 100
    margin = round(TRIM_MARGIN_S * rate)
    start = max(0, int(active[0]) * hop - margin)
    stop = min(x.size, (int(active[-1]) + 1) * hop + margin)
    return x[start:stop]


def set_active_level(x: np.ndarray, rate: int, dbfs: float = ACTIVE_DBFS) -> np.ndarray:
    """Scale so that the active speech (frames within TRIM_DB of the loudest) is at `dbfs`."""
    db = _frame_db(x, rate)
    if db.size == 0 or db.max() < -100.0:
        return x.astype(np.float32)
    active = db[db > db.max() - TRIM_DB]
    level = 10.0 * np.log10(np.mean(10.0 ** (active / 10.0)))
    return (x * 10.0 ** ((dbfs - level) / 20.0)).astype(np.float32)


def fill_span(
    next_segment: Callable[[], np.ndarray],
    duration_s: float,
    start_s: float,
    end_s: float,
    rng: np.random.Generator,
    rate: int = WORK_RATE,
) -> np.ndarray:
    """`duration_s` of audio: segments from `start_s` on, pauses between them, the last cut
    (with a fade) at `end_s`, silence after it."""
    n = round(duration_s * rate)
    out = np.zeros(n, np.float32)
    t = round(start_s * rate)
    end = min(n, round(end_s * rate))
    fade = max(1, round(END_FADE_S * rate))
    tries = 0
    while t < end:
        seg = next_segment()
        tries += 1
        if seg.size < MIN_SEGMENT_S * rate:
            if tries > 200:
                raise RuntimeError("no usable speech segment")
            continue
        seg = seg / max(float(np.max(np.abs(seg))), 1e-6) * 0.5
        take = min(seg.size, end - t)
        piece = seg[:take].copy()
        if take < seg.size:  # cut at the end of the speaking span
            k = min(fade, take)
            piece[-k:] *= np.linspace(1.0, 0.0, k, dtype=np.float32)
        out[t : t + take] = piece
        t += take + round(rng.uniform(*PAUSE_S) * rate)
    return out


def _pcm16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def g722_roundtrip(x: np.ndarray) -> np.ndarray:
    """Encode and decode 16 kHz mono audio with G.722 (64 kbit/s), same length out."""
    import av

    enc = av.CodecContext.create("g722", "w")
    enc.sample_rate = WIDE_RATE
    enc.layout = "mono"
    enc.format = "s16"
    enc.bit_rate = G722_BITRATE
    frame = av.AudioFrame.from_ndarray(_pcm16(x)[None, :], format="s16", layout="mono")
    frame.sample_rate = WIDE_RATE
    packets = [*enc.encode(frame), *enc.encode(None)]
    dec = av.CodecContext.create("g722", "r")
    dec.sample_rate = WIDE_RATE
    dec.layout = "mono"
    parts = [f.to_ndarray().reshape(-1) for p in packets for f in dec.decode(p)]
    return _same_length(np.concatenate(parts).astype(np.float32) / 32768.0, x.size)


def gsm_roundtrip(x: np.ndarray) -> np.ndarray:
    """Encode and decode 8 kHz mono audio with GSM 06.10 (libgsm's toast), same length out."""
    pcm = _pcm16(x)
    pad = (-pcm.size) % GSM_FRAME
    raw = np.pad(pcm, (0, pad)).astype("<i2").tobytes()
    coded = subprocess.run(
        ["toast", "-l", "-c"], input=raw, capture_output=True, check=True, timeout=TTS_TIMEOUT_S
    ).stdout
    decoded = subprocess.run(
        ["untoast", "-l", "-c"], input=coded, capture_output=True, check=True, timeout=TTS_TIMEOUT_S
    ).stdout
    y = np.frombuffer(decoded, "<i2").astype(np.float32) / 32768.0
    return _same_length(y, x.size)


def _same_length(x: np.ndarray, n: int) -> np.ndarray:
    return x[:n] if x.size >= n else np.pad(x, (0, n - x.size))


def apply_channel(x: np.ndarray, channel: Channel, rate: int = AUDIO_RATE) -> np.ndarray:
    """A voice at `rate` through the call's channel, back at `rate`, at ACTIVE_DBFS."""
    low = resample(x, rate, channel.rate)
    # Elliptic: 70 dB down within ~15 % of the corner, so that a bright synthesizer keeps no
    # more treble above the corner than a recording that never had it.
    if channel.narrow:
        band = [NARROW_HIGHPASS_HZ, channel.cutoff_hz]
        sos = signal.ellip(
            CHANNEL_ORDER, 0.5, CHANNEL_STOP_DB, band, "bandpass", fs=channel.rate, output="sos"
        )
    else:
        sos = signal.ellip(
            CHANNEL_ORDER, 0.5, CHANNEL_STOP_DB, channel.cutoff_hz, fs=channel.rate, output="sos"
        )
    low = signal.sosfilt(sos, low).astype(np.float32)
    low = low * (0.5 / max(float(np.max(np.abs(low))), 1e-6))  # headroom for the codec
    coded = gsm_roundtrip(low) if channel.narrow else g722_roundtrip(low)
    coded = signal.sosfilt(sos, coded).astype(np.float32)  # the receiver's band limit
    back = _same_length(resample(coded, channel.rate, rate), x.size)
    return set_active_level(back, rate)


def mouth_track(x: np.ndarray, rate: int) -> np.ndarray:
    """Mouth opening 0..1 at CONTROL_RATE that follows the voice's envelope."""
    sos = signal.butter(2, MOUTH_BAND_HZ, "bandpass", fs=rate, output="sos")
    db = _frame_db(signal.sosfilt(sos, x).astype(np.float32), rate)
    if db.size == 0:
        return np.zeros(0, np.float32)
    top = float(np.percentile(db, 95)) if db.size else 0.0
    jaw = np.clip((db - (top - MOUTH_RANGE_DB)) / MOUTH_RANGE_DB, 0.0, 1.0)
    n = max(1, round(MOUTH_SMOOTH_S * CONTROL_RATE))
    kernel = np.hanning(n + 2)[1:-1]
    jaw = np.convolve(jaw, kernel / kernel.sum(), mode="same")
    return np.clip(jaw, 0.0, 1.0).astype(np.float32)


def mouth_utterance(x: np.ndarray, rate: int, start_s: float, end_s: float) -> Utterance:
    """An Utterance whose jaw follows `x` (its other tracks are unused and zero)."""
    jaw = mouth_track(x, rate)
    n = jaw.size
    return Utterance(
        n=n,
        pitch=np.zeros(n, np.float32),
        voiced=np.zeros(n, np.float32),
        vowel_formants=np.zeros((n, 3), np.float32),
        noise=np.zeros((len(NOISE_KINDS), n), np.float32),
        jaw=jaw,
        speech_start_s=start_s,
        speech_end_s=end_s,
    )


# ---- sources ---------------------------------------------------------------------------


def recorded_segments(speaker: str, language: str, seed: int) -> Callable[[], np.ndarray]:
    """Draws the speaker's prompts (random order, no repeat until all were used), trimmed,
    at WORK_RATE."""
    files = prompt_files(speaker, language)
    if not files:
        raise RuntimeError(f"no recordings of {speaker} ({language}) under {SOUNDS_DIR}")
    rng = np.random.default_rng(seed)
    order: list[int] = []

    def draw() -> np.ndarray:
        if not order:
            order.extend(int(i) for i in rng.permutation(len(files)))
        x, rate = load_recording(files[order.pop()])
        return trim(resample(x, rate, WORK_RATE), WORK_RATE)

    return draw


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
        data = w.readframes(w.getnframes())
    if width != 2:
        raise RuntimeError(f"{path.name}: {8 * width}-bit WAV, expected 16-bit")
    x = np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1)
    return x, rate


def tts_command(plan: TtsPlan, text_file: Path, out: Path) -> list[str]:
    """The command line that makes `plan`'s engine say the text in `text_file` into `out`."""
    if plan.engine == "espeak-ng":
        wpm = round(170 * plan.speed)
        return [
            "espeak-ng",
            "-v",
            f"{plan.language}+{plan.voice}",
            "-p",
            str(plan.pitch),
            "-s",
            str(wpm),
            "-f",
            str(text_file),
            "-w",
            str(out),
        ]
    if plan.engine == "flite":
        return [
            "flite",
            "-voice",
            plan.voice,
            "--setf",
            f"duration_stretch={1.0 / plan.speed:.3f}",
            "-f",
            str(text_file),
            "-o",
            str(out),
        ]
    if plan.engine == "festival":
        return [
            "text2wave",
            "-eval",
            f"(voice_{plan.voice})",
            "-eval",
            f"(Parameter.set 'Duration_Stretch {1.0 / plan.speed:.3f})",
            str(text_file),
            "-o",
            str(out),
        ]
    raise ValueError(f"unknown engine {plan.engine!r}")


def synthesize_text(plan: TtsPlan, text: str) -> tuple[np.ndarray, int]:
    """`text` spoken by the plan's synthesizer voice: float32 mono and its rate."""
    with tempfile.TemporaryDirectory(prefix="synth-tts-") as tmp:
        text_file, out = Path(tmp) / "text.txt", Path(tmp) / "out.wav"
        text_file.write_text(text + "\n", encoding="utf-8")
        cmd = tts_command(plan, text_file, out)
        done = subprocess.run(cmd, capture_output=True, timeout=TTS_TIMEOUT_S, check=False)
        if done.returncode != 0 or not out.is_file():
            err = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"{plan.label} failed (exit {done.returncode}): {err[0]}")
        return _read_wav(out)


def synthesized_segments(plan: TtsPlan) -> Callable[[], np.ndarray]:
    """Draws sentences in the plan's language (no repeat until all were used), spoken by
    its voice, trimmed, at WORK_RATE."""
    texts = TEXTS[plan.language]
    rng = np.random.default_rng(plan.seed)
    order: list[int] = []

    def draw() -> np.ndarray:
        if not order:
            order.extend(int(i) for i in rng.permutation(len(texts)))
        x, rate = synthesize_text(plan, texts[order.pop()])
        return trim(resample(x, rate, WORK_RATE), WORK_RATE)

    return draw


def _span(
    source: Callable[[], np.ndarray], duration_s: float, lead_s: float, trail_s: float, seed: int
) -> np.ndarray:
    """A speaking span filled from `source`, at AUDIO_RATE (before the channel)."""
    rng = np.random.default_rng(seed)
    work = fill_span(source, duration_s, lead_s, duration_s - trail_s, rng)
    out = resample(work, WORK_RATE, AUDIO_RATE)
    return _same_length(out, round(duration_s * AUDIO_RATE))


def _spoken(x: np.ndarray, duration_s: float, lead_s: float, trail_s: float) -> Utterance:
    return mouth_utterance(x, AUDIO_RATE, lead_s, duration_s - trail_s)


def real_take(
    plan: VoicePlan, duration_s: float, lead_s: float, trail_s: float, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray, Utterance]:
    """The real clip's voice: (before the channel, after it, its mouth). `seed` draws
    another take of the same speaker (other prompts, other pauses)."""
    s = plan.seed if seed is None else seed
    pre = _span(
        recorded_segments(plan.speaker, plan.language, s), duration_s, lead_s, trail_s, s + 1
    )
    dry = apply_channel(pre, plan.channel)
    return pre, dry, _spoken(dry, duration_s, lead_s, trail_s)


def tts_take(
    voicing: VoicePlan, plan: TtsPlan, duration_s: float, lead_s: float, trail_s: float
) -> tuple[np.ndarray, Utterance]:
    """A synthesizer's voice for the scene, through the scene's channel, and its mouth."""
    pre = _span(synthesized_segments(plan), duration_s, lead_s, trail_s, plan.seed + 1)
    dry = apply_channel(pre, voicing.channel)
    return dry, _spoken(dry, duration_s, lead_s, trail_s)


def converted_take(
    voicing: VoicePlan, converted: np.ndarray, duration_s: float, lead_s: float, trail_s: float
) -> tuple[np.ndarray, Utterance]:
    """A converted recording (vocoder, voice conversion) through the scene's channel."""
    dry = apply_channel(converted, voicing.channel)
    return dry, _spoken(dry, duration_s, lead_s, trail_s)
