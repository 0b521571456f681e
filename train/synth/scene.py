"""Scenes: everything about one simulated call except the manipulation.

A `Scene` is sampled from a seed that does not depend on the label; the real clip and
its fake counterpart are both rendered from it, so duration, resolution, frame rate,
silences, loudness, codec settings, background, lighting, face size, position and
motion follow the same distribution for both classes by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from train.synth.faces import FaceStyle, sample_face_style
from train.synth.photo import MAX_UNIT_PX, PhotoStyle, sample_photo_style
from train.synth.room import Room, sample_room
from train.synth.speech import Voice, sample_voice

RESOLUTIONS = ((320, 240), (426, 240), (480, 360), (640, 360), (640, 480))  # (width, height)
FRAME_RATES = (25, 30)  # frames per second
DEFAULT_DURATION_S = (3.0, 10.0)  # competition-like clip lengths
LEAD_SILENCE_S = (0.1, 0.8)  # before the first word
TRAIL_SILENCE_S = (0.1, 0.8)  # after the last word
FACE_UNIT_FRAC = (0.16, 0.24)  # half the face height / frame height
CRF_CHOICES = (21, 23, 25, 27)  # x264 constant rate factor, shared by real and fake
AUDIO_BITRATES = (96_000, 128_000)  # bits/s AAC
MOUTH_LAG_S = (-0.04, 0.04)  # natural audio-visual offset of a real talker
BLINK_INTERVAL_S = (2.0, 6.0)  # mean time between blinks
BLINK_S = 0.2  # a blink: close and reopen


@dataclass(frozen=True)
class Identity:
    """One synthetic person: a face and a voice."""

    name: str  # e.g. "tr007": split prefix + index ("p" suffix: photo-based), in the manifest
    face: FaceStyle | PhotoStyle  # procedural face, or a variant of the shipped photograph
    voice: Voice


def make_identity(name: str, seed: int, photo: bool = False) -> Identity:
    rng = np.random.default_rng(seed)
    face: FaceStyle | PhotoStyle = sample_photo_style(rng) if photo else sample_face_style(rng)
    return Identity(name=name, face=face, voice=sample_voice(rng))


@dataclass(frozen=True)
class Scene:
    """One call: the person, the room, the camera and the encoder settings."""

    seed: int  # root of every random choice below and of the renderers
    identity: Identity
    duration_s: float
    fps: int
    width: int
    height: int
    lead_s: float  # silence before speech
    trail_s: float  # silence after speech
    face_unit_px: float  # half the face height in pixels (sprite scale)
    face_x: float  # face centre, fraction of the frame width
    face_y: float  # face centre, fraction of the frame height
    light: tuple[float, float]  # key light direction (x, y), unit-disc
    exposure: float  # global gain on the rendered image
    white_balance: tuple[float, float, float]  # RGB gains
    sway_px: float  # amplitude of head translation, pixels
    tilt_deg: float  # amplitude of head roll, degrees
    zoom: float  # amplitude of relative scale change (leaning in and out)
    blink_interval_s: float
    camera_noise: float  # sensor noise standard deviation, 8-bit levels
    mouth_lag_s: float  # mouth leads (negative) or lags the audio
    room: Room
    crf: int
    audio_bitrate: int

    @property
    def n_frames(self) -> int:
        return round(self.duration_s * self.fps)


def sample_scene(
    rng: np.random.Generator,
    identity: Identity,
    duration_s: tuple[float, float] = DEFAULT_DURATION_S,
) -> Scene:
    """Draw a scene; `rng` must not know the clip's label."""
    width, height = RESOLUTIONS[int(rng.integers(len(RESOLUTIONS)))]
    fps = int(rng.choice(FRAME_RATES))
    duration = float(np.round(rng.uniform(*duration_s) * fps) / fps)  # whole frames
    temp = rng.uniform(-0.08, 0.08)
    unit_px = float(rng.uniform(*FACE_UNIT_FRAC) * height)
    if isinstance(identity.face, PhotoStyle):
        unit_px = min(unit_px, MAX_UNIT_PX)  # never an up-sampled (soft) real face
    return Scene(
        seed=int(rng.integers(2**31)),
        identity=identity,
        duration_s=duration,
        fps=fps,
        width=width,
        height=height,
        lead_s=float(rng.uniform(*LEAD_SILENCE_S)),
        trail_s=float(rng.uniform(*TRAIL_SILENCE_S)),
        face_unit_px=unit_px,
        face_x=float(rng.uniform(0.4, 0.6)),
        face_y=float(rng.uniform(0.4, 0.5)),
        light=(float(rng.uniform(-0.6, 0.6)), float(rng.uniform(-0.5, 0.1))),
        exposure=float(rng.uniform(0.85, 1.2)),
        white_balance=(float(1.0 + temp), 1.0, float(1.0 - temp)),
        sway_px=float(rng.uniform(0.01, 0.04) * width),
        tilt_deg=float(rng.uniform(0.5, 4.0)),
        zoom=float(rng.uniform(0.0, 0.06)),
        blink_interval_s=float(rng.uniform(*BLINK_INTERVAL_S)),
        camera_noise=float(rng.uniform(1.0, 4.0)),
        mouth_lag_s=float(rng.uniform(*MOUTH_LAG_S)),
        room=sample_room(rng),
        crf=int(rng.choice(CRF_CHOICES)),
        audio_bitrate=int(rng.choice(AUDIO_BITRATES)),
    )


def _wander(
    rng: np.random.Generator, n: int, fps: int, period_s: tuple[float, float]
) -> np.ndarray:
    """Smooth motion in [-1, 1]: a few sinusoids with random periods and phases."""
    t = np.arange(n) / fps
    out = np.zeros(n)
    for _ in range(3):
        period = rng.uniform(*period_s)
        out += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    return (out / 2.0).clip(-1.0, 1.0)


def head_pose(scene: Scene, speaking: np.ndarray) -> np.ndarray:
    """Per-frame head pose [n, 4]: dx px, dy px, roll degrees, scale.

    `speaking` ([n] 0..1) adds small nods while the person talks.
    """
    rng = np.random.default_rng(scene.seed + 1)
    n = scene.n_frames
    pose = np.empty((n, 4), np.float32)
    nod = np.convolve(speaking, np.ones(5) / 5.0, mode="same")
    pose[:, 0] = scene.sway_px * _wander(rng, n, scene.fps, (2.0, 7.0))
    pose[:, 1] = 0.4 * scene.sway_px * _wander(rng, n, scene.fps, (1.5, 5.0)) + 0.01 * (
        scene.height * nod
    )
    pose[:, 2] = scene.tilt_deg * _wander(rng, n, scene.fps, (2.5, 8.0))
    pose[:, 3] = 1.0 + scene.zoom * _wander(rng, n, scene.fps, (4.0, 12.0))
    return pose


def blinks(scene: Scene) -> np.ndarray:
    """Per-frame eye opening 0..1 with blinks at random (Poisson) times."""
    rng = np.random.default_rng(scene.seed + 2)
    n = scene.n_frames
    eyes = np.ones(n, np.float32)
    t = rng.exponential(scene.blink_interval_s) * 0.5
    half = BLINK_S / 2.0
    times = np.arange(n) / scene.fps
    while t < scene.duration_s:
        closed = np.clip(1.0 - np.abs(times - t) / half, 0.0, 1.0)
        eyes = np.minimum(eyes, 1.0 - closed)
        t += BLINK_S + rng.exponential(scene.blink_interval_s)
    return eyes


def exposure_drift(scene: Scene) -> np.ndarray:
    """Per-frame global brightness gain: slow auto-exposure drift around `exposure`."""
    rng = np.random.default_rng(scene.seed + 3)
    return scene.exposure * (1.0 + 0.03 * _wander(rng, scene.n_frames, scene.fps, (3.0, 9.0)))
