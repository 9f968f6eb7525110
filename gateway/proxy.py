"""The forwarding handler: sends a request to its route's upstream and relays the answer.

Each upstream has a circuit breaker (:mod:`gateway.protection`): connection failures,
timeouts, protocol errors and 502/503/504 answers count against it; while it is open the
gateway answers 503 at once without calling the upstream, then lets one trial through.

Only GET, HEAD and OPTIONS are retried, on connection errors, with jittered backoff. PUT
and DELETE are idempotent in HTTP, but here PUT approves, rejects or cancels: a repeat of
one that did reach the service would answer 409 ("already approved") for a request that
succeeded, so the client is told of the failure and decides. POST is never retried.
Timeouts are not retried either: the upstream may still be working on the first attempt.
"""

from __future__ import annotations

import asyncio
import math

import aiohttp
from aiohttp import hdrs, web
from prometheus_client import Counter
from yarl import URL

from gateway.errors import json_error
from gateway.headers import downstream_response_headers, upstream_request_headers
from gateway.metrics import UPSTREAM_ERRORS
from gateway.protection import UPSTREAM_BREAKERS, read_body
from gateway.routes import Route
from gateway.state import LOGGER, REQUEST_CONTEXT, ROUTE_TABLE, SETTINGS, UPSTREAM_SESSION
from servicekit.resilience import CircuitBreaker, CircuitOpen, backoff_delay

RETRIED_METHODS = frozenset({hdrs.METH_GET, hdrs.METH_HEAD, hdrs.METH_OPTIONS})
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
    session = app[UPSTREAM_SESSION]
    breaker = app[UPSTREAM_BREAKERS][route.upstream]
    settings = app[SETTINGS]
    method = request.method
    attempts = 1 + settings.retries if method in RETRIED_METHODS else 1

    attempt = 1
    while True:
        try:
            breaker.before_call()
        except CircuitOpen as exc:
            UPSTREAM_ERRORS.labels(route.prefix, "circuit_open").inc()
            retry_after = str(max(1, math.ceil(exc.retry_in_s)))
            return json_error(
                503,
                f"upstream for {route.prefix} unavailable (failing; not called for now)",
                headers={hdrs.RETRY_AFTER: retry_after},
            )
        try:
            async with session.request(
                method, url, headers=headers, data=body or None, allow_redirects=False
            ) as upstream:
                upstream_body = await upstream.read()
        except TimeoutError as exc:
            _record_failure(request, breaker)
            return _upstream_failed(request, route, exc, "timeout", 504, "timed out")
        except aiohttp.ClientConnectionError as exc:
            _record_failure(request, breaker)
            if attempt < attempts:
                UPSTREAM_RETRIES.labels(route.prefix).inc()
                await asyncio.sleep(
                    backoff_delay(
                        attempt,
                        settings.retry_backoff_initial_s,
                        settings.retry_backoff_max_s,
                        jitter=True,
                    )
                )
                attempt += 1
                continue
            if isinstance(exc, aiohttp.ClientConnectorError):
                return _upstream_failed(request, route, exc, "connect", 503, "unavailable")
            return _upstream_failed(request, route, exc, "protocol", 502, "failed")
        except aiohttp.ClientError as exc:
            _record_failure(request, breaker)
            return _upstream_failed(request, route, exc, "protocol", 502, "failed")
        except BaseException:
            # Cancelled (the gateway stopping) or a bug: a trial must not stay in flight
            # forever, which would keep the breaker refusing every call.
            breaker.record_failure()
            raise
        break

    if upstream.status in UNAVAILABLE_STATUSES:
        _record_failure(request, breaker)
    else:
        breaker.record_success()
    bodiless = method == hdrs.METH_HEAD or upstream.status == 304
    return web.Response(
        status=upstream.status,
        reason=upstream.reason,
        body=upstream_body,
        headers=downstream_response_headers(upstream.headers, keep_content_length=bodiless),
    )


def _record_failure(request: web.Request, breaker: CircuitBreaker) -> None:
    opened_at = breaker.opened_at
    breaker.record_failure()
    if breaker.opened_at != opened_at:
        request.app[LOGGER].warning(
            "circuit_opened",
            upstream=breaker.dependency,
            failures=breaker.failures,
            reset_s=breaker.reset_timeout_s,
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
