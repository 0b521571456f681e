"""Live scale-out: `serve --shard i/n` takes the configured streams whose stable hash of the
stream id mod n is i, so N replicas of one config score every stream exactly once."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.errors import ConfigError
from monitor.live.config import MonitorConfig
from monitor.shard import Shard, stable_hash
from tests.support.live_media import FAKE, REAL, toy_model, write_clip

STREAMS = [f"cam{i}" for i in range(1, 7)]


def test_the_stream_hash_is_stable_and_spreads_streams() -> None:
    # a stream must land on the same replica on every machine and release
    assert stable_hash("cam1") == 17893965980320920301
    owners = [[s for s in STREAMS if Shard(i, 2).takes_name(s)] for i in range(2)]
    assert sorted(owners[0] + owners[1]) == sorted(STREAMS) and all(owners)
    many = [f"camera-{i}" for i in range(400)]
    counts = [sum(Shard(i, 4).takes_name(s) for s in many) for i in range(4)]
    assert min(counts) > 70  # roughly even


def test_a_bad_shard_is_refused_with_the_reason() -> None:
    for bad, why in (("2/2", "out of range"), ("one/2", "expected i/n"), ("0/0", "out of range")):
        with pytest.raises(ValueError, match=why):
            MonitorConfig.model_validate({"model": "m.onnx", "shard": bad})
    with pytest.raises(ConfigError, match="expected i/n"):
        Shard.parse("1-2")


def _start(cfg: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:  # a file, not a pipe: a verbose log never blocks the process
        return subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "-v", "serve", "--config", str(cfg), *extra],
            stdout=subprocess.DEVNULL,
            stderr=fh,
        )


def _port(proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"HTTP on http://127\.0\.0\.1:(\d+)", log.read_text())
        if m:
            return int(m.group(1))
        assert proc.poll() is None, log.read_text()
        time.sleep(0.1)
    raise AssertionError("no HTTP port in the log:\n" + log.read_text())


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


Replica = tuple[subprocess.Popen[bytes], int, Path]


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[Replica]]:
    fake = write_clip(tmp_path / "fake.mp4", seconds=4.0, **FAKE)
    real = write_clip(tmp_path / "real.mp4", seconds=4.0, **REAL)
    model = toy_model(tmp_path / "model")
    cfg = tmp_path / "monitor.yaml"
    lines = [
        f"model: {model}",
        "backend: onnxruntime",
        "server: {port: 0}",
        "webrtc: {enabled: false}",
    ]
    lines.append("streams:")
    for i, sid in enumerate(STREAMS):
        lines.append(f"  - {{id: {sid}, url: {fake if i % 2 else real}, loop: true}}")
    cfg.write_text("\n".join(lines) + "\n")
    procs = []
    for i, shard in enumerate(("0/2", "1/2")):
        log = tmp_path / f"replica{i}.log"
        proc = _start(cfg, log, "--shard", shard)
        procs.append((proc, _port(proc, log), log))
    yield procs
    for proc, _, _ in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc, _, _ in procs:
        proc.wait(timeout=30)


@pytest.mark.slow
def test_two_replicas_of_one_config_score_every_stream_exactly_once(
    replicas: list[Replica],
) -> None:
    seen: dict[int, dict[str, int]] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for i, (_, port, _) in enumerate(replicas):
            status, body = _get(f"http://127.0.0.1:{port}/streams")
            if status == 200:
                seen[i] = {s["stream_id"]: s["windows_scored"] for s in json.loads(body)["streams"]}
        if len(seen) == 2 and all(seen[i] and min(seen[i].values()) >= 2 for i in seen):
            break
        time.sleep(0.5)
    own = [{s for s in STREAMS if Shard(i, 2).takes_name(s)} for i in range(2)]
    assert set(seen[0]) == own[0] and set(seen[1]) == own[1]  # disjoint, and all of them
    assert set(seen[0]) | set(seen[1]) == set(STREAMS)
    assert all(n >= 2 for i in seen for n in seen[i].values())
    for i, (_, port, log) in enumerate(replicas):
        metrics = _get(f"http://127.0.0.1:{port}/metrics")[1]
        labelled = set(re.findall(r'deepfake_windows_scored_total\{stream="([^"]+)"\}', metrics))
        assert labelled == own[i]  # each replica's /metrics shows only its own streams
        assert f"shard {i}/2: {len(own[i])} of 6 configured streams" in log.read_text()
    for proc, _, _ in replicas:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


@pytest.mark.slow
def test_a_replica_whose_shard_holds_no_stream_says_so_and_stays_ready(tmp_path: Path) -> None:
    model = toy_model(tmp_path / "model")
    clip = write_clip(tmp_path / "real.mp4", seconds=4.0, **REAL)
    cfg = tmp_path / "monitor.yaml"
    # cam1 hashes to shard 1 of 2: shard 0 holds nothing
    cfg.write_text(
        f"model: {model}\nserver: {{port: 0}}\nwebrtc: {{enabled: false}}\nshard: 0/2\n"
        f"streams:\n  - {{id: cam1, url: {clip}, loop: true}}\n"
    )
    log = tmp_path / "replica.log"
    proc = _start(cfg, log)
    try:
        port = _port(proc, log)
        deadline = time.monotonic() + 60
        while _get(f"http://127.0.0.1:{port}/readyz")[0] != 200:
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.3)
        assert json.loads(_get(f"http://127.0.0.1:{port}/streams")[1]) == {"streams": []}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert "shard 0/2 holds none of the 1 configured streams" in log.read_text()
    assert proc.returncode == 0
