"""The gateway's own probes; these are answered here, never proxied."""

from __future__ import annotations

from aiohttp import web

from gateway.errors import json_error
from gateway.state import UPSTREAM_SESSION


async def live_handler(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def ready_handler(request: web.Request) -> web.Response:
    # No database yet: ready means the upstream client exists and is open.
    session = request.app.get(UPSTREAM_SESSION)
    if session is None or session.closed:
        return json_error(503, "not ready")
    return web.json_response({"status": "ok"})
