"""WebRTC source: an aiohttp signaling endpoint that turns callers into monitored streams.

`add_webrtc_routes(app, registry, cfg)` adds to an aiohttp application:

    GET  /                        the browser page (camera + microphone, live score)
    GET  /static/...              its script and style sheet (no CDN, no build step)
    GET  /api/config              ICE servers and poll interval for the page       [token]
    POST /offer                   {sdp, type: "offer", name?} -> {sdp, type, stream_id}  [token]
    GET  /api/status/{stream_id}  the stream's StreamStatus as JSON                 [token]

Each accepted offer opens one stream in the `StreamRegistry` ("webrtc-<name>-<6 hex>")
and a `PeerSession` that drains the caller's tracks into its sink. The server only
receives: the answer is recvonly, there is no trickle ICE (the offer must carry its
candidates, as browsers do once ICE gathering is complete).

Errors are JSON `{"error": "..."}`: 400 malformed JSON or SDP, 401 missing or wrong bearer
token (when one is configured), 404 unknown stream, 413 body or SDP too large, 503 peer
limit reached. The token is compared in constant time and never logged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
import re
import secrets
from typing import Any

from aiohttp import web
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError
from aiortc.sdp import SessionDescription
from pydantic import SecretStr

from monitor.contract import SAMPLE_RATE
from monitor.errors import ConfigError
from monitor.live.pages import PAGE_HEADERS, STATIC_DIR
from monitor.live.sink import StreamRegistry
from monitor.live.sources.webrtc_config import WebRTCConfig
from monitor.live.sources.webrtc_peer import TRACK_KINDS, PeerSession

logger = logging.getLogger(__name__)

STREAM_KIND = "webrtc"
MEDIA_KINDS = (*TRACK_KINDS, "application")  # SDP sections aiortc can answer
DEFAULT_NAME = "peer"
NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")  # caller-chosen part of the stream id
STREAM_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # any stream id the pipeline makes
STREAM_SUFFIX_BYTES = 3  # random suffix: 6 hex characters
NEGOTIATION_TIMEOUT_S = 10.0  # setRemoteDescription + createAnswer + ICE gathering
READ_CHUNK_BYTES = 16 * 1024  # body read granularity while enforcing the size limit


class OfferRejected(Exception):
    """An /offer request that is refused; becomes a JSON error response."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_error(status: int, message: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="deepfake-monitor"'} if status == 401 else None
    return web.json_response({"error": message}, status=status, headers=headers)


class WebRTCServer:
    """The peers of one application: admission, signaling, status, shutdown."""

    def __init__(
        self, registry: StreamRegistry, cfg: WebRTCConfig, sample_rate: int = SAMPLE_RATE
    ) -> None:
        self.registry = registry
        self.cfg = cfg
        self.sample_rate = sample_rate
        self.peers: dict[str, PeerSession] = {}
        self._pending = 0  # offers admitted but not yet answered (they hold a slot)
        token = cfg.token.get_secret_value() if cfg.token is not None else None
        self._token = token.encode() if token is not None else None

    # --- helpers ---------------------------------------------------------------------

    def authorized(self, request: web.Request) -> bool:
        if self._token is None:
            return True
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode(), self._token)

    async def read_body(self, request: web.Request) -> bytes:
        limit = self.cfg.max_body_bytes
        too_large = OfferRejected(413, f"request body larger than {limit} bytes")
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        body = bytearray()
        while True:
            chunk = await request.content.read(READ_CHUNK_BYTES)
            if not chunk:
                return bytes(body)
            body += chunk
            if len(body) > limit:
                raise too_large

    def parse_offer(self, body: bytes) -> tuple[str, str]:
        """Return (sdp, name) of a well-formed offer or raise OfferRejected."""
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise OfferRejected(400, f"body is not JSON: {exc}") from None
        except RecursionError:  # "[[[[...]]]]": valid JSON, nested past the parser's stack
            raise OfferRejected(400, "body is not JSON: nested too deeply") from None
        if not isinstance(data, dict):
            raise OfferRejected(400, 'body must be a JSON object {"sdp": ..., "type": "offer"}')
        sdp, kind, name = data.get("sdp"), data.get("type"), data.get("name", DEFAULT_NAME)
        if kind != "offer":
            raise OfferRejected(400, f'"type" must be "offer", got {kind!r:.40}')
        if not isinstance(sdp, str) or not sdp.strip():
            raise OfferRejected(400, '"sdp" must be a non-empty string')
        if len(sdp.encode()) > self.cfg.max_sdp_bytes:
            raise OfferRejected(413, f"SDP larger than {self.cfg.max_sdp_bytes} bytes")
        if name is None or name == "":
            name = DEFAULT_NAME
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise OfferRejected(400, '"name" must match [A-Za-z0-9_-]{1,32}')
        check_sdp(sdp)
        return sdp, name

    def new_stream_id(self, name: str) -> str:
        while True:
            stream_id = f"{STREAM_KIND}-{name}-{secrets.token_hex(STREAM_SUFFIX_BYTES)}"
            if stream_id not in self.peers:
                return stream_id

    def rtc_configuration(self) -> RTCConfiguration:
        servers = [
            RTCIceServer(
                urls=s.urls,
                username=s.username,
                credential=s.credential.get_secret_value() if s.credential else None,
            )
            for s in self.cfg.ice_servers
        ]
        return RTCConfiguration(iceServers=servers)

    # --- peers -----------------------------------------------------------------------

    async def accept(self, sdp: str, name: str) -> tuple[RTCSessionDescription, str]:
        """Open a stream for one offer and answer it. Raises OfferRejected."""
        if len(self.peers) + self._pending >= self.cfg.max_peers:
            raise OfferRejected(
                503, f"peer limit reached ({self.cfg.max_peers} callers); try again later"
            )
        self._pending += 1
        try:
            stream_id = self.new_stream_id(name)
            try:
                sink = self.registry.open_stream(stream_id, STREAM_KIND)
            except ConfigError as exc:
                raise OfferRejected(503, f"no stream can be opened now: {exc}") from None
            session = PeerSession(
                stream_id,
                RTCPeerConnection(self.rtc_configuration()),
                sink,
                sample_rate=self.sample_rate,
                connect_timeout_s=self.cfg.connect_timeout_s,
                media_timeout_s=self.cfg.media_timeout_s,
                on_closed=self._on_peer_closed,
            )
            try:
                answer = await asyncio.wait_for(
                    self._negotiate(session, sdp), NEGOTIATION_TIMEOUT_S
                )
            except OfferRejected:
                await session.close("offer rejected")
                raise
            except TimeoutError:
                await session.close("negotiation timed out")
                raise OfferRejected(503, "negotiation timed out; try again") from None
            except asyncio.CancelledError:
                session.close_soon("request cancelled")
                raise
            self.peers[stream_id] = session
            session.start()
        finally:
            self._pending -= 1
        logger.info("stream %s: caller accepted (%d peers)", stream_id, len(self.peers))
        return answer, stream_id

    async def _negotiate(self, session: PeerSession, sdp: str) -> RTCSessionDescription:
        pc = session.pc
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except (
            ValueError,
            KeyError,
            IndexError,
            AssertionError,
            InternalError,
            InvalidAccessError,
            InvalidStateError,
            OperationError,
        ) as exc:
            # everything here comes from the caller's SDP (missing ICE credentials or
            # fingerprint, no codec in common, ...): the caller's error, not ours
            raise OfferRejected(400, f"offer rejected: {exc or type(exc).__name__}") from None
        except Exception as exc:  # aiortc's SDP handling has more failure modes than it
            # documents (AttributeError on a missing fingerprint, ...): still the caller's
            logger.warning("stream %s: aiortc failed on the offer: %r", session.stream_id, exc)
            logger.debug("stream %s: offer failure", session.stream_id, exc_info=True)
            raise OfferRejected(
                400, f"offer could not be negotiated: {type(exc).__name__}"
            ) from None
        return pc.localDescription

    def _on_peer_closed(self, session: PeerSession, reason: str) -> None:
        self.peers.pop(session.stream_id, None)
        try:
            self.registry.close_stream(session.stream_id)
        except Exception:  # the registry belongs to the pipeline; keep our books straight
            logger.exception("stream %s: registry.close_stream raised", session.stream_id)
        logger.info(
            "stream %s: caller gone (%s); %d peers", session.stream_id, reason, len(self.peers)
        )

    async def close_all(self, reason: str = "server shutting down") -> None:
        sessions = list(self.peers.values())
        await asyncio.gather(*(s.close(reason) for s in sessions), return_exceptions=True)

    # --- handlers --------------------------------------------------------------------

    async def handle_page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    async def handle_config(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return json_error(401, "missing or wrong bearer token")
        servers = []
        for s in self.cfg.ice_servers:
            entry: dict[str, Any] = {"urls": s.urls}
            if s.username is not None:
                entry["username"] = s.username
            if s.credential is not None:
                entry["credential"] = s.credential.get_secret_value()
            servers.append(entry)
        return web.json_response(
            {"ice_servers": servers, "status_interval_ms": self.cfg.status_interval_ms},
            headers={"Cache-Control": "no-store"},
        )

    async def handle_offer(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return json_error(401, "missing or wrong bearer token")
        try:
            sdp, name = self.parse_offer(await self.read_body(request))
            answer, stream_id = await self.accept(sdp, name)
        except OfferRejected as exc:
            logger.info("offer from %s refused (%d): %s", request.remote, exc.status, exc.message)
            return json_error(exc.status, exc.message)
        return web.json_response({"sdp": answer.sdp, "type": answer.type, "stream_id": stream_id})

    async def handle_status(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return json_error(401, "missing or wrong bearer token")
        stream_id = request.match_info["stream_id"]
        if not STREAM_ID_RE.fullmatch(stream_id):
            return json_error(400, "malformed stream id")
        status = self.registry.status(stream_id)
        if status is None:
            return json_error(404, f"no stream {stream_id!r} (ended or never existed)")
        return web.json_response(dataclasses.asdict(status), headers={"Cache-Control": "no-store"})

    async def on_shutdown(self, app: web.Application) -> None:
        if self.peers:
            logger.info("closing %d WebRTC peers", len(self.peers))
        await self.close_all()


def check_sdp(sdp: str) -> None:
    """Reject SDP that aiortc could not answer usefully, with a message for the caller."""
    try:
        desc = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser trusts its input: a fuzzed offer raises
        # ValueError, KeyError, IndexError, AssertionError, StopIteration, ... all the caller's
        raise OfferRejected(400, f"SDP could not be parsed: {exc!r:.200}") from None
    kinds = [m.kind for m in desc.media]
    for kind in TRACK_KINDS:
        if kinds.count(kind) > 1:
            raise OfferRejected(400, f"offer has {kinds.count(kind)} {kind} sections; send one")
    if not any(kind in TRACK_KINDS for kind in kinds):
        raise OfferRejected(400, "offer has no audio or video section")
    if not any(m.ice_candidates for m in desc.media):
        raise OfferRejected(
            400, "offer has no ICE candidates; wait for ICE gathering to complete (no trickle)"
        )
    # the rest is checked here because aiortc half-builds a connection before it notices
    for m in desc.media:
        if m.kind not in MEDIA_KINDS:
            raise OfferRejected(400, f"offer has an unsupported {m.kind!r:.20} section")
        if m.dtls is None or not m.dtls.fingerprints:
            raise OfferRejected(400, f"offer's {m.kind} section has no DTLS fingerprint")
        if m.ice is None or not m.ice.usernameFragment or not m.ice.password:
            raise OfferRejected(400, f"offer's {m.kind} section has no ICE ufrag/password")
    mids = [m.rtp.muxId for m in desc.media if m.kind in TRACK_KINDS]
    if not all(mids) or len(set(mids)) != len(mids):
        raise OfferRejected(400, "every audio/video section needs its own a=mid")
    all_mids = {str(m.rtp.muxId) for m in desc.media}
    for group in desc.group:
        if group.semantic == "BUNDLE" and not {str(i) for i in group.items} <= all_mids:
            raise OfferRejected(400, "a=group:BUNDLE names a mid that no section has")


WEBRTC_SERVER = web.AppKey("webrtc_server", WebRTCServer)


def add_webrtc_routes(
    app: web.Application,
    registry: StreamRegistry,
    cfg: WebRTCConfig,
    *,
    sample_rate: int = SAMPLE_RATE,
    token: str | None = None,
) -> None:
    """Add the page, the signaling endpoint and the status API to `app`; peers are closed
    on the application's shutdown. Does nothing when `cfg.enabled` is false.

    `sample_rate`: the model contract's audio rate (Hz) the sinks expect. `token`: a bearer
    token that wins over `cfg.token`, for a service that keeps one token for all its routes.
    """
    if not cfg.enabled:
        logger.info("WebRTC source disabled")
        return
    if token:
        cfg = cfg.model_copy(update={"token": SecretStr(token)})
    server = WebRTCServer(registry, cfg, sample_rate)
    app[WEBRTC_SERVER] = server
    app.router.add_get("/", server.handle_page)
    app.router.add_static("/static/", STATIC_DIR, name="webrtc_static")
    app.router.add_get("/api/config", server.handle_config)
    app.router.add_post("/offer", server.handle_offer)
    app.router.add_get("/api/status/{stream_id}", server.handle_status)
    app.on_shutdown.append(server.on_shutdown)
    logger.info(
        "WebRTC source: page at /, offers at /offer, %d peers max, %s",
        cfg.max_peers,
        "bearer token required" if cfg.token is not None else "NO authentication",
    )
