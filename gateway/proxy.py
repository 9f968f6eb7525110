"""The forwarding handler: sends a request to its route's upstream and relays the answer."""

from __future__ import annotations

import aiohttp
from aiohttp import hdrs, web
from yarl import URL

from gateway.errors import json_error
from gateway.headers import downstream_response_headers, upstream_request_headers
from gateway.metrics import UPSTREAM_ERRORS
from gateway.routes import Route
from gateway.state import LOGGER, REQUEST_CONTEXT, ROUTE_TABLE, UPSTREAM_SESSION


def has_dot_segment(path: str) -> bool:
    """Whether the decoded path has ``.`` or ``..`` segments.

    Such a path could match one route here yet mean another path to the upstream (for
    example ``/models/%2e%2e/metrics``), so it is refused rather than interpreted.
    """
    return any(segment in (".", "..") for segment in path.split("/"))


async def proxy_handler(request: web.Request) -> web.Response:
    path = request.path
    if has_dot_segment(path):
        return json_error(400, "invalid path")
    route = request.app[ROUTE_TABLE].match(path)
    if route is None:
        return json_error(404, f"no route for {request.rel_url.raw_path}")

    context = request[REQUEST_CONTEXT]
    context.route = route.prefix
    body = await request.read()
    headers = upstream_request_headers(
        request.headers,
        request_id=context.request_id,
        client_ip=request.remote,
        scheme=request.scheme,
        host=request.host,
    )
    url = URL(route.upstream + request.rel_url.raw_path_qs, encoded=True)
    session = request.app[UPSTREAM_SESSION]
    try:
        async with session.request(
            request.method, url, headers=headers, data=body or None, allow_redirects=False
        ) as upstream:
            upstream_body = await upstream.read()
    except TimeoutError as exc:
        return _upstream_failed(request, route, exc, "timeout", 504, "timed out")
    except aiohttp.ClientConnectorError as exc:
        return _upstream_failed(request, route, exc, "connect", 503, "unavailable")
    except aiohttp.ClientError as exc:
        return _upstream_failed(request, route, exc, "protocol", 502, "failed")

    bodiless = request.method == hdrs.METH_HEAD or upstream.status == 304
    return web.Response(
        status=upstream.status,
        reason=upstream.reason,
        body=upstream_body,
        headers=downstream_response_headers(upstream.headers, keep_content_length=bodiless),
    )


def _upstream_failed(
    request: web.Request, route: Route, exc: Exception, kind: str, status: int, what: str
) -> web.Response:
    UPSTREAM_ERRORS.labels(route.prefix, kind).inc()
    request.app[LOGGER].warning(
        "upstream_error",
        request_id=request[REQUEST_CONTEXT].request_id,
        route=route.prefix,
        upstream=route.upstream,
        kind=kind,
        # An expected, frequent failure: one line, no traceback.
        error=f"{type(exc).__name__}: {exc}",
    )
    return json_error(status, f"upstream for {route.prefix} {what}")
