"""A real alert feed on loopback: Prometheus and Alertmanager (Debian's binaries) with the
mixin's rendered rules and routes, and a webhook receiver that records what arrives.

Used by tests/deploy/test_alert_feed.py and bench/alert_latency.py. Prometheus is started
with a short alert resend delay: an alert that fires before Prometheus has found its
Alertmanager is otherwise only re-sent after a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from monitor.live.service import Service
from monitor.mixin import ALERTMANAGER_FILE, RULES_FILE, MixinConfig, render_all
from tests.support.rtsp import free_port

PROMETHEUS = "prometheus"
ALERTMANAGER = "prometheus-alertmanager"  # Debian's name for the alertmanager server
START_TIMEOUT_S = 30.0


def missing_binaries() -> str | None:
    """Why the stack cannot run here, or None."""
    gone = [b for b in (PROMETHEUS, ALERTMANAGER) if shutil.which(b) is None]
    if gone:
        return f"{', '.join(gone)} not installed (scripts/system-deps.sh installs them)"
    return None


@dataclass
class Delivery:
    """One webhook POST from Alertmanager."""

    at: float  # monotonic time received
    path: str  # /critical, /warning or /info (the route)
    body: dict[str, Any]

    def alerts(self, name: str, status: str = "firing") -> list[dict[str, Any]]:
        return [
            a
            for a in self.body.get("alerts", [])
            if a["labels"].get("alertname") == name and a.get("status") == status
        ]


@dataclass
class Receiver:
    """A webhook receiver in a thread; `deliveries` grows as Alertmanager posts."""

    port: int = field(default_factory=free_port)
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @contextlib.contextmanager
    def running(self) -> Iterator[Receiver]:
        deliveries = self.deliveries

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(size) or b"{}")
                deliveries.append(Delivery(time.monotonic(), self.path, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()

    def first(self, name: str, **labels: str) -> Delivery | None:
        for d in self.deliveries:
            for alert in d.alerts(name):
                if all(alert["labels"].get(k) == v for k, v in labels.items()):
                    return d
        return None


class MonitorThread:
    """A monitor service on its own event loop in a thread, as in production."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_until_complete,
            args=(service.run(install_signals=False),),
            daemon=True,
        )

    def __enter__(self) -> MonitorThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.service.stop)
        self.thread.join(timeout=30)

    def first_window_at(self, stream: str) -> float | None:
        """Monotonic time now if `stream` has a scored window, else None (poll it)."""
        p = self.service.pipeline
        rt = p.streams.get(stream) if p is not None else None
        return time.monotonic() if rt is not None and rt.windows_scored >= 1 else None


def wait_for(what: str, pred: Callable[[], Any], timeout: float, poll: float = 0.2) -> Any:
    """Poll pred until it returns something truthy; AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def _wait_ready(url: str, proc: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1.0) as resp:
            if resp.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{name} not ready at {url} after {START_TIMEOUT_S} s")


@dataclass
class AlertStack:
    """Prometheus scraping one monitor + Alertmanager, with the mixin rendered from cfg."""

    workdir: Path
    cfg: MixinConfig
    monitor_port: int
    scrape_interval: str = "1s"
    evaluation_interval: str = "1s"
    prometheus_port: int = field(default_factory=free_port)
    alertmanager_port: int = field(default_factory=free_port)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def prometheus(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def alertmanager(self) -> str:
        return f"http://127.0.0.1:{self.alertmanager_port}"

    def _write(self) -> tuple[Path, Path]:
        files = render_all(self.cfg)
        rules = self.workdir / "rules.yaml"
        rules.write_text(files[RULES_FILE])
        am = self.workdir / "alertmanager.yaml"
        am.write_text(files[ALERTMANAGER_FILE])
        prom = self.workdir / "prometheus.yaml"
        prom.write_text(
            json.dumps(
                {
                    "global": {
                        "scrape_interval": self.scrape_interval,
                        "evaluation_interval": self.evaluation_interval,
                    },
                    "rule_files": [str(rules)],
                    "alerting": {
                        "alertmanagers": [
                            {
                                "static_configs": [
                                    {"targets": [f"127.0.0.1:{self.alertmanager_port}"]}
                                ]
                            }
                        ]
                    },
                    "scrape_configs": [
                        {
                            "job_name": "deepfake-monitor",
                            "static_configs": [{"targets": [f"127.0.0.1:{self.monitor_port}"]}],
                        }
                    ],
                }
            )
        )
        return prom, am

    @contextlib.contextmanager
    def running(self) -> Iterator[AlertStack]:
        prom_cfg, am_cfg = self._write()
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        try:
            am = subprocess.Popen(
                [
                    ALERTMANAGER,
                    f"--config.file={am_cfg}",
                    f"--storage.path={self.workdir / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{self.alertmanager_port}",
                    "--cluster.listen-address=",
                ],
                stdout=(logs / "alertmanager.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
            self.procs.append(am)
            _wait_ready(f"{self.alertmanager}/-/ready", am, "alertmanager")
            prom = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={prom_cfg}",
                    f"--storage.tsdb.path={self.workdir / 'prom-data'}",
                    f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
                    "--rules.alert.resend-delay=1s",
                ],
                stdout=(logs / "prometheus.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
            self.procs.append(prom)
            _wait_ready(f"{self.prometheus}/-/ready", prom, "prometheus")
            yield self
        finally:
            for proc in self.procs:
                proc.terminate()
            for proc in self.procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; raises with Prometheus's error for a bad expression."""
        url = f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            answer = get_json(url)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{expr!r}: {exc.read().decode()[:300]}") from exc
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def prometheus_alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = get_json(f"{self.prometheus}/api/v1/alerts")["data"][
            "alerts"
        ]
        return alerts

    def alertmanager_alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = get_json(f"{self.alertmanager}/api/v2/alerts")
        return alerts
