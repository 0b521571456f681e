"""Replay calls through the live state machine and choose its settings for a budget.

The replay feeds each call's window scores to `monitor.live.state.StreamState`, the code
the live monitor runs, so a setting behaves here exactly as it will on a stream. For each
smoothing and hold time, each head's alert threshold is lowered as far as the false
ALERTs per stream-hour on real calls stay within the budget (fused first, then the voice
and face heads, which decide while the other modality is gated); of those, the setting
that alerts on the most fake calls, soonest, wins.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from monitor.live.state import ALERT, SUSPICIOUS, StateParams, StreamState, Thresholds
from train.calibration.calls import Call

ALERT_GRID = tuple(float(round(x, 3)) for x in (*np.arange(0.5, 0.99, 0.02), 0.99, 0.995))
SMOOTHING_GRID = (("ema", 0.5), ("ema", 0.3), ("ema", 0.7), ("median", 3), ("median", 5))
HOLD_GRID = (1.0, 2.0, 3.0)  # min_escalate_s candidates, stream seconds
NEVER = 1.01  # a threshold no probability reaches: the head never raises a level
ALERT_BAND = 0.15  # alert_off = alert_on - this
SUSPICIOUS_BELOW = 0.2  # suspicious_on = alert_on - this (at least SUSPICIOUS_FLOOR)
SUSPICIOUS_FLOOR = 0.3
SUSPICIOUS_BAND = 0.1


def thresholds_for(alert_on: float) -> Thresholds:
    """The four thresholds of a head from its alert threshold (fixed dead bands)."""
    if alert_on >= 1.0:
        return Thresholds(NEVER, NEVER, NEVER, NEVER)
    s_on = max(SUSPICIOUS_FLOOR, alert_on - SUSPICIOUS_BELOW)
    s_on = min(s_on, alert_on)
    return Thresholds(
        suspicious_on=s_on,
        suspicious_off=max(0.0, s_on - SUSPICIOUS_BAND),
        alert_on=alert_on,
        alert_off=max(s_on, alert_on - ALERT_BAND),
    )


@dataclass(frozen=True)
class Setting:
    """One candidate: smoothing, hold time and each head's alert threshold."""

    smoothing: str
    smoothing_arg: float  # ema_alpha or median_windows
    min_escalate_s: float
    alert_on: dict[str, float] = field(default_factory=dict)  # head -> alert_on

    def params(self, base: StateParams) -> StateParams:
        per_head = tuple(
            (h, thresholds_for(self.alert_on.get(h, NEVER)))
            for h in ("fused", "audio", "visual", "sync")
        )
        kw = (
            {"ema_alpha": self.smoothing_arg}
            if self.smoothing == "ema"
            else {"median_windows": int(self.smoothing_arg)}
        )
        return replace(
            base,
            smoothing=self.smoothing,
            min_escalate_s=self.min_escalate_s,
            per_head=per_head,
            **kw,
        )


@dataclass
class CallResult:
    kind: str
    family: str
    windows: int
    alerts: int  # transitions into ALERT (before the turn, for a turn call)
    suspicious: int  # transitions into SUSPICIOUS (likewise)
    time_to_alert_s: float | None  # from the turn; None: never alerted after it


def replay(call: Call, params: StateParams, window_s: float, hop_s: float) -> CallResult:
    """Feed one call to the live state machine; count what it raised."""
    st = StreamState("calibrate", params)
    alerts = suspicious = 0
    tta: float | None = None
    turn = call.turn
    turn_t = None if turn is None else (turn * hop_s)  # start of the first fake window
    s, ff, rms = call.scores, call.face_fraction, call.rms
    for i in range(call.n):
        t = window_s + i * hop_s
        sync = None if math.isnan(s[i, 3]) else float(s[i, 3])
        change = st.update(
            t,
            float(s[i, 0]),
            float(s[i, 1]),
            float(s[i, 2]),
            face_fraction=float(ff[i]),
            audio_rms=float(rms[i]),
            has_audio=bool(call.has_audio[i]),
            has_video=bool(call.has_video[i]),
            sync=sync,
        )
        before_turn = turn is None or i < turn
        if change is not None and before_turn:
            alerts += change.state == ALERT
            suspicious += change.state == SUSPICIOUS
        if turn_t is not None and not before_turn and tta is None and st.state == ALERT:
            tta = max(0.0, t - turn_t)
    return CallResult(call.kind, call.family, call.n, alerts, suspicious, tta)


@dataclass
class Figures:
    """What a setting did on one part's calls."""

    real_hours: float
    false_alerts: int
    false_alerts_per_hour: float
    suspicious_per_hour: float
    fake_calls: int
    missed_share: float  # fake and turn calls never alerted
    tta_median_s: float | None
    tta_p95_s: float | None
    by_family: dict[str, dict[str, float | int | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _tta_stats(results: list[CallResult]) -> tuple[float, float | None, float | None]:
    ttas = [r.time_to_alert_s for r in results if r.time_to_alert_s is not None]
    missed = 1.0 - len(ttas) / len(results) if results else 0.0
    if not ttas:
        return missed, None, None
    return missed, float(np.median(ttas)), float(np.percentile(ttas, 95))


def figures(results: list[CallResult], hop_s: float) -> Figures:
    real = [r for r in results if r.kind == "real"]
    fake = [r for r in results if r.kind != "real"]
    hours = sum(r.windows for r in real) * hop_s / 3600.0
    false_alerts = sum(r.alerts for r in real)
    missed, med, p95 = _tta_stats(fake)
    by_family: dict[str, dict[str, float | int | None]] = {}
    for fam in sorted({r.family for r in fake}):
        mine = [r for r in fake if r.family == fam]
        m, md, p = _tta_stats(mine)
        by_family[fam] = {"calls": len(mine), "missed_share": m, "tta_median_s": md, "tta_p95_s": p}
    return Figures(
        real_hours=hours,
        false_alerts=false_alerts,
        false_alerts_per_hour=false_alerts / hours if hours else math.inf,
        suspicious_per_hour=sum(r.suspicious for r in real) / hours if hours else math.inf,
        fake_calls=len(fake),
        missed_share=missed,
        tta_median_s=med,
        tta_p95_s=p95,
        by_family=by_family,
    )


def run_all(
    calls: Iterable[Call], params: StateParams, window_s: float, hop_s: float
) -> list[CallResult]:
    return [replay(c, params, window_s, hop_s) for c in calls]


def _lowest_within_budget(
    setting: Setting,
    head: str,
    real_calls: list[Call],
    base: StateParams,
    budget: float,
    hours: float,
    window_s: float,
    hop_s: float,
) -> Setting:
    """Lower `head`'s alert threshold while real calls stay within the budget."""
    best = replace(setting, alert_on={**setting.alert_on, head: 1.0})
    for alert_on in sorted(ALERT_GRID, reverse=True):
        trial = replace(setting, alert_on={**setting.alert_on, head: alert_on})
        results = run_all(real_calls, trial.params(base), window_s, hop_s)
        if sum(r.alerts for r in results) / hours > budget:
            break
        best = trial
    return best


def choose(
    calls: list[Call],
    base: StateParams,
    budget: float,
    window_s: float,
    hop_s: float,
    heads: tuple[str, ...] = ("fused", "audio", "visual"),
) -> tuple[Setting, Figures]:
    """The setting that meets the budget on these calls and alerts most, soonest."""
    real_calls = [c for c in calls if c.kind == "real"]
    fake_calls = [c for c in calls if c.kind != "real"]
    hours = sum(c.n for c in real_calls) * hop_s / 3600.0
    best: tuple[tuple[float, float], Setting, Figures] | None = None
    for smoothing, arg in SMOOTHING_GRID:
        for hold in HOLD_GRID:
            setting = Setting(smoothing, arg, hold)
            for head in heads:
                setting = _lowest_within_budget(
                    setting, head, real_calls, base, budget, hours, window_s, hop_s
                )
            if "sync" not in heads:  # the sync head's level does not decide the state
                setting = replace(
                    setting, alert_on={**setting.alert_on, "sync": setting.alert_on["fused"]}
                )
            results = run_all(real_calls + fake_calls, setting.params(base), window_s, hop_s)
            fig = figures(results, hop_s)
            key = (round(fig.missed_share, 3), fig.tta_median_s or math.inf)
            if best is None or key < best[0]:
                best = (key, setting, fig)
    assert best is not None
    return best[1], best[2]
