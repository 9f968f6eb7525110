"""No target approval is refused once ``GET /models/{id}`` says ``completed``.

target learns a model's completion from model's events, a moment after model commits it;
a client that saw ``completed`` and approves the target at once must not meet that moment
as a 409. Several sagas at once, each approving its target the instant its model answers
``completed`` (polled as fast as the gateway answers).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.connected.whole_platform import Platform, whole_platform

pytestmark = pytest.mark.connected

SAGAS = 6


@pytest.fixture
async def platform(
    postgres_admin_url: str, topics: str
) -> AsyncIterator[tuple[Platform, httpx.AsyncClient]]:
    quick = {"training_steps": 1, "step_duration_s": 0.05}
    async with whole_platform(postgres_admin_url, topics, core=quick) as running:
        yield running


async def approve_when_completed(gateway: httpx.AsyncClient, n: int) -> tuple[int, str]:
    """One saga: model requested and approved, a target for it requested while it trains;
    the target approved as soon as the model answers ``completed``. The approval's answer."""
    created = await gateway.post("/models", data={"userId": "test", "modelName": f"W{n}"})
    assert created.status_code == 201, created.text
    mid = created.json()["id"]
    target = await gateway.post(
        "/targets", data={"userId": "test", "type": "window", "modelRequestId": mid}
    )
    assert target.status_code == 201, target.text
    tid = target.json()["id"]
    assert (await gateway.put(f"/models/{mid}")).status_code == 200
    deadline = asyncio.get_running_loop().time() + 60
    while (state := (await gateway.get(f"/models/{mid}")).json()["state"]) != "completed":
        assert state in ("approved", "inProgress"), state
        assert asyncio.get_running_loop().time() < deadline, "training did not complete"
    approved = await gateway.put(f"/targets/{tid}")
    return approved.status_code, approved.text


async def test_a_target_is_approved_as_soon_as_its_model_answers_completed(
    platform: tuple[Platform, httpx.AsyncClient],
) -> None:
    _, gateway = platform
    answers = await asyncio.gather(*(approve_when_completed(gateway, n) for n in range(SAGAS)))
    assert [status for status, _ in answers] == [200] * SAGAS, answers
    for status, text in answers:
        assert '"state":"approved"' in text.replace(" ", ""), (status, text)
