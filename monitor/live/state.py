"""Per-stream verdicts: smoothing + hysteresis -> CLEAR / SUSPICIOUS / ALERT, with gates.

Each head (fused, audio, visual, and sync when the model outputs it) has its own smoother
(EMA or running median over recent windows) and its own hysteresis: a level is entered
above an "on" threshold and left only below a lower "off" threshold, and any change must
hold for a minimum time (stream seconds) before it is committed, so one odd window never
raises or clears an alert.

Gates keep meaningless scores out: a window whose crops mostly found no face cannot say
anything about the face, and a stream without audio (or a muted caller, RMS below a
floor) cannot say anything about the voice. After `min_gate_s` of such windows the
modality is gated (NO_FACE, NO_AUDIO, SILENCE), its smoothing restarts, and the fused
head and the sync head - which need both - are paused. A stream stays STARTING for its first
`min_escalate_s` (no verdict, not even CLEAR, before a level could have been earned);
then its overall state is:

- both modalities usable: the fused head's level;
- one gated: the other head's level if it is SUSPICIOUS or ALERT, else the gate's name
  (a muted caller is neither "real" nor "fake" on the strength of silence);
- both gated: NO_FACE.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum

CLEAR, SUSPICIOUS, ALERT = "CLEAR", "SUSPICIOUS", "ALERT"
NO_FACE, NO_AUDIO, SILENCE = "NO_FACE", "NO_AUDIO", "SILENCE"
STARTING, DOWN, ENDED = "STARTING", "DOWN", "ENDED"
ALL_STATES = (STARTING, CLEAR, SUSPICIOUS, ALERT, NO_FACE, NO_AUDIO, SILENCE, DOWN, ENDED)
HEADS = ("fused", "audio", "visual", "sync")  # sync: P(voice and mouth out of step)
# What raised a SUSPICIOUS or ALERT verdict, in the operator's words: the voice head, the
# face head, both, or neither of them alone (the fused head's own evidence: voice and mouth
# out of step, or a combination no single head flags).
VOICE, FACE, VOICE_FACE, LIP_SYNC = "voice", "face", "voice_face", "lip_sync"
RAISED_BY = (VOICE, FACE, VOICE_FACE, LIP_SYNC)


class Level(IntEnum):
    CLEAR = 0
    SUSPICIOUS = 1
    ALERT = 2


@dataclass(frozen=True)
class Thresholds:
    """Where one head enters and leaves each level (smoothed score)."""

    suspicious_on: float = 0.5
    suspicious_off: float = 0.4
    alert_on: float = 0.8
    alert_off: float = 0.65

    def check(self, where: str = "") -> None:
        if not self.suspicious_off <= self.suspicious_on <= self.alert_on:
            raise ValueError(f"{where}need suspicious_off <= suspicious_on <= alert_on")
        if not self.suspicious_off <= self.alert_off <= self.alert_on:
            raise ValueError(f"{where}need suspicious_off <= alert_off <= alert_on")


@dataclass(frozen=True)
class StateParams:
    """Thresholds and durations of the state machine (from `StateConfig` in the YAML, or
    the model's calibrated settings). `per_head` overrides the thresholds of some heads."""

    smoothing: str = "ema"  # "ema" | "median"
    ema_alpha: float = 0.5  # weight of the newest window in the EMA
    median_windows: int = 5  # windows in the running median
    suspicious_on: float = 0.5  # smoothed P(fake) to enter SUSPICIOUS
    suspicious_off: float = 0.4  # ... to fall back below SUSPICIOUS
    alert_on: float = 0.8  # ... to enter ALERT
    alert_off: float = 0.65  # ... to fall back below ALERT
    min_escalate_s: float = 2.0  # a higher level must hold this long (stream s) to be entered
    min_deescalate_s: float = 3.0  # a lower level must hold this long to be entered
    min_face_fraction: float = 0.5  # fewer crops with a face than this = no usable face
    silence_rms: float = 0.003  # audio RMS below this (about -50 dBFS) = silence
    min_gate_s: float = 2.0  # gate (NO_FACE / SILENCE / NO_AUDIO) after this long
    per_head: tuple[tuple[str, Thresholds], ...] = ()  # (head, thresholds) overrides

    def __post_init__(self) -> None:
        if self.smoothing not in ("ema", "median"):
            raise ValueError(f"smoothing must be 'ema' or 'median', got {self.smoothing!r}")
        self._shared().check()
        for head, th in self.per_head:
            if head not in HEADS:
                raise ValueError(f"per-head thresholds for unknown head {head!r}")
            th.check(f"{head}: ")

    def _shared(self) -> Thresholds:
        return Thresholds(self.suspicious_on, self.suspicious_off, self.alert_on, self.alert_off)

    def thresholds(self, head: str) -> Thresholds:
        """The thresholds `head` uses: its own override, else the shared ones."""
        for name, th in self.per_head:
            if name == head:
                return th
        return self._shared()


class Smoother:
    """EMA or running median of one head's raw scores."""

    def __init__(self, params: StateParams) -> None:
        self.params = params
        self._recent: deque[float] = deque(maxlen=params.median_windows)
        self.value: float | None = None

    def reset(self) -> None:
        self._recent.clear()
        self.value = None

    def update(self, x: float) -> float:
        if self.params.smoothing == "median":
            self._recent.append(x)
            self.value = float(statistics.median(self._recent))
        elif self.value is None:
            self.value = x
        else:
            a = self.params.ema_alpha
            self.value = a * x + (1.0 - a) * self.value
        return self.value


class Hysteresis:
    """Level of one head: thresholds with a dead band plus minimum durations."""

    def __init__(self, params: StateParams, head: str = "fused") -> None:
        self.params = params
        self.th = params.thresholds(head)
        self.level = Level.CLEAR
        self._direction = 0  # +1 escalating, -1 de-escalating, 0 steady
        self._since = 0.0  # stream time the pending change was first seen

    def reset(self) -> None:
        self.level = Level.CLEAR
        self._direction = 0

    def target(self, score: float) -> Level:
        p = self.th
        alert_at = p.alert_off if self.level == Level.ALERT else p.alert_on
        susp_at = p.suspicious_off if self.level >= Level.SUSPICIOUS else p.suspicious_on
        if score >= alert_at:
            return Level.ALERT
        if score >= susp_at:
            return Level.SUSPICIOUS
        return Level.CLEAR

    def update(self, score: float, t: float) -> Level:
        want = self.target(score)
        if want == self.level:
            self._direction = 0
            return self.level
        direction = 1 if want > self.level else -1
        if direction != self._direction:
            self._direction, self._since = direction, t
        hold = self.params.min_escalate_s if direction > 0 else self.params.min_deescalate_s
        if t - self._since >= hold - 1e-9:
            self.level = want
            self._direction = 0
        return self.level


class _Head:
    def __init__(self, params: StateParams, head: str) -> None:
        self.smoother = Smoother(params)
        self.hysteresis = Hysteresis(params, head)

    def reset(self) -> None:
        self.smoother.reset()
        self.hysteresis.reset()

    def update(self, raw: float, t: float) -> Level:
        return self.hysteresis.update(self.smoother.update(raw), t)


class _Gate:
    """A modality's "unusable" condition, entered after min_gate_s, left at once."""

    def __init__(self, params: StateParams) -> None:
        self.params = params
        self.active: str | None = None  # gate name while gated
        self._since: float | None = None

    def reset(self) -> None:
        self.active, self._since = None, None

    def update(self, reason: str | None, t: float) -> tuple[str | None, bool]:
        """Returns (active gate, whether this window is usable for the modality)."""
        if reason is None:
            self.active, self._since = None, None
            return None, True
        if self._since is None:
            self._since = t
        if self.active is None and t - self._since >= self.params.min_gate_s - 1e-9:
            self.active = reason
        elif self.active is not None:
            self.active = reason  # NO_AUDIO <-> SILENCE may change while gated
        return self.active, False


@dataclass(frozen=True)
class StateChange:
    """One transition of a stream's overall state (becomes one JSON event)."""

    stream_id: str
    state: str
    previous: str
    modality: str  # "fused" | "audio" | "visual" | "source": what drives the new state
    scores: dict[str, float | None]  # smoothed fused / audio / visual
    stream_t: float | None  # stream time of the window that caused it
    wall_time: float = field(default_factory=time.time)  # epoch seconds
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # receivers dedupe on it
    raised_by: str | None = None  # one of RAISED_BY for SUSPICIOUS / ALERT, else None
    evidence: str | None = None  # evidence file saved for this ALERT (opt-in), by name


class StreamState:
    """The state machine of one stream. Feed it every scored window, in order."""

    def __init__(self, stream_id: str, params: StateParams | None = None) -> None:
        self.stream_id = stream_id
        self.params = params or StateParams()
        self.heads = {h: _Head(self.params, h) for h in HEADS}
        self.audio_gate = _Gate(self.params)
        self.visual_gate = _Gate(self.params)
        self.state = STARTING
        self.modality = "source"
        self.raised_by: str | None = None  # RAISED_BY of the current verdict; fixed while
        # the state holds, so an alert keeps one label for its whole episode
        self._first_t: float | None = None  # first window since (re)start

    def scores(self) -> dict[str, float | None]:
        return {h: self.heads[h].smoother.value for h in HEADS}

    def levels(self) -> dict[str, str]:
        return {h: self.heads[h].hysteresis.level.name for h in HEADS}

    def _set(self, state: str, modality: str, t: float | None) -> StateChange | None:
        if state == self.state:
            self.modality = modality
            return None
        raised_by = self._raised_by(state, modality)
        change = StateChange(
            self.stream_id, state, self.state, modality, self.scores(), t, raised_by=raised_by
        )
        self.state, self.modality, self.raised_by = state, modality, raised_by
        return change

    def _raised_by(self, state: str, modality: str) -> str | None:
        """Which modality a SUSPICIOUS or ALERT verdict rests on (None for other states)."""
        if state not in (SUSPICIOUS, ALERT):
            return None
        if modality == "audio":
            return VOICE
        if modality == "visual":
            return FACE
        # The fused head decided: name each single-modality head that flags at least
        # SUSPICIOUS; when neither does, the fused head saw what no single head sees (the
        # sync head's own level, when the model has one, says so too).
        voice = self.heads["audio"].hysteresis.level >= Level.SUSPICIOUS
        face = self.heads["visual"].hysteresis.level >= Level.SUSPICIOUS
        if voice and face:
            return VOICE_FACE
        return VOICE if voice else FACE if face else LIP_SYNC

    def mark(self, state: str, t: float | None = None) -> StateChange | None:
        """Source-driven states (STARTING, DOWN, ENDED); scoring resumes from scratch."""
        for head in self.heads.values():
            head.reset()
        self.audio_gate.reset()
        self.visual_gate.reset()
        self._first_t = None
        return self._set(state, "source", t)

    def update(
        self,
        t: float,
        fused: float,
        audio: float,
        visual: float,
        *,
        face_fraction: float,
        audio_rms: float,
        has_audio: bool,
        has_video: bool = True,
        sync: float | None = None,
    ) -> StateChange | None:
        """One scored window ending at stream time t; returns the change, if any. `sync` is
        the lip-sync head's score, None for a model without it."""
        p = self.params
        a_reason = NO_AUDIO if not has_audio else SILENCE if audio_rms < p.silence_rms else None
        v_reason = NO_FACE if not has_video or face_fraction < p.min_face_fraction else None
        a_gate, a_ok = self.audio_gate.update(a_reason, t)
        v_gate, v_ok = self.visual_gate.update(v_reason, t)
        if a_gate is not None:
            self.heads["audio"].reset()
        if v_gate is not None:
            self.heads["visual"].reset()
        if a_gate is not None or v_gate is not None:
            self.heads["fused"].reset()
            self.heads["sync"].reset()
        if a_ok:
            self.heads["audio"].update(audio, t)
        if v_ok:
            self.heads["visual"].update(visual, t)
        if a_ok and v_ok:
            self.heads["fused"].update(fused, t)
            if sync is not None:
                self.heads["sync"].update(sync, t)
        if self._first_t is None:
            self._first_t = t
        if self.state == STARTING and t - self._first_t < p.min_escalate_s - 1e-9:
            # Settling: no verdict (not even CLEAR) before a level could have been earned.
            return None
        return self._set(*self._overall(a_gate, v_gate), t)

    def _overall(self, a_gate: str | None, v_gate: str | None) -> tuple[str, str]:
        if a_gate is None and v_gate is None:
            if self.heads["fused"].smoother.value is None:
                # Usable but not yet scored (every window so far was a transient gap).
                return (self.state if self.state != STARTING else STARTING), "fused"
            return self.heads["fused"].hysteresis.level.name, "fused"
        if a_gate is not None and v_gate is not None:
            return NO_FACE, "visual"
        other, gate, gated = (
            ("visual", a_gate, "audio") if a_gate is not None else ("audio", v_gate, "visual")
        )
        level = self.heads[other].hysteresis.level
        if level > Level.CLEAR:
            return level.name, other
        assert gate is not None
        return gate, gated
