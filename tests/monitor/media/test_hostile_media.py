"""The generated hostile-media corpus (tests/support/hostile_media.py) through `probe` and
the decoders: a clear typed error or a usable result for every file, bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from monitor.cli import main
from monitor.commands.probe import printable
from monitor.errors import CorruptMediaError, MediaError, NotAFileError
from monitor.media.decode import load_audio, probe, sample_frames
from tests.support import REPO_ROOT
from tests.support import hostile_media as hm

PEAK_RSS_LIMIT_MB = 300  # a naive decode of the 16000x16000 stream takes about 1.2 GB


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return hm.write_corpus(tmp_path_factory.mktemp("corpus"), non_files=True, odd_names=True)


def expected(case: str) -> str:
    return hm.EXPECT.get(case, "error" if case in hm.NON_FILES else "scored")


def test_probe_cli_gives_one_line_per_entry(
    corpus: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cases = list(corpus)
    rc = main(["probe", *(str(corpus[c]) for c in cases)])
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert rc == 1 and "Traceback" not in captured.err
    assert len(lines) == len(cases)  # names with newlines are shown escaped, on one line
    for case, line in zip(cases, lines, strict=True):
        # probe reads headers only: a file cut after an intact header fails at decoding
        usable = expected(case) == "scored" or case in hm.HEADER_INTACT
        assert (" ERROR " not in line) == usable, (case, line)
        assert line.startswith(printable(str(corpus[case])) + ": "), (case, line)
    by_case = dict(zip(cases, lines, strict=True))
    assert "ERROR absurd video dimensions (16000x16000" in by_case["huge_dimensions"]
    assert "ERROR not a regular file (a directory)" in by_case["directory"]
    assert "ERROR not a regular file (a symlink loop)" in by_case["symlink_loop"]
    assert "ERROR not a regular file (a FIFO)" in by_case["fifo"]
    assert "ERROR file not found (dangling symlink" in by_case["dangling_symlink"]
    assert (
        "new\\nline.mp4" in by_case[f"odd_name_{hm.ODD_NAMES.index('new' + chr(10) + 'line.mp4')}"]
    )
    # a short track is not an error, but probe says so
    assert "note: audio track 2.0" in by_case["short_audio"]
    assert "note: audio track 3.0" in by_case["variable_frame_rate"]
    assert "note: video track 2.0" in by_case["short_video"]


def test_every_entry_probes_to_info_or_a_typed_error(corpus: dict[str, Path]) -> None:
    for case, path in corpus.items():
        try:
            info = probe(path)
        except MediaError as exc:
            assert exc.path == str(path) and exc.reason, case
            if case in hm.NON_FILES and case != "dangling_symlink":
                assert isinstance(exc, NotAFileError), case
            continue
        assert info.has_audio or info.has_video, case


def test_short_audio_track_decodes_what_is_there(tmp_path: Path) -> None:
    clip = hm.short_audio(tmp_path)
    info = probe(clip)
    assert info.duration_s == pytest.approx(4.0, abs=0.1)
    assert info.audio_duration_s == pytest.approx(2.0, abs=0.1)
    assert info.video_duration_s == pytest.approx(4.0, abs=0.1)
    audio = load_audio(clip)
    assert audio.shape[0] / 16_000 == pytest.approx(2.0, abs=0.1)
    # a truncated file still is an error: its audio stops short of its own track's length
    with pytest.raises(CorruptMediaError):
        load_audio(hm.truncated_faststart(tmp_path, 0.4))


def test_sample_rate_change_mid_stream_is_resampled(tmp_path: Path) -> None:
    audio = load_audio(hm.sample_rate_change(tmp_path))
    # 1 s at 44.1 kHz + 1 s at 8 kHz, each with its AAC priming and padding (ADTS keeps it)
    assert audio.shape[0] / 16_000 == pytest.approx(2.0, abs=0.35)
    half = audio.shape[0] // 2
    for part in (audio[2_000 : half - 2_000], audio[half + 2_000 : -2_000]):
        spec = np.abs(np.fft.rfft(part * np.hanning(part.shape[0])))
        assert np.argmax(spec) * 16_000 / part.shape[0] == pytest.approx(330.0, abs=3.0)


def test_resolution_change_mid_stream_gives_frames_of_both_sizes(tmp_path: Path) -> None:
    frames = sample_frames(hm.resolution_change(tmp_path), [0.2, 1.5])
    assert [f.image.shape for f in frames] == [(48, 48, 3), (64, 96, 3)]


MEASURE = r"""
import json, resource, sys
from monitor.contract import InputContract
from monitor.errors import MediaError
from monitor.media.decode import probe
from monitor.offline.extraction import ExtractJob, extract_job
contract = InputContract(window_seconds=1.0, hop_seconds=0.5, k_crops=2, crop_size=32)
extract_job(ExtractJob(0, "warm", sys.argv[1], contract))  # imports, cascade, codecs
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
reasons = []
for path in sys.argv[2:]:
    try:
        probe(path)
    except MediaError:
        pass
    for mode in ("exact", "keyframe"):
        reasons.append(extract_job(ExtractJob(0, "x", path, contract, sampling=mode)).reason)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_mb": (after - before) / 1024, "reasons": reasons}))
"""


def test_huge_declared_dimensions_keep_memory_bounded(tmp_path: Path) -> None:
    good = hm.good(tmp_path)
    huge = [hm.huge_dimensions(tmp_path), hm.huge_dimensions_mp4(tmp_path)]
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, str(good), *map(str, huge)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["reasons"] == ["baddimensions"] * 4
    assert result["growth_mb"] < PEAK_RSS_LIMIT_MB, result


def test_probe_takes_a_leading_dash_name_after_double_dash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hm.odd_name(tmp_path, "-leading-dash.mp4")
    monkeypatch.chdir(tmp_path)
    assert main(["probe", "--", "-leading-dash.mp4"]) == 0
    assert capsys.readouterr().out.startswith("-leading-dash.mp4: mov,mp4")
