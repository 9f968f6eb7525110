"""Server-Sent Events: a page's fragment, pushed again whenever it changes.

The console asks the API every ``live_poll_s`` on behalf of the connected page, renders
the fragment the page shows, and sends it only when it differs from the last one sent
(``event: fragment``, the HTML in a JSON string). A comment line every
``live_heartbeat_s`` keeps the connection (and the gateway's read deadline) alive. A
session that ends sends ``event: signin`` so the page goes to the sign-in page.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import Request
from fastapi.responses import StreamingResponse

from console.gateway_client import GatewayDown, SessionExpired
from console.sessions import Session

Fragment = Callable[[], Awaitable[str]]


def event(name: str, data: object) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


async def _events(
    request: Request,
    session: Session,
    fragment: Fragment,
    poll_s: float,
    heartbeat_s: float,
    max_s: float,
) -> AsyncIterator[str]:
    last: str | None = None
    quiet_since = started = time.monotonic()
    yield "retry: 2000\n\n"
    while True:
        if not request.app.state.sessions.alive(session.id):  # signed out meanwhile
            yield event("signin", {})
            return
        try:
            html = await fragment()
        except SessionExpired:
            request.app.state.sessions.end(session.id)
            yield event("signin", {"expired": True})
            return
        except GatewayDown:
            html = last  # keep showing what we had; the next poll tries again
        if html is not None and html != last:
            last = html
            quiet_since = time.monotonic()
            yield event("fragment", {"html": html})
        elif time.monotonic() - quiet_since >= heartbeat_s:
            quiet_since = time.monotonic()
            yield ": heartbeat\n\n"
        if await request.is_disconnected():
            return
        if time.monotonic() - started > max_s:
            return  # the browser reconnects (``retry``); a stream never outlives a restart long
        await asyncio.sleep(poll_s)


def stream(request: Request, session: Session, fragment: Fragment) -> StreamingResponse:
    settings = request.app.state.settings
    return StreamingResponse(
        _events(
            request,
            session,
            fragment,
            settings.live_poll_s,
            settings.live_heartbeat_s,
            settings.live_max_s,
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
