"""A service that can write into its outbox stays ready while the broker is down: the
broker's state is reported (in /health/ready and `nocode status`), not a readiness failure,
and what was written meanwhile is published once the broker is back."""

from __future__ import annotations

import pytest

from contracts.topics import ALL_TOPICS, MODEL_EVENTS
from nocode import status
from nocode.embedded_broker import EmbeddedBroker
from servicekit.kafka import ensure_topics
from tests.connected.model_service import model_service
from tests.support import eventually, read_topic

pytestmark = pytest.mark.connected


async def test_a_publishing_service_stays_ready_and_accepts_writes_with_the_broker_down(
    model_db: str, broker: EmbeddedBroker, topics: str
) -> None:
    broker.stop()  # down before the service starts, and while it serves
    async with model_service(model_db, topics) as (client, _):
        ready = await client.get("/health/ready")
        snapshot = await status.gather({"model": str(client.base_url)})
        created = [
            await client.post("/models", json={"userId": "test", "modelName": f"M{i}"})
            for i in range(5)
        ]

        broker.start()
        await ensure_topics(topics, ALL_TOPICS, 3, 1)
        records = await read_topic(topics, MODEL_EVENTS, expect=5, timeout_s=60)

        async def broker_back() -> dict:
            answer = await client.get("/health/ready")
            return answer.json() if answer.json()["broker"] == "ok" else {}

        back = await eventually(broker_back, timeout_s=30, what="the broker reported ok")

    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert (body["status"], body["database"]) == ("degraded", "ok")
    assert body["broker"].startswith("unreachable")
    (model,) = snapshot.services
    assert model.health == "ok" and model.problem.startswith("broker: unreachable")
    screen = status.render(snapshot)
    assert "model ready but degraded: broker: unreachable" in screen
    assert "DEGRADED: model degraded (broker: unreachable" in screen
    assert [r.status_code for r in created] == [201] * 5
    assert sorted(int(r.key) for r in records) == sorted(r.json()["id"] for r in created)
    assert back == {"status": "ok", "database": "ok", "broker": "ok"}
