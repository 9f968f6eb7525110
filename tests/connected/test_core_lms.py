"""Extraction and the LMS bulk send with the MIDAS simulator: one send per target, with
the target's idempotency key, however often MIDAS refuses first; the outcome is an event."""

from __future__ import annotations

import pytest

from contracts import target as target_events
from tests.connected.core_service import (
    Json,
    core_events,
    core_service,
    core_settings,
    job_in,
    names,
    simulators,
    target_approved,
)
from tests.support import eventually, publish

pytestmark = pytest.mark.connected

NO_MODEL = "http://127.0.0.1:9"  # extraction never asks model


@pytest.mark.parametrize("refusals", [0, 3])
async def test_an_approved_target_is_extracted_then_sent_once_through_midas(
    core_db: str, topics: str, refusals: int
) -> None:
    async with (
        simulators() as sim,
        core_service(core_settings(core_db, topics, sim, NO_MODEL)) as (core, _),
    ):
        await sim.put("/midas/_faults", json={"failNext": refusals})
        await publish(topics, target_approved(7, model_request_id=3))
        lms = await eventually(lambda: job_in(core, "lms", 7, "completed"), what="the LMS send")
        target = await job_in(core, "target", 7, "completed")
        sends = (await sim.get("/midas/sends")).json()

        async def both_published() -> list[Json] | None:
            events = await core_events(topics, 7, type="target")
            return events if len(events) >= 2 else None

        events = await eventually(both_published, what="TargetCompleted and LmsSent")

    assert target is not None and (target["step"], target["totalSteps"]) == (2, 2)
    assert (lms["attempts"], lms["maxAttempts"]) == (refusals + 1, 5)
    [send] = sends
    assert (send["idempotencyKey"], send["targetId"], send["userId"]) == ("target-7", 7, "test")
    assert send["audienceSize"] > 0 and "target" in send["message"]
    assert names(events) == ["TargetCompleted", "LmsSent"]
    assert events[0]["id"] == target["id"] and events[1]["id"] == lms["id"]
    assert events[1]["midasSendId"] == send["sendId"] and events[1]["state"] == "lmsSent"


async def test_midas_refusing_every_attempt_ends_in_lms_failed_and_no_send(
    core_db: str, topics: str
) -> None:
    async with (
        simulators() as sim,
        core_service(core_settings(core_db, topics, sim, NO_MODEL, lms_max_attempts=2)) as (
            core,
            _,
        ),
    ):
        await sim.put("/midas/_faults", json={"failAlways": True})
        await publish(topics, target_approved(8))
        lms = await eventually(lambda: job_in(core, "lms", 8, "failed"), what="the LMS failure")
        sends = (await sim.get("/midas/sends")).json()
        events = await core_events(topics, 8, type="target")

    assert (lms["attempts"], lms["maxAttempts"]) == (2, 2)
    assert lms["reason"] == "midas answered 503 (gave up after 2 attempts)"
    assert sends == []
    assert names(events) == ["TargetCompleted", "LmsFailed"]
    assert events[1]["reason"] == lms["reason"]


async def test_a_cancelled_target_is_never_completed(core_db: str, topics: str) -> None:
    async with (
        simulators() as sim,
        core_service(core_settings(core_db, topics, sim, NO_MODEL, extraction_steps=50)) as (
            core,
            _,
        ),
    ):
        await publish(topics, target_approved(9))

        async def extracting() -> Json | None:
            job = await job_in(core, "target", 9, "running")
            return job if job and job["step"] >= 1 else None

        await eventually(extracting, what="extraction to be under way")
        canceled = target_events.TargetCanceled(
            id=9,
            state="canceled",
            user_id="test",
            type="vip",
            model_request_id=1,
            previous_state="approved",
            reason="model request 1 was cancelled",
        )
        await publish(topics, canceled)
        job = await eventually(lambda: job_in(core, "target", 9, "canceled"), what="the cancel")
        lms = await job_in(core, "lms", 9, "queued", "running", "completed", "failed")
        events = await core_events(topics, 9, type="target")

    assert job["reason"] == "model request 1 was cancelled" and job["step"] < 50
    assert lms is None
    assert names(events) == ["JobCanceled"]
