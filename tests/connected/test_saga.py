"""The whole saga through the gateway: every service real, on a real broker and databases.

What a user sees is asserted: the states the API answers, the events on the
topics, the chat messages the (simulated) Swing chat received, the LMS sends
MIDAS received and the MyRequest rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from contracts.topics import CORE_EVENTS, MODEL_EVENTS, TARGET_EVENTS
from mypage_cqrs.replay import rebuild
from tests.connected.whole_platform import Platform, whole_platform
from tests.support import bearer, eventually, free_port, serving, topic_values

pytestmark = pytest.mark.connected

Json = dict[str, Any]


@pytest.fixture
async def saga(
    postgres_admin_url: str, topics: str
) -> AsyncIterator[tuple[Platform, httpx.AsyncClient]]:
    async with whole_platform(postgres_admin_url, topics) as running:
        yield running


async def state_is(gateway: httpx.AsyncClient, path: str, *states: str) -> Json | None:
    """The body when ``path`` is in one of ``states``; None while it is not, or (the read
    model's consumer may still be joining its group) not there yet."""
    answer = await gateway.get(path)
    if answer.status_code == 404 and path.startswith("/myRequests/"):
        return None
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return body if body["state"] in states else None


async def chat_texts(platform: Platform) -> list[str]:
    async with httpx.AsyncClient(base_url=platform.simulators_url) as sim:
        return [m["text"] for m in (await sim.get("/chat/messages")).json()]


def of(values: list[Json], key: str | int) -> list[str]:
    """The event types of one request, in order (core events are keyed by requestId)."""
    return [v["eventType"] for v in values if str(v.get("requestId", v["id"])) == str(key)]


async def test_the_whole_saga_through_the_gateway(
    saga: tuple[Platform, httpx.AsyncClient],
) -> None:
    platform, gateway = saga

    # The seed's calls: a form POST, then PUT /models with {"id": "1"}.
    created = await gateway.post(
        "/models", data={"userId": "test", "state": "request", "modelName": "TestModel10"}
    )
    assert created.status_code == 201, created.text
    mid = created.json()["id"]
    assert (await gateway.put("/models", json={"id": str(mid)})).json()["state"] == "approved"
    model = await eventually(
        lambda: state_is(gateway, f"/models/{mid}", "completed", "failed"), what="training"
    )
    assert model["state"] == "completed" and model["progress"] == 100
    assert model["step"] == model["totalSteps"] == 3

    target = await gateway.post(
        "/targets",
        data={"userId": "test", "type": "testtype", "state": "request", "modelRequestId": mid},
    )
    assert target.status_code == 201, target.text
    tid = target.json()["id"]
    await eventually(lambda: model_known_completed(gateway, tid), what="target to learn")
    approved = await gateway.put("/targets", json={"id": tid})
    assert approved.status_code == 200 and approved.json()["state"] == "approved"
    await eventually(lambda: state_is(gateway, f"/targets/{tid}", "completed"), what="extraction")

    async def lms_sent() -> Json | None:
        rows = (await gateway.get("/myRequests", params={"userId": "test"})).json()
        # LmsSent (core.events) and the completion (target.events) may arrive in either order.
        return next(
            (
                r
                for r in rows
                if r["id"] == f"target-{tid}" and r["lmsStatus"] and r["state"] != "approved"
            ),
            None,
        )

    target_row = await eventually(lms_sent, what="LMS outcome on the read model")
    assert target_row["lmsStatus"] == "sent" and target_row["state"] == "completed"
    assert target_row["progress"] == 100

    # Events on the topics, in order per request.
    model_events = await topic_values(platform.bootstrap, MODEL_EVENTS)
    # model announces its states; each training step is core's ModelProgressed.
    assert of(model_events, mid) == ["Requested", "Approved", *["StateChanged"] * 2]
    changes = [(v["previousState"], v["state"], v["step"]) for v in model_events[2:]]
    assert changes == [("approved", "inProgress", 1), ("inProgress", "completed", 3)]
    core_events = await topic_values(platform.bootstrap, CORE_EVENTS)
    assert of([v for v in core_events if v["type"] == "model"], mid) == [
        *["ModelProgressed"] * 3,
        "ModelCompleted",
    ]
    assert of([v for v in core_events if v["type"] == "target"], tid) == [
        "TargetCompleted",
        "LmsSent",
    ]
    assert of(await topic_values(platform.bootstrap, TARGET_EVENTS), tid) == [
        "TargetRequested",
        "TargetApproved",
        "TargetStateChanged",
    ]

    # MIDAS got exactly one bulk send, keyed by the target.
    async with httpx.AsyncClient(base_url=platform.simulators_url) as sim:
        sends = (await sim.get("/midas/sends")).json()
    assert [(s["idempotencyKey"], s["targetId"], s["userId"]) for s in sends] == [
        (f"target-{tid}", tid, "test")
    ]

    # The chat heard every state change once, in order, and nothing else.
    expected_chat = [
        f'Model request #{mid} "TestModel10" by test: new → requested',
        f'Model request #{mid} "TestModel10" by test: requested → approved',
        f'Model request #{mid} "TestModel10" by test: approved → inProgress',
        f'Model request #{mid} "TestModel10" by test: inProgress → completed',
        f"Target request #{tid} (testtype, model #{mid}) by test: new → requested",
        f"Target request #{tid} (testtype, model #{mid}) by test: requested → approved",
        f"Target request #{tid} (testtype, model #{mid}) by test: approved → completed",
    ]

    async def all_chat() -> list[str] | None:
        texts = await chat_texts(platform)
        return texts if len(texts) >= len(expected_chat) + 1 else None

    texts = await eventually(all_chat, what="chat messages")
    model_chat = [t for t in texts if t.startswith("Model request")]
    target_chat = [t for t in texts if t.startswith("Target request") and "LMS" not in t]
    assert model_chat + target_chat == expected_chat
    lms_chat = [t for t in texts if "LMS" in t]
    assert len(lms_chat) == 1 and f"#{tid}" in lms_chat[0]
    notices = (await gateway.get("/notices", params={"userId": "test"})).json()
    assert len(notices) == len(texts) and {n["status"] for n in notices} == {"sent"}

    # The read model, built only from events, agrees with the services.
    rows = {
        r["id"]: r for r in (await gateway.get("/myRequests", params={"userId": "test"})).json()
    }
    assert set(rows) == {f"model-{mid}", f"target-{tid}"}
    assert rows[f"model-{mid}"]["state"] == "completed"
    assert rows[f"model-{mid}"]["progress"] == 100
    assert rows[f"model-{mid}"]["name"] == "TestModel10"
    assert rows[f"target-{tid}"]["modelRequestId"] == mid

    # Rebuilding the read model from the topics gives the same view.
    before = (await gateway.get("/myRequests")).json()
    await rebuild(platform.settings("mypage_cqrs"))
    assert (await gateway.get("/myRequests")).json() == before


async def model_known_completed(gateway: httpx.AsyncClient, tid: int) -> bool:
    """target learns of the model's completion from model.events, a moment after model."""
    return (await gateway.get(f"/targets/{tid}")).json()["modelState"] == "completed"


async def start_training(gateway: httpx.AsyncClient, name: str) -> int:
    created = await gateway.post("/models", json={"userId": "test", "modelName": name})
    mid = created.json()["id"]
    assert (await gateway.put(f"/models/{mid}")).status_code == 200

    async def trained_a_step() -> bool:
        return (await gateway.get(f"/models/{mid}")).json()["step"] >= 1

    await eventually(trained_a_step, what="a first training step")
    return mid


async def job_of(gateway: httpx.AsyncClient, kind: str, request_id: int) -> Json | None:
    jobs = (await gateway.get("/cores", params={"kind": kind})).json()
    return next((j for j in jobs if str(j["requestId"]) == str(request_id)), None)


async def job_ended(gateway: httpx.AsyncClient, kind: str, request_id: int) -> Json | None:
    job = await job_of(gateway, kind, request_id)
    return job if job and job["state"] in {"completed", "canceled", "failed"} else None


@pytest.mark.parametrize("overrides", [{"core": {"training_steps": 20, "step_duration_s": 0.3}}])
async def test_cancel_during_training_stops_the_job_and_no_completion_goes_out(
    postgres_admin_url: str, topics: str, overrides: dict[str, dict[str, object]]
) -> None:
    async with whole_platform(postgres_admin_url, topics, **overrides) as (platform, gateway):
        mid = await start_training(gateway, "Doomed")
        cancelled = await gateway.put(f"/models/{mid}/cancel", json={"reason": "changed my mind"})
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "requestCanceled"

        job = await eventually(lambda: job_ended(gateway, "model", mid), what="the job to end")
        assert job["state"] == "canceled" and job["step"] < job["totalSteps"]
        assert (await gateway.get(f"/models/{mid}")).json()["state"] == "requestCanceled"

        core_events = await topic_values(platform.bootstrap, CORE_EVENTS)
        assert "ModelCompleted" not in of(core_events, mid)
        assert of(core_events, mid)[-1] == "JobCanceled"

        async def cancel_told() -> list[str]:
            return [t for t in await chat_texts(platform) if "→ requestCanceled" in t]

        told = await eventually(cancel_told, what="the chat to hear of the cancel")
        assert told == [
            f'Model request #{mid} "Doomed" by test: inProgress → requestCanceled — changed my mind'
        ]

        async def row_cancelled() -> Json | None:
            return await state_is(gateway, f"/myRequests/model-{mid}", "requestCanceled")

        await eventually(row_cancelled, what="the read model to show the cancel")


async def test_a_cancel_racing_the_completion_leaves_the_request_cancelled(
    postgres_admin_url: str, topics: str
) -> None:
    """The cancel lands after core's check said "go on" and before model applies the
    completion: model refuses it, says so (CompletionRefused), and core's job ends cancelled.
    """
    racer = FastAPI()
    model_url: dict[str, str] = {}

    @racer.get("/models/{id}")
    async def check_then_cancel(id: int, request: Request) -> Json:
        core_token = {"Authorization": request.headers["authorization"]}
        async with httpx.AsyncClient(base_url=model_url["url"]) as model:
            answer = (await model.get(f"/models/{id}", headers=core_token)).json()
            if answer["state"] in {"approved", "inProgress"}:  # core asks once, before completing
                await model.put(
                    f"/models/{id}/cancel", json={"reason": "too late?"}, headers=bearer("test")
                )
        return answer  # what the model said before the cancel

    racer_port = free_port()
    overrides = {"core": {"model_service_url": f"http://127.0.0.1:{racer_port}"}}
    async with (
        serving(racer, racer_port),
        whole_platform(postgres_admin_url, topics, **overrides) as (platform, gateway),
    ):
        model_url["url"] = platform.url("model")
        created = await gateway.post("/models", json={"userId": "test", "modelName": "Raced"})
        mid = created.json()["id"]
        await gateway.put(f"/models/{mid}")

        await eventually(lambda: job_ended(gateway, "model", mid), what="the job to end")

        async def compensated() -> Json | None:
            found = await job_of(gateway, "model", mid)
            return found if found and found["state"] == "canceled" else None

        job = await eventually(compensated, what="core to record the compensation")
        assert "canceled" in (job["reason"] or "").lower()
        assert (await gateway.get(f"/models/{mid}")).json()["state"] == "requestCanceled"

        model_events = await topic_values(platform.bootstrap, MODEL_EVENTS)
        assert of(model_events, mid)[-1] == "CompletionRefused"
        assert not any(v["state"] == "completed" for v in model_events if str(v["id"]) == str(mid))
        core_events = await topic_values(platform.bootstrap, CORE_EVENTS)
        assert of(core_events, mid)[-2:] == ["ModelCompleted", "JobCanceled"]

        async def row_cancelled() -> Json | None:
            return await state_is(gateway, f"/myRequests/model-{mid}", "requestCanceled")

        await eventually(row_cancelled, what="the read model to stay cancelled")


async def test_targets_are_taken_while_core_is_down_and_proceed_when_it_returns(
    saga: tuple[Platform, httpx.AsyncClient],
) -> None:
    platform, gateway = saga
    created = await gateway.post("/models", json={"userId": "test", "modelName": "Ready"})
    mid = created.json()["id"]
    await gateway.put(f"/models/{mid}")
    await eventually(lambda: state_is(gateway, f"/models/{mid}", "completed"), what="training")

    await platform.stop("core")
    target = await gateway.post(
        "/targets", json={"userId": "test", "type": "vip", "modelRequestId": mid}
    )
    assert target.status_code == 201, target.text
    tid = target.json()["id"]
    await eventually(lambda: model_known_completed(gateway, tid), what="target to learn")
    assert (await gateway.put(f"/targets/{tid}")).json()["state"] == "approved"
    down = await gateway.get("/cores")
    assert down.status_code in {502, 503}

    await platform.start("core")
    await eventually(lambda: state_is(gateway, f"/targets/{tid}", "completed"), what="extraction")
    core_events = await topic_values(platform.bootstrap, CORE_EVENTS)
    target_events = [v for v in core_events if v["type"] == "target"]

    async def lms_event() -> list[str]:
        values = await topic_values(platform.bootstrap, CORE_EVENTS)
        return [t for t in of([v for v in values if v["type"] == "target"], tid) if "Lms" in t]

    assert await eventually(lms_event, what="the LMS outcome") == ["LmsSent"]
    assert of(target_events, tid)[0] == "TargetCompleted"
