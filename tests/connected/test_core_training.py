"""Training jobs with the real model service, the Vertica simulator, a real database and
broker: the happy path, a job failing every attempt, and core restarting mid-job."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.tables import jobs
from servicekit.db import make_engine
from tests.connected.core_service import (
    approved,
    core_events,
    core_service,
    core_settings,
    job_in,
    names,
    simulators,
)
from tests.connected.model_service import model_service
from tests.support import eventually, free_port, publish

pytestmark = pytest.mark.connected


async def test_an_approved_model_is_trained_step_by_step_and_completed(
    core_db: str, model_db: str, topics: str
) -> None:
    model_port = free_port()
    async with (
        simulators() as sim,
        model_service(model_db, topics, port=model_port) as (model, _),
        core_service(
            core_settings(
                core_db, topics, sim, f"http://127.0.0.1:{model_port}", vertica_batch_size=400
            )
        ) as (core, _),
    ):
        mid = (await model.post("/models", json={"userId": "test", "modelName": "M1"})).json()["id"]
        assert (await model.put(f"/models/{mid}")).json()["state"] == "approved"

        async def model_completed() -> bool:
            return (await model.get(f"/models/{mid}")).json()["state"] == "completed"

        await eventually(model_completed, what="model to show the completion")
        shown = (await model.get(f"/models/{mid}")).json()
        assert (shown["step"], shown["totalSteps"], shown["progress"]) == (3, 3, 100)

        job = await eventually(lambda: job_in(core, "model", mid, "completed"), what="the job")
        assert (await core.get(f"/cores/{job['id']}")).json() == job
        batches = (await sim.get("/vertica/batches")).json()
        events = await core_events(topics, mid)

    assert {k: job[k] for k in ("kind", "userId", "name", "step", "totalSteps", "attempts")} == {
        "kind": "model",
        "userId": "test",
        "name": "M1",
        "step": 3,
        "totalSteps": 3,
        "attempts": 1,
    }
    assert job["maxAttempts"] == 3 and job["reason"] is None
    assert job["createdAt"] <= job["startedAt"] <= job["finishedAt"] <= job["updatedAt"]
    assert [(b["modelRequestId"], b["offset"], b["rows"]) for b in batches] == [
        (mid, 0, 400),
        (mid, 400, 400),
        (mid, 800, 200),
    ]
    assert names(events) == ["ModelProgressed"] * 3 + ["ModelCompleted"]
    assert [(e["step"], e["totalSteps"]) for e in events[:3]] == [(1, 3), (2, 3), (3, 3)]
    assert {e["id"] for e in events} == {job["id"]}


async def test_unknown_job_is_404_and_bad_filters_are_422(core_db: str, topics: str) -> None:
    async with (
        simulators() as sim,
        core_service(core_settings(core_db, topics, sim, "http://127.0.0.1:9")) as (core, _),
    ):
        missing = await core.get("/cores/999")
        bad = await core.get("/cores", params={"state": "sleeping"})
        empty = await core.get("/cores", params={"state": "queued", "kind": "lms"})
    assert (missing.status_code, missing.json()) == (404, {"detail": "job 999 not found"})
    assert bad.status_code == 422
    assert (empty.status_code, empty.json()) == (200, [])


@pytest.mark.parametrize(
    ("faults", "error"),
    [
        ({"failAlways": True}, "vertica answered 503"),
        ({"delayS": 1.0}, "vertica timed out after 0.5s"),  # slow Vertica: the adapter gives up
    ],
)
async def test_a_job_failing_every_attempt_ends_failed_with_model_failed(
    core_db: str, topics: str, faults: dict[str, object], error: str
) -> None:
    async with (
        simulators() as sim,
        core_service(core_settings(core_db, topics, sim, "http://127.0.0.1:9")) as (core, _),
    ):
        assert (await sim.put("/vertica/_faults", json=faults)).status_code == 200
        await publish(topics, approved(21))
        job = await eventually(lambda: job_in(core, "model", 21, "failed"), what="the failure")
        events = await core_events(topics, 21)

    assert (job["attempts"], job["maxAttempts"], job["step"]) == (3, 3, 0)
    assert job["reason"] == f"{error} (gave up after 3 attempts)"
    assert job["finishedAt"] is not None
    assert names(events) == ["ModelFailed"]
    assert events[0]["reason"] == job["reason"] and events[0]["state"] == "failed"


async def test_a_job_left_running_by_a_stopped_core_is_taken_over_and_completed_once(
    core_db: str, model_db: str, topics: str
) -> None:
    model_port = free_port()
    model_url = f"http://127.0.0.1:{model_port}"
    slow = {"training_steps": 6, "step_duration_s": 0.3, "lease_s": 2.0}
    async with simulators() as sim, model_service(model_db, topics, port=model_port) as (model, _):
        mid = (await model.post("/models", json={"userId": "test", "modelName": "M2"})).json()["id"]
        async with core_service(core_settings(core_db, topics, sim, model_url, **slow)) as (
            core,
            _,
        ):
            await model.put(f"/models/{mid}")

            async def two_steps_done() -> dict | None:
                job = await job_in(core, "model", mid, "running")
                return job if job and job["step"] >= 2 else None

            await eventually(two_steps_done, what="training to be under way")
        # That core is gone mid-job: its row is still running, under its lease.
        engine = make_engine(core_db)
        async with engine.connect() as conn:
            left = (await conn.execute(select(jobs))).one()
        await engine.dispose()
        assert left.state == "running" and left.lease_owner is not None
        assert 2 <= left.step < 6 and left.attempts == 1

        async with core_service(core_settings(core_db, topics, sim, model_url, **slow)) as (
            core,
            _,
        ):
            job = await eventually(lambda: job_in(core, "model", mid, "completed"), what="resume")

            async def model_completed() -> bool:
                return (await model.get(f"/models/{mid}")).json()["state"] == "completed"

            await eventually(model_completed, what="model to show the completion")
        events = await core_events(topics, mid)

    assert (job["attempts"], job["step"], job["totalSteps"]) == (2, 6, 6)
    assert names(events).count("ModelCompleted") == 1
    assert names(events)[-1] == "ModelCompleted"
    # Each step was persisted and reported once: the new core resumed after the last one.
    assert [e["step"] for e in events if e["eventType"] == "ModelProgressed"] == [1, 2, 3, 4, 5, 6]
