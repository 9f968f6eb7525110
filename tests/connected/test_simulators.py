"""The external-system simulators over real HTTP: what they answer, and their fault switch."""

from __future__ import annotations

import httpx
import pytest

from simulators.app import build_app
from tests.support import free_port, serving

pytestmark = pytest.mark.connected


@pytest.fixture
async def sim() -> httpx.AsyncClient:
    async with serving(build_app(), free_port()) as url, httpx.AsyncClient(base_url=url) as c:
        yield c


async def test_vertica_serves_training_data_in_batches(sim: httpx.AsyncClient) -> None:
    first = await sim.get("/vertica/training-data", params={"modelRequestId": 1, "limit": 400})
    assert first.status_code == 200
    body = first.json()
    assert len(body["rows"]) == 400 and body["nextOffset"] == 400 and body["total"] == 1000
    last = await sim.get(
        "/vertica/training-data", params={"modelRequestId": 1, "offset": 800, "limit": 400}
    )
    assert len(last.json()["rows"]) == 200 and last.json()["nextOffset"] is None
    again = await sim.get("/vertica/training-data", params={"modelRequestId": 1, "limit": 400})
    assert again.json() == body  # deterministic
    bad = await sim.get("/vertica/training-data", params={"modelRequestId": 0})
    assert bad.status_code == 422


async def test_midas_sends_once_per_idempotency_key(sim: httpx.AsyncClient) -> None:
    body = {"targetId": 7, "userId": "test", "audienceSize": 120, "message": "hi"}
    first = await sim.post("/midas/lms/bulk", json=body, headers={"Idempotency-Key": "target-7"})
    again = await sim.post("/midas/lms/bulk", json=body, headers={"Idempotency-Key": "target-7"})
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["sendId"] == again.json()["sendId"]
    sends = (await sim.get("/midas/sends")).json()
    assert [(s["idempotencyKey"], s["targetId"]) for s in sends] == [("target-7", 7)]
    no_key = await sim.post("/midas/lms/bulk", json=body)
    assert no_key.status_code == 400 and "Idempotency-Key" in no_key.json()["detail"]


async def test_fault_switch_fails_the_next_calls_then_recovers(sim: httpx.AsyncClient) -> None:
    assert (await sim.put("/chat/_faults", json={"failNext": 2})).status_code == 200
    statuses = [
        (await sim.post("/chat/webhook", json={"text": f"m{i}"})).status_code for i in range(3)
    ]
    assert statuses == [500, 500, 200]
    assert [m["text"] for m in (await sim.get("/chat/messages")).json()] == ["m2"]

    await sim.put("/midas/_faults", json={"failAlways": True})
    refused = await sim.post(
        "/midas/lms/bulk",
        json={"targetId": 1, "userId": "u", "audienceSize": 1},
        headers={"Idempotency-Key": "k"},
    )
    assert refused.status_code == 503 and (await sim.get("/midas/sends")).json() == []

    bad = await sim.put("/vertica/_faults", json={"failNext": -1})
    assert bad.status_code == 422


async def test_slow_vertica_is_slow(sim: httpx.AsyncClient) -> None:
    await sim.put("/vertica/_faults", json={"delayS": 0.5})
    with pytest.raises(httpx.ReadTimeout):
        await sim.get("/vertica/training-data", params={"modelRequestId": 1}, timeout=0.1)


async def test_the_chat_shows_a_post_repeated_with_its_idempotency_key_once(
    sim: httpx.AsyncClient,
) -> None:
    for key in ("k1", "k1", "k2", None, None):
        headers = {"Idempotency-Key": key} if key else {}
        answer = await sim.post("/chat/webhook", json={"text": f"m-{key}"}, headers=headers)
        assert answer.status_code == 200 and answer.text == "ok"
    shown = [m["text"] for m in (await sim.get("/chat/messages")).json()]
    assert shown == ["m-k1", "m-k2", "m-None", "m-None"]
