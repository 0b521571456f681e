"""Continuous calls built from a split's scored clips, window after window.

    real call    real clips back to back; some muted (a pause, a muted caller) and some
                 with the camera off, as real calls have; the monitor must not call it fake
    fake call    fake clips of one family back to back (voice, face, both, lip sync)
    turn call    a real opening, then fake clips of one family: an attacker switching on
                 a voice changer or a face swap mid-call; time to alert counts from the turn

Windows follow each other at the contract's hop, as on a live stream. Clips are split
into a part the settings are chosen on and a held-out part they are reported on, by a
hash of the clip's name, so the same split always gives the same parts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from train.calibration.windows import ClipWindows

REAL_CLIPS_PER_CALL = 10  # a real call of 10 clips is about a minute of windows
FAKE_CLIPS_PER_CALL = 4
OPENING_CLIPS = 2  # real clips before a turn call turns
MUTED_SHARE = 0.25  # of the real clips that have variants: played muted
CAMERA_OFF_SHARE = 0.2  # ... and played with the camera off
FAMILIES = ("audio", "face", "both", "sync", "fake")  # "fake": family unknown


@dataclass(frozen=True)
class Call:
    """One call as the state machine sees it: one row per window."""

    kind: str  # "real" | "fake" | "turn"
    family: str  # "real", or the family of its fake part
    scores: np.ndarray  # float32 [T, 4]
    face_fraction: np.ndarray  # [T]
    rms: np.ndarray  # [T]
    has_audio: np.ndarray  # bool [T]
    has_video: np.ndarray  # bool [T]
    turn: int | None  # index of the first fake window (0 for a fake call, None for real)

    @property
    def n(self) -> int:
        return int(self.scores.shape[0])


def held_out(name: str, fraction: float) -> bool:
    return int(hashlib.sha1(b"calibrate:" + name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < (
        fraction
    )


def _segments(clips: list[ClipWindows], rng: np.random.Generator, vary: bool) -> list[tuple]:
    out = []
    for c in clips:
        scores, face, rms = c.scores, c.face_fraction, c.rms
        if vary and c.muted is not None and c.camera_off is not None:
            u = rng.random()
            if u < MUTED_SHARE:
                scores, rms = c.muted, np.zeros_like(c.rms)
            elif u < MUTED_SHARE + CAMERA_OFF_SHARE:
                scores, face = c.camera_off, np.zeros_like(c.face_fraction)
        n = c.n
        out.append((scores, face, rms, np.full(n, c.has_audio), np.full(n, c.has_video)))
    return out


def _call(kind: str, family: str, parts: list[tuple], turn: int | None) -> Call:
    scores, face, rms, has_audio, has_video = (
        np.concatenate([p[i] for p in parts]) for i in range(5)
    )
    return Call(kind, family, scores, face, rms, has_audio, has_video, turn)


def build_calls(clips: list[ClipWindows], seed: int = 0) -> list[Call]:
    """Real, fake and turn calls from one part's clips (see the module docstring)."""
    rng = np.random.default_rng(seed)
    reals = [c for c in clips if c.target == 0]
    order = rng.permutation(len(reals))
    reals = [reals[i] for i in order]
    calls = []
    for a in range(0, len(reals), REAL_CLIPS_PER_CALL):
        group = reals[a : a + REAL_CLIPS_PER_CALL]
        calls.append(_call("real", "real", _segments(group, rng, vary=True), None))
    for family in FAMILIES:
        fakes = [c for c in clips if c.target == 1 and c.family == family]
        fakes = [fakes[i] for i in rng.permutation(len(fakes))]
        for n, a in enumerate(range(0, len(fakes), FAKE_CLIPS_PER_CALL)):
            group = fakes[a : a + FAKE_CLIPS_PER_CALL]
            fake_parts = _segments(group, rng, vary=False)
            if n % 2 == 0 or not reals:
                calls.append(_call("fake", family, fake_parts, 0))
                continue
            start = int(rng.integers(0, len(reals)))
            opening = [reals[(start + k) % len(reals)] for k in range(OPENING_CLIPS)]
            open_parts = _segments(opening, rng, vary=False)
            turn = sum(p[0].shape[0] for p in open_parts)
            calls.append(_call("turn", family, open_parts + fake_parts, turn))
    return calls


def real_hours(calls: list[Call], hop_s: float) -> float:
    return sum(c.n for c in calls if c.kind == "real") * hop_s / 3600.0
