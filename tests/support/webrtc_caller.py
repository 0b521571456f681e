"""A WebRTC caller in a process of its own, for tests that make a peer vanish (SIGKILL).

    python tests/support/webrtc_caller.py BASE_URL MEDIA_FILE [NAME] [TOKEN]

Joins through POST BASE_URL/offer with aiortc's MediaPlayer playing MEDIA_FILE, prints
the stream id on one line, then waits to be killed.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import ClientSession
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer


async def call(base_url: str, media: str, name: str, token: str | None) -> None:
    player = MediaPlayer(media)
    pc = RTCPeerConnection()
    for track in (player.audio, player.video):
        if track is not None:
            pc.addTrack(track)
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    payload = {"sdp": pc.localDescription.sdp, "type": "offer", "name": name}
    async with (
        ClientSession() as http,
        http.post(f"{base_url}/offer", json=payload, headers=headers) as resp,
    ):
        body = await resp.json()
        if resp.status != 200:
            print(f"ERROR {resp.status} {body}", flush=True)
            return
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
    print(body["stream_id"], flush=True)
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(
        call(
            args[0],
            args[1],
            args[2] if len(args) > 2 else "sub",
            args[3] if len(args) > 3 else None,
        )
    )
