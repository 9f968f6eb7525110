"""Running the model service in-process against the test's database and broker."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx

from model.bootstrap import build
from model.settings import ModelSettings
from servicekit.runtime import ServiceRuntime
from tests.connected.services import running, settings_for


def model_settings(database_url: str, bootstrap: str, **overrides: object) -> ModelSettings:
    return settings_for(ModelSettings, database_url, bootstrap, **overrides)


@contextlib.asynccontextmanager
async def model_service(
    database_url: str, bootstrap: str, **overrides: object
) -> AsyncIterator[tuple[httpx.AsyncClient, ServiceRuntime]]:
    async with running(build, model_settings(database_url, bootstrap, **overrides)) as served:
        yield served
