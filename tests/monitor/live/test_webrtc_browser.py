"""A real browser as a WebRTC caller: headless Chromium (Debian's `chromium`) with a fake
camera and microphone fed from files opens the join page, is received, and shows the score.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest
from aiohttp import ClientSession
from pydantic import SecretStr

from monitor.live.sources.webrtc import WebRTCConfig
from tests.support.browser import (
    chromium,
    needs_chromium,
    text_of,
    wait_until_async,
)
from tests.support.webrtc_peers import (
    CLIP_SIZE,
    TOKEN,
    RecordingRegistry,
    check_audio,
    serve,
    wait_until,
    write_wav,
    write_y4m,
)

CALLER = ("idle", "starting", "live", "ended", "error")  # phases app.js sets


@pytest.mark.slow
@needs_chromium
def test_headless_chromium_joins_and_shows_the_score(tmp_path: Path) -> None:
    y4m = write_y4m(tmp_path / "clip.y4m")
    wav = write_wav(tmp_path / "clip.wav")

    async def scenario() -> None:
        registry = RecordingRegistry()
        cfg = WebRTCConfig(token=SecretStr(TOKEN), status_interval_ms=200)
        async with serve(registry, cfg) as (base, server), ClientSession() as http:
            url = f"{base}/#token={TOKEN}&name=chromium"
            async with chromium(url, http, tmp_path, phases=CALLER, y4m=y4m, wav=wav) as page:
                # the token left the address bar as soon as the page read it
                assert TOKEN not in await page.evaluate("location.href")
                await page.evaluate("document.getElementById('start').click()")

                await wait_until(lambda: len(registry.sinks) == 1, 20, "the browser's offer")
                stream_id = next(iter(registry.sinks))
                assert stream_id.startswith("webrtc-chromium-")
                sink = registry.sinks[stream_id]
                await wait_until(lambda: sink.audio_seconds() >= 2.5, 20, "browser audio")
                await wait_until(lambda: len(sink.video) >= 20, 10, "browser video")
                await wait_until_async(
                    lambda: page.evaluate("document.getElementById('state').textContent"),
                    "CLEAR",
                    10,
                )
                shown = await page.evaluate(
                    text_of("stream-id", "fused", "audio", "visual", "fps", "connection")
                )
                assert shown[0] == stream_id
                assert all(v not in ("", "–") for v in shown[1:5]), shown
                assert shown[5] == "connected"
                assert await page.evaluate("document.body.dataset.phase") == "live"

                await page.evaluate("document.getElementById('stop').click()")
                await wait_until(lambda: stream_id in registry.closed, 10, "hang-up")
                assert stream_id not in server.peers

        check_audio(sink)
        times = [t for t, _, _ in sink.video]
        assert all(b > a for a, b in itertools.pairwise(times))
        assert sink.video[-1][1:] == CLIP_SIZE

    asyncio.run(scenario())


@pytest.mark.slow
@needs_chromium
def test_chromium_through_the_service_shows_an_alert(tmp_path: Path) -> None:
    """Browser -> WebRTC -> real Service (pipeline, face crops, toy ONNX detector) -> page:
    a bright face and a loud voice, which the toy detector calls fake, end in ALERT."""
    from monitor.live.config import MonitorConfig
    from monitor.live.service import Service
    from tests.support.live_media import FAKE, face_frame, toy_model

    y4m = write_y4m(tmp_path / "face.y4m", picture=lambda i: face_frame(gain=FAKE["gain"]))
    wav = write_wav(tmp_path / "voice.wav", amp=FAKE["tone_amp"])
    cfg = MonitorConfig.model_validate(
        {
            "model": str(toy_model(tmp_path / "model")),
            "backend": "onnxruntime",
            "server": {"host": "127.0.0.1", "port": 0},
            "webrtc": {"token": TOKEN, "status_interval_ms": 200},
            "state": {"min_escalate_s": 1.0},
        }
    )
    service = Service(cfg)
    shown: list[str] = []

    async def scenario() -> None:
        run = asyncio.create_task(service.run(install_signals=False))
        try:
            await wait_until(lambda: service.port is not None and service.ready, 60, "ready")
            base = f"http://127.0.0.1:{service.port}"
            async with ClientSession() as http:
                url = f"{base}/#token={TOKEN}&name=browser&autostart=1"
                async with chromium(url, http, tmp_path, phases=CALLER, y4m=y4m, wav=wav) as page:
                    # (with Chromium's default audio processing the steady tone was
                    # suppressed and this stayed CLEAR: the page turns it off)
                    await wait_until_async(
                        lambda: page.evaluate("document.getElementById('state').textContent"),
                        "ALERT",
                        30,
                    )
                    shown.extend(await page.evaluate(text_of("stream-id", "fused", "windows")))
                    assert service.pipeline is not None
                    assert service.pipeline.status(shown[0]) is not None
                    await page.evaluate("document.getElementById('stop').click()")
                    await wait_until(
                        lambda: (
                            service.pipeline is not None
                            and service.pipeline.status(shown[0]) is None
                        ),
                        10,
                        "the stream to be removed",
                    )
        finally:
            service.stop()
            await run

    asyncio.run(scenario())
    assert shown[0].startswith("webrtc-browser-")
    assert float(shown[1]) > 0.8 and int(shown[2]) >= 2, shown
