"""When the proxy sends a request again, and how long it waits first.

Only GET, HEAD and OPTIONS are retried, on connection errors, with jittered backoff. PUT
and DELETE are idempotent in HTTP, but here PUT approves, rejects or cancels: a repeat of
one that did reach the service would answer 409 ("already approved") for a request that
succeeded, so the client is told of the failure and decides. POST is never retried.
Timeouts are not retried either: the upstream may still be working on the first attempt.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from aiohttp import hdrs, web

from gateway.state import SETTINGS
from servicekit.resilience import Backoff

RETRIED_METHODS = frozenset({hdrs.METH_GET, hdrs.METH_HEAD, hdrs.METH_OPTIONS})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int
    backoff: Backoff  # the platform's one retry schedule (jittered)

    def attempts(self, method: str) -> int:
        """How many times a request with ``method`` may be sent in all."""
        return 1 + self.retries if method in RETRIED_METHODS else 1

    def retries_after(self, method: str, attempt: int, error: BaseException) -> bool:
        """Whether attempt number ``attempt`` (from 1), failed with ``error``, is sent again."""
        connection_lost = isinstance(error, aiohttp.ClientConnectionError)
        return (
            connection_lost
            and not isinstance(error, TimeoutError)
            and (attempt < self.attempts(method))
        )

    async def wait(self, attempt: int) -> None:
        await asyncio.sleep(self.backoff.delay(attempt))


RETRY_POLICY = web.AppKey("gateway.retry_policy", RetryPolicy)


def install_retry_policy(app: web.Application) -> None:
    settings = app[SETTINGS]
    backoff = Backoff(settings.retry_backoff_initial_s, settings.retry_backoff_max_s)
    app[RETRY_POLICY] = RetryPolicy(settings.retries, backoff)
