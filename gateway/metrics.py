"""Prometheus metrics of the gateway, and its ``/metrics`` endpoint."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

REQUESTS = Counter(
    "gateway_requests_total",
    "Requests answered by the gateway.",
    ["route", "method", "status"],
)
REQUEST_DURATION = Histogram(
    "gateway_request_duration_seconds",
    "Time from receiving a request to having its response ready.",
    ["route"],
)
UPSTREAM_ERRORS = Counter(
    "gateway_upstream_errors_total",
    "Proxied requests that got no usable answer from their upstream.",
    ["route", "kind"],
)

_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """Clients can send any method token; keep the label set bounded."""
    return method if method in _KNOWN_METHODS else "OTHER"


async def metrics_handler(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
