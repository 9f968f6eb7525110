"""Ownership on every reference (issue 12, item 2): the target service, on a real database
and broker, with model's events published here as model would.

Bob asking for a target of Alice's model gets exactly what he gets for a model that does
not exist, whatever state Alice's model is in: no 201, no 409 telling it was cancelled.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from contracts import model as model_events
from target.bootstrap import build
from target.settings import TargetSettings
from target.tables import model_requests, outbox, targets
from tests.connected.services import running, settings_for
from tests.support import bearer, publish

pytestmark = pytest.mark.connected

ALICE, BOB = bearer("alice", "user"), bearer("bob", "user")


def alice_event(
    kind: type[model_events.ModelRequestEvent], id: int, state: str, **extra: object
) -> model_events.ModelRequestEvent:
    return kind(id=id, state=state, user_id="alice", model_name="AliceModel", **extra)


async def test_a_target_only_on_ones_own_model(target_db: str, topics: str) -> None:
    async with running(build, settings_for(TargetSettings, target_db, topics)) as (
        client,
        runtime,
    ):
        await publish(
            topics,
            alice_event(model_events.Requested, 1, "requested"),
            alice_event(model_events.Approved, 1, "approved"),
            alice_event(model_events.StateChanged, 1, "completed", previous_state="approved"),
            alice_event(model_events.Requested, 2, "requested"),
            alice_event(
                model_events.RequestCanceled, 2, "requestCanceled", previous_state="requested"
            ),
        )

        async def recorded() -> dict[int, tuple[str, str | None]]:
            async with runtime.engine.connect() as conn:
                rows = await conn.execute(
                    select(
                        model_requests.c.model_request_id,
                        model_requests.c.state,
                        model_requests.c.user_id,
                    )
                )
                return {r.model_request_id: (r.state, r.user_id) for r in rows}

        for _ in range(300):
            if await recorded() == {1: ("completed", "alice"), 2: ("requestCanceled", "alice")}:
                break
            await asyncio.sleep(0.05)
        assert await recorded() == {1: ("completed", "alice"), 2: ("requestCanceled", "alice")}

        def ask(user: str, model_request_id: int, headers: dict[str, str]):  # type: ignore[no-untyped-def]
            body = {"userId": user, "type": "vip", "modelRequestId": model_request_id}
            return client.post("/targets", json=body, headers=headers)

        on_completed = await ask("bob", 1, BOB)
        on_cancelled = await ask("bob", 2, BOB)
        on_missing = await ask("bob", 3, BOB)
        as_form = await client.post(
            "/targets", data={"userId": "bob", "type": "vip", "modelRequestId": "1"}, headers=BOB
        )
        async with runtime.engine.connect() as conn:
            stored = await conn.scalar(select(func.count()).select_from(targets))
            announced = await conn.scalar(select(func.count()).select_from(outbox))

        alices = await ask("alice", 1, ALICE)
        alice_on_cancelled = await ask("alice", 2, ALICE)
        admins = await ask("bob", 1, bearer())  # an admin, for Bob, on Alice's model

    for response, id in ((on_completed, 1), (on_cancelled, 2), (on_missing, 3), (as_form, 1)):
        assert response.status_code == 404, response.text
        assert response.json() == {"detail": f"model request {id} not found"}
    # The foreign model's answer is the missing one's but for the id it names.
    assert on_completed.headers.keys() == on_missing.headers.keys()
    assert (stored, announced) == (0, 0)  # nothing stored, nothing announced

    assert alices.status_code == 201, alices.text
    assert (alices.json()["userId"], alices.json()["modelState"]) == ("alice", "completed")
    assert alice_on_cancelled.status_code == 409
    assert alice_on_cancelled.json()["detail"] == (
        "cannot request a target of model request 2: the model request is requestCanceled"
    )
    assert admins.status_code == 201, admins.text
