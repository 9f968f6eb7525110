"""The gateway's server spans: one per request, continuing the caller's trace.

The span is the outermost thing a request meets, so the access log line and every
proxied call (a client span from the upstream session's trace config, which also puts
``traceparent`` and B3 headers on the upstream request) belong to it. Like every
service's, the gateway's tracer records spans only while a span processor reads them
(:mod:`servicekit.tracer_provider`); without one the spans still carry the trace on.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode

from gateway.metrics import method_label
from gateway.state import REQUEST_CONTEXT, TRACING, UNMATCHED_ROUTE, route_label


@web.middleware
async def tracing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    tracing = request.app[TRACING]
    if request.path.startswith(("/health/", "/metrics")):
        return await handler(request)
    method = method_label(request.method)
    with tracing.tracer.start_as_current_span(
        method,
        context=propagate.extract(request.headers),
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": method,
            "url.path": request.path,
            "url.scheme": request.scheme,
            "client.address": request.remote or "",
        },
    ) as span:
        response = await handler(request)
        context = request.get(REQUEST_CONTEXT)
        route = route_label(request, context) if context else UNMATCHED_ROUTE
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", response.status)
        if response.status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        return response
