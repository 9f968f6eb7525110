"""Running the model service in-process against the test's database and broker."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx

from model.bootstrap import build
from model.settings import ModelSettings
from servicekit.runtime import ServiceRuntime
from tests.support import free_port, serving


def model_settings(database_url: str, bootstrap: str, **overrides: object) -> ModelSettings:
    values: dict[str, object] = {
        "database_url": database_url,
        "kafka_bootstrap_servers": bootstrap,
        "port": free_port(),
        "consumer_max_attempts": 3,
        "consumer_backoff_initial_s": 0.05,
        "outbox_poll_interval_s": 0.5,
        "kafka_request_timeout_ms": 3000,
        # Tansu holds a group join for half the session timeout.
        "kafka_session_timeout_ms": 2000,
        "kafka_heartbeat_interval_ms": 500,
    }
    return ModelSettings(**(values | overrides))


@contextlib.asynccontextmanager
async def model_service(
    database_url: str, bootstrap: str, **overrides: object
) -> AsyncIterator[tuple[httpx.AsyncClient, ServiceRuntime]]:
    settings = model_settings(database_url, bootstrap, **overrides)
    app, runtime = build(settings)
    async with serving(app, settings.port) as url, httpx.AsyncClient(base_url=url) as client:
        yield client, runtime
