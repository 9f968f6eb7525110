"""One :class:`~servicekit.resilience.CircuitBreaker` per upstream, used by the proxy:
connection failures, timeouts, protocol errors and 502/503/504 answers count against it;
while it is open the gateway answers 503 at once, then lets one trial through."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from gateway.settings import GatewaySettings
from gateway.state import LOGGER
from servicekit.resilience import CircuitBreaker

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


def record_failure(request: web.Request, breaker: CircuitBreaker) -> None:
    """Count a failure against ``breaker``; log when that opens it."""
    opened_at = breaker.opened_at
    breaker.record_failure()
    if breaker.opened_at != opened_at:
        request.app[LOGGER].warning(
            "circuit_opened",
            upstream=breaker.dependency,
            failures=breaker.failures,
            reset_s=breaker.reset_timeout_s,
        )
