"""CORS for the origins in ``GATEWAY_CORS_ORIGINS`` only; the gateway answers preflights
itself, and replaces whatever an upstream says about CORS."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from gateway.errors import json_error

CORS_ALLOWED_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
CORS_ALLOWED_HEADERS = "Authorization, Content-Type, Accept, X-Request-ID, Idempotency-Key"
CORS_EXPOSED_HEADERS = "X-Request-ID, Retry-After, Location, Idempotent-Replayed"
_CORS_VARY = "Origin"
_PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


class CorsPolicy:
    """The origins allowed to call the gateway from a browser (``*`` allows any)."""

    def __init__(self, origins: Iterable[str], max_age_s: int) -> None:
        self.origins = frozenset(o.rstrip("/") for o in origins)
        self.any_origin = "*" in self.origins
        self.max_age = str(max_age_s)

    def allows(self, origin: str | None) -> bool:
        return origin is not None and (self.any_origin or origin in self.origins)


CORS_POLICY = web.AppKey("gateway.cors_policy", CorsPolicy)


def _is_preflight(request: web.Request) -> bool:
    return (
        request.method == hdrs.METH_OPTIONS
        and hdrs.ORIGIN in request.headers
        and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
    )


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answers CORS preflights here: they carry no token, and never reach a service.

    It runs before authentication for that reason. The headers of actual requests are
    added to every response, errors included, by :func:`add_cors_headers`.
    """
    policy = request.app.get(CORS_POLICY)
    if policy is None or not _is_preflight(request):
        return await handler(request)
    origin = request.headers[hdrs.ORIGIN]
    if not policy.allows(origin):
        return json_error(403, "CORS: origin not allowed", headers={hdrs.VARY: _PREFLIGHT_VARY})
    return web.Response(
        status=204,
        headers={
            hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: origin,
            hdrs.ACCESS_CONTROL_ALLOW_METHODS: CORS_ALLOWED_METHODS,
            hdrs.ACCESS_CONTROL_ALLOW_HEADERS: CORS_ALLOWED_HEADERS,
            hdrs.ACCESS_CONTROL_MAX_AGE: policy.max_age,
            hdrs.VARY: _PREFLIGHT_VARY,
        },
    )


_UPSTREAM_CORS_HEADERS = (
    hdrs.ACCESS_CONTROL_ALLOW_ORIGIN,
    hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS,
    hdrs.ACCESS_CONTROL_ALLOW_METHODS,
    hdrs.ACCESS_CONTROL_ALLOW_HEADERS,
    hdrs.ACCESS_CONTROL_EXPOSE_HEADERS,
    hdrs.ACCESS_CONTROL_MAX_AGE,
)


def add_cors_headers(
    policy: CorsPolicy, request: web.Request, response: web.StreamResponse
) -> None:
    """CORS headers on a response to an allowed origin (errors included).

    The gateway owns CORS, so whatever an upstream said about it is replaced.
    """
    if _is_preflight(request):
        return  # answered by cors_middleware, complete already
    headers = response.headers
    for name in _UPSTREAM_CORS_HEADERS:
        headers.popall(name, None)
    vary = headers.get(hdrs.VARY)
    if vary is None:
        headers[hdrs.VARY] = _CORS_VARY
    elif "origin" not in vary.lower() and vary.strip() != "*":
        headers[hdrs.VARY] = f"{vary}, {_CORS_VARY}"
    origin = request.headers.get(hdrs.ORIGIN)
    if policy.allows(origin):
        assert origin is not None
        headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = CORS_EXPOSED_HEADERS
