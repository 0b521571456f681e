"""`calibrate`: calls built from a split, replayed through the live state machine, a setting
chosen for a false-alarm budget and reported on held-out calls, then carried by the model
into `serve`, `watch` and `replay` (unless the config overrides it)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engines.toy import make_toy_onnx
from monitor.backend import load_backend
from monitor.cli import main
from monitor.errors import DatasetError
from monitor.live.config import MonitorConfig, effective_state
from monitor.live.pipeline import Pipeline
from monitor.live.state import StateParams, StreamState
from tests.support.tiny_dataset import TINY_CONTRACT, write_dataset
from train.calibration import calibrate_clips, write_calibration
from train.calibration.calls import build_calls
from train.calibration.search import Setting, replay
from train.calibration.windows import ClipWindows

HOP, WINDOW = 1.0, 2.0
WINDOWS_PER_CLIP = 30  # 30 s clips


def clip(name: str, target: int, family: str, rng: np.random.Generator) -> ClipWindows:
    n = WINDOWS_PER_CLIP
    scores = np.clip(rng.normal(0.15, 0.08, (n, 4)), 0, 1).astype(np.float32)
    if target == 0 and rng.random() < 0.1:  # a real clip the model is unsure of, briefly
        scores[10:13, 0] = 0.72
    if family in ("audio", "both"):
        scores[:, 1] = np.clip(rng.normal(0.9, 0.05, n), 0, 1)
    if family in ("face", "both"):
        scores[:, 2] = np.clip(rng.normal(0.9, 0.05, n), 0, 1)
    if family == "sync":
        scores[:, 3] = np.clip(rng.normal(0.9, 0.05, n), 0, 1)
    if target:
        scores[:, 0] = np.clip(rng.normal(0.9, 0.05, n), 0, 1)
    muted = camera_off = None
    if target == 0:
        muted = scores.copy()
        muted[:, 1] = 0.95  # the voice head on silence: nonsense the gate must hide
        camera_off = scores.copy()
        camera_off[:, 2] = 0.95  # the face head on black frames, likewise
    return ClipWindows(
        name,
        target,
        family,
        scores,
        np.ones(n, np.float32),
        np.full(n, 0.1, np.float32),
        True,
        True,
        muted,
        camera_off,
    )


@pytest.fixture(scope="module")
def clips() -> list[ClipWindows]:
    rng = np.random.default_rng(0)
    out = [clip(f"real{i}", 0, "real", rng) for i in range(400)]  # 400 x 30 s = 3.3 h
    for fam in ("audio", "face", "both", "sync"):
        out += [clip(f"{fam}{i}", 1, fam, rng) for i in range(24)]
    return out


def test_calls_are_real_fake_and_turning_with_pauses_and_camera_off(
    clips: list[ClipWindows],
) -> None:
    calls = build_calls(clips, seed=0)
    kinds = {c.kind for c in calls}
    assert kinds == {"real", "fake", "turn"}
    real = [c for c in calls if c.kind == "real"]
    assert sum(c.n for c in real) == 400 * WINDOWS_PER_CLIP  # every real window once
    assert any((c.rms == 0).any() for c in real)  # muted stretches
    assert any((c.face_fraction == 0).any() for c in real)  # camera off
    turn = next(c for c in calls if c.kind == "turn")
    assert turn.turn == 2 * WINDOWS_PER_CLIP and turn.scores[: turn.turn, 0].max() < 0.8


def test_the_replay_is_the_live_state_machine(clips: list[ClipWindows]) -> None:
    call = next(c for c in build_calls(clips, seed=0) if c.kind == "turn")
    params = Setting("ema", 0.5, 2.0, {"fused": 0.8, "audio": 0.8, "visual": 0.8}).params(
        StateParams()
    )
    st = StreamState("x", params)
    states = []
    for i in range(call.n):
        s = call.scores[i]
        st.update(
            WINDOW + i * HOP, *map(float, s[:3]), face_fraction=1.0, audio_rms=0.1,
            has_audio=True, sync=float(s[3]),
        )  # fmt: skip
        states.append(st.state)
    first = states.index("ALERT")
    result = replay(call, params, WINDOW, HOP)
    assert result.time_to_alert_s == pytest.approx(WINDOW + first * HOP - call.turn * HOP)


def test_calibration_meets_the_budget_and_reports_held_out_calls(
    clips: list[ClipWindows],
) -> None:
    cal = calibrate_clips(clips, StateParams(), budget=1.0, window_s=WINDOW, hop_s=HOP)
    assert cal.chosen_on.false_alerts_per_hour <= 1.0
    assert cal.held_out.real_hours > 1.0 and cal.chosen_on.real_hours > 1.0
    h = cal.held_out
    assert h.missed_share == 0.0 and h.tta_median_s is not None and h.tta_median_s <= 6
    assert set(h.by_family) == {"audio", "face", "both", "sync"}
    # the brief 0.72 fused bumps in real clips stay below the chosen fused threshold or
    # shorter than its hold; the gates hide the nonsense scores of muted / black windows
    assert h.false_alerts_per_hour <= 2.0
    assert cal.heads == ("fused", "audio", "visual")
    fused = cal.state["heads"]["fused"]
    assert fused["suspicious_off"] <= fused["suspicious_on"] <= fused["alert_on"] <= 1
    # the written section is a valid `state:` config and gives the chosen thresholds
    cfg = MonitorConfig.model_validate({"model": "m.onnx", "state": cal.state})
    assert cfg.state.params().thresholds("fused").alert_on == fused["alert_on"]


def test_a_split_too_small_for_the_budget_is_refused(clips: list[ClipWindows]) -> None:
    with pytest.raises(DatasetError, match=r"needs at least 10.00 h"):
        calibrate_clips(clips, StateParams(), budget=0.1, window_s=WINDOW, hop_s=HOP)


def test_without_per_modality_labels_only_the_fused_head_is_calibrated(
    clips: list[ClipWindows],
) -> None:
    plain = [replace(c, family="real" if c.target == 0 else "fake") for c in clips]
    cal = calibrate_clips(plain, StateParams(), budget=1.0, window_s=WINDOW, hop_s=HOP)
    assert cal.heads == ("fused",)
    assert set(cal.held_out.by_family) == {"fake"}


def test_the_model_carries_its_calibration_to_the_monitor(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", {"real": 16, "voice_clone": 6, "face_swap": 6})
    model = make_toy_onnx(TINY_CONTRACT, tmp_path / "model.onnx")
    rc = main(
        [
            "calibrate", str(model), str(data), "--false-alerts-per-hour", "1000",
            "--workers", "0", "--no-progress", "--out", str(tmp_path / "report.json"),
        ]
    )  # fmt: skip
    assert rc == 0
    manifest = json.loads((tmp_path / "model.onnx.json").read_text())
    report = json.loads((tmp_path / "report.json").read_text())
    assert manifest["calibration"] == report and report["false_alerts_per_hour"] == 1000
    chosen = report["state"]["heads"]["fused"]["alert_on"]
    backend = load_backend(model, "onnxruntime")
    assert backend.calibration == report  # type: ignore[attr-defined]
    # the monitor runs with the model's settings ...
    plain = MonitorConfig.model_validate({"model": str(model)})
    pipeline = Pipeline(backend, plain)
    assert pipeline.state_params.thresholds("fused").alert_on == chosen
    assert "the model's calibrated settings" in pipeline.state_source
    # ... unless the config sets a key itself
    own = MonitorConfig.model_validate({"model": str(model), "state": {"min_escalate_s": 7}})
    state, why = effective_state(own.state, report)
    assert state.min_escalate_s == 7 and state.params().thresholds("fused").alert_on == chosen
    assert "overridden by the configuration's min_escalate_s" in why
    backend.close()
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(f"model: {model}\nstate: {{alert_on: 0.9, alert_off: 0.7}}\n")
    assert main(["serve", "--config", str(cfg), "--check-config"]) == 0


def test_check_config_shows_the_effective_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_toy_onnx(TINY_CONTRACT, tmp_path / "model.onnx")
    record = {
        "false_alerts_per_hour": 0.5,
        "state": {
            "smoothing": "median",
            "median_windows": 3,
            "heads": {"fused": {"suspicious_on": 0.5, "suspicious_off": 0.4,
                                "alert_on": 0.77, "alert_off": 0.6}},
        },
    }  # fmt: skip
    manifest = json.loads((tmp_path / "model.onnx.json").read_text())
    manifest["calibration"] = record
    (tmp_path / "model.onnx.json").write_text(json.dumps(manifest))
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(f"model: {model}\nstate: {{min_escalate_s: 4}}\n")
    assert main(["serve", "--config", str(cfg), "--check-config"]) == 0
    out = capsys.readouterr().out
    assert "the model's calibrated settings (false-alarm budget 0.5 per stream-hour)" in out
    assert "overridden by the configuration's min_escalate_s" in out
    assert "smoothing median" in out and "hold 4 s up" in out
    assert "fused   suspicious 0.5/0.4  alert 0.77/0.6" in out


def test_a_checkpoint_keeps_its_calibration_and_its_export_carries_it(
    tiny_detector: dict[str, Path], tmp_path: Path
) -> None:
    ckpt = tmp_path / "best.pt"
    shutil.copy(tiny_detector["checkpoint"], ckpt)
    from train.calibration import Calibration

    cal = calibrate_clips(
        [c for c in _small_clips()], StateParams(), budget=50.0, window_s=WINDOW, hop_s=HOP
    )
    assert isinstance(cal, Calibration)
    write_calibration(ckpt, cal)
    backend = load_backend(ckpt, "torch", "cpu")
    assert backend.calibration == cal.to_dict()  # type: ignore[attr-defined]
    backend.close()
    assert main(["export", str(ckpt), "--out", str(tmp_path / "m.onnx")]) == 0
    exported = json.loads((tmp_path / "m.onnx.json").read_text())
    assert exported["calibration"] == cal.to_dict()


def _small_clips() -> list[ClipWindows]:
    rng = np.random.default_rng(1)
    out = [clip(f"r{i}", 0, "real", rng) for i in range(12)]
    return out + [clip(f"f{i}", 1, "audio", rng) for i in range(8)]
