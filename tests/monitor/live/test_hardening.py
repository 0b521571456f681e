"""The service under hostile clients and broken peers: a port already taken, over-long
request lines and headers, clients that trickle a request head, and a camera that
accepts the connection and then says nothing."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.live.config import MonitorConfig
from monitor.live.service import Service
from tests.support.live_media import toy_model
from tests.support.webrtc_peers import wait_until


def test_serve_on_a_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    model = toy_model(tmp_path / "model")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = tmp_path / "monitor.yaml"
        cfg.write_text(f"model: {model}\nserver: {{port: {port}}}\nwebrtc: {{enabled: false}}\n")
        done = subprocess.run(
            [sys.executable, "-m", "monitor.cli", "serve", "--config", str(cfg)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"deepfake-monitor serve: error: cannot listen on 127.0.0.1:{port}: "
        "Address already in use; set server.port to a free port"
    ]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    cfg = MonitorConfig.model_validate(
        {
            "model": str(toy_model(tmp_path / "model")),
            "server": {"port": 0, "idle_timeout_s": 1.0},
            "webrtc": {"enabled": False},
        }
    )
    svc = Service(cfg)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(
        target=loop.run_until_complete, args=(svc.run(install_signals=False),), daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 60
    while not svc.ready:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield svc
    loop.call_soon_threadsafe(svc.stop)
    thread.join(timeout=30)


def _raw(port: int, data: bytes, wait_s: float = 5.0) -> tuple[bytes, float]:
    """Send raw bytes; return what came back until the server closed, and how long."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as s:
        s.sendall(data)
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
        except TimeoutError:
            pass
    return got, time.monotonic() - t0


def test_an_over_long_request_is_refused_with_one_log_line(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert service.port is not None
    long_url = b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    long_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"b" * 20_000 + b"\r\n\r\n"
    for request in (long_url, long_header):
        got, _ = _raw(service.port, request)
        assert got.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400"))
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert records and all(r.exc_info is None for r in records)
    assert all(r.getMessage().startswith("bad HTTP request from") for r in records)
    assert "Traceback" not in caplog.text


def test_a_client_trickling_its_request_head_is_cut_off(service: Service) -> None:
    assert service.port is not None
    got, took = _raw(service.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", wait_s=10.0)
    assert got == b"" and took < 5.0  # closed after server.idle_timeout_s, not an hour


@pytest.fixture
def frozen_camera() -> Iterator[int]:
    """A TCP server that accepts connections and never says a word."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()
    for c in held:
        c.close()


def test_a_frozen_camera_counts_as_a_stall(frozen_camera: int, tmp_path: Path) -> None:
    cfg = MonitorConfig.model_validate(
        {
            "model": str(toy_model(tmp_path / "model")),
            "server": {"port": 0},
            "webrtc": {"enabled": False},
            "sources": {"open_timeout_s": 1.5, "stall_timeout_s": 1.0,
                        "backoff_initial_s": 0.2, "backoff_max_s": 0.5},
            "streams": [{"id": "frozen", "url": f"rtsp://127.0.0.1:{frozen_camera}/live"}],
        }
    )  # fmt: skip
    svc = Service(cfg, serve_http=False)
    seen: dict[str, object] = {}

    async def scenario() -> None:
        run = asyncio.create_task(svc.run(install_signals=False))
        try:
            await wait_until(lambda: svc.pipeline is not None, 30, "the pipeline")
            assert svc.pipeline is not None
            rt = svc.pipeline.streams["frozen"]
            assert rt.supervisor is not None
            sup = rt.supervisor
            await wait_until(lambda: sup.stalls >= 2, 20, "stalls")
            seen["metrics"] = svc.metrics.exposition().decode()
            seen["state"] = rt.state.state
        finally:
            svc.stop()
            await run

    asyncio.run(scenario())
    assert 'deepfake_source_stalls_total{stream="frozen"}' in str(seen["metrics"])
    assert seen["state"] == "DOWN"
