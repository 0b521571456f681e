"""The long-running monitor: startup -> run -> shutdown, plus its HTTP endpoints.

Startup opens the HTTP server first (so /healthz answers at once and /readyz says "not
yet" while the model loads), loads and warms the backend in a thread, then starts the
pipeline and the configured streams. Shutdown (SIGTERM/SIGINT or `stop()`) stops the
sources, the scorer and the HTTP server within `server.shutdown_timeout_s`. Signal
handlers are installed for the run and restored afterwards.

Endpoints: GET /metrics (Prometheus text), /healthz (process alive), /readyz (backend
loaded and warm), /streams (JSON status of every stream; bearer token when configured),
and the WebRTC routes from `monitor.live.sources.webrtc` when that module is present.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import importlib
import importlib.metadata
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from pydantic import SecretStr

from monitor.backend import Backend, model_identity
from monitor.backend import load_backend as backend_for_model
from monitor.contract import SAMPLE_RATE
from monitor.errors import ConfigError, ContractError
from monitor.live.config import MonitorConfig
from monitor.live.events import EventDispatcher, EventLog, Spool, Webhook
from monitor.live.metrics import CONTENT_TYPE, MonitorMetrics
from monitor.live.operator import add_operator_routes
from monitor.live.pipeline import CropperFactory, Pipeline
from monitor.live.scorer import warm_up
from monitor.live.sink import StreamStatus
from monitor.live.sources import make_source, redact

logger = logging.getLogger(__name__)

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _OneLineHttpErrors(logging.Filter):
    """A malformed request (an over-long URL or header, garbage on the port) is the
    client's fault: one warning line for it, not a traceback in the monitor's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        from aiohttp.http_exceptions import HttpProcessingError

        if isinstance(exc, HttpProcessingError):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            reason = " ".join(str(exc.message or type(exc).__name__).split())[:200]
            record.msg, record.args = "bad HTTP request from %s refused: %s", (remote, reason)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_HTTP_FILTER = _OneLineHttpErrors()
logging.getLogger("aiohttp.server").addFilter(_HTTP_FILTER)


def package_version() -> str:
    try:
        return importlib.metadata.version("deepfake-monitor")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "unknown"


def load_backend(cfg: MonitorConfig) -> Backend:
    """The configured backend (torch and TensorRT are only imported when chosen)."""
    return backend_for_model(cfg.model, backend=cfg.backend)


class Service:
    """One monitor process: `await run()` does startup, waiting and shutdown."""

    def __init__(
        self,
        cfg: MonitorConfig,
        *,
        backend: Backend | None = None,
        cropper_factory: CropperFactory | None = None,
        metrics: MonitorMetrics | None = None,
        serve_http: bool = True,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics or MonitorMetrics()
        self.backend = backend
        self.cropper_factory = cropper_factory
        self.serve_http = serve_http
        self.pipeline: Pipeline | None = None
        self.workers: Any = (
            None  # monitor.live.ingest_workers.IngestWorkers when ingest_workers > 0
        )
        self.ready = False
        self.port: int | None = None  # bound port once the HTTP server runs
        self.started_at = time.monotonic()
        self._stop = asyncio.Event()
        self._runner: Any = None
        self._saved_handlers: dict[int, Any] = {}
        self.shutdown_s: float | None = None
        self.final_statuses: list[StreamStatus] = []  # snapshot taken as shutdown begins

    # -- lifecycle -----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask a running service to shut down (safe from signal handlers)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def startup(self) -> None:
        if self.serve_http:
            await self._start_http()
        if self.backend is None:
            self.backend = await asyncio.to_thread(load_backend, self.cfg)
        backend = self.backend
        warm_s = await asyncio.to_thread(warm_up, backend, 1)
        logger.info("backend %s ready (warm-up %.2f s)", backend.name, warm_s)
        digest = await asyncio.to_thread(model_identity, backend, self.cfg.model)
        self.metrics.set_build_info(
            package_version(), digest, backend.contract.summary(), backend.name
        )
        hop = self.cfg.windows.hop_seconds
        if hop is not None and hop > backend.contract.window_seconds:
            raise ContractError(
                f"windows.hop_seconds={hop} exceeds the model's window "
                f"({backend.contract.window_seconds} s); windows would leave gaps"
            )
        webrtc_on = self._runner is not None and self.cfg.webrtc.enabled
        if webrtc_on and backend.contract.sample_rate != SAMPLE_RATE:
            raise ContractError(
                f"the model expects {backend.contract.sample_rate} Hz audio but WebRTC callers are "
                f"resampled to {SAMPLE_RATE} Hz; disable webrtc or re-export the model"
            )
        self.pipeline = Pipeline(
            backend,
            self.cfg,
            metrics=self.metrics,
            events=self._make_events(),
            cropper_factory=self.cropper_factory,
        )
        await self.pipeline.start()
        self._start_streams(self.pipeline)
        self.metrics.backend_ready.set(1)
        self.ready = True

    def _start_streams(self, pipeline: Pipeline) -> None:
        """Configured streams (this replica's shard of them): in ingest worker processes,
        or supervised in this one."""
        streams = self.cfg.own_streams()
        if self.cfg.shard_spec().count > 1:
            logger.info(
                "shard %s: %d of %d configured streams: %s",
                self.cfg.shard,
                len(streams),
                len(self.cfg.streams),
                ", ".join(s.id for s in streams) or "none",
            )
            if not streams and self.cfg.streams:
                logger.warning(
                    "shard %s holds none of the %d configured streams; serving WebRTC "
                    "callers and /metrics only",
                    self.cfg.shard,
                    len(self.cfg.streams),
                )
        if self.cfg.ingest_workers > 0 and streams:
            if self.cfg.evidence.enabled:
                logger.warning(
                    "evidence is saved only for streams read in the service process; "
                    "with ingest_workers > 0 the configured streams get none"
                )
            from monitor.live.ingest_workers import IngestWorkers

            self.workers = IngestWorkers(pipeline, self.cfg, self.cfg.ingest_workers)
            self.workers.start(streams)
            return
        for stream in streams:
            source = make_source(
                stream.url,
                loop=stream.loop,
                realtime=stream.realtime,
                transport=self.cfg.sources.transport,
                open_timeout_s=self.cfg.sources.open_timeout_s,
                read_timeout_s=self.cfg.sources.read_timeout_s,
            )
            pipeline.add_source(stream.id, source)
            logger.info("stream %s: watching %s", stream.id, source.describe())

    def _make_events(self) -> EventDispatcher:
        ev = self.cfg.events
        log = EventLog(ev.path) if ev.path is not None else None
        webhook = None
        if ev.webhook_url:
            folder = ev.spool_folder()
            spool = Spool(folder) if folder is not None else None
            if spool is None:
                logger.warning(
                    "webhook events wait in memory only and are lost on a restart; set "
                    "events.path or events.spool_dir to keep them on disk"
                )
            elif spool.waiting():
                logger.info("webhook: %d events from before are still to deliver", spool.waiting())
            webhook = Webhook(
                ev.webhook_url,
                queue_size=ev.webhook_queue,
                retries=ev.webhook_retries,
                timeout_s=ev.webhook_timeout_s,
                backoff_s=ev.webhook_backoff_s,
                on_outcome=lambda outcome: self.metrics.webhook.labels(outcome).inc(),
                spool=spool,
            )
        return EventDispatcher(log, webhook)

    async def shutdown(self) -> None:
        t0 = time.monotonic()
        limit = self.cfg.server.shutdown_timeout_s
        self.ready = False
        self.metrics.backend_ready.set(0)
        if self.workers is not None:
            await self.workers.stop(timeout_s=limit * 0.3)
            self.workers = None
        if self.pipeline is not None:
            self.final_statuses = self.pipeline.statuses()
            await self.pipeline.stop(timeout_s=limit * 0.7)
        if self._runner is not None:
            await asyncio.wait_for(self._runner.cleanup(), timeout=max(0.5, limit * 0.3))
            self._runner = None
        if self.backend is not None:
            try:
                self.backend.close()
            except Exception as exc:  # shutting down anyway: report and go on
                logger.warning("backend close failed: %s", exc)
        self.shutdown_s = time.monotonic() - t0
        logger.info("shut down in %.2f s", self.shutdown_s)

    async def run(
        self,
        *,
        duration_s: float | None = None,
        until: Callable[[], bool] | None = None,
        install_signals: bool = True,
    ) -> None:
        """startup, wait for a signal / `stop()` / duration / `until()`, shutdown."""
        if install_signals:
            self._install_signal_handlers()
        try:
            await self.startup()
            deadline = None if duration_s is None else time.monotonic() + duration_s
            while not self._stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if until is not None and until():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=0.2)
        finally:
            try:
                await asyncio.wait_for(self.shutdown(), timeout=self.cfg.server.shutdown_timeout_s)
            except TimeoutError:
                logger.error(
                    "shutdown took longer than %.1f s; exiting anyway",
                    self.cfg.server.shutdown_timeout_s,
                )
            finally:
                if install_signals:
                    self._restore_signal_handlers()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in HANDLED_SIGNALS:
            self._saved_handlers[sig] = signal.getsignal(sig)
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError):  # not the main thread
                self._saved_handlers.pop(sig, None)

    def _on_signal(self, sig: int) -> None:
        if self._stop.is_set():
            logger.warning("second %s: exiting without waiting", signal.Signals(sig).name)
            raise SystemExit(128 + sig)
        logger.warning("%s received, shutting down", signal.Signals(sig).name)
        self.stop()

    def _restore_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig, handler in self._saved_handlers.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, handler)
        self._saved_handlers.clear()

    # -- HTTP ----------------------------------------------------------------------------

    def build_app(self) -> Any:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/streams", self._streams)
        add_operator_routes(app, lambda: self.pipeline, self._authorized)
        self._add_webrtc(app)
        return app

    def bearer_token(self) -> str | None:
        """One token for everything: server.token (or its env var), else webrtc.token."""
        token = self.cfg.server.bearer_token()
        if token is None:
            secret = self.cfg.webrtc.token
            token = secret.get_secret_value() if secret is not None else None
        return token

    def _add_webrtc(self, app: Any) -> None:
        wcfg = self.cfg.webrtc
        if not wcfg.enabled:
            return
        try:
            webrtc = importlib.import_module("monitor.live.sources.webrtc")
        except ImportError as exc:
            logger.warning("WebRTC enabled but monitor.live.sources.webrtc is unavailable: %s", exc)
            return
        token = self.cfg.server.bearer_token()
        if token is not None:  # the service-wide token wins over webrtc.token
            wcfg = wcfg.model_copy(update={"token": SecretStr(token)})
        # WebRTC audio is resampled to SAMPLE_RATE; startup refuses a model with another rate.
        webrtc.add_webrtc_routes(app, _LazyRegistry(self), wcfg)

    async def _start_http(self) -> None:
        from aiohttp import web

        server = self.cfg.server
        if not server.is_loopback() and self.bearer_token() is None:
            logger.warning(
                "listening on %s without a bearer token: anyone who can reach this port can "
                "open WebRTC streams and read stream status; set server.token",
                server.host,
            )
        self._runner = web.AppRunner(
            self.build_app(),
            access_log=None,
            handle_signals=False,
            keepalive_timeout=server.idle_timeout_s,  # also ends a trickled request head
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, server.host, server.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise ConfigError(
                f"cannot listen on {server.host}:{server.port}: "
                f"{os.strerror(exc.errno) if exc.errno else exc}; set server.port to a free port"
            ) from None
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else server.port
        logger.info("HTTP on http://%s:%s (/metrics /healthz /readyz)", server.host, self.port)

    def _authorized(self, request: Any) -> bool:
        token = self.bearer_token()
        if token is None:
            return True
        given = request.headers.get("Authorization", "").encode()
        return hmac.compare_digest(given, f"Bearer {token}".encode())  # constant time

    async def _metrics(self, request: Any) -> Any:
        from aiohttp import web

        body = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def _healthz(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response(
            {"status": "ok", "uptime_s": round(time.monotonic() - self.started_at, 1)}
        )

    async def _readyz(self, request: Any) -> Any:
        from aiohttp import web

        if self.ready and not self.stopping:
            name = self.backend.name if self.backend is not None else None
            return web.json_response({"status": "ready", "backend": name})
        return web.json_response(
            {"status": "starting" if not self.stopping else "stopping"}, status=503
        )

    async def _streams(self, request: Any) -> Any:
        from aiohttp import web

        if not self._authorized(request):
            return web.json_response({"error": "bearer token required"}, status=401)
        rows = [asdict(s) for s in self.pipeline.statuses()] if self.pipeline is not None else []
        return web.json_response({"streams": rows})


class _LazyRegistry:
    """The WebRTC routes are added before the pipeline exists (the model is still loading):
    forward to it once it does, refuse peers until then."""

    def __init__(self, service: Service) -> None:
        self._service = service

    def _pipeline(self) -> Pipeline:
        from monitor.errors import ConfigError

        p = self._service.pipeline
        if p is None or not self._service.ready:
            raise ConfigError("the monitor is still starting (model loading); retry shortly")
        return p

    def open_stream(self, stream_id: str, kind: str) -> Any:
        return self._pipeline().open_stream(stream_id, kind)

    def close_stream(self, stream_id: str) -> None:
        if self._service.pipeline is not None:
            self._service.pipeline.close_stream(stream_id)

    def status(self, stream_id: str) -> Any:
        p = self._service.pipeline
        return None if p is None else p.status(stream_id)


def describe_streams(cfg: MonitorConfig) -> list[str]:
    return [f"{s.id}: {redact(s.url)}" for s in cfg.streams]
