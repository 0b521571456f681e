"""Events: the JSON line format, and a webhook POSTed to a real aiohttp server that fails
first (retries with backoff), plus the bounded queue dropping the oldest events."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from monitor.live.events import EventDispatcher, EventLog, Webhook, event_record
from monitor.live.state import StateChange


def change(state: str, previous: str = "CLEAR", stream: str = "cam") -> StateChange:
    return StateChange(
        stream_id=stream,
        state=state,
        previous=previous,
        modality="fused",
        scores={"fused": 0.912345, "audio": 0.5, "visual": None},
        stream_t=12.0,
        wall_time=1_700_000_000.25,
        event_id="e1",
    )


def test_event_record_is_one_self_describing_json_object(tmp_path: Path) -> None:
    rec = event_record(change("ALERT", "SUSPICIOUS"))
    assert rec == {
        "id": "e1",
        "stream": "cam",
        "time": "2023-11-14T22:13:20.250+00:00",
        "state": "ALERT",
        "previous": "SUSPICIOUS",
        "modality": "fused",
        "raised_by": None,
        "scores": {"fused": 0.9123, "audio": 0.5, "visual": None},
        "stream_time": 12.0,
    }
    datetime.fromisoformat(rec["time"])  # valid ISO-8601
    log = EventLog(tmp_path / "sub" / "events.jsonl")
    EventDispatcher(log).emit(change("ALERT"))
    EventDispatcher(log).emit(change("CLEAR", "ALERT"))
    log.close()
    lines = (tmp_path / "sub" / "events.jsonl").read_text().splitlines()
    assert [json.loads(x)["state"] for x in lines] == ["ALERT", "CLEAR"]


async def _hook_server(fail_first: int) -> tuple[web.AppRunner, str, list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []
    calls = {"n": 0}

    async def hook(request: web.Request) -> web.Response:
        calls["n"] += 1
        if calls["n"] <= fail_first:
            return web.Response(status=503)
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/hook", received


def test_webhook_retries_until_delivered() -> None:
    outcomes: list[str] = []

    async def main() -> list[dict[str, Any]]:
        runner, url, received = await _hook_server(fail_first=2)
        hook = Webhook(url, retries=3, backoff_s=0.05, on_outcome=outcomes.append)
        dispatcher = EventDispatcher(webhook=hook)
        dispatcher.start()
        dispatcher.emit(change("ALERT"))
        dispatcher.emit(change("CLEAR", "ALERT"))
        await hook.drain(10.0)
        await dispatcher.close()
        await runner.cleanup()
        return received

    received = asyncio.run(main())
    assert [r["state"] for r in received] == ["ALERT", "CLEAR"]  # in order, after 2 failures
    assert outcomes == ["sent", "sent"]


def test_webhook_gives_up_and_never_blocks_the_caller() -> None:
    outcomes: list[str] = []

    async def main() -> Webhook:
        runner, url, _ = await _hook_server(fail_first=1000)
        hook = Webhook(url, retries=1, backoff_s=0.01, queue_size=2, on_outcome=outcomes.append)
        # queue 5 events before the sender runs: emit() returns at once, oldest dropped
        for i in range(5):
            hook.post(event_record(change("ALERT", stream=f"s{i}")))
        assert hook.dropped == 3
        hook.start()
        await hook.drain(10.0)
        await hook.close()
        await runner.cleanup()
        return hook

    hook = asyncio.run(main())
    assert hook.failed == 2 and hook.sent == 0
    assert outcomes.count("dropped") == 3 and outcomes.count("failed") == 2


def test_webhook_to_a_dead_port_fails_cleanly() -> None:
    async def main() -> Webhook:
        hook = Webhook("http://user:pw@127.0.0.1:9/hook", retries=1, backoff_s=0.01, timeout_s=2)
        hook.start()
        hook.post({"stream": "x", "state": "ALERT"})
        await hook.drain(10.0)
        await hook.close()
        return hook

    assert asyncio.run(main()).failed == 1
