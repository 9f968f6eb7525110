"""The forwarding handler: sends a request to its route's upstream and relays the answer.

Each upstream has a circuit breaker (gateway.breakers): while it is open the gateway
answers 503 at once without calling the upstream. Whether a failed attempt is sent again
is the retry policy's decision (gateway.retry_policy); this module only sends, counts and
answers.
"""

from __future__ import annotations

import math

import aiohttp
from aiohttp import hdrs, web
from prometheus_client import Counter
from yarl import URL

from gateway.body_limit import read_body
from gateway.breakers import UPSTREAM_BREAKERS, record_failure
from gateway.errors import json_error
from gateway.headers import downstream_response_headers, upstream_request_headers
from gateway.metrics import UPSTREAM_ERRORS
from gateway.retry_policy import RETRY_POLICY
from gateway.routes import Route
from gateway.state import LOGGER, REQUEST_CONTEXT, ROUTE_TABLE, UPSTREAM_SESSION
from servicekit.resilience import CircuitBreaker, CircuitOpen

UNAVAILABLE_STATUSES = frozenset({502, 503, 504})
"""Upstream answers that say the upstream itself is unwell, as opposed to one request failing."""

UPSTREAM_RETRIES = Counter(
    "gateway_upstream_retries_total",
    "Proxied requests sent again after a connection error.",
    ["route"],
)


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
    app = request.app
    route = app[ROUTE_TABLE].match(path)
    if route is None:
        return json_error(404, f"no route for {request.rel_url.raw_path}")

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
    url = URL(route.upstream + request.rel_url.raw_path_qs, encoded=True)
    session, breaker = app[UPSTREAM_SESSION], app[UPSTREAM_BREAKERS][route.upstream]
    policy, method = app[RETRY_POLICY], request.method

    attempt = 1
    while True:
        try:
            breaker.before_call()
        except CircuitOpen as exc:
            return _circuit_open(route, exc)
        try:
            async with session.request(
                method, url, headers=headers, data=body or None, allow_redirects=False
            ) as upstream:
                upstream_body = await upstream.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            record_failure(request, breaker)
            if not policy.retries_after(method, attempt, exc):
                return _upstream_failed(request, route, exc)
            UPSTREAM_RETRIES.labels(route.prefix).inc()
            await policy.wait(attempt)
            attempt += 1
            continue
        except BaseException:
            # Cancelled (the gateway stopping) or a bug: a trial must not stay in flight
            # forever, which would keep the breaker refusing every call.
            breaker.record_failure()
            raise
        return _relayed(request, breaker, upstream, upstream_body)


def _relayed(
    request: web.Request,
    breaker: CircuitBreaker,
    upstream: aiohttp.ClientResponse,
    body: bytes,
) -> web.Response:
    if upstream.status in UNAVAILABLE_STATUSES:
        record_failure(request, breaker)
    else:
        breaker.record_success()
    bodiless = request.method == hdrs.METH_HEAD or upstream.status == 304
    return web.Response(
        status=upstream.status,
        reason=upstream.reason,
        body=body,
        headers=downstream_response_headers(upstream.headers, keep_content_length=bodiless),
    )


def _circuit_open(route: Route, exc: CircuitOpen) -> web.Response:
    UPSTREAM_ERRORS.labels(route.prefix, "circuit_open").inc()
    retry_after = str(max(1, math.ceil(exc.retry_in_s)))
    return json_error(
        503,
        f"upstream for {route.prefix} unavailable (failing; not called for now)",
        headers={hdrs.RETRY_AFTER: retry_after},
    )


def failure_kind(exc: BaseException) -> tuple[str, int, str]:
    """The metric label, the status and the words for an upstream call that failed."""
    if isinstance(exc, TimeoutError):
        return "timeout", 504, "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect", 503, "unavailable"
    return "protocol", 502, "failed"


def _upstream_failed(request: web.Request, route: Route, exc: Exception) -> web.Response:
    kind, status, what = failure_kind(exc)
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
