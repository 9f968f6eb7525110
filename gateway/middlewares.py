"""The gateway's middlewares, outermost first in :data:`MIDDLEWARES`.

0. :func:`gateway.tracing.tracing_middleware` opens the request's server span.
1. :func:`request_context_middleware` gives every request an id, turns any failure into a
   JSON error, and records metrics and an access log line.
2. :func:`identity_middleware` verifies the caller's bearer token.
"""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDict

from gateway.authentication import authenticate
from gateway.body_limit import body_limit_middleware
from gateway.cors import cors_middleware
from gateway.errors import json_error
from gateway.headers import X_REQUEST_ID, request_id_from
from gateway.metrics import REQUEST_DURATION, REQUESTS, method_label
from gateway.rate_limit import rate_limit_middleware
from gateway.state import LOGGER, REQUEST_CONTEXT, RequestContext, route_label
from gateway.tracing import tracing_middleware

USER_HEADER_PREFIX = "x-user-"


@web.middleware
async def request_context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    context = RequestContext(request_id=request_id_from(request.headers))
    request[REQUEST_CONTEXT] = context
    log = request.app[LOGGER]
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # aiohttp's own text may carry details (sizes, limits); the reason phrase is enough.
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        response = json_error(exc.status, exc.reason, headers=allow)
    except Exception:
        log.exception("unhandled_error", request_id=context.request_id)
        response = json_error(500, "internal error")

    response.headers[X_REQUEST_ID] = context.request_id
    elapsed = time.perf_counter() - started
    route = route_label(request, context)
    REQUESTS.labels(route, method_label(request.method), str(response.status)).inc()
    REQUEST_DURATION.labels(route).observe(elapsed)
    # At DEBUG: a line per request costs more than the proxying (the metrics above count them).
    log.debug(
        "request",
        request_id=context.request_id,
        method=request.method,
        path=request.rel_url.raw_path,
        route=route,
        status=response.status,
        duration_ms=round(elapsed * 1000, 2),
    )
    return response


@web.middleware
async def identity_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authentication: establishes who is calling (``gateway.authentication``).

    ``X-User-*`` headers are never trusted, so any a client sends are removed before the
    request goes further. Then the bearer token is verified (401 without a valid one, bar
    the public routes) and the caller's Identity put at ``request["identity"]``; the
    Authorization header goes on upstream unchanged, where each service verifies it again.
    """
    if any(name.lower().startswith(USER_HEADER_PREFIX) for name in request.headers):
        trusted = CIMultiDict(
            (name, value)
            for name, value in request.headers.items()
            if not name.lower().startswith(USER_HEADER_PREFIX)
        )
        request = request.clone(headers=trusted)
    refused = await authenticate(request)
    if refused is not None:
        return refused
    return await handler(request)


MIDDLEWARES: list[Middleware] = [
    tracing_middleware,
    request_context_middleware,
    cors_middleware,  # before authentication: preflights carry no token
    body_limit_middleware,
    identity_middleware,
    rate_limit_middleware,  # after authentication: limits by the verified subject
]
