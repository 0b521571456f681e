"""Speech-like audio: a source-filter synthesiser driven by a syllable plan.

An `Utterance` is a plan at a 100 Hz control rate: pitch, voicing, formant targets,
fricative and burst noise gates, and the jaw opening that the video's mouth follows.
`synthesize` turns a plan and a `Voice` into dry (anechoic, mono) speech at
AUDIO_RATE: a glottal pulse train with moving pitch through a cascade of formant
resonators, plus band-filtered noise for fricatives, plosive bursts and breaths.

The same plan can be spoken by another voice (voice conversion fakes use the signal
processing route in `audio_fakes` instead) and a second plan over the same speaking span
drives a mouth that does not match the words (desynchronisation fakes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from train.synth import dsp

AUDIO_RATE = 44_100  # Hz: the competition clips' audio rate
CONTROL_RATE = 100  # Hz: plan tracks have one value per 10 ms
BLOCK = AUDIO_RATE // CONTROL_RATE  # 441 audio samples per control frame
SYNTH_FFT = 1024  # STFT size of the vocal-tract filter (23 ms at 44.1 kHz)
N_FORMANTS = 5
FORMANT_BANDWIDTHS = np.array([80.0, 100.0, 140.0, 200.0, 260.0], np.float32)  # Hz
# Adult reference formants F1..F3 (Hz) and jaw opening (0..1) per vowel.
VOWELS: dict[str, tuple[float, float, float, float]] = {
    "a": (730.0, 1090.0, 2440.0, 1.0),
    "e": (530.0, 1840.0, 2480.0, 0.65),
    "i": (300.0, 2250.0, 3000.0, 0.35),
    "o": (570.0, 840.0, 2410.0, 0.75),
    "u": (320.0, 870.0, 2240.0, 0.4),
    "@": (500.0, 1500.0, 2500.0, 0.5),
}
F4_HZ, F5_HZ = 3500.0, 4500.0
# Consonant onsets: kind, duration range (s), and whether the lips close (labials).
CONSONANTS: dict[str, tuple[str, float, float, bool]] = {
    "s": ("fric_s", 0.07, 0.13, False),
    "sh": ("fric_sh", 0.07, 0.12, False),
    "f": ("fric_f", 0.06, 0.11, True),
    "h": ("breathy", 0.04, 0.08, False),
    "p": ("burst", 0.05, 0.09, True),
    "t": ("burst", 0.05, 0.08, False),
    "k": ("burst", 0.05, 0.09, False),
    "m": ("nasal", 0.05, 0.09, True),
    "n": ("nasal", 0.05, 0.08, False),
    "l": ("liquid", 0.04, 0.07, False),
    "": ("none", 0.0, 0.0, False),
}
NOISE_KINDS = ("fric_s", "fric_sh", "fric_f", "burst", "breath")
NOISE_BANDS: dict[str, tuple[float, float, float]] = {  # low Hz, high Hz, level
    "fric_s": (4000.0, 10000.0, 0.5),
    "fric_sh": (2000.0, 6000.0, 0.45),
    "fric_f": (1200.0, 9000.0, 0.15),
    "burst": (600.0, 8000.0, 0.6),
    "breath": (400.0, 4000.0, 0.06),
}
SYLLABLE_RATE = (3.5, 6.0)  # syllables per second while speaking
PHRASE_SECONDS = (0.8, 2.6)  # length of a breath group
PAUSE_SECONDS = (0.15, 0.5)  # pause between breath groups
JAW_SMOOTH_S = 0.04  # articulators move smoothly; 40 ms
FORMANT_SMOOTH_S = 0.03  # coarticulation


@dataclass(frozen=True)
class Voice:
    """Who is speaking: one identity's voice."""

    f0_hz: float  # mean pitch
    f0_range_st: float  # pitch excursion, semitones
    formant_scale: float  # vocal tract length factor (1 = adult male reference)
    breathiness: float  # aspiration noise relative to the pulse train
    open_quotient: float  # glottal open phase, fraction of a period
    jitter: float  # cycle-to-cycle pitch perturbation, fraction
    rate: float  # syllables per second


def sample_voice(rng: np.random.Generator) -> Voice:
    """A random adult voice (low, middle or high)."""
    register = rng.integers(3)
    f0 = float(rng.uniform(*((85.0, 135.0), (135.0, 180.0), (175.0, 260.0))[register]))
    scale = float(rng.uniform(*((0.92, 1.04), (1.0, 1.12), (1.08, 1.22))[register]))
    return Voice(
        f0_hz=f0,
        f0_range_st=float(rng.uniform(2.0, 6.0)),
        formant_scale=scale,
        breathiness=float(rng.uniform(0.02, 0.12)),
        open_quotient=float(rng.uniform(0.45, 0.7)),
        jitter=float(rng.uniform(0.003, 0.012)),
        rate=float(rng.uniform(*SYLLABLE_RATE)),
    )


@dataclass(frozen=True)
class Utterance:
    """A speaking plan at CONTROL_RATE, independent of who speaks it."""

    n: int  # control frames
    pitch: np.ndarray  # float32 [n], semitones relative to the voice's mean pitch
    voiced: np.ndarray  # float32 [n], voicing amplitude 0..1
    vowel_formants: np.ndarray  # float32 [n, 3], reference F1..F3 before the voice's scale
    noise: np.ndarray  # float32 [len(NOISE_KINDS), n], noise gates 0..1
    jaw: np.ndarray  # float32 [n], mouth opening 0..1 that the face should show
    speech_start_s: float
    speech_end_s: float

    @property
    def duration_s(self) -> float:
        return self.n / CONTROL_RATE

    def jaw_at(self, times_s: np.ndarray) -> np.ndarray:
        """Mouth opening at the given times (seconds), linear between control frames."""
        grid = np.arange(self.n, dtype=np.float64) / CONTROL_RATE
        return np.interp(times_s, grid, self.jaw).astype(np.float32)


def _smooth(x: np.ndarray, seconds: float, axis: int = -1) -> np.ndarray:
    n = max(1, round(seconds * CONTROL_RATE))
    if n <= 1:
        return x
    kernel = np.hanning(n + 2)[1:-1]
    kernel /= kernel.sum()
    from scipy.ndimage import convolve1d

    return convolve1d(x, kernel.astype(np.float32), axis=axis, mode="nearest")


def plan_utterance(
    rng: np.random.Generator, duration_s: float, lead_s: float, trail_s: float, rate: float
) -> Utterance:
    """Plan speech filling [lead_s, duration_s - trail_s] with phrases and breath pauses."""
    n = round(duration_s * CONTROL_RATE)
    pitch = np.zeros(n, np.float32)
    voiced = np.zeros(n, np.float32)
    formants = np.tile(np.array(VOWELS["@"][:3], np.float32), (n, 1))
    noise = np.zeros((len(NOISE_KINDS), n), np.float32)
    jaw = np.zeros(n, np.float32)
    kinds = list(CONSONANTS)
    vowels = list(VOWELS)
    end = duration_s - trail_s
    t = lead_s
    while t < end - 0.25:
        phrase_end = min(end, t + rng.uniform(*PHRASE_SECONDS))
        if end - phrase_end < 0.5:  # do not leave a stub too short for a phrase
            phrase_end = end
        start_frame = int(t * CONTROL_RATE)
        while t < phrase_end - 0.08:
            syll = 1.0 / (rate * rng.uniform(0.75, 1.3))
            cons = kinds[int(rng.integers(len(kinds)))]
            kind, lo, hi, labial = CONSONANTS[cons]
            c_len = min(rng.uniform(lo, hi) if hi > 0 else 0.0, syll * 0.5)
            v_len = max(0.05, min(syll - c_len, phrase_end - t - c_len))
            vowel = vowels[int(rng.integers(len(vowels)))]
            f1, f2, f3, opening = VOWELS[vowel]
            c0, c1 = int(t * CONTROL_RATE), int((t + c_len) * CONTROL_RATE)
            v1 = min(n, int((t + c_len + v_len) * CONTROL_RATE))
            if kind in NOISE_KINDS:
                noise[NOISE_KINDS.index(kind), c0:c1] = 1.0
            elif kind == "breathy":
                noise[NOISE_KINDS.index("breath"), c0:c1] = 4.0
            elif kind in ("nasal", "liquid"):
                voiced[c0:c1] = 0.35 if kind == "nasal" else 0.6
                formants[c0:c1] = (260.0, 1200.0, 2500.0) if kind == "nasal" else (380, 1100, 2600)
            jaw[c0:c1] = 0.0 if labial else 0.25
            # Vowel nucleus with a rise-fall loudness shape.
            ramp = np.sin(np.linspace(0.15, np.pi - 0.15, max(1, v1 - c1))).astype(np.float32)
            voiced[c1:v1] = np.maximum(voiced[c1:v1], 0.35 + 0.65 * ramp)
            formants[c1:v1] = (f1, f2, f3)
            jaw[c1:v1] = opening * (0.5 + 0.5 * ramp)
            t += c_len + v_len
        # Intonation: declination over the phrase plus one or two pitch accents.
        stop_frame = min(n, int(t * CONTROL_RATE))
        k = max(1, stop_frame - start_frame)
        ph = np.linspace(0.0, 1.0, k, dtype=np.float32)
        contour = 1.0 - 2.0 * ph
        for _ in range(int(rng.integers(1, 3))):
            centre, width = rng.uniform(0.1, 0.8), rng.uniform(0.08, 0.2)
            contour += 1.2 * np.exp(-(((ph - centre) / width) ** 2))
        pitch[start_frame:stop_frame] = contour[: stop_frame - start_frame] * 0.5
        pause = rng.uniform(*PAUSE_SECONDS)
        if phrase_end < end and rng.random() < 0.6:  # audible in-breath
            b0 = int((t + 0.03) * CONTROL_RATE)
            b1 = min(n, int((t + pause - 0.03) * CONTROL_RATE))
            noise[NOISE_KINDS.index("breath"), b0:b1] = 1.0
        t = max(t, phrase_end) + pause
    return Utterance(
        n=n,
        pitch=pitch,
        voiced=_smooth(voiced, 0.02),
        vowel_formants=_smooth(formants, FORMANT_SMOOTH_S, axis=0),
        noise=_smooth(noise, 0.015, axis=1),
        jaw=np.clip(_smooth(jaw, JAW_SMOOTH_S), 0.0, 1.0),
        speech_start_s=lead_s,
        speech_end_s=end,
    )


def _glottal_source(f0: np.ndarray, voice: Voice, rng: np.random.Generator) -> np.ndarray:
    """Derivative of a Rosenberg glottal flow with moving pitch (lip radiation included)."""
    phase = np.cumsum(f0 / AUDIO_RATE) % 1.0
    tp = voice.open_quotient * 0.7  # opening phase
    tn = voice.open_quotient * 0.3  # closing phase
    flow = np.where(
        phase < tp,
        0.5 * (1.0 - np.cos(np.pi * phase / tp)),
        np.where(phase < tp + tn, np.cos(0.5 * np.pi * (phase - tp) / tn), 0.0),
    )
    return (np.diff(flow, prepend=0.0) * (AUDIO_RATE / 200.0)).astype(np.float32)


def _upsample(track: np.ndarray, n_samples: int) -> np.ndarray:
    grid = (np.arange(track.size) + 0.5) * BLOCK
    return np.interp(np.arange(n_samples), grid, track).astype(np.float32)


def _band(bins_hz: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Smooth band-pass magnitude (2nd-order-like skirts) over FFT bins."""
    f = np.maximum(bins_hz, 1.0)
    return (1.0 / np.sqrt(1.0 + (lo / f) ** 4) / np.sqrt(1.0 + (f / hi) ** 4)).astype(np.float32)


def synthesize(utt: Utterance, voice: Voice, seed: int) -> np.ndarray:
    """Dry mono speech (float32, peak about 0.5) for `utt` spoken by `voice`.

    The vocal tract filter is applied frame by frame in the STFT domain (the resonators'
    impulse responses are a few ms long, well inside the 23 ms frames), which keeps the
    whole synthesiser vectorised.
    """
    rng = np.random.default_rng(seed)
    n_samples = utt.n * BLOCK
    # Pitch with slow random wander (jitter) on top of the planned intonation.
    wander = signal.lfilter([1.0], [1.0, -0.9], rng.normal(0.0, voice.jitter * 3.0, utt.n))
    f0 = voice.f0_hz * 2.0 ** (utt.pitch * voice.f0_range_st / 12.0) * (1.0 + wander)
    voiced = _upsample(utt.voiced, n_samples)
    src = _glottal_source(_upsample(f0.astype(np.float32), n_samples), voice, rng) * voiced
    src += voice.breathiness * rng.standard_normal(n_samples, dtype=np.float32) * voiced
    spec = dsp.stft(src, SYNTH_FFT)
    times = dsp.frame_times(spec.shape[0], SYNTH_FFT, AUDIO_RATE)
    bins = np.fft.rfftfreq(SYNTH_FFT, 1.0 / AUDIO_RATE).astype(np.float32)
    formants = np.empty((utt.n, N_FORMANTS), np.float32)
    formants[:, :3] = utt.vowel_formants
    formants[:, 3], formants[:, 4] = F4_HZ, F5_HZ
    formants *= voice.formant_scale
    np.minimum(formants, 0.45 * AUDIO_RATE, out=formants)
    spec *= dsp.resonator_response(
        dsp.interp_frames(formants, CONTROL_RATE, times), FORMANT_BANDWIDTHS, bins, AUDIO_RATE
    )
    noise = dsp.stft(rng.standard_normal(n_samples, dtype=np.float32), SYNTH_FFT)
    shape = np.zeros((spec.shape[0], bins.size), np.float32)
    for i, kind in enumerate(NOISE_KINDS):
        if utt.noise[i].any():
            lo, hi, level = NOISE_BANDS[kind]
            gate = dsp.interp_frames(utt.noise[i], CONTROL_RATE, times)
            shape += level * gate[:, None] * _band(bins, lo, hi)[None, :]
    spec += noise * shape
    out = dsp.istft(spec, SYNTH_FFT, n_samples)
    peak = float(np.max(np.abs(out))) or 1.0
    return (0.5 * out / peak).astype(np.float32)
