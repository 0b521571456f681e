"""Events survive a webhook that is down for long and a monitor that restarts meanwhile
(even mid-delivery): they wait on disk and are delivered after, each with its id, none
lost (at-least-once: a POST cut short by the restart may arrive twice)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.live_media import FAKE, REAL, toy_model, write_clip
from tests.support.rtsp import free_port


class Receiver:
    def __init__(self, port: int, delay_s: float = 0.0) -> None:
        self.port, self.delay_s = port, delay_s
        self.bodies: list[dict[str, Any]] = []
        received, owner = self.bodies, self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                received.append(body)
                time.sleep(owner.delay_s)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Path, Path, int]]:
    fake = write_clip(tmp_path / "fake.mp4", seconds=6.0, **FAKE)
    real = write_clip(tmp_path / "real.mp4", seconds=6.0, **REAL)
    model = toy_model(tmp_path / "model")
    hook_port = free_port()
    events = tmp_path / "events" / "events.jsonl"
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        f"model: {model}\nserver: {{port: 0}}\nwebrtc: {{enabled: false}}\n"
        f"events: {{path: {events}, webhook_url: 'http://127.0.0.1:{hook_port}/hook',"
        " webhook_retries: 0, webhook_backoff_s: 0.1, webhook_timeout_s: 5}\n"
        "streams:\n"
        f"  - {{id: fake, url: {fake}, realtime: false}}\n"
        f"  - {{id: real, url: {real}, realtime: false}}\n"
    )
    yield cfg, events, hook_port


STARTED: list[subprocess.Popen[bytes]] = []  # killed after each test, whatever failed


@pytest.fixture(autouse=True)
def _no_monitor_left_behind() -> Iterator[None]:
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def serve(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "-v", "serve", "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=fh,
        )
    STARTED.append(proc)
    return proc


def wait_for(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


@pytest.mark.slow
def test_events_outlive_a_down_webhook_and_restarts_even_mid_delivery(
    setup: tuple[Path, Path, int], tmp_path: Path
) -> None:
    cfg, events, hook_port = setup
    log = tmp_path / "serve.log"
    spool = events.parent / "webhook-spool" / "pending.jsonl"

    def logged() -> list[str]:
        if not events.exists():
            return []
        return [json.loads(x)["id"] for x in events.read_text().splitlines()]

    # 1. the receiver is down: the events wait on disk; SIGTERM the monitor
    proc = serve(cfg, log)
    wait_for(lambda: len(logged()) >= 2, 60, "events from both streams")
    time.sleep(1.0)
    stop(proc)
    ids = logged()
    assert spool.exists() and len(spool.read_text().splitlines()) == len(ids)
    # 2. the receiver is back but slow; SIGTERM while an event is being delivered
    slow = Receiver(hook_port, delay_s=3.0)
    proc = serve(cfg, log)
    wait_for(lambda: len(slow.bodies) >= 1, 60, "the first delivery to start")
    stop(proc)
    slow.close()
    # 3. a normal receiver: everything left is delivered after the next start
    fast = Receiver(hook_port)
    proc = serve(cfg, log)
    new_ids = set(logged()) - set(ids)  # the restarted monitor rescored the clips
    wait_for(
        lambda: set(ids) | new_ids <= {b["id"] for b in slow.bodies + fast.bodies}, 60,
        "every event at the receiver",
    )  # fmt: skip
    stop(proc)
    fast.close()
    received = [b["id"] for b in slow.bodies + fast.bodies]
    assert set(ids) <= set(received)  # none lost
    assert all(received.count(i) <= 2 for i in set(received))  # at-least-once, not more
    assert "stays spooled" in log.read_text() or "still to deliver" in log.read_text()
    first = next(b for b in slow.bodies + fast.bodies if b["id"] == ids[0])
    assert {"id", "stream", "state", "time", "scores"} <= set(first)
