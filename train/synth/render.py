"""Rendering one scene into its clips: the real one, its fake, or both (the worker's job).

Speech, sprites, background and tracks are made once per scene and shared by the real
and the fake clip; each fake then changes only what its method manipulates.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train.synth import audio_fakes, takes, voices
from train.synth.background import render_background
from train.synth.encode import write_mp4
from train.synth.faces import FaceStyle, SpriteBank, render_sprites
from train.synth.fakes import FakePlan, swap_bank
from train.synth.photo import PhotoStyle, render_photo_sprites
from train.synth.room import apply_room, level
from train.synth.scene import Scene, blinks, exposure_drift, head_pose
from train.synth.speech import Utterance, plan_utterance, synthesize
from train.synth.video import FaceTracks, render_frames, white_balance

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipSpec:
    """One output clip of a job."""

    path: str  # where the MP4 goes
    split: str  # "train", "val" or "test"
    fake: FakePlan | None  # None: the real clip


@dataclass(frozen=True)
class SceneJob:
    """A scene and the clips (one or two) rendered from it."""

    scene: Scene
    clips: tuple[ClipSpec, ...]
    voicing: voices.VoicePlan | None = None  # real voices (voices.py); None: procedural


@dataclass
class _Shared:
    """Everything a scene's clips have in common."""

    utterance: Utterance
    dry: np.ndarray
    speech_rms: float
    background: np.ndarray
    bank: SpriteBank
    tracks: FaceTracks
    pre: np.ndarray | None = None  # real voices: the recording before the call's channel


def draw_face(
    face: FaceStyle | PhotoStyle,
    unit_px: float,
    light: tuple[float, float],
    seed: int,
    donor: bool = False,
) -> SpriteBank:
    """Sprites of a procedural or photographic face (a swap donor may be a soft photo)."""
    if isinstance(face, PhotoStyle):
        return render_photo_sprites(face, unit_px, light, float("inf") if donor else unit_px)
    return render_sprites(face, unit_px, light, seed)


def _prepare(scene: Scene, voicing: voices.VoicePlan | None = None) -> _Shared:
    ident = scene.identity
    pre = None
    if voicing is not None:  # a real recording; the mouth follows its envelope
        pre, dry, utt = takes.real_take(voicing, scene.duration_s, scene.lead_s, scene.trail_s)
    else:
        rng = np.random.default_rng(scene.seed)
        utt = plan_utterance(rng, scene.duration_s, scene.lead_s, scene.trail_s, ident.voice.rate)
        dry = synthesize(utt, ident.voice, scene.seed + 10)
    voiced = dry[np.abs(dry) > 1e-4]
    speech_rms = float(np.sqrt(np.mean(np.square(voiced)))) if voiced.size else 1e-3
    times = np.arange(scene.n_frames) / scene.fps
    mouth = utt.jaw_at(times + scene.mouth_lag_s)
    tracks = FaceTracks(
        mouth=mouth,
        eyes=blinks(scene),
        pose=head_pose(scene, mouth),
        exposure=exposure_drift(scene).astype(np.float32),
    )
    bank = draw_face(ident.face, scene.face_unit_px, scene.light, scene.seed + 11)
    background = render_background(scene.width, scene.height, scene.seed + 12)
    background = white_balance(background, scene.white_balance)
    return _Shared(utt, dry, speech_rms, background, bank, tracks, pre)


def _fake_audio(scene: Scene, shared: _Shared, plan: FakePlan) -> np.ndarray:
    if plan.vocoder is not None:
        return audio_fakes.vocoder(shared.dry, plan.vocoder, scene.seed + 20)
    if plan.method in ("voice_conversion", "swap_vc") and plan.donor is not None:
        return audio_fakes.voice_conversion(shared.dry, scene.identity.voice, plan.donor.voice)
    return shared.dry


def _real_fake_audio(
    scene: Scene, shared: _Shared, plan: FakePlan, voicing: voices.VoicePlan
) -> tuple[np.ndarray, Utterance | None]:
    """Real voices: a synthesizer or a converted recording through the scene's channel, and
    the mouth that follows it; (the real voice, None) when the method leaves the voice."""
    span = (scene.duration_s, scene.lead_s, scene.trail_s)
    if plan.tts is not None:
        return takes.tts_take(voicing, plan.tts, *span)
    if shared.pre is None:
        raise ValueError("real voices need the recording before the channel")
    if plan.vocoder is not None:
        converted = audio_fakes.vocoder(shared.pre, plan.vocoder, scene.seed + 20)
    elif plan.method in ("voice_conversion", "swap_vc") and plan.donor is not None:
        source = voices.speaker_voice(voicing.speaker)
        converted = audio_fakes.voice_conversion(shared.pre, source, plan.donor.voice)
    else:
        return shared.dry, None
    return takes.converted_take(voicing, converted, *span)


def _fake_video(
    scene: Scene, shared: _Shared, plan: FakePlan, voicing: voices.VoicePlan | None = None
) -> tuple[SpriteBank, FaceTracks]:
    bank, tracks = shared.bank, shared.tracks
    times = np.arange(scene.n_frames) / scene.fps
    if plan.method in ("face_swap", "swap_vc") and plan.donor is not None:
        # The swap keeps the target's head (outline, hair, clothes) and transplants the
        # inner face, so a procedural donor is drawn with the target's head geometry.
        t, donor_face = scene.identity.face, plan.donor.face
        if isinstance(t, FaceStyle) and isinstance(donor_face, FaceStyle):
            donor_face = dataclasses.replace(
                donor_face,
                width=t.width,
                jaw=t.jaw,
                hair=t.hair,
                hair_style=t.hair_style,
                hairline=t.hairline,
                clothing=t.clothing,
            )
        light = (scene.light[0] + plan.swap_light[0], scene.light[1] + plan.swap_light[1])
        donor = draw_face(donor_face, scene.face_unit_px, light, scene.seed + 21, donor=True)
        bank = swap_bank(bank, donor, plan)
    elif plan.method == "desync_shift":
        mouth = shared.utterance.jaw_at(times + scene.mouth_lag_s + plan.shift_s)
        tracks = dataclasses.replace(tracks, mouth=mouth)
    elif plan.method == "desync_other" and voicing is not None:  # another take's envelope
        span = (scene.duration_s, scene.lead_s, scene.trail_s)
        other = takes.real_take(voicing, *span, seed=plan.other_seed)[2]
        tracks = dataclasses.replace(tracks, mouth=other.jaw_at(times + scene.mouth_lag_s))
    elif plan.method == "desync_other":
        rng = np.random.default_rng(plan.other_seed)
        other = plan_utterance(
            rng, scene.duration_s, scene.lead_s, scene.trail_s, scene.identity.voice.rate
        )
        tracks = dataclasses.replace(tracks, mouth=other.jaw_at(times + scene.mouth_lag_s))
    return bank, tracks


def _balanced(bank: SpriteBank, scene: Scene) -> SpriteBank:
    return dataclasses.replace(bank, rgba=white_balance(bank.rgba, scene.white_balance))


def render_job(job: SceneJob) -> list[str]:
    """Render and encode every clip of `job`; returns the paths written."""
    scene = job.scene
    shared = _prepare(scene, job.voicing)
    written = []
    for clip in job.clips:
        dry, bank, tracks, fx = shared.dry, shared.bank, shared.tracks, None
        if clip.fake is not None:
            own = None
            if job.voicing is not None:
                dry, own = _real_fake_audio(scene, shared, clip.fake, job.voicing)
            else:
                dry = _fake_audio(scene, shared, clip.fake)
            bank, tracks = _fake_video(scene, shared, clip.fake, job.voicing)
            if own is not None:  # a new voice: the mouth follows it, as a lip-synced fake's
                t = np.arange(scene.n_frames) / scene.fps + scene.mouth_lag_s
                tracks = dataclasses.replace(tracks, mouth=own.jaw_at(t))
            fx = clip.fake.face_fx
        # Same room take (seed) for the real clip and its fake: only the voice differs.
        stereo = level(
            apply_room(dry, shared.speech_rms, scene.room, scene.seed + 30),
            scene.room.target_rms_db,
        )
        bank = _balanced(bank, scene)
        frames = render_frames(scene, bank, tracks, shared.background, fx)
        write_mp4(
            Path(clip.path),
            frames,
            stereo,
            fps=scene.fps,
            width=scene.width,
            height=scene.height,
            crf=scene.crf,
            audio_bitrate=scene.audio_bitrate,
        )
        written.append(clip.path)
        logger.debug("wrote %s (%s)", clip.path, clip.fake.method if clip.fake else "real")
    return written
