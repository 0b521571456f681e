"""WebRTC source: real aiortc peers against the real aiohttp app (signaling, draining,
refusals, limits, vanishing peers) and end to end through the real service.
The browser test lives in test_webrtc_browser.py; shared peers in webrtc_peers.py.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest
from aiohttp import ClientSession, web
from aiortc import RTCPeerConnection
from pydantic import SecretStr, ValidationError

from monitor.live.sources.webrtc import WebRTCConfig, add_webrtc_routes
from monitor.live.sources.webrtc_peer import TrackClock, frame_time
from tests.support import REPO_ROOT
from tests.support.webrtc_peers import (
    CLIP_FPS,
    CLIP_SIZE,
    TOKEN,
    RecordingRegistry,
    aiortc_offer,
    bearer,
    check_audio,
    join,
    player_pc,
    serve,
    wait_until,
    write_mp4,
)

LONG_CLIP_SECONDS = 12.0
E2E_CLIP_SECONDS = 6.0  # through the service: room for a few 2 s windows
FUZZ_CASES = 60  # mutated offers (drop lines, truncate, flip characters, garble values)
CALLER_SCRIPT = REPO_ROOT / "tests" / "support" / "webrtc_caller.py"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mp4(tmp_path_factory.mktemp("webrtc") / "clip.mp4")


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # long enough to outlast its test: aiortc's MediaPlayer(loop=True) restarts pts at each
    # loop and its VP8 encoder then stops the sender ("Invalid data"), a client-side quirk
    return write_mp4(tmp_path_factory.mktemp("webrtc") / "long.mp4", seconds=LONG_CLIP_SECONDS)


# --- 1. an aiortc caller ------------------------------------------------------------------


@pytest.mark.slow
def test_aiortc_caller_audio_video_and_hangup(clip: Path) -> None:
    async def scenario() -> None:
        registry = RecordingRegistry()
        async with serve(registry, WebRTCConfig()) as (base, server), ClientSession() as http:
            pc, _player = player_pc(clip)
            stream_id = await join(http, base, pc, name="aio_caller")
            assert stream_id.startswith("webrtc-aio_caller-") and len(stream_id) == 24
            sink = registry.sinks[stream_id]
            sink.fail_every = 10
            await wait_until(lambda: sink.audio_seconds() >= 2.0, 15, "2 s of audio")
            await wait_until(lambda: len(sink.video) >= 20, 10, "20 video frames")
            assert server.peers[stream_id].stats.sink_errors == len(sink.video) // 10 >= 2

            async with http.get(f"{base}/api/status/{stream_id}") as resp:
                status = await resp.json()
                assert resp.status == 200
                assert status["stream_id"] == stream_id and status["state"] == "CLEAR"

            await pc.close()  # hang up: RTCP BYE / DTLS close
            await wait_until(lambda: stream_id in registry.closed, 10, "the stream to close")
            assert sink.closed is not None and stream_id not in server.peers
            async with http.get(f"{base}/api/status/{stream_id}") as resp:
                assert resp.status == 404

        check_audio(sink)
        times = [t for t, _, _ in sink.video]
        assert all(b > a for a, b in itertools.pairwise(times)), "video times increase"
        assert {(w, h) for _, w, h in sink.video} == {CLIP_SIZE}
        # one timeline for both tracks: they start within half a second of each other
        assert abs(sink.video[0][0] - sink.audio[0][0]) < 0.5
        fps = (len(times) - 1) / (times[-1] - times[0])
        assert fps == pytest.approx(CLIP_FPS, rel=0.25)

    asyncio.run(scenario())


def test_track_clock_puts_tracks_on_one_timeline() -> None:
    clock = TrackClock(origin=100.0)
    assert clock.stream_time(None, now=100.5) == 0.5  # no pts: arrival time
    assert clock.stream_time(0.0, now=101.0) == 1.0  # first pts pinned to its arrival
    assert clock.stream_time(0.04, now=101.3) == pytest.approx(1.04)  # then media time
    frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
    assert frame_time(frame) is None
    frame.pts, frame.time_base = 96_000, Fraction(1, 48_000)
    assert frame_time(frame) == 2.0


# --- 3. refusals: auth, sizes, malformed offers, limits, vanishing peers ------------------


def test_config_is_strict_and_hides_the_token() -> None:
    cfg = WebRTCConfig.model_validate(
        {"token": TOKEN, "ice_servers": [{"urls": ["stun:stun.example.org:3478"]}]}
    )
    assert TOKEN not in repr(cfg) and TOKEN not in str(cfg.model_dump())
    with pytest.raises(ValidationError, match="max_peer"):
        WebRTCConfig(max_peer=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="max_peers"):
        WebRTCConfig(max_peers=0)
    with pytest.raises(ValidationError, match="max_sdp_bytes"):
        WebRTCConfig(max_body_bytes=2048, max_sdp_bytes=4096)
    with pytest.raises(ValidationError, match="not a stun"):
        WebRTCConfig.model_validate({"ice_servers": [{"urls": ["http://example.org"]}]})
    assert WebRTCConfig().ice_servers == []  # no STUN unless asked


def test_disabled_adds_no_routes() -> None:
    app = web.Application()
    add_webrtc_routes(app, RecordingRegistry(), WebRTCConfig(enabled=False))
    assert len(app.router.routes()) == 0


def test_service_wide_token_wins_over_the_section() -> None:
    async def scenario() -> None:
        cfg = WebRTCConfig(token=SecretStr("section-token"))
        async with (
            serve(RecordingRegistry(), cfg, token=TOKEN) as (base, _server),
            ClientSession() as http,
        ):
            for token, want in ((None, 401), ("section-token", 401), (TOKEN, 200)):
                async with http.get(f"{base}/api/config", headers=bearer(token)) as resp:
                    assert resp.status == want, token

    asyncio.run(scenario())


def test_refusals_are_clear_json_and_leak_nothing() -> None:
    async def scenario() -> None:
        registry = RecordingRegistry()
        cfg = WebRTCConfig(token=SecretStr(TOKEN), max_body_bytes=8192, max_sdp_bytes=6000)
        async with serve(registry, cfg) as (base, server), ClientSession() as http:
            pc = RTCPeerConnection()
            pc.addTransceiver("audio", direction="sendonly")
            pc.addTransceiver("video", direction="sendonly")
            good = await aiortc_offer(pc)
            await pc.close()
            assert len(good) < 6000

            async def post(body: Any, token: str | None = TOKEN, raw: bool = False) -> tuple:
                data = body if raw else json.dumps(body)
                async with http.post(f"{base}/offer", data=data, headers=bearer(token)) as r:
                    assert r.content_type == "application/json", await r.text()
                    return r.status, (await r.json())["error"]

            # the page and its assets are public (the page asks for the token) ...
            async with http.get(f"{base}/") as r:
                assert r.status == 200 and "app.js" in await r.text()
                assert "script-src 'self'" in r.headers["Content-Security-Policy"]
            async with http.get(f"{base}/static/app.js") as r:
                assert r.status == 200
            async with http.get(f"{base}/static/../webrtc.py") as r:
                assert r.status in (403, 404)
            # ... the API is not
            offer = {"sdp": good, "type": "offer"}
            for token in (None, "wrong-token-xyz", TOKEN + "x"):
                assert (await post(offer, token))[0] == 401
                async with http.get(f"{base}/api/config", headers=bearer(token)) as r:
                    assert r.status == 401 and "Bearer" in r.headers["WWW-Authenticate"]
                async with http.get(f"{base}/api/status/webrtc-x-1", headers=bearer(token)) as r:
                    assert r.status == 401
            async with http.post(
                f"{base}/offer", json=offer, headers={"Authorization": f"Basic {TOKEN}"}
            ) as r:
                assert r.status == 401
            async with http.get(f"{base}/api/config", headers=bearer(TOKEN)) as r:
                assert r.status == 200 and (await r.json())["ice_servers"] == []

            # sizes: declared (Content-Length) and undeclared (chunked) bodies
            assert (await post("x" * 9000, raw=True))[0] == 413

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(10):
                    yield b"y" * 1000

            async with http.post(f"{base}/offer", data=chunks(), headers=bearer(TOKEN)) as r:
                assert r.status == 413 and "larger than 8192" in (await r.json())["error"]
            big_sdp = good + "a=x-pad:" + "p" * (6000 - len(good)) + "\r\n"
            status, msg = await post({"sdp": big_sdp, "type": "offer"})
            assert status == 413 and "SDP" in msg

            # malformed
            no_candidates = "\r\n".join(
                line for line in good.split("\r\n") if not line.startswith("a=candidate")
            )
            no_ufrag = "\r\n".join(
                line for line in good.split("\r\n") if not line.startswith("a=ice-ufrag")
            )
            no_fingerprint = "\r\n".join(
                line for line in good.split("\r\n") if not line.startswith("a=fingerprint")
            )
            audio_at = good.index("m=audio")
            video_at = good.index("m=video")
            two_audio = good + good[audio_at:video_at]
            cases: list[tuple[Any, bool, str]] = [
                ("{not json", True, "not JSON"),
                (b"\xff\xfe\x00", True, "not JSON"),
                ("[" * 4000 + "]" * 4000, True, "nested too deeply"),
                ([1, 2], False, "JSON object"),
                ({"type": "offer"}, False, "sdp"),
                ({"sdp": good, "type": "answer"}, False, "type"),
                ({"sdp": good, "type": "offer", "name": "../../etc"}, False, "name"),
                ({"sdp": good, "type": "offer", "name": "x" * 33}, False, "name"),
                ({"sdp": good, "type": "offer", "name": 7}, False, "name"),
                ({"sdp": "hello world", "type": "offer"}, False, "no audio or video"),
                ({"sdp": "v=0\r\nm=video x y\r\n", "type": "offer"}, False, "SDP"),
                ({"sdp": no_candidates, "type": "offer"}, False, "ICE candidates"),
                ({"sdp": two_audio, "type": "offer"}, False, "2 audio"),
                ({"sdp": no_ufrag, "type": "offer"}, False, "ICE ufrag"),
                ({"sdp": no_fingerprint, "type": "offer"}, False, "DTLS fingerprint"),
            ]
            for body, raw, needle in cases:
                status, msg = await post(body, raw=raw)
                assert status == 400 and needle in msg, (body, status, msg)

            async with http.get(f"{base}/api/status/nope", headers=bearer(TOKEN)) as r:
                assert r.status == 404
            async with http.get(f"{base}/api/status/bad%20id", headers=bearer(TOKEN)) as r:
                assert r.status == 400

            # nothing leaked: every stream opened for a rejected offer was closed again
            assert registry.open == set() and server.peers == {}

            # the registry's own stream limit is a 503 as well
            registry.max_streams = 0
            status, msg = await post(offer)
            assert status == 503 and "stream limit" in msg

    asyncio.run(scenario())


def mutate_sdp(sdp: str, rng: random.Random) -> str:
    lines = sdp.split("\r\n")
    how = rng.randrange(4)
    if how == 0:  # lines dropped
        return "\r\n".join(line for line in lines if rng.random() > 0.15)
    if how == 1:  # truncated
        return sdp[: rng.randrange(len(sdp))]
    if how == 2:  # characters replaced
        chars = list(sdp)
        for _ in range(5):
            chars[rng.randrange(len(chars))] = chr(rng.randrange(32, 127))
        return "".join(chars)
    i = rng.randrange(len(lines))  # one attribute's value garbled
    lines[i] = lines[i].split(":")[0] + ":" + "x" * rng.randrange(5)
    return "\r\n".join(lines)


def test_fuzzed_offers_get_400_or_200_never_500() -> None:
    async def scenario() -> None:
        registry = RecordingRegistry()
        cfg = WebRTCConfig(max_peers=256, connect_timeout_s=0.5)
        async with serve(registry, cfg) as (base, server), ClientSession() as http:
            pc = RTCPeerConnection()
            pc.addTransceiver("audio", direction="sendonly")
            pc.addTransceiver("video", direction="sendonly")
            good = await aiortc_offer(pc)
            await pc.close()
            rng = random.Random(1234)
            seen: collections.Counter[int] = collections.Counter()
            for _ in range(FUZZ_CASES):
                payload = {"sdp": mutate_sdp(good, rng), "type": "offer"}
                async with http.post(f"{base}/offer", json=payload) as resp:
                    seen[resp.status] += 1
                    assert resp.status in (200, 400), (payload, await resp.text())
            assert seen[400] > FUZZ_CASES // 2, seen
            # accepted ones never connect (nobody is there) and are dropped; none leak
            await wait_until(lambda: not registry.open, 5, "every fuzzed stream to close")
            assert server.peers == {}

    asyncio.run(scenario())


def test_caller_that_never_connects_is_dropped() -> None:
    async def scenario() -> None:
        registry = RecordingRegistry()
        cfg = WebRTCConfig(connect_timeout_s=1.0)
        async with serve(registry, cfg) as (base, server), ClientSession() as http:
            pc = RTCPeerConnection()
            pc.addTransceiver("video", direction="sendonly")
            payload = {"sdp": await aiortc_offer(pc), "type": "offer", "name": "ghost"}
            await pc.close()  # gone before ICE could even start
            async with http.post(f"{base}/offer", json=payload) as resp:
                assert resp.status == 200
                stream_id = (await resp.json())["stream_id"]
            assert stream_id in server.peers
            await wait_until(lambda: stream_id in registry.closed, 5, "the ghost to be dropped")
            assert registry.sinks[stream_id].closed == "not connected within 1 s"
            assert server.peers == {}

    asyncio.run(scenario())


@pytest.mark.slow
def test_peer_limit_and_a_vanishing_peer(long_clip: Path) -> None:
    async def scenario() -> None:
        registry = RecordingRegistry()
        cfg = WebRTCConfig(max_peers=2, media_timeout_s=1.5)
        async with serve(registry, cfg) as (base, server), ClientSession() as http:
            pc_a, _player_a = player_pc(long_clip)
            stream_a = await join(http, base, pc_a, name="stays")
            sink_a = registry.sinks[stream_a]

            caller = subprocess.Popen(
                [sys.executable, str(CALLER_SCRIPT), base, str(long_clip), "vanishes"],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert caller.stdout is not None
                line = await asyncio.to_thread(caller.stdout.readline)
                stream_b = line.strip()
                assert stream_b.startswith("webrtc-vanishes-"), line
                sink_b = registry.sinks[stream_b]
                await wait_until(lambda: len(sink_b.video) >= 5, 10, "media from the subprocess")

                # a third caller is over the limit
                pc_c = RTCPeerConnection()
                pc_c.addTransceiver("audio", direction="sendonly")
                payload = {"sdp": await aiortc_offer(pc_c), "type": "offer"}
                async with http.post(f"{base}/offer", json=payload) as resp:
                    assert resp.status == 503
                    assert "peer limit" in (await resp.json())["error"]

                caller.send_signal(signal.SIGKILL)  # no BYE, no DTLS close: just gone
            finally:
                caller.kill()
                caller.wait()
            killed_at = time.monotonic()
            await wait_until(lambda: stream_b in registry.closed, 10, "the vanished peer")
            gone_after = time.monotonic() - killed_at
            assert sink_b.closed is not None and "no media" in sink_b.closed
            assert gone_after < cfg.media_timeout_s + 2.0

            # the other caller went on all along
            n = len(sink_a.video)
            await wait_until(lambda: len(sink_a.video) >= n + 5, 5, "the remaining peer")
            assert stream_a in server.peers and stream_a not in registry.closed

            # the freed slot takes a new caller
            async with http.post(f"{base}/offer", json=payload) as resp:
                assert resp.status == 200
            await pc_c.close()
        # the application's shutdown closed the callers still there
        assert registry.open == set()
        assert sink_a.closed == "server shutting down"
        await pc_a.close()

    asyncio.run(scenario())


# --- 4. end to end through the real service: pipeline, face crops, toy detector ----------


@pytest.mark.slow
def test_service_scores_webrtc_callers_end_to_end(tmp_path: Path) -> None:
    """Two aiortc callers through Service (real Pipeline, face crops, the toy ONNX detector
    in onnxruntime): a bright, loud caller scores as fake, a dark, quiet one as real."""
    from monitor.live.config import MonitorConfig
    from monitor.live.service import Service
    from tests.support.live_media import FAKE, REAL, toy_model
    from tests.support.live_media import write_clip as write_face_clip

    clips = {
        "fake": write_face_clip(
            tmp_path / "fake.mp4",
            seconds=E2E_CLIP_SECONDS,
            gain=FAKE["gain"],
            tone_amp=FAKE["tone_amp"],
        ),
        "real": write_face_clip(
            tmp_path / "real.mp4",
            seconds=E2E_CLIP_SECONDS,
            gain=REAL["gain"],
            tone_amp=REAL["tone_amp"],
        ),
    }
    cfg = MonitorConfig.model_validate(
        {
            "model": str(toy_model(tmp_path / "model")),
            "backend": "onnxruntime",
            "server": {"host": "127.0.0.1", "port": 0},
            "webrtc": {"token": TOKEN},
            "state": {"min_escalate_s": 1.0},  # a verdict within the short clips
        }
    )
    service = Service(cfg)
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        run = asyncio.create_task(service.run(install_signals=False))
        try:
            await wait_until(lambda: service.port is not None and service.ready, 60, "ready")
            base = f"http://127.0.0.1:{service.port}"
            auth = bearer(TOKEN)
            async with ClientSession() as http:
                async with http.get(f"{base}/") as resp:
                    assert resp.status == 200  # the join page, beside /metrics
                callers = {name: player_pc(path) for name, path in clips.items()}
                ids = {
                    name: await join(http, base, pc, name=name, token=TOKEN)
                    for name, (pc, _player) in callers.items()
                }

                async def status(name: str) -> dict[str, Any]:
                    url = f"{base}/api/status/{ids[name]}"
                    async with http.get(url, headers=auth) as resp:
                        assert resp.status == 200, await resp.text()
                        return dict(await resp.json())

                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    seen.update({name: await status(name) for name in clips})
                    if all(s["state"] != "STARTING" for s in seen.values()):
                        break
                    await asyncio.sleep(0.2)
                async with http.get(f"{base}/metrics") as resp:
                    metrics = await resp.text()
                assert f'stream="{ids["fake"]}"' in metrics

                for pc, _player in callers.values():
                    await pc.close()
                for stream_id in ids.values():
                    await wait_until(
                        lambda sid=stream_id: (
                            service.pipeline is not None  # type: ignore[misc]
                            and service.pipeline.status(sid) is None
                        ),
                        10,
                        f"{stream_id} to be removed",
                    )
                async with http.get(f"{base}/api/status/{ids['fake']}", headers=auth) as resp:
                    assert resp.status == 404
                async with http.get(f"{base}/metrics") as resp:
                    assert f'stream="{ids["fake"]}"' not in await resp.text()
        finally:
            service.stop()
            await run

    asyncio.run(scenario())
    fake, real = seen["fake"], seen["real"]
    assert fake["windows_scored"] >= 2 and real["windows_scored"] >= 2, seen
    assert fake["fused"] > 0.8 and real["fused"] < 0.4, seen
    assert fake["state"] in ("ALERT", "SUSPICIOUS") and real["state"] == "CLEAR", seen
    assert fake["visual"] is not None and fake["audio"] is not None  # face found, audio heard
