"""The target service against a real database and broker, with no model or core running:
only events on the topics (published here, as model and core would) move it on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select, text

from contracts import Event
from contracts import model as model_events
from contracts.core import TargetCompleted
from contracts.topics import TARGET_EVENTS
from servicekit.runtime import ServiceRuntime
from target import handlers
from target.bootstrap import build
from target.repository import TargetUnitOfWork
from target.settings import TargetSettings
from target.tables import inbox, outbox, targets
from tests.connected.services import running, settings_for
from tests.support import ce, publish, read_topic

pytestmark = pytest.mark.connected


@contextlib.asynccontextmanager
async def target_service(
    db: str, bootstrap: str
) -> AsyncIterator[tuple[httpx.AsyncClient, ServiceRuntime]]:
    async with running(build, settings_for(TargetSettings, db, bootstrap)) as served:
        yield served


def model_event(
    kind: type[model_events.ModelRequestEvent], id: int, state: str, **extra: object
) -> model_events.ModelRequestEvent:
    return kind(id=id, state=state, user_id="test", model_name="TestModel10", **extra)


def completed_model(id: int) -> list[Event]:
    return [
        model_event(model_events.Requested, id, "requested"),
        model_event(model_events.Approved, id, "approved"),
        model_event(model_events.StateChanged, id, "inProgress", previous_state="approved"),
        model_event(model_events.StateChanged, id, "completed", previous_state="inProgress"),
    ]


async def wait_for(client: httpx.AsyncClient, id: int, **expected: object) -> dict:
    body: dict = {}
    for _ in range(300):
        body = (await client.get(f"/targets/{id}")).json()
        if all(body.get(k) == v for k, v in expected.items()):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"target request {id} never reached {expected}: {body}")


async def new_target(client: httpx.AsyncClient, model_request_id: int = 1) -> int:
    created = await client.post(
        "/targets", json={"userId": "test", "type": "vip", "modelRequestId": model_request_id}
    )
    assert created.status_code == 201, created.text
    return created.json()["id"]


async def count(runtime: ServiceRuntime, table, *where) -> int:  # type: ignore[no-untyped-def]
    async with runtime.engine.connect() as conn:
        return await conn.scalar(select(func.count()).select_from(table).where(*where))


def values(records: list) -> list[dict]:
    return [orjson.loads(r.value) | {"timestamp": 0} for r in records]


async def test_targets_are_accepted_with_no_model_or_core_running(
    target_db: str, topics: str
) -> None:
    async with target_service(target_db, topics) as (client, _):
        as_json = await client.post(
            "/targets",
            json={"userId": "test", "type": "vip", "modelRequestId": 1, "state": "request"},
        )
        # The seed's siege load test sends a form.
        as_form = await client.post(
            "/targets",
            data={"userId": "u2", "type": "all", "modelRequestId": "2", "state": "request"},
        )
        records = await read_topic(topics, TARGET_EVENTS, expect=2)
        listed = (await client.get("/targets", params={"userId": "u2"})).json()

    assert (as_json.status_code, as_form.status_code) == (201, 201)
    body = as_json.json()
    assert set(body) == {
        "id",
        "userId",
        "type",
        "modelRequestId",
        "modelState",
        "state",
        "reason",
        "createdAt",
        "updatedAt",
    }
    assert (body["userId"], body["type"], body["modelRequestId"]) == ("test", "vip", 1)
    assert (body["state"], body["modelState"], body["reason"]) == ("requested", None, None)
    assert [t["id"] for t in listed] == [as_form.json()["id"]]
    by_id = {v["id"]: v for v in values(records)}
    assert by_id[body["id"]] == {
        "eventType": "TargetRequested",
        "timestamp": 0,
        "id": body["id"],
        "state": "requested",
        "userId": "test",
        "type": "vip",
        "modelRequestId": 1,
    }
    assert by_id[as_form.json()["id"]]["modelRequestId"] == 2
    assert {ce(r)["ce_type"] for r in records} == {"nocode.target.TargetRequested"}
    assert {r.key for r in records} == {str(i).encode() for i in by_id}


async def test_approval_waits_for_the_model_to_complete(target_db: str, topics: str) -> None:
    async with target_service(target_db, topics) as (client, _):
        id = await new_target(client, model_request_id=1)
        unknown = await client.put(f"/targets/{id}")

        await publish(topics, *completed_model(1)[:3])
        await wait_for(client, id, modelState="inProgress")
        in_progress = await client.put("/targets", json={"id": id})

        await publish(topics, completed_model(1)[3])
        await wait_for(client, id, modelState="completed")
        approved = await client.put("/targets", json={"id": id})  # the seed's approve call
        twice = await client.put(f"/targets/{id}")
        records = await read_topic(topics, TARGET_EVENTS, expect=2)

    assert unknown.status_code == 409
    assert unknown.json() == {
        "detail": f"cannot approve target request {id}: its model request 1 is unknown to "
        "target yet, not completed",
        "currentState": "requested",
        "action": "approve",
    }
    assert in_progress.status_code == 409
    assert in_progress.json()["detail"] == (
        f"cannot approve target request {id}: its model request 1 is inProgress, not completed"
    )
    assert approved.status_code == 200
    assert (approved.json()["state"], approved.json()["modelState"]) == ("approved", "completed")
    assert twice.status_code == 409
    assert twice.json()["detail"] == f"cannot approve target request {id}: it is approved"
    assert [v["eventType"] for v in values(records)] == ["TargetRequested", "TargetApproved"]
    assert values(records)[1] | {"timestamp": 0} == {
        "eventType": "TargetApproved",
        "timestamp": 0,
        "id": id,
        "state": "approved",
        "userId": "test",
        "type": "vip",
        "modelRequestId": 1,
        "previousState": "requested",
        "actor": "admin",  # who approved (an optional field added for the request timeline)
    }


async def test_a_cancelled_model_cancels_its_targets(target_db: str, topics: str) -> None:
    async with target_service(target_db, topics) as (client, _):
        first, second = await new_target(client, 1), await new_target(client, 1)
        other = await new_target(client, 2)
        await publish(
            topics,
            model_event(model_events.Requested, 1, "requested"),
            model_event(
                model_events.RequestCanceled, 1, "requestCanceled", previous_state="requested"
            ),
        )
        bodies = [await wait_for(client, id, state="canceled") for id in (first, second)]
        records = await read_topic(topics, TARGET_EVENTS, expect=5)
        refused = await client.post(
            "/targets", json={"userId": "test", "type": "vip", "modelRequestId": 1}
        )
        untouched = (await client.get(f"/targets/{other}")).json()

    assert [b["reason"] for b in bodies] == ["model request 1 was requestCanceled"] * 2
    assert {b["modelState"] for b in bodies} == {"requestCanceled"}
    cancelled = [v for v in values(records) if v["eventType"] == "TargetCanceled"]
    assert sorted(v["id"] for v in cancelled) == [first, second]
    assert {(v["previousState"], v["state"], v["reason"]) for v in cancelled} == {
        ("requested", "canceled", "model request 1 was requestCanceled")
    }
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        "cannot request a target of model request 1: the model request is requestCanceled"
    )
    assert (untouched["state"], untouched["modelState"]) == ("requested", None)


def consumed(outcome: str) -> float:
    labels = {
        "service": "target",
        "group": "target",
        "topic": "core.events",
        "type": "nocode.core.TargetCompleted",
        "outcome": outcome,
    }
    return REGISTRY.get_sample_value("events_consumed_total", labels) or 0.0


def refused(state: str) -> float:
    labels = {"event": "TargetCompleted", "state": state}
    return REGISTRY.get_sample_value("target_core_events_refused_total", labels) or 0.0


async def test_core_completes_a_target_once_and_not_a_cancelled_one(
    target_db: str, topics: str
) -> None:
    duplicates, refused_completed, refused_canceled = (
        consumed("duplicate"),
        refused("completed"),
        refused("canceled"),
    )
    async with target_service(target_db, topics) as (client, runtime):
        await publish(topics, *completed_model(1))
        id, dropped = await new_target(client, 1), await new_target(client, 1)
        await wait_for(client, id, modelState="completed")
        for target in (id, dropped):
            assert (await client.put(f"/targets/{target}")).status_code == 200
        cancel = await client.put(f"/targets/{dropped}/cancel", json={"reason": "not needed"})

        done = TargetCompleted(id=7, request_id=str(id))
        await publish(topics, done, done.model_copy())  # same event id: a redelivery
        late = TargetCompleted(id=8, request_id=str(dropped))
        await publish(topics, late)
        body = await wait_for(client, id, state="completed")
        for _ in range(300):
            if consumed("duplicate") > duplicates and refused("canceled") > refused_canceled:
                break
            await asyncio.sleep(0.05)
        dropped_body = (await client.get(f"/targets/{dropped}")).json()
        changed = await count(
            runtime, outbox, outbox.c.ce_type == "nocode.target.TargetStateChanged"
        )
        claimed = await count(runtime, inbox, inbox.c.event_id == done.event_id)
        records = await read_topic(topics, TARGET_EVENTS, expect=6)

    assert cancel.status_code == 200 and cancel.json()["state"] == "canceled"
    assert (body["state"], body["modelState"]) == ("completed", "completed")
    assert consumed("duplicate") == duplicates + 1
    assert refused("completed") == refused_completed  # the redelivery never reached the handler
    assert refused("canceled") == refused_canceled + 1
    assert (dropped_body["state"], dropped_body["reason"]) == ("canceled", "not needed")
    assert (changed, claimed) == (1, 1)
    state_changed = [v for v in values(records) if v["eventType"] == "TargetStateChanged"]
    assert state_changed == [
        {
            "eventType": "TargetStateChanged",
            "timestamp": 0,
            "id": id,
            "state": "completed",
            "userId": "test",
            "type": "vip",
            "modelRequestId": 1,
            "previousState": "approved",
            "reason": None,
        }
    ]


async def test_bad_input_unknown_ids_and_hostile_strings(target_db: str, topics: str) -> None:
    hostile = "'; DROP TABLE targets;--"
    async with target_service(target_db, topics) as (client, _):
        zero = await client.post("/targets", json={"userId": "u", "type": "t", "modelRequestId": 0})
        no_type = await client.post("/targets", data={"userId": "u", "modelRequestId": "1"})
        not_int = await client.post(
            "/targets", json={"userId": "u", "type": "t", "modelRequestId": "one"}
        )
        bad_state = await client.post(
            "/targets", json={"userId": "u", "type": "t", "modelRequestId": 1, "state": "done"}
        )
        stored = await client.post(
            "/targets", json={"userId": "u", "type": hostile, "modelRequestId": 1}
        )
        id = stored.json()["id"]
        no_reason = await client.put(f"/targets/{id}/reject", json={})
        rejected = await client.put(f"/targets/{id}/reject", data={"reason": "too broad"})
        read_back = (await client.get(f"/targets/{id}")).json()
        listed = (await client.get("/targets")).json()
        missing = [
            await client.get("/targets/999"),
            await client.put("/targets/999"),
            await client.put("/targets", json={"id": 999}),
            await client.put("/targets/999/cancel"),
        ]
        bad_id = await client.put("/targets", json={"id": 0})

    for response, field in [
        (zero, "modelRequestId"),
        (no_type, "type"),
        (not_int, "modelRequestId"),
        (bad_state, "state"),
        (no_reason, "reason"),
        (bad_id, "id"),
    ]:
        assert response.status_code == 422, response.text
        assert response.json()["detail"].startswith(f"invalid request: {field}: ")
    assert stored.status_code == 201 and stored.json()["type"] == hostile
    assert rejected.status_code == 200
    assert (rejected.json()["state"], rejected.json()["reason"]) == ("rejected", "too broad")
    assert read_back["type"] == hostile and read_back["state"] == "rejected"
    assert [t["type"] for t in listed] == [hostile]
    assert [r.status_code for r in missing] == [404] * 4
    assert missing[0].json() == {"detail": "target request 999 not found"}


WAITING_FOR_AN_ADVISORY_LOCK = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
)


async def test_a_target_racing_its_models_cancellation_is_refused_not_left_behind(
    target_db: str, topics: str
) -> None:
    # The consumer holds model 1's cancellation uncommitted while a POST for model 1 comes in.
    async with target_service(target_db, topics) as (client, runtime):
        cancelled = model_event(
            model_events.RequestCanceled, 1, "requestCanceled", previous_state="requested"
        )
        async with TargetUnitOfWork(runtime.sessionmaker, runtime.outbox) as uow:
            await handlers.on_model_event(uow, cancelled)
            racing = asyncio.create_task(
                client.post("/targets", json={"userId": "u", "type": "t", "modelRequestId": 1})
            )
            waiting = 0
            for _ in range(300):
                async with runtime.engine.connect() as conn:
                    waiting = await conn.scalar(text(WAITING_FOR_AN_ADVISORY_LOCK))
                if waiting:
                    break
                await asyncio.sleep(0.02)
            await uow.commit()
        response = await racing
        stored = await count(runtime, targets)

    assert waiting == 1  # the POST waited for the model's change to commit
    assert response.status_code == 409
    assert "model request 1: the model request is requestCanceled" in response.json()["detail"]
    assert stored == 0
