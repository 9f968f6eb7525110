"""What the gateway does to protect itself and the services behind it.

- :class:`RateLimiter` and :func:`rate_limit_middleware`: a token bucket per caller (the
  verified identity's subject, or the client address where no identity is established),
  answering 429 with ``Retry-After`` when it is empty. Memory-bounded: idle buckets go.
  ``/auth/token`` has its own, stricter bucket per address.
- :func:`body_limit_middleware`: bodies over ``GATEWAY_MAX_BODY_BYTES`` are refused with
  413 from their Content-Length at once; chunked bodies are cut off while they stream
  (the application's ``client_max_size``, see :func:`read_body`).
- :func:`cors_middleware` and :func:`add_cors_headers`: CORS for the origins in
  ``GATEWAY_CORS_ORIGINS`` only; the gateway answers preflights itself.
- :func:`finish_response`: ``Server`` names the gateway, not its software or an upstream's.
- One :class:`~servicekit.resilience.CircuitBreaker` per upstream (:func:`upstream_breakers`),
  used by the proxy.

Every refusal is a JSON ``{"detail": ...}`` naming the limit, never internals.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from prometheus_client import Counter

from gateway.clients import client_address
from gateway.errors import json_error
from gateway.settings import GatewaySettings
from gateway.state import IDENTITY, ROUTE_TABLE, SETTINGS
from servicekit.auth import Identity
from servicekit.resilience import CircuitBreaker

"""Request key under which the identity middleware leaves the verified :class:`Identity`."""

RATE_LIMITED = Counter(
    "gateway_rate_limited_total",
    "Requests refused with 429 because their caller's bucket was empty.",
    ["caller"],  # "user", "address" or "token": never the subject itself (unbounded labels)
)

# --- rate limit -----------------------------------------------------------------------


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets by key: ``burst`` tokens at most, refilled at ``rate_per_s``.

    Memory stays bounded. Buckets are kept least recently used first; a bucket untouched
    for ``burst / rate_per_s`` seconds has refilled completely, which is the same as having
    no bucket, so it is dropped at no cost to anyone. Beyond that, at most ``max_keys``
    buckets are kept: past it the least recently used goes (its caller starts full again).
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate_per_s must be > 0, burst and max_keys >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        self._refill_s = burst / rate_per_s
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, key: str) -> float:
        """Take a token for ``key``: 0.0 if one was taken, else seconds until one is due."""
        now = self.clock()
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = _Bucket(float(self.burst), now)
        else:
            buckets.move_to_end(key)
            elapsed = now - bucket.updated
            if elapsed > 0:
                bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate_per_s)
                bucket.updated = now
        self._evict(now)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate_per_s

    def _evict(self, now: float) -> None:
        buckets = self._buckets
        while len(buckets) > 1:
            key, oldest = next(iter(buckets.items()))
            if len(buckets) <= self.max_keys and now - oldest.updated < self._refill_s:
                return
            del buckets[key]


RATE_LIMITER = web.AppKey("gateway.rate_limiter", RateLimiter)
TOKEN_RATE_LIMITER = web.AppKey("gateway.token_rate_limiter", RateLimiter)

TOKEN_PATH = "/auth/token"
"""Where passwords are checked: its own, stricter bucket per address (each check costs an
argon2 hash, about 0.15 s of CPU), so guessing passwords is slow and cannot starve the rest."""
_UNLIMITED_PATHS = frozenset({"/health/live", "/health/ready", "/metrics"})


def caller_key(request: web.Request) -> tuple[str, str]:
    """Whose bucket a request draws from, and the kind of caller (for the metric)."""
    identity = request.get(IDENTITY)
    if isinstance(identity, Identity):
        return "user:" + identity.subject, "user"
    return "addr:" + client_address(request), "address"


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Runs after the identity middleware, so a verified caller is limited by subject."""
    path = request.path
    if path == TOKEN_PATH and TOKEN_RATE_LIMITER in request.app:
        limiter = request.app[TOKEN_RATE_LIMITER]
        key, kind = "addr:" + client_address(request), "token"
        what = "token requests"
    else:
        limiter = request.app.get(RATE_LIMITER)
        if limiter is None or path in _UNLIMITED_PATHS:
            return await handler(request)
        key, kind = caller_key(request)
        what = "requests"
    wait_s = limiter.acquire(key)
    if wait_s > 0:
        RATE_LIMITED.labels(kind).inc()
        retry_after = max(1, math.ceil(wait_s))
        return json_error(
            429,
            f"rate limit exceeded: at most {limiter.rate_per_s:g} {what} per second "
            f"(bursts of {limiter.burst}); retry after {retry_after} s",
            headers={hdrs.RETRY_AFTER: str(retry_after)},
        )
    return await handler(request)


# --- body size --------------------------------------------------------------------------


def body_too_large(limit: int) -> web.Response:
    return json_error(413, f"request body too large: the limit is {limit} bytes")


@web.middleware
async def body_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuses a declared oversized body before anything reads it.

    A body without Content-Length (chunked) is bounded while it is read: the application's
    ``client_max_size`` is the same limit, and :func:`read_body` turns its error into ours.
    """
    declared = request.content_length
    if declared is not None:
        limit = request.app[SETTINGS].max_body_bytes
        if declared > limit:
            return body_too_large(limit)
    return await handler(request)


async def read_body(request: web.Request) -> bytes | web.Response:
    """The request's whole body, or the 413 answer if it grows past the limit."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return body_too_large(request.app[SETTINGS].max_body_bytes)


# --- CORS -------------------------------------------------------------------------------

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


# --- every response -------------------------------------------------------------------

SERVER_NAME = "nocode-gateway"
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff"}
JSON_TYPES = ("application/json", "application/problem+json")


async def finish_response(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook, for every response the gateway sends.

    ``Server`` names the gateway only: neither aiohttp's version nor the upstream's server
    software is anyone's business. ``nosniff`` on every answer and ``no-store`` on JSON
    ones (API answers: one user's data), unless the answer says how it may be cached: the
    console's HTML and static assets keep theirs. Then the CORS headers, where CORS is on.
    """
    response.headers[hdrs.SERVER] = SERVER_NAME
    response.headers.update(SECURITY_HEADERS)
    if response.content_type in JSON_TYPES and hdrs.CACHE_CONTROL not in response.headers:
        response.headers[hdrs.CACHE_CONTROL] = "no-store"
    policy = request.app.get(CORS_POLICY)
    if policy is not None:
        add_cors_headers(policy, request, response)


# --- circuit breakers -------------------------------------------------------------------

UPSTREAM_BREAKERS = web.AppKey("gateway.upstream_breakers", dict[str, CircuitBreaker])


def upstream_breakers(
    upstreams: Iterable[str], settings: GatewaySettings
) -> dict[str, CircuitBreaker]:
    """One breaker per upstream base URL, however many route prefixes lead to it."""
    return {
        upstream: CircuitBreaker(
            upstream,
            failure_threshold=settings.breaker_failures,
            reset_timeout_s=settings.breaker_reset_s,
            service=settings.service_name,
        )
        for upstream in dict.fromkeys(upstreams)
    }


# --- wiring -----------------------------------------------------------------------------


def install_protection(app: web.Application) -> None:
    """Puts the limiter, the CORS policy and the breakers on ``app`` from its settings.

    Call after the settings and the route table are on the app. The middlewares are in
    :data:`gateway.middlewares.MIDDLEWARES`; each does nothing when its feature is off.
    """
    settings = app[SETTINGS]
    if settings.rate_limit_per_s > 0:
        app[RATE_LIMITER] = RateLimiter(
            settings.rate_limit_per_s,
            settings.rate_limit_burst,
            max_keys=settings.rate_limit_max_keys,
        )
    if settings.token_rate_limit_per_s > 0:
        app[TOKEN_RATE_LIMITER] = RateLimiter(
            settings.token_rate_limit_per_s,
            settings.token_rate_limit_burst,
            max_keys=settings.rate_limit_max_keys,
        )
    if settings.cors_origins:
        app[CORS_POLICY] = CorsPolicy(settings.cors_origins, settings.cors_max_age_s)
    app.on_response_prepare.append(finish_response)
    app[UPSTREAM_BREAKERS] = upstream_breakers(
        (route.upstream for route in app[ROUTE_TABLE]), settings
    )
