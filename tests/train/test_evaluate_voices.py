"""Evaluation by voice engine and speaker, and delivery conditions that leave a voice real.

- `evaluate` breaks the fused score down per engine (held-out engines marked and pooled)
  and per speaker, from the manifest's `engine` and `speaker` columns;
- the delivery conditions (telephone line, Opus, AAC, packet loss concealment, gain
  control, noise suppression) keep a window's length and type, change it, and are drawn
  by the training augmentation without moving any other augmentation's draw;
- an honest call's audio-video skew (`av_offset`) moves a window's voice against its crops
  without a silent gap, drawn without moving any other draw;
- bench/delivery_voices.py runs end to end on a tiny dataset with the toy detector.
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from engines.toy import make_toy_onnx
from monitor.backend import load_backend
from tests.support.tiny_dataset import TINY_CONTRACT, write_dataset
from train.augment import Augmenter, av_offset
from train.commands.evaluate import print_voice_breakdown
from train.config import AugmentConfig
from train.delivery import DELIVERY, DELIVERY_PROB, delivery
from train.evaluate import ClipScores, clip_metrics, training_engines, voice_metrics
from train.splits import ClipRecord, load_split

RATE = 16_000


def _scores(rows: list[tuple[int, str, str, float, float]]) -> ClipScores:
    """ClipScores from (target, engine, speaker, p_fused, p_audio) rows."""
    recs = tuple(
        ClipRecord(
            f"c{i}.mp4",
            Path(f"c{i}.mp4"),
            t,
            t,
            0,
            ("tts_" + e) if t else "real",
            "audio" if t else "real",
            None,
            e,
            s,
        )
        for i, (t, e, s, _, _) in enumerate(rows)
    )
    fused = np.array([r[3] for r in rows])
    audio = np.array([r[4] for r in rows])
    return ClipScores(recs, fused, audio, fused * 0, np.ones(len(rows), dtype=np.int64))


ROWS = [
    (0, "recording", "carlo", 0.1, 0.1),
    (0, "recording", "carlo", 0.2, 0.2),
    (0, "recording", "armelle", 0.3, 0.3),
    (0, "recording", "armelle", 0.4, 0.4),
    (1, "espeak-ng", "carlo", 0.9, 0.9),  # above every real
    (1, "espeak-ng", "armelle", 0.8, 0.8),
    (1, "festival", "carlo", 0.15, 0.35),  # between the reals
    (1, "festival", "armelle", 0.05, 0.05),  # below every real
]


def test_per_engine_held_out_engines_and_per_speaker() -> None:
    m = voice_metrics(_scores(ROWS), seen_engines={"espeak-ng", "dsp"})
    eng = m["per_engine"]
    assert set(eng) == {"espeak-ng", "festival"}  # engines of fakes only
    assert eng["espeak-ng"]["auc"] == 1.0 and eng["espeak-ng"]["n_fake"] == 2
    assert eng["espeak-ng"]["n_real"] == 4 and eng["espeak-ng"]["held_out"] is False
    assert eng["festival"]["auc"] == pytest.approx(1 / 8)  # 1 of 8 pairs ranked right
    assert eng["festival"]["held_out"] is True
    assert eng["festival"]["audio_auc"] == pytest.approx(3 / 8)
    held = m["held_out_engines"]
    assert held["engines"] == ["festival"] and held["n_fake"] == 2
    spk = m["per_speaker"]
    assert set(spk) == {"carlo", "armelle"}
    # carlo: reals 0.1, 0.2; fakes 0.9, 0.15 -> 3 of 4 pairs
    assert spk["carlo"]["auc"] == pytest.approx(3 / 4)
    assert spk["carlo"]["n_real"] == 2 and spk["carlo"]["n_fake"] == 2
    # Without the training split's engines nothing is called held out.
    plain = voice_metrics(_scores(ROWS))
    assert "held_out" not in plain["per_engine"]["festival"]
    assert "held_out_engines" not in plain
    # clip_metrics carries the same breakdown; procedural records without engines add nothing.
    assert clip_metrics(_scores(ROWS), seen_engines={"espeak-ng"})["per_engine"] == eng


def test_records_without_voice_columns_report_no_voice_breakdown() -> None:
    recs = tuple(
        ClipRecord(f"c{i}.mp4", Path(f"c{i}.mp4"), t, None, None, "m" if t else "real")
        for i, t in enumerate((0, 0, 1, 1))
    )
    p = np.array([0.1, 0.2, 0.8, 0.9])
    scores = ClipScores(recs, p, p, p, np.ones(4, dtype=np.int64))
    assert voice_metrics(scores) == {}


def test_engine_and_speaker_columns_are_read_and_training_engines_found(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "d", {"real": 2, "voice_clone": 2})
    with (root / "manifest.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    fields = [*rows[0].keys(), "split", "engine", "speaker"]
    for r in rows:
        r["split"] = "train" if r["video_name"].startswith("tra") else "val"
        fake = r["target"] == "1"
        r["engine"] = ("flite" if r["split"] == "train" else "festival") if fake else "recording"
        r["speaker"] = "allison" if r["split"] == "train" else "july"
    with (root / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    val = load_split(root, "val")
    assert {r.engine for r in val.records} == {"festival", "recording"}
    assert {r.speaker for r in val.records} == {"july"}
    assert training_engines(root) == {"flite"}


def test_the_evaluate_command_prints_the_voice_breakdown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_voice_breakdown(voice_metrics(_scores(ROWS), seen_engines={"espeak-ng"}))
    out = capsys.readouterr().out
    assert "festival" in out and "held out" in out
    assert "held-out engines (festival)" in out
    assert "carlo" in out and "n=2+2" in out


# ---- delivery conditions ----------------------------------------------------------------


def _voice(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    f0 = 160.0
    x = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 30))
    x = x * (np.sin(2 * np.pi * 3.0 * t) > -0.2) + rng.normal(0, 0.003, t.size)
    return (0.1 * x / np.max(np.abs(x))).astype(np.float32)


@pytest.mark.parametrize("condition", list(DELIVERY))
def test_delivery_keeps_length_changes_the_voice_and_is_deterministic(condition: str) -> None:
    x = _voice()
    a = delivery(x, RATE, np.random.default_rng(3), condition)
    b = delivery(x, RATE, np.random.default_rng(3), condition)
    assert a.dtype == np.float32 and a.shape == x.shape and np.isfinite(a).all()
    assert np.array_equal(a, b)
    assert np.abs(a).max() <= 1.0
    assert not np.allclose(a, x, atol=1e-4)
    # Still the same voice at the same time (codecs are undelayed), not a different signal.
    assert np.corrcoef(np.abs(a), np.abs(x))[0, 1] > 0.3


def test_telephone_and_codecs_remove_the_top_band() -> None:
    x = _voice()
    freqs = np.fft.rfftfreq(x.size, 1.0 / RATE)
    for condition, edge in (("telephone", 3_800.0), ("opus", 7_000.0)):
        spec = np.abs(np.fft.rfft(delivery(x, RATE, np.random.default_rng(0), condition))) ** 2
        assert spec[freqs > edge].sum() < 0.02 * spec.sum(), condition


def test_agc_pulls_a_quiet_voice_up_and_packet_loss_repeats_packets() -> None:
    quiet = _voice() * 0.05
    louder = delivery(quiet, RATE, np.random.default_rng(1), "agc")
    assert np.sqrt(np.mean(louder**2)) > 3 * np.sqrt(np.mean(quiet**2))
    x = _voice()
    y = delivery(x, RATE, np.random.default_rng(4), "packet_loss")
    hop = RATE // 50
    lost = [
        i
        for i in range(1, x.size // hop)
        if not np.allclose(x[i * hop : (i + 1) * hop], y[i * hop : (i + 1) * hop])
    ]
    assert lost  # some packets were lost and concealed
    assert len(lost) < 0.5 * (x.size // hop)


def _with_delivery(cfg: AugmentConfig, prob: float) -> AugmentConfig:
    """`cfg` with `audio_delivery_prob` (off by default)."""
    return cfg.model_copy(update={"audio_delivery_prob": prob})


def test_augmenter_draws_delivery_without_moving_other_draws() -> None:
    faces = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    x = _voice()

    def run(cfg: AugmentConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return Augmenter(cfg)(x.copy(), faces.copy(), np.random.default_rng(seed))

    for seed in range(6):
        a_off, f_off = run(AugmentConfig(), seed)  # a config without the field: off
        a_on, f_on = run(_with_delivery(AugmentConfig(), 1.0), seed)
        assert np.array_equal(f_off, f_on)  # the crops got the same augmentations
        assert not np.array_equal(a_off, a_on)  # and the voice one delivery condition more
        assert np.array_equal(a_on, run(_with_delivery(AugmentConfig(), 1.0), seed)[0])


def test_delivery_fires_at_its_probability() -> None:
    hits = 0
    x = _voice(1.0)
    quiet = AugmentConfig(audio_gain_prob=0.0, audio_noise_prob=0.0)
    cfg = _with_delivery(quiet, DELIVERY_PROB)
    for seed in range(40):
        out = Augmenter(cfg).audio(x.copy(), np.random.default_rng(seed))
        hits += not np.array_equal(out, x)
        assert np.array_equal(Augmenter(quiet).audio(x.copy(), np.random.default_rng(seed)), x)
    assert 0.1 * 40 <= hits <= 0.55 * 40


@pytest.mark.parametrize("shift", [1600, -800, 1])
def test_av_offset_moves_the_voice_and_fills_the_gap_with_its_own_audio(shift: int) -> None:
    x = _voice()
    out = av_offset(x, shift)
    n, m = x.shape[0], abs(shift)
    assert out.shape == x.shape and out.dtype == x.dtype
    if shift > 0:  # later: the voice starts `shift` samples into the window
        assert np.array_equal(out[m:], x[: n - m]) and np.array_equal(out[:m], x[m:0:-1])
    else:
        assert np.array_equal(out[: n - m], x[m:])
        assert np.array_equal(out[n - m :], x[n - 2 : n - m - 2 : -1])
    assert np.array_equal(av_offset(x, 0), x)
    with pytest.raises(ValueError, match="does not fit"):
        av_offset(x, n)


def test_augmenter_draws_av_offset_without_moving_other_draws() -> None:
    faces = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    x = _voice()
    base = _with_delivery(AugmentConfig(), 1.0)
    skewed = base.model_copy(update={"av_offset_prob": 1.0, "av_offset_max_s": 0.1})
    most = round(0.1 * RATE)
    shifts = set()
    for seed in range(6):
        a_off, f_off = Augmenter(base)(x.copy(), faces.copy(), np.random.default_rng(seed))
        a_on, f_on = Augmenter(skewed)(x.copy(), faces.copy(), np.random.default_rng(seed))
        assert np.array_equal(f_off, f_on)  # the crops got the same augmentations
        # the voice is the same delivered voice, moved by at most 0.1 s
        match = [
            k
            for k in range(-most, most + 1)
            if np.array_equal(a_on[most:-most], a_off[most - k : a_off.shape[0] - most - k])
        ]
        assert len(match) == 1, match
        shifts.add(match[0])
    assert len(shifts) == 6 and max(abs(k) for k in shifts) > most // 4


# ---- the bench ---------------------------------------------------------------------------


@pytest.mark.slow
def test_delivery_bench_runs_on_a_tiny_dataset_with_the_toy_detector(tmp_path: Path) -> None:
    path = Path(__file__).resolve().parents[2] / "bench" / "delivery_voices.py"
    spec = importlib.util.spec_from_file_location("delivery_voices", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    root = write_dataset(tmp_path / "d", {"real": 3, "voice_clone": 1})
    backend = load_backend(make_toy_onnx(TINY_CONTRACT, tmp_path / "toy.onnx"), "onnxruntime")
    try:
        report = bench.run_bench(backend, root, "train", max_clips=3)
    finally:
        backend.close()
    assert report["n_real_clips"] == 3
    assert set(report["conditions"]) == set(DELIVERY)
    for row in report["conditions"].values():
        assert 0.0 <= row["fused_auc"] <= 1.0 and row["n_clips"] == 3
        assert isinstance(row["ok"], bool)
    bench.print_report(report, "toy")
