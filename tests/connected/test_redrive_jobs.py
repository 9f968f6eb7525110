"""A failed training job and a failed LMS send, re-driven by an admin through the gateway
once Vertica and MIDAS answer again: each completes once, one MIDAS send per target."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from contracts.topics import CORE_EVENTS, MODEL_EVENTS
from nocode import dlq
from tests.connected.whole_platform import whole_platform
from tests.support import bearer, eventually, topic_values

pytestmark = pytest.mark.connected

Json = dict[str, Any]
FAST_FAILURE = {"job_max_attempts": 2, "lms_max_attempts": 2, "job_backoff_max_s": 0.2}


async def state_is(gateway: httpx.AsyncClient, path: str, *states: str) -> Json | None:
    body = (await gateway.get(path)).json()
    return body if body["state"] in states else None


async def failed_jobs(gateway: httpx.AsyncClient, kind: str) -> list[Json] | None:
    response = await gateway.get("/cores/ops/failed", params={"kind": kind})
    assert response.status_code == 200, response.text
    return response.json() or None


def of(values: list[Json], request_id: int, *types: str) -> list[str]:
    return [
        v["eventType"]
        for v in values
        if str(v.get("requestId", v["id"])) == str(request_id) and v["eventType"] in types
    ]


async def test_a_failed_job_and_a_failed_lms_send_redriven_complete_once(
    postgres_admin_url: str, topics: str
) -> None:
    async with (
        whole_platform(postgres_admin_url, topics, core=FAST_FAILURE) as (platform, gateway),
        httpx.AsyncClient(base_url=platform.simulators_url) as sim,
    ):
        # Every consuming service answers the dead-letter API under its gateway prefix.
        prefixes = ("/models", "/targets", "/cores", "/notices", "/myRequests")
        listings = {p: await gateway.get(f"{p}/ops/dead-letters") for p in prefixes}
        as_user = await gateway.get("/cores/ops/failed", headers=bearer("test"))
        bad_kind = await gateway.post("/cores/ops/failed/redrive", params={"kind": "bogus"})

        # Training fails: Vertica is down for every attempt.
        await sim.put("/vertica/_faults", json={"failAlways": True})
        mid = (await gateway.post("/models", json={"userId": "test", "modelName": "Re"})).json()[
            "id"
        ]
        await gateway.put(f"/models/{mid}")
        failed = await eventually(lambda: state_is(gateway, f"/models/{mid}", "failed"))
        [model_job] = await eventually(lambda: failed_jobs(gateway, "model"))
        dry = (await gateway.post("/cores/ops/failed/redrive", params={"kind": "model"})).json()
        await sim.put("/vertica/_faults", json={})
        redriven = await gateway.post(
            "/cores/ops/failed/redrive", params={"kind": "model", "dryRun": "false"}
        )
        twice = await gateway.post(f"/cores/ops/failed/{model_job['id']}/redrive")
        completed = await eventually(
            lambda: state_is(gateway, f"/models/{mid}", "completed"), what="the re-driven job"
        )

        # The LMS send fails: MIDAS is down for every attempt.
        await sim.put("/midas/_faults", json={"failAlways": True})

        async def target_taken() -> int | None:
            # target learns from model's events that the failed model completed after all.
            response = await gateway.post(
                "/targets", json={"userId": "test", "type": "vip", "modelRequestId": mid}
            )
            return response.json()["id"] if response.status_code == 201 else None

        tid = await eventually(target_taken, what="a target for the re-driven model")

        async def approved() -> Json | None:
            response = await gateway.put(f"/targets/{tid}")
            return response.json() if response.status_code == 200 else None

        await eventually(approved, what="the target approved once its model completed")
        [lms_job] = await eventually(lambda: failed_jobs(gateway, "lms"))
        await sim.put("/midas/_faults", json={})
        # The admin's CLI: list, a dry run, then --yes (filtered to core's LMS sends).
        listed, dry_cli, applied_cli = (
            await cli(str(gateway.base_url), "list"),
            await cli(str(gateway.base_url), "redrive", service=["core"], kind="lms"),
            await cli(str(gateway.base_url), "redrive", service=["core"], kind="lms", apply=True),
        )
        again = await gateway.post(f"/cores/ops/failed/{lms_job['id']}/redrive")

        async def lms_completed() -> Json | None:
            jobs = (await gateway.get("/cores", params={"kind": "lms"})).json()
            return next((j for j in jobs if j["state"] == "completed"), None)

        lms_done = await eventually(lms_completed, what="the re-driven LMS send")
        core_events = await eventually(
            lambda: _with(topic_values(platform_bootstrap(platform), CORE_EVENTS), "LmsSent"),
            what="LmsSent on the topic",
        )
        model_events = await topic_values(platform_bootstrap(platform), MODEL_EVENTS)
        sends = (await sim.get("/midas/sends")).json()
        left = (await gateway.get("/cores/ops/failed")).json()

    print(
        f"midas sends: {len(sends)}; ModelCompleted: "
        f"{of(core_events, mid, 'ModelCompleted')}; LmsSent: {of(core_events, tid, 'LmsSent')}"
    )
    assert {p: r.status_code for p, r in listings.items()} == dict.fromkeys(prefixes, 200)
    assert all(r.json() == [] for r in listings.values())
    assert as_user.status_code == 403
    assert (
        bad_kind.status_code == 422 and "kind: must be one of model, target, lms" in bad_kind.text
    )

    assert failed["state"] == "failed" and "vertica answered 503" in failed["reason"]
    assert (model_job["state"], model_job["attempts"], model_job["redrives"]) == ("failed", 2, 0)
    assert [f["outcome"] for f in dry["failed"]] == ["would_redrive"] and dry["dryRun"] is True
    assert redriven.status_code == 200, redriven.text
    [(item, outcome)] = [(f["item"], f["outcome"]) for f in redriven.json()["failed"]]
    assert (outcome, item["state"], item["redrives"]) == ("redriven", "queued", 1)
    assert twice.status_code == 409, twice.text  # queued (or already done): nothing to re-drive
    assert completed["progress"] == 100
    assert of(core_events, mid, "ModelFailed", "ModelCompleted") == [
        "ModelFailed",
        "ModelCompleted",
    ]
    assert of(model_events, mid, "StateChanged")[-1:] == ["StateChanged"]

    assert lms_job["attempts"] == 2 and "midas answered 503" in lms_job["error"]
    assert listed[0] == 0 and f"core         failed      {lms_job['id']:>6}  lms" in listed[1]
    assert "midas answered 503" in listed[1]
    assert dry_cli[0] == 0 and "would_redrive" in dry_cli[1] and "dry run" in dry_cli[1]
    assert applied_cli[0] == 0 and "→ redriven" in applied_cli[1], applied_cli[1]
    assert "re-driven: 1 of 1" in applied_cli[1]
    assert again.status_code == 409
    assert (lms_done["attempts"], lms_done["maxAttempts"]) == (3, 4)
    assert [s["targetId"] for s in sends] == [tid]  # one MIDAS send for the target
    assert of(core_events, tid, "LmsFailed", "LmsSent") == ["LmsFailed", "LmsSent"]
    assert left == []


async def cli(gateway_url: str, action: str, **options: Any) -> tuple[int, str]:
    """``nocode dlq`` as the admin runs it (its main, with the tests' admin token)."""
    printed: list[str] = []
    token = bearer()["Authorization"].removeprefix("Bearer ")
    code = await asyncio.to_thread(
        dlq.main,
        gateway_url=gateway_url,
        token=token,
        services=options.pop("service", []),
        what=[],
        filters=dlq.Filters(kind=options.pop("kind", None)),
        action=action,
        out=printed.append,
        **options,
    )
    return code, "\n".join(printed)


def platform_bootstrap(platform: Any) -> str:
    return platform.bootstrap


async def _with(values: Any, event_type: str) -> list[Json] | None:
    found = await values
    return found if any(v["eventType"] == event_type for v in found) else None
