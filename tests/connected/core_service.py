"""Helpers the core connected tests share (no tests here): core served in-process with
fast settings, the simulators, publishing events as model or target would, and reading
what core published."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from contracts import model as model_events
from contracts import target as target_events
from contracts.topics import CORE_EVENTS
from core.bootstrap import build
from core.settings import CoreSettings
from servicekit.runtime import ServiceRuntime
from simulators.app import build_app
from tests.connected.services import running, settings_for
from tests.support import free_port, serving, topic_values

Json = dict[str, Any]

# Fast enough for tests, slow enough to act mid-training. The lease outlives the longest
# wait between renewals (a Vertica call plus a step, a MIDAS call, a check plus its backoff).
FAST_CORE: dict[str, object] = {
    "training_steps": 3,
    "step_duration_s": 0.1,
    "extraction_steps": 2,
    "poll_interval_s": 0.1,
    "lease_s": 3.0,
    "job_max_attempts": 3,
    "job_backoff_initial_s": 0.05,
    "job_backoff_max_s": 0.2,
    "vertica_timeout_s": 0.5,
    "midas_timeout_s": 0.5,
    "check_timeout_s": 0.5,
    "check_backoff_initial_s": 0.05,
    "check_backoff_max_s": 0.3,
    "breaker_failures": 2,
    "breaker_reset_s": 0.5,
}


@contextlib.asynccontextmanager
async def simulators() -> AsyncIterator[httpx.AsyncClient]:
    """Vertica and MIDAS (the real simulators app); yields a client bound to it."""
    async with (
        serving(build_app(), free_port()) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        yield client


def core_settings(
    db: str, bootstrap: str, sim: httpx.AsyncClient, model_url: str, **overrides: object
) -> CoreSettings:
    sim_url = str(sim.base_url).rstrip("/")
    wiring = {
        "vertica_url": f"{sim_url}/vertica",
        "midas_url": f"{sim_url}/midas",
        "model_service_url": model_url,
    }
    return settings_for(CoreSettings, db, bootstrap, **(wiring | FAST_CORE | overrides))


@contextlib.asynccontextmanager
async def core_service(
    settings: CoreSettings,
) -> AsyncIterator[tuple[httpx.AsyncClient, ServiceRuntime]]:
    async with running(build, settings) as served:
        yield served


def approved(id: int, name: str = "TestModel5") -> model_events.Approved:
    return model_events.Approved(id=id, state="approved", user_id="test", model_name=name)


def target_approved(id: int, model_request_id: int = 1) -> target_events.TargetApproved:
    return target_events.TargetApproved(
        id=id, state="approved", user_id="test", type="vip", model_request_id=model_request_id
    )


async def core_events(bootstrap: str, request_id: int | str, type: str = "model") -> list[Json]:
    """What core published about one request, in order (one key, so one partition)."""
    return [
        v
        for v in await topic_values(bootstrap, CORE_EVENTS)
        if v["requestId"] == str(request_id) and v["type"] == type
    ]


def names(values: list[Json]) -> list[str]:
    return [v["eventType"] for v in values]


async def job_of(core: httpx.AsyncClient, kind: str, request_id: int | str) -> Json | None:
    jobs = (await core.get("/cores", params={"kind": kind})).json()
    return next((j for j in jobs if j["requestId"] == str(request_id)), None)


async def job_in(
    core: httpx.AsyncClient, kind: str, request_id: int | str, *states: str
) -> Json | None:
    job = await job_of(core, kind, request_id)
    return job if job is not None and job["state"] in states else None
