"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol, for tests
that use a real browser: the WebRTC caller page and the operator page."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession

from tests.support.webrtc_peers import wait_until

CHROMIUM = "/usr/bin/chromium"


# --- the DevTools protocol, just enough to click and read the page -----------------------


class DevTools:
    """Just enough of the Chrome DevTools protocol to click and read the page."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        self.next_id += 1
        my_id = self.next_id
        await self.ws.send_json({"id": my_id, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json()
            if msg.get("id") == my_id:
                return msg.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        result = await self.call("Runtime.evaluate", params)
        return result["result"].get("value")

    async def screenshot(self, path: Path) -> Path:
        """The page as a PNG, as a person would see it."""
        shot = await self.call("Page.captureScreenshot", {"format": "png"})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


def _devtools_port(port_file: Path) -> str | None:
    """The port Chromium wrote, once it has written it all ("PORT\n/devtools/browser/ID").

    The file can exist before its text does: a loaded machine read it empty once.
    """
    try:
        lines = port_file.read_text().split()
    except FileNotFoundError:
        return None
    return lines[0] if len(lines) >= 2 else None


async def devtools_page_url(user_data_dir: Path, http: ClientSession) -> str:
    port_file = user_data_dir / "DevToolsActivePort"
    await wait_until(lambda: _devtools_port(port_file) is not None, 30, "Chromium's DevTools port")
    port = _devtools_port(port_file)
    for _ in range(100):
        async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
            pages = [t for t in await resp.json() if t["type"] == "page"]
        if pages:
            return str(pages[0]["webSocketDebuggerUrl"])
        await asyncio.sleep(0.1)
    raise AssertionError("Chromium shows no page")


needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)"
)


@contextlib.asynccontextmanager
async def chromium(
    url: str,
    http: ClientSession,
    scratch: Path,
    *,
    phases: tuple[str, ...],
    y4m: Path | None = None,
    wav: Path | None = None,
) -> AsyncIterator[DevTools]:
    """Headless Chromium on `url` (with a fake camera and microphone fed from y4m / wav);
    yields its page once the page's script has set `document.body.dataset.phase` to one
    of `phases` (so it has run, and read and dropped the fragment)."""
    media = []
    if y4m is not None and wav is not None:
        media = [
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={y4m}",
            f"--use-file-for-fake-audio-capture={wav}",
        ]
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=scratch))
    browser = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *media,
            "--window-size=1400,900",
            "--remote-debugging-port=0",
            url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its helper processes die with the group below
    )
    try:
        ws_url = await devtools_page_url(profile, http)
        async with http.ws_connect(ws_url, max_msg_size=0) as ws:
            page = DevTools(ws)
            ready = f"{list(phases)!r}.includes(document.body && document.body.dataset.phase)"
            await wait_until_async(lambda: page.evaluate(ready), True, 15)  # not about:blank
            yield page
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(browser.pid, signal.SIGKILL)
        browser.wait()
        shutil.rmtree(profile, ignore_errors=True)


def text_of(*ids: str) -> str:
    return f"{list(ids)!r}.map(id => document.getElementById(id).textContent)"


async def wait_until_async(get: Callable[[], Any], want: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = await get()
        if got == want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"wanted {want!r}, last saw {got!r}")
