"""Metric functions against hand-computed values (monitor/offline/evaluation.py, numpy only)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from monitor.offline.evaluation import (
    binary_metrics,
    bootstrap_intervals,
    eer,
    has_both_classes,
    log_loss,
    plot_roc,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)


def test_roc_curve_points_by_hand() -> None:
    # scores high->low: 0.9(F) 0.5(F,R tie) 0.2(R)
    fpr, tpr, thr = roc_curve([0, 0, 1, 1], [0.2, 0.5, 0.5, 0.9])
    np.testing.assert_allclose(fpr, [0.0, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(tpr, [0.0, 0.5, 1.0, 1.0])
    assert thr[0] == math.inf
    np.testing.assert_allclose(thr[1:], [0.9, 0.5, 0.2])


def test_roc_auc_textbook_and_ties() -> None:
    # 4 (fake, real) pairs; (0.35 < 0.4) is the one mis-ordered pair -> 3/4
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # pairs: (.9,.2)=1 (.9,.5)=1 (.5,.2)=1 (.5,.5)=tie=0.5 -> 3.5/4
    assert roc_auc([0, 0, 1, 1], [0.2, 0.5, 0.5, 0.9]) == pytest.approx(0.875)
    # all scores equal: every pair is a tie
    assert roc_auc([0, 1, 0, 1, 1], [0.3] * 5) == pytest.approx(0.5)
    # perfectly inverted
    assert roc_auc([1, 1, 0], [0.1, 0.2, 0.9]) == pytest.approx(0.0)


def test_roc_auc_matches_pair_counting_on_random_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = rng.integers(0, 10, 300) / 10.0  # many ties
    pos, neg = s[y == 1], s[y == 0]
    d = pos[:, None] - neg[None, :]
    expected = ((d > 0).sum() + 0.5 * (d == 0).sum()) / d.size
    assert roc_auc(y, s) == pytest.approx(expected)


def test_tpr_at_fpr_by_hand() -> None:
    # 10 reals at 0.0..0.9, 4 fakes at 0.95, 0.85, 0.55, 0.05
    reals = np.arange(10) / 10.0
    fakes = np.array([0.95, 0.85, 0.55, 0.05])
    y = np.r_[np.zeros(10), np.ones(4)]
    s = np.r_[reals, fakes]
    # no real may pass: threshold 0.95 -> 1 of 4 fakes
    assert tpr_at_fpr(y, s, 0.0) == pytest.approx(0.25)
    assert tpr_at_fpr(y, s, 1e-3) == pytest.approx(0.25)
    # one real (0.9) may pass: threshold 0.85 -> 2 of 4
    assert tpr_at_fpr(y, s, 0.1) == pytest.approx(0.5)
    # five reals (0.5..0.9) may pass: threshold 0.5 -> 3 of 4
    assert tpr_at_fpr(y, s, 0.5) == pytest.approx(0.75)
    assert tpr_at_fpr(y, s, 1.0) == pytest.approx(1.0)


def test_tpr_at_fpr_tie_with_a_real_does_not_count() -> None:
    # The fake ties the only high real: passing it would also pass that real (fpr 0.5).
    assert tpr_at_fpr([0, 0, 1], [0.9, 0.1, 0.9], 1e-3) == pytest.approx(0.0)


def test_eer_by_hand() -> None:
    assert eer([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == pytest.approx(0.0)
    assert eer([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    # threshold 0.4: fpr 1/2 (0.4 passes), fnr 1/2 (0.35 missed)
    assert eer([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.5)
    # reals 0.1,0.2,0.3,0.6; fakes 0.5,0.7,0.8,0.9: at threshold 0.7 fpr 0, fnr 1/4;
    # at 0.6 fpr 1/4, fnr 1/4 -> EER exactly 1/4
    assert eer([0, 0, 0, 0, 1, 1, 1, 1], [0.1, 0.2, 0.3, 0.6, 0.5, 0.7, 0.8, 0.9]) == (
        pytest.approx(0.25)
    )
    # interpolated: 1 real, 2 fakes, fake 0.2 < real 0.5 < fake 0.9.
    # points (fpr, fnr): (0,1) (0,.5) (1,.5) (1,0); fpr - fnr crosses 0 on (0,.5)->(1,.5)
    # at fpr = 0.5 = fnr.
    assert eer([0, 1, 1], [0.5, 0.2, 0.9]) == pytest.approx(0.5)


def test_input_checks() -> None:
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="0 \\(real\\) or 1"):
        roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="equal length"):
        roc_auc([0, 1, 1], [0.1, 0.2])
    assert not has_both_classes([0, 0]) and has_both_classes([0, 1])


def test_binary_metrics_single_class_is_nan() -> None:
    m = binary_metrics([1, 1, 1], [0.1, 0.2, 0.3])
    assert m["n"] == 3 and m["n_fake"] == 3 and m["n_real"] == 0
    assert math.isnan(float(m["auc"])) and math.isnan(float(m["eer"]))
    m = binary_metrics([0, 1], [0.1, 0.9])
    assert m["auc"] == 1.0 and m["tpr_at_fpr_1e-3"] == 1.0 and m["eer"] == 0.0


def test_plot_roc_writes_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(50), np.ones(50)]
    s = y + rng.normal(0, 0.7, 100)
    out = plot_roc(tmp_path / "sub" / "roc.png", {"fused": (y, s), "single": ([1, 1], [0, 1])})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 5_000


def test_module_does_not_import_torch_or_matplotlib() -> None:
    code = (
        "import sys, monitor.offline.evaluation as e; e.roc_auc([0,1],[0,1]); "
        "print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_log_loss_is_mean_binary_cross_entropy() -> None:
    assert log_loss([0, 1, 1], [0.5, 0.5, 0.5]) == pytest.approx(np.log(2.0))
    assert log_loss([1, 0], [0.9, 0.2]) == pytest.approx(-(np.log(0.9) + np.log(0.8)) / 2)
    assert log_loss([1, 0], [1.0, 0.0]) < 1e-5  # clipped, so finite and ~0
    assert np.isfinite(log_loss([1, 0], [0.0, 1.0]))  # confidently wrong: large, not inf
    assert np.isnan(log_loss([], []))


def _scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n reals ~ N(0, 1) and n fakes ~ N(2, 1)."""
    rng = np.random.default_rng(seed)
    return np.r_[np.zeros(n), np.ones(n)], np.r_[rng.normal(0, 1, n), rng.normal(2, 1, n)]


def test_bootstrap_intervals_bracket_the_figures_and_narrow_with_more_clips() -> None:
    y, s = _scores(100, seed=1)
    ci = bootstrap_intervals(y, s, resamples=400)
    assert ci["fpr_floor"] == pytest.approx(0.01) and ci["resamples"] == 400
    for key, value in (("auc", roc_auc(y, s)), ("tpr_at_fpr_1e-2", tpr_at_fpr(y, s, 1e-2))):
        lo, hi = ci[key]
        assert lo <= value <= hi and hi - lo > 0.0
    assert bootstrap_intervals(y, s, resamples=400) == ci  # fixed seed
    y10, s10 = _scores(1000, seed=2)
    ci10 = bootstrap_intervals(y10, s10, resamples=400)
    width = ci["auc"][1] - ci["auc"][0]
    assert ci10["auc"][1] - ci10["auc"][0] < width / 2  # ~1/sqrt(10) as wide


def test_bootstrap_shows_a_tpr_that_rests_on_one_real() -> None:
    # 99 reals well below every fake, one real above all of them: TPR@1e-3 is 0 here,
    # and 1 in every resample that leaves that real out (about 37% of them)
    y = np.r_[np.zeros(100), np.ones(100)]
    s = np.r_[np.linspace(0.0, 0.3, 99), 0.99, np.linspace(0.5, 0.9, 100)]
    assert tpr_at_fpr(y, s, 1e-3) == 0.0
    ci = bootstrap_intervals(y, s, resamples=500)
    assert ci["tpr_at_fpr_1e-3"] == [0.0, 1.0]
    assert ci["auc"][0] >= 0.96  # while the AUC hardly moves (0.99 with one copy of it)


def test_bootstrap_perfect_separation_and_bad_arguments() -> None:
    y = np.r_[np.zeros(20), np.ones(20)]
    s = np.r_[np.zeros(20), np.ones(20)]
    ci = bootstrap_intervals(y, s, resamples=50)
    assert all(ci[k] == [1.0, 1.0] for k in ("auc", "tpr_at_fpr_1e-3", "tpr_at_fpr_1e-2"))
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_intervals(y, s, resamples=0)
    with pytest.raises(ValueError, match="both classes"):
        bootstrap_intervals(np.zeros(4), np.arange(4.0))
