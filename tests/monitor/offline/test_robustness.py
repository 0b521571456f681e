"""One bad input costs at most its own row: odd names, short tracks, non-files, unwritable
outputs, incomplete shard sets. Real files, the toy ONNX model, the real CLI.

Each test drives `deepfake-monitor score` (or `merge`) the way a user would and checks
that every listed input got exactly one row, that an unusable one got an errors-report
entry, and that a user mistake ends in one `deepfake-monitor score: error: ...` line
(exit 2), never a traceback.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from engines.toy import make_toy_onnx
from monitor.cli import main
from monitor.contract import InputContract
from monitor.errors import DatasetError
from monitor.offline import journal as journal_module
from monitor.offline import predictions as predictions_module
from monitor.offline import scoring as scoring_module
from monitor.offline.inputs import Shard, list_inputs
from monitor.offline.merge import merge_shards
from monitor.offline.predictions import (
    csv_field,
    read_errors,
    read_notes,
    read_predictions,
)
from monitor.offline.scoring import ScoreOptions, score_videos
from tests.support import hostile_media as hm

CONTRACT = InputContract(window_seconds=1.0, hop_seconds=0.5, k_crops=2, crop_size=32)


def run_cli(*args: str | Path) -> int:
    return main([str(a) for a in args])


def side(out: Path, suffix: str) -> Path:
    return out.with_name(out.name + suffix)


def one_line_error(err: str, command: str = "score") -> str:
    """The CLI's message for a user mistake: exactly one line, no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"deepfake-monitor {command}: error: "), err
    return lines[0]


def score_opts(model: Path, out: Path, **kw: object) -> ScoreOptions:
    base: dict[str, object] = {"model": str(model), "out": out, "workers": 0, "progress": False}
    base.update(kw)
    return ScoreOptions(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_onnx(CONTRACT, tmp_path_factory.mktemp("model") / "toy.onnx")


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Valid clips under every odd name, plus two plain ones."""
    d = tmp_path_factory.mktemp("odd")
    for name in (*hm.ODD_NAMES, "a.mp4", "z.mp4"):
        hm.odd_name(d, name)
    return d


@pytest.fixture(scope="module")
def plain_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("plain")
    for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4", "e.mp4"):
        hm.good(d, name)
    return d


# --- 1: names with commas, quotes, newlines ------------------------------------------------


def test_odd_names_are_scored_written_resumed_and_merged(
    model: Path, odd_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "prediction.txt"
    windows = tmp_path / "windows.csv"
    args = ("score", odd_folder, "--model", model, "--out", out, "--workers", "0",
            "--windows-out", windows, "--no-progress")  # fmt: skip
    assert run_cli(*args) == 0
    names = sorted(p.name for p in odd_folder.iterdir())
    rows = read_predictions(out)
    assert [r.video_name for r in rows] == names
    assert all(r.y_pred != 0.5 for r in rows)  # every one was scored, none failed
    assert read_errors(side(out, ".errors.json")) == []
    first = out.read_bytes()
    # --resume (everything from the journal) writes the same bytes
    assert run_cli(*args, "--resume") == 0
    assert out.read_bytes() == first
    # a name list holding the same names, quoted, scores the same rows
    listing = tmp_path / "odd_nolabel.txt"
    listing.write_bytes("".join(f"{csv_field(n)}\n" for n in names).encode())
    listed = tmp_path / "listed.txt"
    score_videos(listing, score_opts(model, listed, video_dir=odd_folder))
    assert listed.read_bytes() == first
    # shards merge back to the single run, with and without --names
    shards = []
    for i in range(3):
        s = tmp_path / f"shard{i}.txt"
        score_videos(odd_folder, score_opts(model, s, shard=Shard(i, 3)))
        shards.append(s)
    assert run_cli("merge", tmp_path / "m1.txt", *shards, "--names", odd_folder) == 0
    assert (tmp_path / "m1.txt").read_bytes() == first
    assert run_cli("merge", tmp_path / "m2.txt", *shards) == 0
    assert (tmp_path / "m2.txt").read_bytes() == first


def test_a_name_that_is_not_utf8_still_gets_a_row(model: Path, tmp_path: Path) -> None:
    d = tmp_path / "bytes"
    hm.good(d, "ok.mp4")
    bad = os.path.join(os.fsencode(d), b"caf\xe9.mp4")  # Latin-1 bytes in a name
    shutil.copy(os.fsencode(d / "ok.mp4"), bad)
    out = tmp_path / "p.txt"
    assert run_cli("score", d, "--model", model, "--out", out, "--workers", "0",
                   "--no-progress") == 0  # fmt: skip
    out.read_bytes().decode("utf-8")  # the file stays valid UTF-8
    rows = read_predictions(out)
    assert len(rows) == 2 and rows[0].video_name == "caf\ufffd.mp4"
    assert rows[0].y_pred == rows[1].y_pred  # the same clip: scored, not failed


# --- 2: a short audio track is a note, not an error ---------------------------------------


def test_short_audio_and_vfr_are_scored_with_a_note(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "short"
    hm.short_audio(d)
    hm.variable_frame_rate(d)
    hm.short_video(d)
    hm.good(d)
    out = tmp_path / "p.txt"
    assert run_cli("score", d, "--model", model, "--out", out, "--workers", "0",
                   "--no-progress") == 0  # fmt: skip
    rows = {r.video_name: r.y_pred for r in read_predictions(out)}
    assert len(rows) == 4 and all(v != 0.5 for v in rows.values()), rows
    report = side(out, ".errors.json")
    assert read_errors(report) == []
    notes = {(n.name, n.kind) for n in read_notes(report)}
    assert notes == {
        ("short-audio.mp4", "shortaudio"),
        ("vfr.mp4", "shortaudio"),
        ("short-video.mp4", "shortvideo"),
    }
    summary = json.loads(side(out, ".summary.json").read_text())
    assert (summary["scored"], summary["failed"]) == (4, 0)
    assert (summary["short_audio"], summary["short_video"], summary["notes"]) == (2, 1, 3)
    assert "short" in capsys.readouterr().out  # the printed summary says so too


# --- 3: entries that are not regular files ---------------------------------------------------


def test_every_listed_entry_gets_a_row_even_when_not_a_file(model: Path, tmp_path: Path) -> None:
    d = tmp_path / "entries"
    hm.good(d, "a.mp4")
    hm.good(d, "z.mp4")
    for make in hm.NON_FILES.values():
        make(d)
    (d / "notes.txt").write_text("not a video suffix: ignored\n")
    (d / ".hidden.mp4").write_text("hidden: ignored\n")
    out = tmp_path / "p.txt"
    assert run_cli("score", d, "--model", model, "--out", out, "--workers", "2",
                   "--no-progress") == 0  # fmt: skip
    listed = sorted(n for n in os.listdir(d) if n.endswith(".mp4") and not n.startswith("."))
    rows = read_predictions(out)
    assert [r.video_name for r in rows] == listed and len(listed) == 6
    errs = {e.name: e.reason for e in read_errors(side(out, ".errors.json"))}
    assert errs == {
        "a-directory.mp4": "notafile",
        "loop.mp4": "notafile",
        "fifo.mp4": "notafile",
        "dangling.mp4": "medianotfound",
    }
    assert {r.video_name: r.y_pred for r in rows}["fifo.mp4"] == 0.5


# --- 4: unwritable outputs: one line, exit 2, the journal stays usable --------------------


@pytest.fixture
def no_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if scoring gets as far as loading the model."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the output problem must be found before scoring starts")

    monkeypatch.setattr(scoring_module, "load_backend", refuse)


def test_out_naming_a_directory_is_refused_before_scoring(
    model: Path, plain_folder: Path, tmp_path: Path, no_backend: None,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    out = tmp_path / "outdir"
    out.mkdir()
    rc = run_cli("score", plain_folder, "--model", model, "--out", out, "--no-progress")
    assert rc == 2
    line = one_line_error(capsys.readouterr().err)
    assert "outdir" in line and "directory" in line
    assert list(tmp_path.glob("outdir*")) == [out] and list(out.iterdir()) == []
    rc = run_cli("score", plain_folder, "--model", model, "--out", tmp_path / "p.txt",
                 "--windows-out", out, "--no-progress")  # fmt: skip
    assert rc == 2 and "directory" in one_line_error(capsys.readouterr().err)


def read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (root ignores permission bits:
    then sysfs, where nobody can create a file)."""
    if os.geteuid() != 0:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o555)
        return d
    if Path("/sys/fs").is_dir():
        return Path("/sys/fs")
    pytest.skip("running as root without sysfs: no folder that refuses writes")


def test_read_only_output_folder_is_one_line_before_scoring(
    model: Path, plain_folder: Path, tmp_path: Path, no_backend: None,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    ro = read_only_folder(tmp_path)
    rc = run_cli("score", plain_folder, "--model", model, "--out", ro / "p.txt",
                 "--no-progress")  # fmt: skip
    assert rc == 2
    line = one_line_error(capsys.readouterr().err)
    assert str(ro) in line and "cannot write" in line
    assert not (ro / "p.txt.journal.jsonl").exists()


def enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_mid_run_keeps_the_journal_resumable(
    model: Path, plain_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    reference = tmp_path / "reference.txt"
    score_videos(plain_folder, score_opts(model, reference))
    out = tmp_path / "p.txt"
    real = journal_module._write_all
    writes = [0]

    def fill_up(fd: int, data: bytes) -> None:
        writes[0] += 1
        if writes[0] == 4:  # header, two videos, then the disk is full mid-line
            real(fd, data[: len(data) // 2])
            enospc()
        real(fd, data)

    monkeypatch.setattr(journal_module, "_write_all", fill_up)
    args = ("score", plain_folder, "--model", model, "--out", out, "--workers", "0",
            "--batch-size", "1", "--no-progress")  # fmt: skip
    assert run_cli(*args) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "No space left on device" in line and "--resume" in line
    assert not out.exists()
    journal = side(out, ".journal.jsonl")
    assert not journal.read_bytes().endswith(b"\n")  # a torn last line
    monkeypatch.setattr(journal_module, "_write_all", real)  # space is back
    assert run_cli(*args, "--resume") == 0
    assert out.read_bytes() == reference.read_bytes()
    summary = json.loads(side(out, ".summary.json").read_text())
    assert summary["resumed"] == 2


def test_disk_full_at_the_final_write_is_one_line_and_resumable(
    model: Path, plain_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    reference = tmp_path / "reference.txt"
    score_videos(plain_folder, score_opts(model, reference))
    out = tmp_path / "p.txt"
    monkeypatch.setattr(predictions_module, "_write_and_sync", enospc)
    args = ("score", plain_folder, "--model", model, "--out", out, "--workers", "0",
            "--no-progress")  # fmt: skip
    assert run_cli(*args) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "No space left on device" in line and "--resume" in line and "p.txt" in line
    assert not out.exists() and list(tmp_path.glob(".p.txt*")) == []  # no temporary left
    monkeypatch.undo()
    assert run_cli(*args, "--resume") == 0
    assert out.read_bytes() == reference.read_bytes()
    assert json.loads(side(out, ".summary.json").read_text())["resumed"] == 5


def test_a_full_disk_while_merging_is_one_line(
    model: Path, plain_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    shard = tmp_path / "s.txt"
    score_videos(plain_folder, score_opts(model, shard))
    monkeypatch.setattr(predictions_module, "_write_and_sync", enospc)
    assert run_cli("merge", tmp_path / "m.txt", shard) == 2
    assert "No space left" in one_line_error(capsys.readouterr().err, "merge")


# --- 5: merge refuses an incomplete or overlapping set of shards --------------------------


def test_merge_without_names_refuses_a_missing_or_duplicated_shard(
    model: Path, plain_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shards = []
    for i in range(3):
        s = tmp_path / f"shard{i}.txt"
        score_videos(plain_folder, score_opts(model, s, shard=Shard(i, 3)))
        shards.append(s)
    # each shard says which one of how many it is, and of which inputs
    summary = json.loads(side(shards[1], ".summary.json").read_text())
    assert (summary["shard"], summary["inputs_total"]) == ("1/3", 5)
    assert (
        summary["inputs_sha256"]
        == json.loads(side(shards[0], ".summary.json").read_text())["inputs_sha256"]
    )
    assert read_predictions(shards[1])  # the prediction file itself stays plain CSV
    assert shards[1].read_text().startswith("video_name,y_pred\n")
    m = tmp_path / "m.txt"
    with pytest.raises(DatasetError, match=r"shard 2/3 .*missing"):
        merge_shards(m, shards[:2])
    assert run_cli("merge", m, *shards[:2]) == 2
    assert "2/3" in one_line_error(capsys.readouterr().err, "merge")
    copy = tmp_path / "copy-of-0.txt"
    shutil.copy(shards[0], copy)
    shutil.copy(side(shards[0], ".summary.json"), side(copy, ".summary.json"))
    with pytest.raises(DatasetError, match=r"shard 0/3 .*twice"):
        merge_shards(m, [*shards, copy])
    lone = tmp_path / "lone.txt"
    shutil.copy(shards[2], lone)  # a shard without its summary: cannot be placed
    with pytest.raises(DatasetError, match=r"lone.txt.*--names"):
        merge_shards(m, [*shards[:2], lone])
    other = tmp_path / "other"  # a shard of another input list
    for n in ("a.mp4", "b.mp4", "x.mp4"):
        hm.good(other, n)
    foreign = tmp_path / "foreign2.txt"
    score_videos(other, score_opts(model, foreign, shard=Shard(2, 3)))
    with pytest.raises(DatasetError, match="different inputs"):
        merge_shards(m, [*shards[:2], foreign])
    # an unfinished shard file (fewer rows than its summary says) is refused too
    cut = tmp_path / "cut.txt"
    cut.write_text("\n".join(shards[0].read_text().splitlines()[:-1]) + "\n")
    shutil.copy(side(shards[0], ".summary.json"), side(cut, ".summary.json"))
    with pytest.raises(DatasetError, match=r"cut.txt.*rows"):
        merge_shards(m, [cut, *shards[1:]])
    assert merge_shards(m, shards).rows == 5  # the complete set merges
    assert [r.video_name for r in read_predictions(m)] == [
        v.name for v in list_inputs(plain_folder)
    ]
