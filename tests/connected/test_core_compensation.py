"""Compensation with the real model service: a cancel during training, a cancel only the
check finds, model down during the check, a request model does not know, and a completion
model refused."""

from __future__ import annotations

import re

import httpx
import pytest

from contracts import model as model_events
from contracts.topics import MODEL_EVENTS
from tests.connected.core_service import (
    Json,
    approved,
    core_events,
    core_service,
    core_settings,
    job_in,
    job_of,
    names,
    simulators,
)
from tests.connected.model_service import model_service
from tests.support import eventually, free_port, publish, topic_values

pytestmark = pytest.mark.connected


async def request_model(model: httpx.AsyncClient, name: str) -> int:
    created = await model.post("/models", json={"userId": "test", "modelName": name})
    assert created.status_code == 201
    return created.json()["id"]


async def model_state(model: httpx.AsyncClient, mid: int) -> str:
    return (await model.get(f"/models/{mid}")).json()["state"]


async def test_a_cancel_during_training_ends_the_job_cancelled_without_completion(
    core_db: str, model_db: str, topics: str
) -> None:
    model_port = free_port()
    slow = {"training_steps": 8, "step_duration_s": 0.3}
    async with (
        simulators() as sim,
        model_service(model_db, topics, port=model_port) as (model, _),
        core_service(
            core_settings(core_db, topics, sim, f"http://127.0.0.1:{model_port}", **slow)
        ) as (core, _),
    ):
        mid = await request_model(model, "Doomed")
        await model.put(f"/models/{mid}")

        async def training() -> Json | None:
            job = await job_in(core, "model", mid, "running")
            return job if job and job["step"] >= 1 else None

        await eventually(training, what="a first training step")
        cancel = await model.put(f"/models/{mid}/cancel", json={"reason": "changed my mind"})
        assert cancel.json()["state"] == "requestCanceled"

        job = await eventually(lambda: job_in(core, "model", mid, "canceled"), what="the cancel")
        events = await eventually(lambda: ended_events(topics, mid), what="the job's end")
        assert await model_state(model, mid) == "requestCanceled"

    assert job["reason"] == "changed my mind" and job["step"] < job["totalSteps"]
    assert "ModelCompleted" not in names(events)
    assert names(events)[-1] == "JobCanceled"
    assert events[-1]["reason"] == "changed my mind" and events[-1]["state"] == "canceled"


async def test_the_check_finds_a_cancel_core_never_heard_of_and_nothing_completes(
    core_db: str, model_db: str, topics: str
) -> None:
    """Core takes an Approved for a request model has cancelled (as if the cancel had been
    lost on its way): only the compensation check stands between it and a ModelCompleted."""
    model_port = free_port()
    async with (
        simulators() as sim,
        model_service(model_db, topics, port=model_port) as (model, _),
        core_service(core_settings(core_db, topics, sim, f"http://127.0.0.1:{model_port}")) as (
            core,
            _,
        ),
    ):
        mid = await request_model(model, "Withdrawn")
        await model.put(f"/models/{mid}/cancel")

        async def cancel_published() -> bool:
            return len(await topic_values(topics, MODEL_EVENTS)) == 2

        await eventually(cancel_published, what="model to publish the cancel")
        await publish(topics, approved(mid, "Withdrawn"))

        job = await eventually(lambda: job_in(core, "model", mid, "canceled"), what="the check")
        events = await eventually(lambda: ended_events(topics, mid), what="the job's end")
        assert await model_state(model, mid) == "requestCanceled"

    assert job["reason"] == f"model request {mid} was cancelled"
    assert job["step"] == job["totalSteps"] == 3  # trained, then stopped at the check
    assert names(events) == ["ModelProgressed"] * 3 + ["JobCanceled"]


async def ended_events(topics: str, mid: int) -> list[dict]:
    """core's events for ``mid`` once the last one ends the job: the relay publishes after the
    job's row is committed, so the row can be read before its event is on the topic."""
    events = await core_events(topics, mid)
    return events if events and names(events)[-1].startswith("Job") else []


async def breaker_open(core: httpx.AsyncClient) -> float:
    metrics = (await core.get("/metrics")).text
    found = re.search(r'circuit_breaker_open\{dependency="model",service="core"\} (\S+)', metrics)
    return float(found.group(1)) if found else -1.0


async def test_model_down_during_the_check_is_waited_for_and_completion_follows_its_return(
    core_db: str, model_db: str, topics: str
) -> None:
    model_port = free_port()
    slow = {"training_steps": 5, "step_duration_s": 0.3}
    async with simulators() as sim:
        settings = core_settings(core_db, topics, sim, f"http://127.0.0.1:{model_port}", **slow)
        async with core_service(settings) as (core, _):
            async with model_service(model_db, topics, port=model_port) as (model, _):
                mid = await request_model(model, "Patient")
                await model.put(f"/models/{mid}")

                async def training() -> Json | None:
                    job = await job_in(core, "model", mid, "running")
                    return job if job and job["step"] >= 1 else None

                await eventually(training, what="a first training step")
            # Model is down now; training goes on, then the check cannot get an answer.

            async def stuck_at_the_check() -> bool:
                job = await job_of(core, "model", mid)
                assert job is not None and job["state"] == "running", job
                return job["step"] == job["totalSteps"] and await breaker_open(core) == 1.0

            await eventually(stuck_at_the_check, what="the breaker to open")
            assert "ModelCompleted" not in names(await core_events(topics, mid))

            async with model_service(model_db, topics, port=model_port) as (model, _):
                job = await eventually(
                    lambda: job_in(core, "model", mid, "completed"), what="the completion"
                )

                async def model_completed() -> bool:
                    return await model_state(model, mid) == "completed"

                await eventually(model_completed, what="model to apply the completion")
                assert await breaker_open(core) == 0.0
        events = await core_events(topics, mid)

    assert job["attempts"] == 1
    assert names(events) == ["ModelProgressed"] * 5 + ["ModelCompleted"]


async def test_a_request_model_does_not_know_is_cancelled_not_completed(
    core_db: str, model_db: str, topics: str
) -> None:
    model_port = free_port()
    async with (
        simulators() as sim,
        model_service(model_db, topics, port=model_port),
        core_service(core_settings(core_db, topics, sim, f"http://127.0.0.1:{model_port}")) as (
            core,
            _,
        ),
    ):
        await publish(topics, approved(404))
        job = await eventually(lambda: job_in(core, "model", 404, "canceled"), what="the check")
        events = await eventually(lambda: ended_events(topics, 404), what="the job's end")
    assert job["reason"] == "model request 404 is unknown to the model service"
    assert names(events)[-1] == "JobCanceled" and "ModelCompleted" not in names(events)


async def test_a_refused_completion_is_recorded_as_a_cancelled_job(
    core_db: str, model_db: str, topics: str
) -> None:
    model_port = free_port()
    async with (
        simulators() as sim,
        model_service(model_db, topics, port=model_port) as (model, _),
        core_service(core_settings(core_db, topics, sim, f"http://127.0.0.1:{model_port}")) as (
            core,
            _,
        ),
    ):
        mid = await request_model(model, "Raced")
        await model.put(f"/models/{mid}")
        done = await eventually(lambda: job_in(core, "model", mid, "completed"), what="training")
        # What model says when a cancel won the race against the completion it was sent.
        refused = model_events.CompletionRefused(
            id=mid,
            state="requestCanceled",
            user_id="test",
            model_name="Raced",
            job_id=done["id"],
            reason=f"completion refused: model request {mid} is requestCanceled",
        )
        await publish(topics, refused, refused)  # a redelivery changes nothing more
        job = await eventually(lambda: job_in(core, "model", mid, "canceled"), what="compensation")

        async def compensation_published() -> list[Json] | None:
            events = await core_events(topics, mid)
            return events if names(events)[-1] == "JobCanceled" else None

        events = await eventually(compensation_published, what="JobCanceled")

    assert job["reason"] == f"cancelled after completing: {refused.reason}"
    assert names(events) == ["ModelProgressed"] * 3 + ["ModelCompleted", "JobCanceled"]
