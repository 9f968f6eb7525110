"""The web console's routes at the gateway: public here, streamed, never buffered.

The console (``console/``) serves HTML under ``/ui`` and keeps each browser's session
itself, so these paths need no bearer token at the gateway (the console refuses anyone
without its session). Its answers are streamed chunk by chunk rather than read whole,
so its Server-Sent Events reach the browser as they are written. ``GET /`` sends the
browser to the console. Nothing here is added unless the route table has ``/ui``.
"""

from __future__ import annotations

import aiohttp
from aiohttp import hdrs, web
from yarl import URL

from gateway.authentication import PUBLIC_HANDLERS
from gateway.body_limit import read_body
from gateway.breakers import UPSTREAM_BREAKERS
from gateway.errors import json_error
from gateway.headers import downstream_response_headers, upstream_request_headers
from gateway.metrics import UPSTREAM_ERRORS
from gateway.proxy import has_dot_segment
from gateway.state import LOGGER, REQUEST_CONTEXT, ROUTE_TABLE, SETTINGS, UPSTREAM_SESSION
from servicekit.resilience import CircuitOpen

CONSOLE_PREFIX = "/ui"


async def console_home(request: web.Request) -> web.StreamResponse:
    """``GET /``: the console's first page."""
    raise web.HTTPFound(CONSOLE_PREFIX + "/")


async def console_handler(request: web.Request) -> web.StreamResponse:
    if has_dot_segment(request.path):
        return json_error(400, "invalid path")
    app = request.app
    route = app[ROUTE_TABLE].match(CONSOLE_PREFIX)
    assert route is not None  # add_console checked
    context = request[REQUEST_CONTEXT]
    context.route = route.prefix
    body = await read_body(request)
    if isinstance(body, web.Response):
        return body
    headers = upstream_request_headers(
        request.headers,
        request_id=context.request_id,
        client_ip=request.remote,
        scheme=request.scheme,
        host=request.host,
    )
    breaker = app[UPSTREAM_BREAKERS][route.upstream]
    try:
        breaker.before_call()
    except CircuitOpen:
        UPSTREAM_ERRORS.labels(route.prefix, "circuit_open").inc()
        return json_error(503, "console unavailable")
    settings = app[SETTINGS]
    # An event stream stays open: no total deadline, only one between chunks (the
    # console sends a heartbeat well within it).
    timeout = aiohttp.ClientTimeout(
        total=None,
        sock_connect=settings.upstream_connect_timeout_s,
        sock_read=settings.upstream_timeout_s,
    )
    url = URL(route.upstream + request.rel_url.raw_path_qs, encoded=True)
    try:
        upstream = await app[UPSTREAM_SESSION].request(
            request.method,
            url,
            headers=headers,
            data=body or None,
            allow_redirects=False,
            timeout=timeout,
        )
    except (TimeoutError, aiohttp.ClientError) as exc:
        breaker.record_failure()
        UPSTREAM_ERRORS.labels(route.prefix, "console").inc()
        app[LOGGER].warning(
            "upstream_error", route=route.prefix, error=f"{type(exc).__name__}: {exc}"
        )
        return json_error(503, "console unavailable")
    breaker.record_success()
    async with upstream:
        response = web.StreamResponse(
            status=upstream.status,
            reason=upstream.reason,
            headers=downstream_response_headers(upstream.headers, keep_content_length=False),
        )
        await response.prepare(request)
        try:
            if request.method != hdrs.METH_HEAD:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            await response.write_eof()
        except (TimeoutError, aiohttp.ClientError, ConnectionResetError):
            pass  # the console or the browser went away mid-stream: nothing more to send
        return response


def add_console(app: web.Application) -> None:
    """Console routes and their public-ness; call after ``add_identity``, before the proxy."""
    route = app[ROUTE_TABLE].match(CONSOLE_PREFIX)
    if route is None or route.prefix != CONSOLE_PREFIX:
        return
    app[PUBLIC_HANDLERS] = app[PUBLIC_HANDLERS] | {console_home, console_handler}
    app.router.add_get("/", console_home)
    app.router.add_route("*", CONSOLE_PREFIX, console_handler)
    app.router.add_route("*", CONSOLE_PREFIX + "/{tail:.*}", console_handler)
