"""The operator's page: every stream's state, what raised it, its recent score curves with
the thresholds, and the recent events, updated live; for sites without Grafana.

    GET /operator                   the page (no data in it; the token stays in the fragment)
    GET /operator/assets/<file>     its script and style sheet
    GET /api/operator               the data it polls (bearer token when one is configured)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from monitor.live.pages import PAGE_HEADERS, STATIC_DIR
from monitor.live.state import HEADS

if TYPE_CHECKING:
    from monitor.live.pipeline import Pipeline

HISTORY_S = 300.0  # score curves the page draws, seconds back from now
EVENTS_SHOWN = 30
ASSETS = ("operator.js", "operator.css")


def snapshot(pipeline: Pipeline | None, now: float | None = None) -> dict[str, Any]:
    """What the page shows, as JSON-ready data."""
    now = time.time() if now is None else now
    if pipeline is None:
        return {"now": now, "history_s": HISTORY_S, "thresholds": {}, "streams": [], "events": []}
    params = pipeline.state_params
    thresholds = {
        h: {
            "alert_on": params.thresholds(h).alert_on,
            "suspicious_on": params.thresholds(h).suspicious_on,
        }
        for h in HEADS
    }
    streams = []
    for sid, rt in sorted(pipeline.streams.items()):
        st = rt.status()
        recent = [row for row in rt.history if row[0] >= now - HISTORY_S]
        streams.append(
            {
                "stream_id": sid,
                "kind": rt.kind,
                "state": st.state,
                "raised_by": st.raised_by,
                "scores": {"fused": st.fused, "audio": st.audio, "visual": st.visual,
                           "sync": st.sync},
                "fps": round(st.fps, 1),
                "windows_scored": st.windows_scored,
                "windows_dropped": st.windows_dropped,
                "history": {
                    "t": [round(r[0] - now, 2) for r in recent],
                    **{h: [r[i + 1] for r in recent] for i, h in enumerate(HEADS)},
                    "state": [r[5] for r in recent],
                },
            }
        )  # fmt: skip
    events = list(pipeline.events.recent)[-EVENTS_SHOWN:][::-1]
    return {
        "now": now,
        "history_s": HISTORY_S,
        "state_source": pipeline.state_source,
        "thresholds": thresholds,
        "streams": streams,
        "events": events,
    }


def add_operator_routes(
    app: Any, pipeline: Callable[[], Pipeline | None], authorized: Callable[[Any], bool]
) -> None:
    """Add the page, its assets and its data route to an aiohttp application."""
    from aiohttp import web

    async def page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "operator.html", headers=PAGE_HEADERS)

    async def asset(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in ASSETS:  # a fixed list: no path ever reaches the file system
            raise web.HTTPNotFound()
        return web.FileResponse(STATIC_DIR / name, headers={"Cache-Control": "no-store"})

    async def data(request: web.Request) -> web.Response:
        if not authorized(request):
            return web.json_response({"error": "bearer token required"}, status=401)
        return web.json_response(snapshot(pipeline()), headers={"Cache-Control": "no-store"})

    app.router.add_get("/operator", page)
    app.router.add_get("/operator/assets/{name}", asset)
    app.router.add_get("/api/operator", data)
