"""Sources: redaction, ids, file pacing/looping, supervisor restarts, stalls from outside."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from monitor.errors import StreamError
from monitor.live.buffers import StreamBuffers
from monitor.live.sources import (
    FileSource,
    RetryPolicy,
    SourceSupervisor,
    UrlSource,
    default_stream_id,
    is_valid_stream_id,
    make_source,
    redact,
    sanitize_stream_id,
)
from tests.support.live_media import write_clip

SECRET = "hunter2"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("src") / "clip.mp4", seconds=2.0, fps=10)


def test_redact_urls_and_text() -> None:
    assert redact(f"rtsp://admin:{SECRET}@10.0.0.5:554/s1") == "rtsp://***@10.0.0.5:554/s1"
    assert redact("rtsp://10.0.0.5/s1") == "rtsp://10.0.0.5/s1"
    assert (
        redact(f"https://h/x.m3u8?a=1&token={SECRET}&b=2") == "https://h/x.m3u8?a=1&token=***&b=2"
    )
    msg = f"error opening rtmp://u:{SECRET}@h/live: Connection refused"
    assert SECRET not in redact(msg) and "rtmp://***@h/live" in redact(msg)
    assert redact("/data/clip.mp4") == "/data/clip.mp4"


def test_stream_ids_are_sanitized_and_bounded() -> None:
    assert sanitize_stream_id("cam 1/<script>") == "cam_1_script"
    assert len(sanitize_stream_id("x" * 500)) == 64
    assert sanitize_stream_id("!!!") == "stream"
    assert (
        is_valid_stream_id("cam-1.a_b")
        and not is_valid_stream_id("-x")
        and not is_valid_stream_id("")
    )
    ids: set[str] = set()
    for loc in (f"rtsp://u:{SECRET}@cam/stream1?token=x", "rtsp://cam2/stream1", "/d/clip.mp4"):
        ids.add(default_stream_id(loc, ids))
    assert ids == {"stream1", "stream1-2", "clip"}


def test_make_source_kinds() -> None:
    s = make_source("rtsp://cam/x", transport="udp")
    assert isinstance(s, UrlSource) and s.live and s.options()["rtsp_transport"] == "udp"
    assert "rtsp_transport" not in make_source("https://h/x.m3u8").options()  # type: ignore[attr-defined]
    f = make_source("file:///tmp/a.mp4", loop=True)
    assert isinstance(f, FileSource) and f.path == "/tmp/a.mp4" and f.loop and not f.live


def test_url_open_errors_never_carry_credentials() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = UrlSource(
        f"rtsp://admin:{SECRET}@127.0.0.1:{port}/live", open_timeout_s=2, read_timeout_s=2
    )
    with pytest.raises(StreamError) as err:
        src.open()
    assert SECRET not in str(err.value) and "***@127.0.0.1" in str(err.value)


class Events:
    """Records what the supervisor reports."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.dropped = 0

    def source_up(self) -> None:
        self.log.append("up")

    def source_down(self, reason: str) -> None:
        self.log.append("down:" + reason.split(":")[0])

    def reconnect(self) -> None:
        self.log.append("reconnect")

    def stall(self) -> None:
        self.log.append("stall")

    def media_dropped(self, kind: str, n: int) -> None:
        self.dropped += n


async def supervise(
    source: Any, policy: RetryPolicy, until: Any, timeout: float
) -> tuple[SourceSupervisor, StreamBuffers, Events]:
    sink = StreamBuffers("s", audio_seconds=10.0)
    events = Events()
    sup = SourceSupervisor("s", source, sink, policy, events)
    task = asyncio.create_task(sup.run())
    deadline = time.monotonic() + timeout
    while not until(sup, sink) and not task.done() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return sup, sink, events


def test_file_source_plays_to_eof_at_real_time(clip: Path) -> None:
    t0 = time.monotonic()
    sup, sink, events = asyncio.run(
        supervise(FileSource(str(clip), realtime=True), RetryPolicy(), lambda s, b: False, 10.0)
    )
    took = time.monotonic() - t0
    assert sink.closed_reason == "eof" and events.log == ["up"]
    assert 1.6 <= took < 6.0  # paced: a 2 s clip takes about 2 s
    assert sink.video.received == 20 and sink.has_audio and sink.has_video
    assert sink.audio.end_t == pytest.approx(2.0, abs=0.1)
    assert sup.attempts == 1


class SlowSink(StreamBuffers):
    """Buffers whose every push holds the event loop a while, as a loaded machine does."""

    def push_audio(self, samples: Any, t: float) -> None:
        time.sleep(0.004)
        super().push_audio(samples, t)

    def push_video(self, frame: Any, t: float) -> None:
        time.sleep(0.004)
        super().push_video(frame, t)


def test_a_file_read_fast_loses_no_media_to_a_busy_loop(tmp_path: Path) -> None:
    # The decode thread outruns a loaded event loop; past MAX_INFLIGHT_HANDOVERS queued
    # items it used to drop media (a short file under load then scored no window at all).
    # A file read as fast as possible waits for the loop instead. 4 s at 25 fps: 100 frames
    # and about 170 audio chunks, more than the queue holds.
    clip = write_clip(tmp_path / "clip.mp4", seconds=4.0, fps=25)

    async def run() -> tuple[StreamBuffers, Events]:
        sink, events = SlowSink("s", audio_seconds=10.0), Events()
        source = FileSource(str(clip), realtime=False)
        sup = SourceSupervisor("s", source, sink, RetryPolicy(), events)
        await asyncio.wait_for(sup.run(), timeout=30)
        return sink, events

    for _ in range(3):
        sink, events = asyncio.run(run())
        assert sink.closed_reason == "eof" and events.log == ["up"]
        assert sink.video.received == 100 and events.dropped == 0
        assert sink.audio.end_t == pytest.approx(4.0, abs=0.05)


def test_a_file_ends_only_after_its_last_media_is_delivered(
    clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The thread can end while some of its media still waits in the loop's queue; closing
    # the sink at once ignored that tail (on a busy machine all of a short file's media:
    # it then scored no window). Looking at the thread on every loop pass makes the race
    # certain without the wait for delivery.
    monkeypatch.setattr("monitor.live.sources.supervisor.WATCH_INTERVAL_S", 0.0)

    async def run() -> StreamBuffers:
        sink = SlowSink("s", audio_seconds=10.0)
        sup = SourceSupervisor("s", FileSource(str(clip), realtime=False), sink, RetryPolicy())
        await asyncio.wait_for(sup.run(), timeout=30)
        return sink

    for _ in range(3):
        sink = asyncio.run(run())
        assert sink.closed_reason == "eof"
        assert sink.video.received == 20  # every frame of the 2-s, 10-fps clip
        assert sink.audio.end_t == pytest.approx(2.0, abs=0.1)


def test_file_source_loops_with_a_monotonic_clock(clip: Path) -> None:
    src = FileSource(str(clip), loop=True, realtime=False)
    times: list[float] = []
    sink_push = StreamBuffers.push_video

    def spy(self: StreamBuffers, frame: Any, t: float) -> None:
        times.append(t)
        sink_push(self, frame, t)

    StreamBuffers.push_video = spy  # type: ignore[method-assign]
    try:
        sup, sink, _ = asyncio.run(
            supervise(src, RetryPolicy(), lambda s, b: b.video.received >= 65, 20.0)
        )
    finally:
        StreamBuffers.push_video = sink_push  # type: ignore[method-assign]
    assert sink.video.received >= 65 and sink.closed_reason is None  # still going: 3+ passes
    assert all(b > a for a, b in itertools.pairwise(times))
    assert times[-1] > 6.0 and sup.attempts == 1


class BlockingOpen:
    """A source whose open() never returns: a camera that accepts and then says nothing."""

    kind, live, realtime, loop = "rtsp", True, False, False

    def __init__(self) -> None:
        self.release = threading.Event()
        self.opens = 0

    def describe(self) -> str:
        return redact(f"rtsp://admin:{SECRET}@cam/live")

    def open(self) -> Any:
        self.opens += 1
        self.release.wait()  # blocks the decode thread, like a hung PyAV read
        raise StreamError(self.describe(), "released")


def test_a_hung_source_is_detected_as_a_stall_from_outside(
    caplog: pytest.LogCaptureFixture,
) -> None:
    src = BlockingOpen()
    policy = RetryPolicy(initial_s=0.05, max_s=0.1, stall_s=0.2, open_timeout_s=0.1)
    caplog.set_level(logging.INFO)
    try:
        sup, _, events = asyncio.run(
            supervise(src, policy, lambda s, b: s.abandoned_threads >= 2, 10.0)
        )
    finally:
        src.release.set()  # let the abandoned threads finish
    assert sup.stalls >= 2 and sup.abandoned_threads >= 2 and src.opens >= 2
    assert events.log[:3] == ["stall", "down:stall", "reconnect"]
    assert SECRET not in caplog.text and "***@cam" in caplog.text


class StallAfter:
    """A real file whose demuxer blocks after `n` packets (the stream goes quiet)."""

    kind, live, realtime, loop = "rtsp", True, False, False

    def __init__(self, path: Path, n: int) -> None:
        self.path, self.n = path, n
        self.release = threading.Event()
        self.opens = 0

    def describe(self) -> str:
        return str(self.path)

    def open(self) -> Any:
        import av

        self.opens += 1
        container = av.open(str(self.path))
        outer = self

        class Quiet:
            streams = container.streams

            def demux(self, streams: Any) -> Any:
                for i, pkt in enumerate(container.demux(streams)):
                    if i >= outer.n:
                        outer.release.wait()
                        return
                    yield pkt

            def close(self) -> None:
                container.close()

        return Quiet()


def test_a_stream_that_goes_quiet_is_restarted(clip: Path) -> None:
    src = StallAfter(clip, n=30)
    policy = RetryPolicy(initial_s=0.05, max_s=0.1, stall_s=0.3, open_timeout_s=0.1)
    try:
        sup, sink, events = asyncio.run(
            supervise(src, policy, lambda s, b: s.reconnects >= 2, 10.0)
        )
    finally:
        src.release.set()
    assert sup.stalls >= 2 and src.opens >= 2
    assert events.log[:4] == ["up", "stall", "down:stall", "reconnect"]
    assert sink.video.received > 0


def test_backoff_is_capped_exponential_with_jitter() -> None:
    import random

    p = RetryPolicy(initial_s=1.0, max_s=8.0, jitter=0.0)
    assert [p.delay(i) for i in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    j = RetryPolicy(initial_s=1.0, max_s=100.0, jitter=0.5)
    rng = random.Random(1)
    delays = [j.delay(2, rng) for _ in range(200)]
    assert min(delays) >= 2.0 and max(delays) <= 6.0 and len({round(d, 3) for d in delays}) > 50


def test_a_missing_file_is_given_up_not_retried(tmp_path: Path) -> None:
    src = FileSource(str(tmp_path / "nope.mp4"))
    sup, sink, events = asyncio.run(
        supervise(src, RetryPolicy(initial_s=0.05), lambda s, b: False, 10.0)
    )
    assert sup.attempts == 1 and events.log == ["down:error"]
    assert sink.closed_reason is not None and "file not found" in sink.closed_reason


def test_watch_gives_up_on_a_truncated_file_and_exits(tmp_path: Path) -> None:
    """A file that keeps failing ends its stream with the reason; `watch` then exits."""
    import subprocess
    import sys

    from tests.support.live_media import FAKE, toy_model, write_clip

    clip = write_clip(tmp_path / "clip.mp4", seconds=4.0, **FAKE)
    data = clip.read_bytes()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(data[: len(data) // 2])  # the index (moov) at the end is gone
    events = tmp_path / "events.jsonl"
    t0 = time.monotonic()
    done = subprocess.run(
        [
            sys.executable, "-m", "monitor.cli", "-v", "watch", str(broken),
            "--model", str(toy_model(tmp_path / "model")), "--events", str(events),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert time.monotonic() - t0 < 60  # it did not retry forever
    assert "giving up: 3 failed attempts" in done.stderr
    assert "Traceback" not in done.stderr
    states = [json.loads(x)["state"] for x in events.read_text().splitlines()]
    assert states and states[-1] == "DOWN"
