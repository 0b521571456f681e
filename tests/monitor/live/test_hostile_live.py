"""The hostile-media corpus through `watch`: every file ends with scores or with a reason,
never a crash or a traceback, memory bounded (a file that declares huge dimensions must
not take gigabytes); and a camera whose packets turn to garbage mid-stream keeps being
scored after the garbage."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.demo.cameras import gi_python
from monitor.live.config import MonitorConfig
from monitor.live.service import Service
from monitor.live.sources import default_stream_id
from tests.support import hostile_media as hm
from tests.support.live_media import FAKE, toy_model, write_clip
from tests.support.rtsp import RtspServer, free_port
from tests.support.webrtc_peers import wait_until

PEAK_RSS_LIMIT_KB = 1_500_000  # 1.5 GB: a huge declared frame must not be allocated
# Runs a command and prints the peak RSS of it and its children (not of the test run's
# earlier subprocesses, which RUSAGE_CHILDREN of the test process would include).
PEAK_RSS_WRAPPER = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print('peak_rss_kb=%d' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
    "file=sys.stderr); sys.exit(r.returncode)"
)


@pytest.mark.slow
def test_every_hostile_file_ends_cleanly_in_watch(tmp_path: Path) -> None:
    corpus = hm.write_corpus(tmp_path / "corpus", non_files=True)
    taken: set[str] = set()
    ids = {}
    for case, path in corpus.items():
        sid = default_stream_id(str(path), taken)
        taken.add(sid)
        ids[case] = sid
    events = tmp_path / "events.jsonl"
    t0 = time.monotonic()
    done = subprocess.run(
        [
            sys.executable, "-c", PEAK_RSS_WRAPPER,
            sys.executable, "-m", "monitor.cli", "-v", "watch", *map(str, corpus.values()),
            "--model", str(toy_model(tmp_path / "model")), "--fast", "--events", str(events),
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    took = time.monotonic() - t0
    peak = int(done.stderr.rsplit("peak_rss_kb=", 1)[1].split()[0])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    assert took < 300  # every stream ended: nothing retried forever
    assert peak < PEAK_RSS_LIMIT_KB, f"peak RSS {peak / 1024:.0f} MB"
    # Stamped rows print every refresh; the table printed at exit (no stamp, after its
    # header) holds each stream's final counts: a row stamped before a stream's last
    # window was scored must not stand for it (a loaded machine scores after the print).
    last: dict[str, list[str]] = {}
    lines = done.stdout.splitlines()
    final_at = max(i for i, line in enumerate(lines) if line.split()[:2] == ["stream", "state"])
    for i, line in enumerate(lines):
        cells = line.split()
        if i > final_at:
            cells = ["final", *cells]  # the stamped rows' layout
        if len(cells) >= 11 and cells[1] in ids.values():
            last[cells[1]] = cells
    for case in hm.CASES:
        if hm.EXPECT[case] == "scored":
            row = last.get(ids[case])
            assert row is not None and int(row[9]) >= 1, (case, row)  # windows scored
    for case in [*hm.NON_FILES, *(c for c, e in hm.EXPECT.items() if e == "error")]:
        sid = ids[case]
        ended = f"stream {sid}: giving up" in done.stderr or f"{sid}: source closed" in done.stderr
        row = last.get(sid)
        assert ended or (row is not None and row[2] == "DOWN"), (case, sid)
    assert events.exists()
    for line in events.read_text().splitlines():
        json.loads(line)  # every event line is whole JSON


def _corrupt_middle(clip: Path, out: Path) -> Path:
    """The clip with a run of garbage bytes in its media data, a third of the way in."""
    data = bytearray(clip.read_bytes())
    start = len(data) // 3
    for i in range(start, start + 4000, 7):
        data[i] = (data[i] * 31 + 17) % 256
    out.write_bytes(bytes(data))
    return out


@pytest.mark.slow
@pytest.mark.skipif(gi_python()[0] is None, reason=gi_python()[1] or "")
def test_a_camera_sending_garbage_mid_stream_keeps_being_scored(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "cam.mp4", seconds=20.0, **FAKE)
    camera = RtspServer(_corrupt_middle(clip, tmp_path / "corrupt.mp4"), free_port())
    camera.start()
    cfg = MonitorConfig.model_validate(
        {
            "model": str(toy_model(tmp_path / "model")),
            "webrtc": {"enabled": False},
            "sources": {"stall_timeout_s": 3, "backoff_initial_s": 0.3, "backoff_max_s": 1},
            "streams": [{"id": "cam", "url": camera.url}],
        }
    )
    service = Service(cfg, serve_http=False)
    seen: dict[str, object] = {}

    async def scenario() -> None:
        run = asyncio.create_task(service.run(install_signals=False))
        try:
            await wait_until(lambda: service.pipeline is not None, 30, "the pipeline")
            assert service.pipeline is not None
            rt = service.pipeline.streams["cam"]
            # 20 s of clip, garbage around 7 s: windows well past it must be scored
            await wait_until(lambda: rt.windows_scored >= 12, 60, "windows after the garbage")
            seen["scored"] = rt.windows_scored
            seen["state"] = rt.state.state
        finally:
            service.stop()
            await run

    try:
        asyncio.run(scenario())
    finally:
        camera.stop()
    assert seen["state"] in ("ALERT", "SUSPICIOUS", "STARTING", "DOWN", "CLEAR")
    assert isinstance(seen["scored"], int) and seen["scored"] >= 12
