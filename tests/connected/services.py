"""Running any service in-process against the test's database and broker.

``build`` is the service's ``bootstrap.build``; ``settings_for`` gives the
settings every connected test wants (fast retries, Tansu-friendly consumer
timeouts, a free port) on top of the service's own defaults.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import httpx
from fastapi import FastAPI

from servicekit.runtime import ServiceRuntime
from servicekit.settings import ServiceSettings
from tests.support import AUTH_SETTINGS, bearer, free_port, serving

S = TypeVar("S", bound=ServiceSettings)

FAST = {
    "consumer_max_attempts": 3,
    "consumer_backoff_initial_s": 0.05,
    "outbox_poll_interval_s": 0.5,
    "kafka_request_timeout_ms": 3000,
    # Tansu holds a group join for half the session timeout.
    "kafka_session_timeout_ms": 2000,
    "kafka_heartbeat_interval_ms": 500,
}


def settings_for(cls: type[S], database_url: str, bootstrap: str, **overrides: object) -> S:
    values: dict[str, object] = {
        "database_url": database_url,
        "kafka_bootstrap_servers": bootstrap,
        "port": free_port(),
        **FAST,
        **AUTH_SETTINGS,
    }
    return cls(**(values | overrides))


@contextlib.asynccontextmanager
async def running(
    build: Callable[[S], tuple[FastAPI, ServiceRuntime]], settings: S
) -> AsyncIterator[tuple[httpx.AsyncClient, ServiceRuntime]]:
    """Serve the service built from ``settings`` on its port for the block; the client
    sends an admin's token (tests of other callers pass their own headers)."""
    app, runtime = build(settings)
    async with (
        serving(app, settings.port) as url,
        httpx.AsyncClient(base_url=url, timeout=10, headers=bearer()) as client,
    ):
        yield client, runtime
