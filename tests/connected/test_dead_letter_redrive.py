"""Dead letters are kept in the service's database and re-driven once, by an admin."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select, text

from contracts.core import ModelCompleted, ModelProgressed
from contracts.topics import dead_letter_topic
from model.tables import dead_letters, inbox, outbox
from nocode import status
from servicekit.runtime import ServiceRuntime
from tests.connected.model_service import model_service
from tests.connected.test_consumer import approved_request, publish, wait_for
from tests.support import bearer, eventually, read_topic

pytestmark = pytest.mark.connected

COMPLETED = "nocode.model.StateChanged"

# The poisoned state: the request's row refuses every update until the trigger is dropped.
POISON = """
CREATE FUNCTION refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'model request % is locked for maintenance', OLD.id; END $$;
CREATE TRIGGER poisoned BEFORE UPDATE ON model_requests FOR EACH ROW
WHEN (OLD.id = {id}) EXECUTE FUNCTION refuse_update();
"""


async def scalar(runtime: ServiceRuntime, query) -> int:  # type: ignore[no-untyped-def]
    async with runtime.engine.connect() as conn:
        return await conn.scalar(query)


async def test_a_dead_letter_is_listed_redriven_once_and_a_copy_of_it_skipped(
    model_db: str, topics: str
) -> None:
    async with model_service(model_db, topics) as (client, runtime):
        # The counter is process-wide: earlier tests' dead letters are already in it.
        counted_before = status.parse_metrics("model", (await client.get("/metrics")).text)
        id = await approved_request(client)
        await publish(topics, ModelProgressed(id=1, request_id=str(id), step=1, total_steps=1))
        await wait_for(client, id, state="inProgress")
        async with runtime.engine.begin() as conn:
            for statement in POISON.format(id=id).split(";\n"):
                if statement.strip():
                    await conn.execute(text(statement))
        completed = ModelCompleted(id=1, request_id=str(id))
        # The same event twice (as a relay's re-publish would send it), then another
        # request's event behind them: the partition moves on past the dead letters.
        other = await approved_request(client)
        await publish(
            topics,
            completed,
            completed.model_copy(),
            ModelProgressed(id=2, request_id=str(other), step=1, total_steps=2),
        )
        await wait_for(client, other, state="inProgress")
        parked = await eventually(
            lambda: _json(client.get("/models/ops/dead-letters")),
            what="two dead letters",
        )
        on_topic = await read_topic(topics, dead_letter_topic("model"), expect=2)
        as_user = await client.get("/models/ops/dead-letters", headers=bearer("test"))
        parked_before = status.parse_metrics("model", (await client.get("/metrics")).text)
        still_running = (await client.get(f"/models/{id}")).json()["state"]

        # Re-driven before the cause is fixed: it fails again and stays parked.
        too_early = (
            await client.post("/models/ops/dead-letters/redrive", params={"dryRun": "false"})
        ).json()["deadLetters"]
        async with runtime.engine.begin() as conn:  # the cause is fixed
            await conn.execute(text("DROP TRIGGER poisoned ON model_requests"))
        dry = (await client.post("/models/ops/dead-letters/redrive")).json()
        after_dry = (await client.get(f"/models/{id}")).json()["state"]
        applied = await client.post("/models/ops/dead-letters/redrive", params={"dryRun": "false"})
        again = (
            await client.post("/models/ops/dead-letters/redrive", params={"dryRun": "false"})
        ).json()
        body = (await client.get(f"/models/{id}")).json()
        history = (await client.get("/models/ops/dead-letters", params={"status": "all"})).json()
        parked_after = status.parse_metrics("model", (await client.get("/metrics")).text)
        redrive_as_user = await client.post(
            "/models/ops/dead-letters/redrive", params={"dryRun": "false"}, headers=bearer("u")
        )
        effects = await scalar(
            runtime,
            select(func.count())
            .select_from(outbox)
            .where(outbox.c.ce_type == COMPLETED, outbox.c.key == str(id))
            .where(text("payload->>'state' = 'completed'")),
        )
        applied_once = await scalar(
            runtime,
            select(func.count()).select_from(inbox).where(inbox.c.event_id == completed.event_id),
        )
        rows = await scalar(runtime, select(func.count()).select_from(dead_letters))
        await asyncio.sleep(0)

    print(f"dead letters: {len(parked)} parked, {effects} completion effect(s)")
    assert [(d["eventId"], d["status"], d["attempts"]) for d in parked] == [
        (completed.event_id, "parked", 3),
        (completed.event_id, "parked", 3),
    ]
    assert all("locked for maintenance" in d["error"] for d in parked)
    assert all(d["eventType"] == "nocode.core.ModelCompleted" for d in parked)
    assert len(on_topic) == 2  # the dead-letter topic still gets them (production tooling)
    assert as_user.status_code == 403
    assert still_running == "inProgress"

    assert [(o["outcome"], o["deadLetter"]["status"]) for o in too_early] == [
        ("failed", "parked"),
        ("failed", "parked"),
    ]
    assert all("locked for maintenance" in o["deadLetter"]["outcome"] for o in too_early)
    assert dry["dryRun"] is True
    assert [o["outcome"] for o in dry["deadLetters"]] == ["would_apply", "would_apply"]
    assert after_dry == "inProgress"  # a dry run changes nothing
    assert applied.status_code == 200, applied.text
    outcomes = [(o["outcome"], o["deadLetter"]["status"]) for o in applied.json()["deadLetters"]]
    assert outcomes == [("applied", "redriven"), ("skipped", "skipped")]
    assert again["deadLetters"] == []  # nothing parked is left to re-drive
    assert body["state"] == "completed" and body["progress"] == 100
    assert effects == 1 and applied_once == 1
    assert [(d["status"], d["redrives"], d["outcome"]) for d in history] == [
        ("redriven", 2, "applied"),
        ("skipped", 2, "skipped: already applied"),
    ]
    assert redrive_as_user.status_code == 403
    # nocode status: degraded while they are parked, not once they are re-driven.
    assert (parked_before.parked, parked_after.parked) == (2, 0)
    # The counter still says what happened.
    assert parked_after.dead_lettered - (counted_before.dead_lettered or 0) == 2
    assert rows == 2


async def _json(call):  # type: ignore[no-untyped-def]
    response = await call
    assert response.status_code == 200, response.text
    body = response.json()
    return body if len(body) == 2 else None
