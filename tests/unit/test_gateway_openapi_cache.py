"""How long the gateway keeps its aggregated OpenAPI document (the fetching and merging
run against real services in tests/connected/test_gateway_openapi.py)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from gateway import openapi
from gateway.openapi import PARTIAL_TTL_S, AggregatedSpec


class Builds:
    def __init__(self) -> None:
        self.count = 0
        self.unavailable: list[str] = []

    async def __call__(self, app: web.Application) -> dict[str, Any]:
        self.count += 1
        spec: dict[str, Any] = {"openapi": "3.1.0", "build": self.count}
        if self.unavailable:
            spec["x-unavailable"] = list(self.unavailable)
        return spec


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> Builds:
    counter = Builds()
    monkeypatch.setattr(openapi, "build", counter)
    return counter


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(openapi.time, "monotonic", lambda: now[0])
    return now


async def test_a_complete_document_is_kept_for_the_ttl(builds: Builds, clock: list[float]) -> None:
    spec = AggregatedSpec(ttl_s=300)
    app = web.Application()
    first = await spec.body(app)
    clock[0] += 299
    assert await spec.body(app) == first and builds.count == 1
    clock[0] += 1
    assert await spec.body(app) != first and builds.count == 2


async def test_a_document_missing_a_service_is_rebuilt_soon(
    builds: Builds, clock: list[float]
) -> None:
    spec, app = AggregatedSpec(ttl_s=300), web.Application()
    builds.unavailable = ["/notices"]
    await spec.body(app)
    await spec.body(app)  # a burst of requests: still one fetch of every service
    assert builds.count == 1
    clock[0] += PARTIAL_TTL_S
    builds.unavailable = []
    await spec.body(app)
    assert builds.count == 2
    clock[0] += PARTIAL_TTL_S  # complete now: kept for the whole ttl
    await spec.body(app)
    assert builds.count == 2
