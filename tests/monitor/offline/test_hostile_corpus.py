"""The generated hostile-media corpus (tests/support/hostile_media.py) through `score`.

Every entry of a folder of broken, odd and hostile files gets exactly one row; an
unusable one gets the neutral score and an errors entry with its reason, a usable one is
scored (a fallback or a note counted in the summary). Nothing crashes, nothing is lost.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engines.toy import make_toy_onnx
from monitor.cli import main
from monitor.contract import InputContract
from monitor.media.decode import probe
from monitor.offline.extraction import LONG_VIDEO_MAX_WINDOWS, ExtractJob, extract_job
from monitor.offline.predictions import read_errors, read_notes, read_predictions
from tests.support import hostile_media as hm

CONTRACT = InputContract(window_seconds=1.0, hop_seconds=0.5, k_crops=2, crop_size=32)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_onnx(CONTRACT, tmp_path_factory.mktemp("model") / "toy.onnx")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    d = tmp_path_factory.mktemp("corpus")
    return d, hm.write_corpus(d, non_files=True, odd_names=True)


def test_every_hostile_entry_gets_one_row_and_a_reason(
    model: Path, corpus: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    folder, cases = corpus
    out = tmp_path / "prediction.txt"
    rc = main([
        "score", str(folder), "--model", str(model), "--out", str(out), "--workers", "2",
        "--batch-size", "8", "--no-progress",
    ])  # fmt: skip
    assert rc == 0
    rows = read_predictions(out)
    assert [r.video_name for r in rows] == sorted(p.name for p in cases.values())
    score = {r.video_name: r.y_pred for r in rows}
    report = out.with_name(out.name + ".errors.json")
    errors = {e.name: e for e in read_errors(report)}
    for case, path in cases.items():
        expect = hm.EXPECT.get(case, "error" if case in hm.NON_FILES else "scored")
        if expect == "error":
            assert path.name in errors, case
            assert score[path.name] == 0.5 and errors[path.name].detail, case
        else:
            assert path.name not in errors, (case, errors.get(path.name))
    reasons = {case: errors[p.name].reason for case, p in cases.items() if p.name in errors}
    assert reasons["zero_byte"] == "notmedia"
    assert reasons["garbage"] == "notmedia"
    assert reasons["huge_dimensions"] == reasons["huge_dimensions_mp4"] == "baddimensions"
    assert reasons["directory"] == "notafile"
    assert all(r in ("corruptmedia", "zeroduration", "notmedia")
               for c, r in reasons.items() if c.startswith("truncated"))  # fmt: skip
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text())
    n_error = len(errors)
    assert summary["videos"] == len(cases) and summary["failed"] == n_error
    assert summary["scored"] == len(cases) - n_error
    assert summary["no_video"] == 2  # audio_only, wav_named_mp4
    assert summary["no_audio"] == 1  # video_only
    notes = {(n.name, n.kind) for n in read_notes(report)}
    assert ("short-audio.mp4", "shortaudio") in notes and ("vfr.mp4", "shortaudio") in notes
    assert summary["short_audio"] == 2 and summary["short_video"] == 1


def test_very_long_video_is_scored_on_a_bounded_number_of_windows(tmp_path: Path) -> None:
    clip = hm.very_long(tmp_path)  # 10 min at hop 0.5 s: 1199 windows
    assert probe(clip).duration_s == pytest.approx(600.0, abs=1.0)
    x = extract_job(ExtractJob(0, clip.name, str(clip), CONTRACT))
    assert x.ok and x.n_windows == LONG_VIDEO_MAX_WINDOWS
    assert x.starts is not None and x.starts[-1] > 590  # spread over the whole clip
    assert [kind for kind, _ in x.notes] == ["windowscapped"]
    assert "1024 of 1199 windows" in x.notes[0][1]
    # an explicit --max-windows is the user's choice: no note
    y = extract_job(ExtractJob(0, clip.name, str(clip), CONTRACT, max_windows=10))
    assert y.ok and y.n_windows == 10 and y.notes == ()


def test_hostile_corpus_in_keyframe_mode(corpus: tuple[Path, dict[str, Path]]) -> None:
    """The keyframe sampler meets the same files: a failure is a reason, never a raise."""
    _, cases = corpus
    for case, path in cases.items():
        if case == "fifo" or os.path.isdir(path):
            continue
        x = extract_job(ExtractJob(0, path.name, str(path), CONTRACT, sampling="keyframe"))
        expect = hm.EXPECT.get(case, "error" if case in hm.NON_FILES else "scored")
        assert x.ok == (expect == "scored"), (case, x.reason, x.detail)
