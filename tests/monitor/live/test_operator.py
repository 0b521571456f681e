"""The operator's page, served by the monitor itself: every stream with its state, what
raised it, its score curves and the recent events, updated live, behind the API token.
Looked at in headless Chromium while a real call turns fake (a screenshot is saved)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession

from monitor.live.config import MonitorConfig
from monitor.live.service import Service
from tests.support.browser import chromium, needs_chromium, wait_until_async
from tests.support.live_media import FAKE, REAL, toy_model, write_clip
from tests.support.webrtc_peers import wait_until

TOKEN = "operator-token-1234"
PHASES = ("live", "locked", "offline")  # set by operator.js once it has polled
TURN_S = 6.0  # the turning call is real for this long, then fake


def service_for(tmp_path: Path, streams: list[dict[str, Any]]) -> Service:
    cfg = MonitorConfig.model_validate(
        {
            "model": str(toy_model(tmp_path / "model")),
            "backend": "onnxruntime",
            "server": {"host": "127.0.0.1", "port": 0, "token": TOKEN},
            "webrtc": {"enabled": False},
            "streams": streams,
        }
    )
    return Service(cfg)


def cards_js() -> str:
    return (
        "Array.from(document.querySelectorAll('.card')).map(c => "
        "[c.dataset.stream, c.dataset.state, c.querySelector('.raised').textContent])"
    )


@pytest.mark.slow
@needs_chromium
def test_the_operator_page_shows_a_call_turning_fake(tmp_path: Path) -> None:
    turning = write_clip(tmp_path / "turning.mp4", seconds=30.0, then=FAKE, turn_at=TURN_S, **REAL)
    real = write_clip(tmp_path / "real.mp4", seconds=8.0, **REAL)
    service = service_for(
        tmp_path,
        [
            {"id": "kyc-desk-1", "url": str(turning)},
            {"id": "lobby", "url": str(real), "loop": True},
        ],
    )
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        run = asyncio.create_task(service.run(install_signals=False))
        try:
            await wait_until(lambda: service.port is not None and service.ready, 60, "ready")
            base = f"http://127.0.0.1:{service.port}"
            async with ClientSession() as http:
                async with http.get(f"{base}/api/operator") as resp:
                    seen["no_token"] = resp.status
                async with http.get(f"{base}/operator") as resp:
                    seen["page_csp"] = resp.headers.get("Content-Security-Policy", "")
                    seen["page"] = await resp.text()
                url = f"{base}/operator#token={TOKEN}"
                async with chromium(url, http, tmp_path, phases=PHASES) as page:
                    assert TOKEN not in await page.evaluate("location.href")
                    await wait_until_async(
                        lambda: page.evaluate("document.querySelectorAll('.card').length"), 2, 20
                    )
                    states = []

                    async def fake_state() -> str:
                        cards = {c[0]: c for c in await page.evaluate(cards_js())}
                        state = cards["kyc-desk-1"][1]
                        if not states or states[-1] != state:
                            states.append(state)
                        return str(state)

                    await wait_until_async(fake_state, "ALERT", 40)
                    seen["states"] = states
                    seen["cards"] = await page.evaluate(cards_js())
                    seen["events"] = await page.evaluate(
                        "Array.from(document.querySelectorAll('#events tr'))"
                        ".map(r => r.textContent)"
                    )
                    seen["drawn"] = await page.evaluate(
                        "document.querySelector('.card canvas').toDataURL().length"
                    )
                    shot = await page.screenshot(tmp_path / "operator.png")
                    print(f"operator page screenshot: {shot}")
                    seen["shot"] = shot
        finally:
            service.stop()
            await run

    asyncio.run(scenario())
    assert seen["no_token"] == 401
    assert "script-src 'self'" in seen["page_csp"] and TOKEN not in seen["page"]
    assert seen["states"][-1] == "ALERT" and "CLEAR" in seen["states"]  # it turned
    cards = {c[0]: c for c in seen["cards"]}
    assert cards["lobby"][1] == "CLEAR"
    assert cards["kyc-desk-1"][2] in ("raised by voice", "raised by voice_face")
    assert any("kyc-desk-1" in e and "ALERT" in e for e in seen["events"])
    assert seen["drawn"] > 5000  # the canvas has curves on it, not a blank image
    assert Path(seen["shot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_operator_data_lists_streams_history_thresholds_and_events(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "fake.mp4", seconds=6.0, **FAKE)
    service = service_for(tmp_path, [{"id": "cam", "url": str(clip), "realtime": False}])
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        run = asyncio.create_task(service.run(install_signals=False))
        try:
            await wait_until(lambda: service.port is not None and service.ready, 60, "ready")
            p = service.pipeline
            assert p is not None
            await wait_until(lambda: p.sources_ended() and p.idle(), 30, "the clip")
            async with ClientSession() as http:
                headers = {"Authorization": f"Bearer {TOKEN}"}
                url = f"http://127.0.0.1:{service.port}/api/operator"
                async with http.get(url, headers=headers) as resp:
                    seen["data"] = json.loads(await resp.text())
                bad = f"http://127.0.0.1:{service.port}/operator/assets/..%2Fconfig.py"
                async with http.get(bad) as resp:
                    seen["traversal"] = resp.status
        finally:
            service.stop()
            await run

    asyncio.run(scenario())
    data = seen["data"]
    assert seen["traversal"] == 404
    assert data["thresholds"]["fused"] == {"alert_on": 0.8, "suspicious_on": 0.5}
    (cam,) = data["streams"]
    assert cam["stream_id"] == "cam" and cam["state"] == "ALERT" and cam["raised_by"]
    h = cam["history"]
    assert len(h["t"]) == cam["windows_scored"] >= 4 and h["state"][-1] == "ALERT"
    assert all(-300 <= t <= 0 for t in h["t"]) and len(h["sync"]) == len(h["t"])
    assert data["events"][0]["state"] == "ALERT" and data["events"][0]["stream"] == "cam"
