"""Prometheus metrics of the gateway, and its ``/metrics`` endpoint."""

from __future__ import annotations

import hmac

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from gateway.errors import json_error
from gateway.state import SETTINGS

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
    token = request.app[SETTINGS].metrics_token
    if token is not None:
        expected = f"Bearer {token.get_secret_value()}".encode()
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return json_error(
                401,
                "unauthorized: /metrics is for Prometheus",
                headers={"WWW-Authenticate": "Bearer"},
            )
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
