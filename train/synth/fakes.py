"""The manipulation methods (fake families) and the parameters one fake clip uses.

Every method leaves the scene (duration, resolution, frame rate, silences, loudness,
codec settings, face box and motion) as it was and changes only the voice, the face or
their synchrony:

| method            | audio | video | what changes                                          |
|-------------------|-------|-------|-------------------------------------------------------|
| vocoder           | yes   | no    | voice re-synthesised by a mel vocoder (phase, band)   |
| voice_conversion  | yes   | no    | voice moved to another identity's pitch and formants  |
| face_swap         | no    | yes   | inner face from another identity, blended, colour off |
| face_lowres       | no    | yes   | face re-rendered at a fraction of its resolution      |
| swap_vc           | yes   | yes   | face swap + voice conversion to the same donor        |
| lowres_vocoder    | yes   | yes   | low-resolution face + vocoded voice                   |
| desync_shift      | no    | yes   | mouth motion shifted 0.3-0.8 s against the speech      |
| desync_other      | no    | yes   | mouth driven by another utterance over the same span  |
| tts_espeak_ng     | yes   | no    | voice replaced by eSpeak NG (formant synthesis)       |
| tts_flite         | yes   | no    | voice replaced by Flite (diphone, cluster units)      |
| tts_festival      | yes   | no    | voice replaced by Festival (diphone, HTS, clunits)    |

The `tts_*` methods exist only with real voices (`synth --voices real`, voices.py): the
synthesizer says sentences of the scene's language and the mouth follows what it says.
With real voices, `vocoder` and `voice_conversion` (and the audio half of `swap_vc` and
`lowres_vocoder`) convert the speaker's own recordings: in-speaker fakes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from train.synth.audio_fakes import VocoderParams, sample_vocoder
from train.synth.faces import SpriteBank
from train.synth.scene import Identity
from train.synth.video import FaceFx
from train.synth.voices import ENGINE_METHODS, TtsPlan


@dataclass(frozen=True)
class Method:
    """One family of fakes."""

    name: str
    audio_fake: bool  # the voice was manipulated
    video_fake: bool  # the picture (face or mouth motion) was manipulated
    family: str  # "audio", "face", "both" or "sync"


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("vocoder", True, False, "audio"),
        Method("voice_conversion", True, False, "audio"),
        Method("face_swap", False, True, "face"),
        Method("face_lowres", False, True, "face"),
        Method("swap_vc", True, True, "both"),
        Method("lowres_vocoder", True, True, "both"),
        Method("desync_shift", False, True, "sync"),
        Method("desync_other", False, True, "sync"),
        *(Method(m, True, False, "audio") for m in ENGINE_METHODS.values()),
    )
}
TTS_METHODS = frozenset(ENGINE_METHODS.values())  # need --voices real
PROCEDURAL_METHODS = tuple(m for m in METHODS if m not in TTS_METHODS)
NEEDS_DONOR = frozenset({"voice_conversion", "face_swap", "swap_vc"})
DESYNC_SHIFT_S = (0.3, 0.8)  # |shift| of the mouth track against the audio
LOWRES_FACTOR = (2.5, 5.0)  # face down-sampling factor of face_lowres
SWAP_RESOLUTION = (1.3, 2.5)  # generator resolution factor of a swapped face
SWAP_COLOUR_MATCH = (0.2, 0.8)  # fraction of the skin-colour difference corrected
MIN_PITCH_RATIO_OCTAVES = 0.15  # a converted voice differs by at least ~2 semitones


@dataclass(frozen=True)
class FakePlan:
    """How one fake clip is made from its scene."""

    method: str
    donor: Identity | None = None  # whose face and/or voice is transplanted
    vocoder: VocoderParams | None = None
    face_fx: FaceFx | None = None
    swap_resolution: float = 1.0
    swap_colour_match: float = 1.0
    swap_light: tuple[float, float] = (0.0, 0.0)  # donor face lighting offset
    shift_s: float = 0.0  # mouth track shift (desync_shift)
    other_seed: int = 0  # seed of the utterance that drives the mouth (desync_other)
    tts: TtsPlan | None = None  # the synthesizer voice of a tts_* fake (real voices)

    @property
    def spec(self) -> Method:
        return METHODS[self.method]


def sample_fake_plan(method: str, rng: np.random.Generator, donor: Identity | None) -> FakePlan:
    """Draw the parameters of `method`; `donor` is required for NEEDS_DONOR methods."""
    if method in NEEDS_DONOR and donor is None:
        raise ValueError(f"method {method} needs a donor identity")
    swap = method in ("face_swap", "swap_vc")
    lowres = method in ("face_lowres", "lowres_vocoder")
    fx = None
    if swap:
        fx = FaceFx(
            noise_keep=float(rng.uniform(0.3, 0.8)), flicker=float(rng.uniform(0.005, 0.02))
        )
    elif lowres:
        fx = FaceFx(
            lowres_factor=float(rng.uniform(*LOWRES_FACTOR)),
            noise_keep=float(rng.uniform(0.2, 0.7)),
        )
    return FakePlan(
        method=method,
        donor=donor if method in NEEDS_DONOR else None,
        vocoder=sample_vocoder(rng) if method in ("vocoder", "lowres_vocoder") else None,
        face_fx=fx,
        swap_resolution=float(rng.uniform(*SWAP_RESOLUTION)) if swap else 1.0,
        swap_colour_match=float(rng.uniform(*SWAP_COLOUR_MATCH)) if swap else 1.0,
        swap_light=(float(rng.normal(0, 0.15)), float(rng.normal(0, 0.1))) if swap else (0.0, 0.0),
        shift_s=float(rng.choice([-1.0, 1.0]) * rng.uniform(*DESYNC_SHIFT_S))
        if method == "desync_shift"
        else 0.0,
        other_seed=int(rng.integers(2**31)) if method == "desync_other" else 0,
    )


def pick_donor(identity: Identity, pool: list[Identity], rng: np.random.Generator) -> Identity:
    """Another identity of the pool, with a voice audibly different in pitch if possible."""
    others = [p for p in pool if p.name != identity.name]
    if not others:
        raise ValueError("a donor needs at least two identities in the split")
    distinct = [
        p
        for p in others
        if abs(np.log2(p.voice.f0_hz / identity.voice.f0_hz)) >= MIN_PITCH_RATIO_OCTAVES
    ]
    choices = distinct or others
    return choices[int(rng.integers(len(choices)))]


def swap_bank(target: SpriteBank, donor: SpriteBank, plan: FakePlan) -> SpriteBank:
    """Paste the donor's inner face into every sprite of the target, as a face swap does.

    The donor face is generated at a lower resolution, only partly colour-corrected to
    the target's skin, and blended through the target's feathered inner-face mask, which
    leaves the blending boundary and colour mismatch that swap detectors look for.
    """
    if target.rgba.shape != donor.rgba.shape:
        raise ValueError("target and donor sprites must share one scale")
    rows, cols = np.nonzero(target.inner_mask > 0.0)
    box = (slice(int(rows.min()), int(rows.max()) + 1), slice(int(cols.min()), int(cols.max()) + 1))
    mask = target.inner_mask[box][..., None]
    t_rgb = target.rgba[:, :, box[0], box[1], :3].astype(np.float32)
    d_rgb = donor.rgba[:, :, box[0], box[1], :3].astype(np.float32)
    if plan.swap_resolution > 1.0:  # the generator's output resolution
        m, e, h, w, _ = d_rgb.shape
        flat = d_rgb.reshape(m * e, h, w, 3)
        small = (max(2, int(w / plan.swap_resolution)), max(2, int(h / plan.swap_resolution)))
        for k in range(flat.shape[0]):
            flat[k] = cv2.resize(cv2.resize(flat[k], small, interpolation=cv2.INTER_AREA), (w, h))
    weight = float(mask.sum()) + 1e-6
    t_mean = (t_rgb[0, -1] * mask).sum(axis=(0, 1)) / weight
    d_mean = (d_rgb[0, -1] * mask).sum(axis=(0, 1)) / weight
    d_rgb += plan.swap_colour_match * (t_mean - d_mean)
    out = target.rgba.copy()
    blended = t_rgb * (1.0 - mask) + d_rgb * mask
    out[:, :, box[0], box[1], :3] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return SpriteBank(
        rgba=out, inner_mask=target.inner_mask, centre=target.centre, unit_px=target.unit_px
    )
