"""The per-stream state machine: smoothing, hysteresis, minimum durations, gates."""

from __future__ import annotations

import pytest

from monitor.live.state import (
    ALERT,
    CLEAR,
    DOWN,
    NO_AUDIO,
    NO_FACE,
    SILENCE,
    STARTING,
    SUSPICIOUS,
    Hysteresis,
    Level,
    Smoother,
    StateParams,
    StreamState,
)

LOUD = 0.1  # RMS well above the silence floor


def feed(
    st: StreamState,
    scores: list[float],
    *,
    t0: float = 0.0,
    hop: float = 1.0,
    face: float = 1.0,
    rms: float = LOUD,
    has_audio: bool = True,
) -> list[str]:
    """Feed windows (same score on every head) and return the state after each."""
    out = []
    for i, s in enumerate(scores):
        st.update(t0 + i * hop, s, s, s, face_fraction=face, audio_rms=rms, has_audio=has_audio)
        out.append(st.state)
    return out


def test_smoother_ema_and_median() -> None:
    ema = Smoother(StateParams(smoothing="ema", ema_alpha=0.5))
    assert [ema.update(x) for x in (1.0, 0.0, 0.0)] == [1.0, 0.5, 0.25]
    med = Smoother(StateParams(smoothing="median", median_windows=3))
    assert [med.update(x) for x in (0.9, 0.1, 0.8, 0.7)] == [0.9, 0.5, 0.8, 0.7]


def test_hysteresis_dead_band_and_min_durations() -> None:
    p = StateParams(min_escalate_s=2.0, min_deescalate_s=3.0)
    h = Hysteresis(p)
    # one odd window does not raise anything
    assert h.update(0.95, 0.0) == Level.CLEAR
    assert h.update(0.1, 1.0) == Level.CLEAR
    # a sustained high score: ALERT after min_escalate_s
    assert [h.update(0.95, t) for t in (2.0, 3.0, 4.0)] == [Level.CLEAR, Level.CLEAR, Level.ALERT]
    # inside the dead band (alert_off=0.65 .. alert_on=0.8) ALERT holds
    assert all(h.update(0.7, t) == Level.ALERT for t in (5.0, 6.0, 7.0, 8.0, 9.0))
    # below alert_off but above suspicious_off: SUSPICIOUS only after min_deescalate_s
    assert [h.update(0.5, t) for t in (10.0, 11.0, 12.0, 13.0)] == [
        Level.ALERT,
        Level.ALERT,
        Level.ALERT,
        Level.SUSPICIOUS,
    ]
    # 0.45 is below suspicious_on but above suspicious_off: SUSPICIOUS holds
    assert all(h.update(0.45, t) == Level.SUSPICIOUS for t in (14.0, 15.0, 16.0, 17.0))
    # and a fresh CLEAR stream needs suspicious_on (0.5) to become SUSPICIOUS
    fresh = Hysteresis(p)
    assert all(fresh.update(0.45, t) == Level.CLEAR for t in (0.0, 1.0, 2.0, 3.0))


def test_interrupted_escalation_restarts_the_clock() -> None:
    h = Hysteresis(StateParams(min_escalate_s=2.0))
    assert h.update(0.9, 0.0) == Level.CLEAR
    assert h.update(0.9, 1.0) == Level.CLEAR
    assert h.update(0.1, 2.0) == Level.CLEAR  # the run is broken
    assert h.update(0.9, 3.0) == Level.CLEAR
    assert h.update(0.9, 4.0) == Level.CLEAR
    assert h.update(0.9, 5.0) == Level.ALERT


def test_stream_settles_then_alerts_and_recovers() -> None:
    st = StreamState("s", StateParams(smoothing="ema", ema_alpha=1.0))  # no smoothing
    states = feed(st, [0.9] * 4 + [0.1] * 5)
    # no verdict in the first 2 s, then ALERT (the escalation was timed from the start)
    assert states[:2] == [STARTING, STARTING]
    assert states[2] == ALERT and states[3] == ALERT
    # the drop must hold 3 s before the level falls
    assert states[4:7] == [ALERT, ALERT, ALERT]
    assert states[7] == CLEAR


def test_real_stream_goes_clear_with_one_event() -> None:
    st = StreamState("s")
    changes = []
    for i in range(6):
        c = st.update(float(i), 0.1, 0.1, 0.1, face_fraction=1.0, audio_rms=LOUD, has_audio=True)
        if c is not None:
            changes.append(c)
    assert [(c.previous, c.state) for c in changes] == [(STARTING, CLEAR)]
    assert changes[0].modality == "fused" and changes[0].scores["fused"] == pytest.approx(0.1)


def test_muted_caller_is_silence_not_real_or_fake() -> None:
    st = StreamState("s", StateParams(min_gate_s=2.0))
    # fused/audio would say "fake", but the audio is silent and the face looks real
    for i in range(5):
        st.update(float(i), 0.95, 0.95, 0.1, face_fraction=1.0, audio_rms=0.0, has_audio=True)
    assert st.state == SILENCE
    assert st.scores()["audio"] is None and st.scores()["fused"] is None
    assert st.scores()["visual"] == pytest.approx(0.1)


def test_no_audio_track_and_a_fake_face_still_alerts_on_visual() -> None:
    st = StreamState("s", StateParams(ema_alpha=1.0))
    changes = []
    for i in range(6):
        c = st.update(float(i), 0.5, 0.5, 0.95, face_fraction=1.0, audio_rms=0.0, has_audio=False)
        if c:
            changes.append(c)
    assert st.state == ALERT
    assert changes[-1].modality == "visual"
    # without the fake face it would report the gate
    st2 = StreamState("s2")
    feed(st2, [0.1] * 5, has_audio=False, rms=0.0)
    assert st2.state == NO_AUDIO


def test_camera_off_is_no_face_and_recovers_when_the_face_returns() -> None:
    st = StreamState("s", StateParams(ema_alpha=1.0, min_gate_s=2.0))
    assert feed(st, [0.1] * 4, face=0.0)[-1] == NO_FACE
    assert st.modality == "visual"
    # the face is back: the gate lifts at once, the fused head restarts from scratch
    states = feed(st, [0.1] * 3, t0=4.0, face=1.0)
    assert states == [CLEAR, CLEAR, CLEAR]


def test_short_face_dropouts_do_not_gate() -> None:
    st = StreamState("s", StateParams(ema_alpha=1.0, min_gate_s=2.0))
    feed(st, [0.9] * 4)
    assert st.state == ALERT
    # one window without a face (a head turn) keeps the alert
    st.update(4.0, 0.9, 0.9, 0.9, face_fraction=0.0, audio_rms=LOUD, has_audio=True)
    assert st.state == ALERT
    assert feed(st, [0.9], t0=5.0)[-1] == ALERT


def test_down_and_back() -> None:
    st = StreamState("s")
    feed(st, [0.1] * 4)
    change = st.mark(DOWN, 4.0)
    assert change is not None and (change.previous, change.state, change.modality) == (
        CLEAR,
        DOWN,
        "source",
    )
    assert st.mark(STARTING) is not None
    assert feed(st, [0.6] * 5, t0=10.0)[-1] == SUSPICIOUS


def test_params_are_checked() -> None:
    with pytest.raises(ValueError, match="suspicious_off <= suspicious_on"):
        StateParams(suspicious_on=0.3, suspicious_off=0.4)
    with pytest.raises(ValueError, match="smoothing"):
        StateParams(smoothing="mean")


@pytest.mark.parametrize(
    ("audio", "visual", "raised_by"),
    [(0.95, 0.1, "voice"), (0.1, 0.95, "face"), (0.95, 0.95, "voice_face"), (0.1, 0.1, "lip_sync")],
)
def test_a_verdict_names_the_modality_that_raised_it(
    audio: float, visual: float, raised_by: str
) -> None:
    st = StreamState("s", StateParams(ema_alpha=1.0))
    changes = []
    for i in range(6):  # the fused head is high in every case
        c = st.update(
            float(i), 0.95, audio, visual, face_fraction=1.0, audio_rms=LOUD, has_audio=True
        )
        if c:
            changes.append(c)
    assert st.state == ALERT and st.raised_by == raised_by
    assert [(c.previous, c.state, c.raised_by) for c in changes] == [(STARTING, ALERT, raised_by)]


def test_the_raising_modality_holds_for_the_whole_alert_and_clears_with_it() -> None:
    st = StreamState("s", StateParams(ema_alpha=1.0))
    for i in range(6):
        st.update(float(i), 0.95, 0.95, 0.1, face_fraction=1.0, audio_rms=LOUD, has_audio=True)
    assert (st.state, st.raised_by) == (ALERT, "voice")
    for i in range(6, 9):  # the face head joins in while the stream stays in ALERT
        st.update(float(i), 0.95, 0.95, 0.95, face_fraction=1.0, audio_rms=LOUD, has_audio=True)
    assert (st.state, st.raised_by) == (ALERT, "voice")
    feed(st, [0.1] * 8, t0=9.0)
    assert (st.state, st.raised_by) == (CLEAR, None)
    # a gated modality: the other head's verdict is its own
    st2 = StreamState("s2", StateParams(ema_alpha=1.0))
    for i in range(6):
        st2.update(float(i), 0.5, 0.5, 0.95, face_fraction=1.0, audio_rms=0.0, has_audio=False)
    assert (st2.state, st2.raised_by) == (ALERT, "face")


def test_the_sync_head_has_its_own_level_and_pauses_with_a_gated_modality() -> None:
    st = StreamState("s", StateParams(ema_alpha=1.0))
    for i in range(6):  # voice and face each look real; their timing does not
        st.update(
            float(i), 0.9, 0.1, 0.1, face_fraction=1.0, audio_rms=LOUD, has_audio=True, sync=0.95
        )
    assert st.levels()["sync"] == "ALERT" and st.scores()["sync"] == pytest.approx(0.95)
    assert (st.state, st.raised_by) == (ALERT, "lip_sync")
    for i in range(6, 10):  # camera off: no mouth, no sync verdict
        st.update(float(i), 0.9, 0.1, 0.1, face_fraction=0.0, audio_rms=LOUD, has_audio=True)
    assert st.scores()["sync"] is None and st.levels()["sync"] == "CLEAR"
    # a model without the sync output never scores the head
    old = StreamState("old")
    feed(old, [0.2] * 4)
    assert old.scores()["sync"] is None
