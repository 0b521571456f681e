"""Offline scoring end to end with real files, a real ONNX model and real processes.

The model is engines.toy (p_audio from audio energy, p_visual from brightness): its
scores are known in numpy, so the file's numbers are checked exactly, not just its shape.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from engines.toy import make_toy_onnx, toy_scores
from monitor.cli import main
from monitor.contract import InputContract
from monitor.errors import ConfigError, DatasetError
from monitor.media.clip import extract_windows
from monitor.offline.aggregation import DEFAULT_RULE, AggregateRule, aggregate, compare_rules
from monitor.offline.extraction import (
    WORKER_CRASH_REASON,
    Extracted,
    ExtractJob,
    extract_job,
    iter_extracted,
)
from monitor.offline.inputs import Shard, guess_video_dir, list_inputs
from monitor.offline.journal import Journal, VideoResult
from monitor.offline.merge import merge_shards
from monitor.offline.predictions import read_errors, read_name_list, read_predictions
from monitor.offline.scoring import ScoreOptions, score_videos
from tests.support import REPO_ROOT
from tests.support.media_factory import write_clip

# 1 s windows every 0.5 s, 2 crops of 32 px: a 2 s clip has 3 windows
CONTRACT = InputContract(window_seconds=1.0, hop_seconds=0.5, k_crops=2, crop_size=32)
CLIP_S = 2.0


def run_cli(*args: str | Path) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_onnx(CONTRACT, tmp_path_factory.mktemp("model") / "toy.onnx")


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 good clips of different loudness/brightness, written in unsorted name order."""
    d = tmp_path_factory.mktemp("videos")
    for i, name in enumerate(["d", "b", "h", "a", "f", "c", "g", "e"]):
        write_clip(
            d / f"{name}.mp4",
            seconds=CLIP_S,
            fps=10,
            size=(48, 48),
            audio_rate=16_000,
            channels=1,
            tone_hz=200.0 + 50 * i,
        )
    return d


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory, videos: Path) -> Path:
    """Good clips plus a corrupt one, a non-media one, audio-only and video-only clips."""
    d = tmp_path_factory.mktemp("messy")
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (d / name).write_bytes((videos / name).read_bytes())
    data = (videos / "d.mp4").read_bytes()
    (d / "corrupt.mp4").write_bytes(data[: len(data) // 3])
    (d / "notmedia.mp4").write_text("this is not a video\n" * 20)
    write_clip(d / "audio_only.mp4", seconds=CLIP_S, audio_rate=16_000, channels=1, video=False)
    write_clip(d / "video_only.mp4", seconds=CLIP_S, fps=10, size=(48, 48), audio_rate=None)
    (d / "notes.txt").write_text("not a video suffix: ignored\n")
    return d


def expected_score(path: Path, rule: str = DEFAULT_RULE) -> float:
    cw = extract_windows(path, CONTRACT)
    fused = toy_scores(cw.audio, cw.faces)[0]
    return round(aggregate(fused, rule), 6)


def score_opts(model: Path, out: Path, **kw: object) -> ScoreOptions:
    base: dict[str, object] = {"model": str(model), "out": out, "workers": 0, "progress": False}
    base.update(kw)
    return ScoreOptions(**base)  # type: ignore[arg-type]


# --- formats ---------------------------------------------------------------------------


def test_reader_accepts_score_header_and_checks_rows(tmp_path: Path) -> None:
    p = tmp_path / "p.csv"
    p.write_text("video_name,score\nx.mp4,0.25\ny.mp4,1\n")
    assert [(r.video_name, r.y_pred) for r in read_predictions(p)] == [
        ("x.mp4", 0.25),
        ("y.mp4", 1.0),
    ]
    p.write_text("\ufeffvideo_name,y_pred\r\nx.mp4,0.5\r\n")  # BOM and CRLF
    assert read_predictions(p)[0].y_pred == 0.5
    for bad, msg in (
        ("video_name,y_pred\nx.mp4,0.5\nx.mp4,0.1\n", "already listed"),
        ("video_name,y_pred\nx.mp4,1.5\n", "not a probability"),
        ("video_name,y_pred\nx.mp4,nan\n", "not a probability"),
        ("video_name,prob\nx.mp4,0.5\n", "no score column"),
        ("name;score\nx.mp4;0.5\n", "header"),
    ):
        p.write_text(bad)
        with pytest.raises(DatasetError, match=msg):
            read_predictions(p)


def test_name_lists_and_video_dir_guess(tmp_path: Path) -> None:
    (tmp_path / "testset1seen").mkdir()
    (tmp_path / "valset").mkdir()
    bare = tmp_path / "testset1seen_nolabel.txt"
    bare.write_text("z.mp4\na.mp4\n")
    assert read_name_list(bare) == ["z.mp4", "a.mp4"]
    assert guess_video_dir(bare) == tmp_path / "testset1seen"
    labelled = tmp_path / "val_label.txt"
    labelled.write_text("video_name,target\nb.mp4,1\na.mp4,0\n")
    assert read_name_list(labelled) == ["b.mp4", "a.mp4"]
    assert guess_video_dir(labelled) == tmp_path / "valset"
    dup = tmp_path / "dup.txt"
    dup.write_text("video_name\na.mp4\na.mp4\n")
    with pytest.raises(DatasetError, match="already listed"):
        read_name_list(dup)


def test_aggregation_rules() -> None:
    p = [0.1, 0.9, 0.2, 0.8]
    assert aggregate(p, "mean") == pytest.approx(0.5)
    assert aggregate(p, "max") == pytest.approx(0.9)
    assert aggregate(p, "median") == pytest.approx(0.5)
    assert aggregate(p, "top2") == pytest.approx(0.85)
    assert aggregate(p, "top10") == pytest.approx(0.5)  # fewer windows than k: all of them
    assert aggregate([0.5, 0.5], "logit_mean") == pytest.approx(0.5)
    assert aggregate([0.01, 0.99, 0.99], "logit_mean") > aggregate([0.01, 0.99, 0.99], "mean")
    with pytest.raises(ConfigError, match="unknown aggregation rule"):
        AggregateRule.parse("top0")
    table = compare_rules({"r": [0.1, 0.2], "f": [0.1, 0.9]}, {"r": 0, "f": 1})
    assert table["max"]["auc"] == 1.0 and set(table) >= {"mean", "top3"}


# --- end to end ------------------------------------------------------------------------


def test_score_folder_end_to_end(model: Path, messy: Path, tmp_path: Path) -> None:
    out = tmp_path / "prediction.txt"
    windows_csv = tmp_path / "windows.csv"
    rc = run_cli(
        "score", messy, "--model", model, "--out", out, "--workers", "2",
        "--batch-size", "4", "--windows-out", windows_csv, "--no-progress",
    )  # fmt: skip
    assert rc == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "video_name,y_pred"
    rows = read_predictions(out)
    names = [r.video_name for r in rows]
    videos = sorted(p.name for p in messy.iterdir() if p.suffix == ".mp4")
    assert names == videos  # every video once, sorted; notes.txt left out
    got = {r.video_name: r.y_pred for r in rows}
    for name in ("a.mp4", "b.mp4", "c.mp4", "audio_only.mp4", "video_only.mp4"):
        assert got[name] == pytest.approx(expected_score(messy / name), abs=2e-6), name
    assert got["corrupt.mp4"] == got["notmedia.mp4"] == 0.5
    errs = {e.name: e.reason for e in read_errors(out.with_name(out.name + ".errors.json"))}
    assert errs == {"corrupt.mp4": "corruptmedia", "notmedia.mp4": "notmedia"}
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text())
    assert (summary["videos"], summary["scored"], summary["failed"]) == (7, 5, 2)
    assert (summary["no_audio"], summary["no_video"]) == (1, 1)
    assert summary["windows"] == 5 * 3
    per_window = windows_csv.read_text().splitlines()
    assert per_window[0].startswith("video_name,window,start_s,p_fused")
    assert len(per_window) == 1 + 5 * 3
    assert list(out.parent.glob(".prediction.txt*.tmp")) == []  # atomic writes left nothing


def test_name_list_order_missing_and_labels(model: Path, videos: Path, tmp_path: Path) -> None:
    names = ["h.mp4", "a.mp4", "gone.mp4", "c.mp4", "b.mp4"]
    labels = tmp_path / "labels.txt"
    labels.write_text(
        "video_name,target\n" + "".join(f"{n},{int(n in ('h.mp4', 'c.mp4'))}\n" for n in names)
    )
    out = tmp_path / "pred.txt"
    summary = score_videos(
        labels, score_opts(model, out, labels=labels, video_dir=videos, aggregate="max")
    )
    rows = read_predictions(out)
    assert [r.video_name for r in rows] == names  # the list's order, the missing one kept
    assert rows[2].y_pred == 0.5
    assert read_errors(out.with_name(out.name + ".errors.json"))[0].reason == "medianotfound"
    assert rows[0].y_pred == pytest.approx(expected_score(videos / "h.mp4", "max"), abs=2e-6)
    assert summary.metrics is not None
    m = summary.metrics["metrics"]
    assert (m["n"], m["n_fake"]) == (5, 2) and 0.0 <= m["auc"] <= 1.0
    assert set(summary.metrics["rules"]) >= {"mean", "max", "top3"}
    saved = json.loads(out.with_name(out.name + ".metrics.json").read_text())
    assert saved["metrics"]["auc"] == pytest.approx(m["auc"])
    assert out.with_name(out.name + ".roc.png").stat().st_size > 1000


def test_shards_merge_to_the_single_run(model: Path, videos: Path, tmp_path: Path) -> None:
    single = tmp_path / "single.txt"
    score_videos(videos, score_opts(model, single))
    shards = []
    for i in range(3):
        out = tmp_path / f"shard{i}.txt"
        score_videos(videos, score_opts(model, out, shard=Shard(i, 3)))
        shards.append(out)
    assert sum(len(read_predictions(s)) for s in shards) == 8
    merged = tmp_path / "merged.txt"
    assert run_cli("merge", merged, *shards, "--names", videos) == 0
    assert merged.read_bytes() == single.read_bytes()
    assert run_cli("merge", tmp_path / "nolist.txt", *shards) == 0  # sorted by name
    assert (tmp_path / "nolist.txt").read_bytes() == single.read_bytes()
    with pytest.raises(DatasetError, match="in no shard"):
        merge_shards(tmp_path / "m.txt", shards[:2], names=videos)
    with pytest.raises(DatasetError, match="shard 0/3 is given twice"):
        merge_shards(tmp_path / "m.txt", [shards[0], shards[0]])
    with pytest.raises(DatasetError, match="appears in both"):
        merge_shards(tmp_path / "m.txt", [shards[0], shards[0]], names=videos)
    assert Shard.parse(" 2/3 ") == Shard(2, 3)
    with pytest.raises(ConfigError):
        Shard.parse("3/3")


def test_journal_identity_and_torn_line(model: Path, videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.txt"
    score_videos(videos, score_opts(model, out))
    first = out.read_bytes()
    with pytest.raises(ConfigError, match="--resume"):
        score_videos(videos, score_opts(model, out))
    # a torn last line (crash mid-write) is dropped and that video scored again
    journal = out.with_name(out.name + ".journal.jsonl")
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    summary = score_videos(videos, score_opts(model, out, resume=True))
    assert (summary.resumed, summary.profile.videos) == (7, 1)
    assert out.read_bytes() == first
    other = make_toy_onnx(
        InputContract(window_seconds=1.0, hop_seconds=0.5, k_crops=2, crop_size=48),
        tmp_path / "other.onnx",
    )
    with pytest.raises(ConfigError, match="different run"):
        score_videos(videos, score_opts(other, out, resume=True))
    summary = score_videos(videos, score_opts(model, out, overwrite=True))
    assert summary.resumed == 0 and out.read_bytes() == first


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted(model: Path, videos: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference.txt"
    score_videos(videos, score_opts(model, reference))
    out = tmp_path / "killed.txt"
    journal = out.with_name(out.name + ".journal.jsonl")
    cmd = [sys.executable, "-m", "monitor.cli", "score", str(videos), "--model", str(model)]
    cmd += ["--out", str(out), "--workers", "1", "--batch-size", "1", "--no-progress"]
    proc = subprocess.Popen(
        cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.is_file() and len(journal.read_text().splitlines()) >= 2:
                break  # header + the first journaled batch
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)  # the parent only: its workers must die with it
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not out.exists()
    done = len(journal.read_text().splitlines()) - 1
    assert 1 <= done < 8
    rc = subprocess.run([*cmd, "--resume"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert rc.returncode == 0, rc.stderr
    assert f"{done} from the journal" in rc.stdout
    assert out.read_bytes() == reference.read_bytes()


def test_interrupt_keeps_finished_work(model: Path, videos: Path, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the process group) exits 130 and keeps journaled videos."""
    out = tmp_path / "p.txt"
    journal = out.with_name(out.name + ".journal.jsonl")
    cmd = [sys.executable, "-m", "monitor.cli", "score", str(videos), "--model", str(model)]
    cmd += ["--out", str(out), "--workers", "2", "--batch-size", "1", "--no-progress"]
    proc = subprocess.Popen(
        cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.is_file() and len(journal.read_text().splitlines()) >= 2:
            break
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before Ctrl-C arrived")
    assert proc.returncode == 130, err.decode()
    kept = [json.loads(x) for x in journal.read_text().splitlines()[1:]]
    assert kept and all(k["status"] == "ok" for k in kept)
    summary = score_videos(videos, score_opts(model, out, resume=True))
    assert summary.resumed == len(kept) and len(read_predictions(out)) == 8


# --- worker pool -----------------------------------------------------------------------


def crash_on_b(job: ExtractJob) -> Extracted:
    """Kills its worker process on b.mp4, like a decoder segfault would."""
    if job.name == "b.mp4":
        os._exit(3)
    return extract_job(job)


def test_a_video_that_kills_its_worker_is_isolated(videos: Path) -> None:
    inputs = list_inputs(videos)[:5]
    jobs = [ExtractJob(v.index, v.name, str(v.path), CONTRACT) for v in inputs]
    results = {x.name: x for x in iter_extracted(jobs, workers=2, run=crash_on_b)}
    assert sorted(results) == [v.name for v in inputs]
    assert not results["b.mp4"].ok and results["b.mp4"].reason == WORKER_CRASH_REASON
    assert all(x.ok and x.n_windows == 3 for n, x in results.items() if n != "b.mp4")


def test_journal_round_trip(tmp_path: Path) -> None:
    ident = {"inputs_sha256": "x", "hop_seconds": None}
    r = VideoResult(3, "v.mp4", "ok", starts=(0.0, 0.5), fused=(0.1, 0.2), audio=(0.3, 0.4),
                    visual=(0.5, 0.6), faces_found=(2, 0))  # fmt: skip
    with Journal.open(tmp_path / "j.jsonl", ident, resume=False, overwrite=False) as j:
        j.append([r])
    with Journal.open(tmp_path / "j.jsonl", ident, resume=True, overwrite=False) as j:
        assert j.results == {3: r}


def test_k8s_indexed_job_manifest() -> None:
    docs = list(yaml.safe_load_all((REPO_ROOT / "deploy/k8s/score-job.yaml").read_text()))
    job = next(d for d in docs if d and d.get("kind") == "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] >= spec["parallelism"] >= 1
    container = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert int(env["SHARDS"]) == spec["completions"]
    script = " ".join(container["command"] + container.get("args", []))
    assert "deepfake-monitor -v score" in script and "--resume" in script
    assert "--shard ${JOB_COMPLETION_INDEX}/${SHARDS}" in script
