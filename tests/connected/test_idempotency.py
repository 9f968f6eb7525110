"""Idempotency-Key: a command sent again with its key takes effect once and gets the first
answer again; the key with another request is a 422; keys are per caller.

Counted where a user would see a double effect: the rows in the service's database, the
events in its outbox and on its topic.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import orjson
import pytest
from sqlalchemy import func, insert, select, update

from contracts import model as model_events
from contracts.topics import MODEL_EVENTS, TARGET_EVENTS
from model.tables import idempotency_keys, model_requests, outbox
from servicekit import idempotency
from servicekit.runtime import ServiceRuntime
from target.bootstrap import build as build_target
from target.settings import TargetSettings
from target.tables import model_requests as target_models
from target.tables import outbox as target_outbox
from target.tables import targets
from tests.connected.model_service import model_service
from tests.connected.services import running, settings_for
from tests.support import bearer, eventually, publish, read_topic

pytestmark = pytest.mark.connected

USER = bearer("test")
OTHER = bearer("other")


def keyed(key: str | bytes, who: dict[str, str] = USER) -> dict[str, str | bytes]:
    return {**who, "Idempotency-Key": key}


async def count(runtime: ServiceRuntime, table, *where) -> int:  # type: ignore[no-untyped-def]
    async with runtime.engine.connect() as conn:
        return await conn.scalar(select(func.count()).select_from(table).where(*where))


async def outbox_types(runtime: ServiceRuntime, table=outbox) -> Counter[str]:  # type: ignore[no-untyped-def]
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(select(table.c.payload))
        return Counter(row.payload["eventType"] for row in rows)


def topic_types(records: list) -> Counter[str]:
    return Counter(orjson.loads(r.value)["eventType"] for r in records)


def names_the_header(response: httpx.Response) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["errors"][0]["field"] == "Idempotency-Key"
    assert "Idempotency-Key" in body["detail"]


async def test_a_repeated_command_takes_effect_once_and_gets_the_first_answer(
    model_db: str, topics: str
) -> None:
    async with model_service(model_db, topics) as (client, runtime):
        body = {"userId": "test", "modelName": "Churn"}
        first = await client.post("/models", json=body, headers=keyed("create-1"))
        again = await client.post("/models", json=body, headers=keyed("create-1"))
        # The same fields as a form are the same request (the seed's clients send forms).
        as_form = await client.post("/models", data=body, headers=keyed("create-1"))
        other_body = await client.post(
            "/models", json={**body, "modelName": "Other"}, headers=keyed("create-1")
        )
        rows_after_create = await count(runtime, model_requests)
        # Another user's key of the same name is theirs alone.
        theirs = await client.post(
            "/models",
            json={"userId": "other", "modelName": "Churn"},
            headers=keyed("create-1", OTHER),
        )
        theirs_again = await client.post(
            "/models",
            json={"userId": "other", "modelName": "Churn"},
            headers=keyed("create-1", OTHER),
        )
        id = first.json()["id"]

        # Approve (an admin's command) twice with one key, then the key on another request.
        approve = keyed("approve-1", bearer())
        approved = await client.put(f"/models/{id}", headers=approve)
        approved_again = await client.put(f"/models/{id}", headers=approve)
        approve_other = await client.put(f"/models/{theirs.json()['id']}", headers=approve)
        theirs_state = (await client.get(f"/models/{theirs.json()['id']}")).json()["state"]

        # Cancel twice with one key; then with another reason.
        cancel = keyed("cancel-1")
        canceled = await client.put(f"/models/{id}/cancel", json={"reason": "x"}, headers=cancel)
        canceled_again = await client.put(
            f"/models/{id}/cancel", json={"reason": "x"}, headers=cancel
        )
        cancel_other_reason = await client.put(
            f"/models/{id}/cancel", json={"reason": "y"}, headers=cancel
        )
        # Without a key, the same cancel is a new command: refused, it is cancelled already.
        unkeyed = await client.put(f"/models/{id}/cancel", json={"reason": "x"}, headers=USER)

        records = await read_topic(topics, MODEL_EVENTS, expect=5)
        rows = await count(runtime, model_requests)
        in_outbox = await outbox_types(runtime)
        keys = await count(runtime, idempotency_keys)

    assert first.status_code == 201, first.text
    for repeat in (again, as_form):
        assert (repeat.status_code, repeat.content) == (201, first.content)
        assert repeat.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    names_the_header(other_body)
    assert rows_after_create == 1
    assert theirs.status_code == 201 and theirs.json()["id"] != id
    assert (theirs_again.status_code, theirs_again.content) == (201, theirs.content)

    assert approved.status_code == 200 and approved.json()["state"] == "approved"
    assert (approved_again.status_code, approved_again.content) == (200, approved.content)
    names_the_header(approve_other)
    assert theirs_state == "requested"  # the 422 changed nothing

    assert canceled.status_code == 200 and canceled.json()["state"] == "requestCanceled"
    assert (canceled_again.status_code, canceled_again.content) == (200, canceled.content)
    names_the_header(cancel_other_reason)
    assert unkeyed.status_code == 409

    # Exactly one of each effect: 2 requests, one approval, one cancellation.
    assert rows == 2
    expected = Counter({"Requested": 2, "Approved": 1, "RequestCanceled": 1})
    assert in_outbox == expected
    assert topic_types(records) == expected
    assert keys == 4  # create-1 twice (two users), approve-1, cancel-1


async def test_concurrent_requests_with_one_key_take_effect_once(
    model_db: str, topics: str
) -> None:
    async with model_service(model_db, topics) as (client, runtime):
        body = {"userId": "test", "modelName": "Racing"}
        answers = await asyncio.gather(
            *(client.post("/models", json=body, headers=keyed("race")) for _ in range(8))
        )
        rows = await count(runtime, model_requests)
        in_outbox = await outbox_types(runtime)

    # Each waited for the first and got its answer (409 "in progress" only past 5 s).
    created = [a for a in answers if a.status_code == 201]
    assert {a.status_code for a in answers} <= {201, 409}, [a.text for a in answers]
    assert len({a.content for a in created}) == 1 and len(created) >= 1
    replayed = [a for a in created if a.headers.get("idempotent-replayed") == "true"]
    assert len(replayed) == len(created) - 1
    assert rows == 1 and in_outbox["Requested"] == 1


async def test_a_repeat_while_the_first_holds_the_key_too_long_is_told_it_is_in_progress(
    model_db: str, topics: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(idempotency, "WAIT_FOR_FIRST_S", 0.5)
    async with model_service(model_db, topics) as (client, runtime):
        body = {"userId": "test", "modelName": "Held"}
        # A first request with the key, still in its transaction (claimed, not committed).
        async with runtime.engine.connect() as held:
            await held.begin()
            await held.execute(
                insert(idempotency_keys).values(owner="test", key="held", request_hash="x")
            )
            waiting = await client.post("/models", json=body, headers=keyed("held"))
            await held.rollback()  # the first failed: the key is free again
        retried = await client.post("/models", json=body, headers=keyed("held"))
        rows = await count(runtime, model_requests)

    assert waiting.status_code == 409, waiting.text
    assert waiting.json()["detail"] == (
        "a request with this Idempotency-Key is in progress; retry later"
    )
    assert waiting.headers["retry-after"] == "1"
    assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers
    assert rows == 1


async def test_key_format_is_checked_and_expired_keys_no_longer_count(
    model_db: str, topics: str
) -> None:
    async with model_service(model_db, topics) as (client, runtime):
        body = {"userId": "test", "modelName": "Format"}
        too_long = await client.post("/models", json=body, headers=keyed("k" * 256))
        empty = await client.post("/models", json=body, headers=keyed(""))
        not_ascii = await client.post("/models", json=body, headers=keyed("clé".encode("latin-1")))
        longest = await client.post("/models", json=body, headers=keyed("k" * 255))
        quoted = await client.post("/models", json=body, headers=keyed('"k' + "k" * 254 + '"'))
        after_refusals = await count(runtime, model_requests)

        # A day later the key is free again, and the pruner deletes what expired.
        async with runtime.engine.begin() as conn:
            await conn.execute(
                update(idempotency_keys).values(
                    created_at=func.now() - idempotency.TTL - idempotency.TTL / 24
                )
            )
        later = await client.post("/models", json=body, headers=keyed("k" * 255))
        pruned = await idempotency.prune(runtime.engine)
        kept = await count(runtime, idempotency_keys)

    for refused in (too_long, empty, not_ascii):
        names_the_header(refused)
    assert longest.status_code == 201
    # The draft's Structured Field form ("...") names the same key.
    assert (quoted.status_code, quoted.content) == (201, longest.content)
    assert after_refusals == 1
    assert later.status_code == 201 and later.json()["id"] != longest.json()["id"]
    assert (pruned, kept) == (0, 1)  # the expired row was taken over by the new request


async def test_target_commands_take_effect_once(target_db: str, topics: str) -> None:
    settings = settings_for(TargetSettings, target_db, topics)
    async with running(build_target, settings) as (client, runtime):
        # A user asks for targets of their own model only, once target knows it.
        await publish(
            topics, model_events.Requested(id=1, state="requested", user_id="test", model_name="M")
        )
        await eventually(lambda: count(runtime, target_models), what="target to know model 1")
        body = {"userId": "test", "type": "vip", "modelRequestId": 1}
        first = await client.post("/targets", json=body, headers=keyed("t-create"))
        again = await client.post("/targets", json=body, headers=keyed("t-create"))
        id = first.json()["id"]
        rejected = await client.put(
            f"/targets/{id}/reject", json={"reason": "dup"}, headers=keyed("t-reject", bearer())
        )
        rejected_again = await client.put(
            f"/targets/{id}/reject", json={"reason": "dup"}, headers=keyed("t-reject", bearer())
        )
        other = await client.put(
            f"/targets/{id}/reject", json={"reason": "no"}, headers=keyed("t-reject", bearer())
        )
        records = await read_topic(topics, TARGET_EVENTS, expect=2)
        rows = await count(runtime, targets)
        in_outbox = await outbox_types(runtime, target_outbox)

    assert first.status_code == 201, first.text
    assert (again.status_code, again.content) == (201, first.content)
    assert rejected.status_code == 200 and rejected.json()["state"] == "rejected"
    assert (rejected_again.status_code, rejected_again.content) == (200, rejected.content)
    names_the_header(other)
    assert rows == 1
    assert in_outbox == Counter({"TargetRequested": 1, "TargetRejected": 1})
    assert topic_types(records) == Counter({"TargetRequested": 1, "TargetRejected": 1})
