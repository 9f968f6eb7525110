"""Rate limits: a token bucket per caller, answering 429 with ``Retry-After``.

:class:`RateLimiter` keys buckets by the verified identity's subject, or the client address
where no identity is established (:func:`caller_key`); memory-bounded, idle buckets go.
``/auth/token`` has its own, stricter bucket per address, and the identity routes one per
username (gateway.token_routes). Every refusal is :func:`too_many`'s JSON 429.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from prometheus_client import Counter

from gateway.clients import client_address
from gateway.errors import json_error
from gateway.state import IDENTITY, SETTINGS
from servicekit.auth import Identity

RATE_LIMITED = Counter(
    "gateway_rate_limited_total",
    "Requests refused with 429 because their caller's bucket was empty.",
    ["caller"],  # "user", "address" or "token": never the subject itself (unbounded labels)
)


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
        limit = f"at most {limiter.rate_per_s:g} {what} per second (bursts of {limiter.burst})"
        return too_many(kind, wait_s, limit)
    return await handler(request)


def too_many(kind: str, wait_s: float, why: str) -> web.Response:
    """The 429 for a caller of ``kind`` whose bucket is empty for ``wait_s`` more seconds."""
    RATE_LIMITED.labels(kind).inc()
    retry_after = max(1, math.ceil(wait_s))
    return json_error(
        429,
        f"rate limit exceeded: {why}; retry after {retry_after} s",
        headers={hdrs.RETRY_AFTER: str(retry_after)},
    )


def install_rate_limits(app: web.Application) -> None:
    """The general limiter and the token endpoint's, each unless its rate is 0."""
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
