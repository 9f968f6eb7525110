"""Each request's timeline, through the gateway, on the whole platform (real broker, databases,
simulators): what a user sees on the request's page, built only from events.

One platform for the module's scenarios: a model trained and completed, a target extracted
and sent by MIDAS, a replay, then a model cancelled mid-training and a replay again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

from mypage_cqrs.replay import rebuild
from servicekit.db import asyncpg_dsn
from tests.connected.whole_platform import Platform, whole_platform
from tests.support import bearer, eventually

pytestmark = pytest.mark.connected

Json = dict[str, Any]
TEST, OTHER = bearer("test"), bearer("other")
STEPS, BATCH, VERTICA_ROWS = 4, 200, 1000  # core's steps here; Vertica's batch size and data
# Slow enough that a cancel lands mid-training, fast enough for a lean test.
OVERRIDES = {"core": {"training_steps": STEPS, "step_duration_s": 0.5}}


def brief(entries: list[Json]) -> list[tuple[Any, ...]]:
    return [(e["kind"], e["state"], e["actor"], e["reason"], e["detail"]) for e in entries]


async def timeline(gateway: httpx.AsyncClient, kind: str, id: int, who: Json = TEST) -> Json:
    answer = await gateway.get(f"/myRequests/{kind}/{id}/timeline", headers=who)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def entries_when(
    gateway: httpx.AsyncClient, kind: str, id: int, count: int, what: str
) -> list[Json]:
    async def enough() -> list[Json] | None:
        answer = await gateway.get(f"/myRequests/{kind}/{id}/timeline", headers=TEST)
        found = answer.json()["entries"] if answer.status_code == 200 else []
        return found if len(found) >= count else None

    return await eventually(enough, what=what)


async def job_of(gateway: httpx.AsyncClient, kind: str, request_id: int) -> Json:
    jobs = (await gateway.get("/cores", params={"kind": kind})).json()
    return next(j for j in jobs if str(j["requestId"]) == str(request_id))


async def simulator(platform: Platform, path: str) -> list[Json]:
    async with httpx.AsyncClient(base_url=platform.simulators_url) as sim:
        return (await sim.get(path)).json()


async def timeline_rows(database_url: str) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch("SELECT * FROM request_timeline ORDER BY event_id, part")
    finally:
        await conn.close()
    return [tuple(r.values()) for r in rows]


def state(value: str, actor: str, previous: str | None = None, **detail: Any) -> tuple:
    extra = {"previousState": previous} if previous else {}
    return ("state", value, actor, None, extra | detail)


def trained(job: int, batches: list[Json]) -> list[tuple[Any, ...]]:
    """Each step's Vertica batch (as the simulator served it), then the step."""
    found = []
    for n, served in enumerate(batches, start=1):
        read = {"batch": served["offset"] // BATCH + 1, "offset": served["offset"]}
        read |= {"rows": served["rows"], "totalRows": VERTICA_ROWS}
        found.append(("batch", None, "core", None, {"jobId": job} | read))
        progress = {"step": n, "totalSteps": STEPS, "progress": n * 100 // STEPS}
        found.append(("progress", "inProgress", "core", None, {"jobId": job} | progress))
    return found


async def test_timelines_of_a_saga_a_cancel_and_their_replay(
    postgres_admin_url: str, topics: str
) -> None:
    async with whole_platform(postgres_admin_url, topics, **OVERRIDES) as (platform, gateway):
        await completed_model_and_target(platform, gateway)
        await replay_rebuilds_identical_timelines(platform, gateway)
        await cancelled_during_training(platform, gateway)
        await replay_rebuilds_identical_timelines(platform, gateway)


async def completed_model_and_target(platform: Platform, gateway: httpx.AsyncClient) -> None:
    created = await gateway.post(
        "/models", json={"userId": "test", "modelName": "Churn"}, headers=TEST
    )
    mid = created.json()["id"]
    assert (await gateway.put(f"/models/{mid}")).status_code == 200  # the admin approves

    # 2 states + a batch and a progress per step + the check + inProgress and completed
    entries = await entries_when(gateway, "model", mid, 2 + 2 * STEPS + 3, "the model's timeline")
    job = (await job_of(gateway, "model", mid))["id"]
    batches = [
        b for b in await simulator(platform, "/vertica/batches") if b["modelRequestId"] == mid
    ]
    assert [(b["offset"], b["rows"]) for b in batches] == [(n * BATCH, BATCH) for n in range(STEPS)]
    check = {"jobId": job, "outcome": "complete", "modelState": "inProgress", "tries": 1}
    expected = [
        state("requested", "test"),
        state("approved", "admin", "requested"),
        *trained(job, batches),
        ("check", "completed", "core", None, check),
        state("completed", "core", "inProgress", step=STEPS, totalSteps=STEPS, progress=100),
    ]
    # model turns the first step into inProgress while core trains on: that entry comes after
    # the first step's progress and before the check, wherever the clock put it.
    started = state("inProgress", "core", "approved", step=1, totalSteps=STEPS, progress=25)
    seen = brief(entries)
    assert seen.count(started) == 1
    position = seen.index(started)
    assert seen[:position] + seen[position + 1 :] == expected
    assert 3 < position < len(expected) - 1
    times = [datetime.fromisoformat(e["at"]) for e in entries]
    assert times == sorted(times)
    assert [e["eventType"] for e in entries][:2] == ["Requested", "Approved"]
    page = await timeline(gateway, "model", mid)
    assert page["request"] == (await gateway.get(f"/myRequests/model-{mid}", headers=TEST)).json()
    assert page["request"]["state"] == "completed"

    await owner_checks(gateway, mid)
    await notices_of_the_request(gateway, mid, entries)

    made = await gateway.post(
        "/targets", json={"userId": "test", "type": "vip", "modelRequestId": mid}, headers=TEST
    )
    tid = made.json()["id"]

    async def target_may_be_approved() -> bool:
        return (await gateway.get(f"/targets/{tid}")).json()["modelState"] == "completed"

    await eventually(target_may_be_approved, what="target to learn the model completed")
    assert (await gateway.put(f"/targets/{tid}")).status_code == 200
    entries = await entries_when(gateway, "target", tid, 5, "the target's timeline")
    [send] = await simulator(platform, "/midas/sends")
    extraction = (await job_of(gateway, "target", tid))["id"]
    lms_job = (await job_of(gateway, "lms", tid))["id"]
    seen = brief(entries)
    assert seen[:3] == [
        state("requested", "test", modelRequestId=mid),
        state("approved", "admin", "requested"),
        ("job", "targetCompleted", "core", None, {"jobId": extraction}),
    ]
    # After the extraction, target's completion and core's LMS send run concurrently.
    lms = ("lms", "sent", "core", None, {"jobId": lms_job, "midasSendId": send["sendId"]})
    assert sorted(seen[3:], key=str) == sorted(
        [state("completed", "core", "approved"), lms], key=str
    )
    assert len(seen) == 5


async def owner_checks(gateway: httpx.AsyncClient, mid: int) -> None:
    theirs = await gateway.get(f"/myRequests/model/{mid}/timeline", headers=OTHER)
    missing = await gateway.get("/myRequests/model/99999/timeline", headers=OTHER)
    assert (theirs.status_code, missing.status_code) == (404, 404)
    assert theirs.json() == {"detail": f"my request model-{mid} not found"}
    assert missing.json() == {"detail": "my request model-99999 not found"}
    as_admin = await timeline(gateway, "model", mid, bearer())
    assert as_admin == await timeline(gateway, "model", mid)
    async with httpx.AsyncClient(base_url=gateway.base_url) as anonymous:
        assert (await anonymous.get(f"/myRequests/model/{mid}/timeline")).status_code == 401
    wrong_kind = await gateway.get(f"/myRequests/job/{mid}/timeline", headers=TEST)
    assert wrong_kind.status_code == 422 and wrong_kind.json()["errors"][0]["field"] == "path.kind"
    assert (await gateway.get("/myRequests/model/0/timeline", headers=TEST)).status_code == 422


async def notices_of_the_request(gateway: httpx.AsyncClient, mid: int, entries: list[Json]) -> None:
    query = {"requestKind": "model", "requestId": mid}

    async def all_sent() -> list[Json] | None:
        found = (await gateway.get("/notices", params=query, headers=TEST)).json()
        return found if len(found) == 4 and {n["status"] for n in found} == {"sent"} else None

    mine = await eventually(all_sent, what="the model's chat messages to be sent")
    states = [e for e in entries if e["kind"] == "state"]
    assert [n["eventId"] for n in mine] == [e["eventId"] for e in states]
    assert [n["eventType"] for n in mine] == [
        "Requested",
        "Approved",
        "StateChanged",
        "StateChanged",
    ]
    assert {(n["userId"], n["requestKind"], n["requestId"], n["attempts"]) for n in mine} == {
        ("test", "model", mid, 1)
    }
    moment = datetime.fromisoformat
    assert all(n["sentAt"] and moment(n["createdAt"]) <= moment(n["sentAt"]) for n in mine)
    assert mine[1]["text"] == f'Model request #{mid} "Churn" by test: requested → approved'
    assert (await gateway.get("/notices", params=query)).json() == mine  # an admin: all
    assert (await gateway.get("/notices", params=query, headers=OTHER)).json() == []
    peek = await gateway.get("/notices", params=query | {"userId": "test"}, headers=OTHER)
    assert peek.status_code == 403
    half = await gateway.get("/notices", params={"requestKind": "model"}, headers=TEST)
    assert half.status_code == 422 and half.json()["errors"][0]["field"] == "query.requestId"


async def replay_rebuilds_identical_timelines(
    platform: Platform, gateway: httpx.AsyncClient
) -> None:
    database = platform.databases["mypage_cqrs"]
    requests = (await gateway.get("/myRequests")).json()
    pages = {
        r["id"]: await timeline(gateway, r["kind"], r["requestId"], bearer()) for r in requests
    }
    rows = await timeline_rows(database)
    report = await rebuild(platform.settings("mypage_cqrs"))
    assert (
        report.timeline_entries == len(rows) and f"{len(rows)} timeline entries" in report.summary()
    )
    assert await timeline_rows(database) == rows
    for r in requests:
        assert await timeline(gateway, r["kind"], r["requestId"], bearer()) == pages[r["id"]]


async def cancelled_during_training(platform: Platform, gateway: httpx.AsyncClient) -> None:
    created = await gateway.post(
        "/models", json={"userId": "test", "modelName": "Doomed"}, headers=TEST
    )
    mid = created.json()["id"]
    assert (await gateway.put(f"/models/{mid}")).status_code == 200

    async def trained_a_step() -> bool:
        return (await gateway.get(f"/models/{mid}")).json()["step"] >= 1

    await eventually(trained_a_step, what="a first training step")
    cancelled = await gateway.put(
        f"/models/{mid}/cancel", json={"reason": "wrong data"}, headers=TEST
    )
    assert cancelled.status_code == 200

    async def stopped() -> list[Json] | None:
        found = (await timeline(gateway, "model", mid))["entries"]
        return found if found[-1]["kind"] == "job" else None

    entries = await eventually(stopped, what="the job to stop")
    job = (await job_of(gateway, "model", mid))["id"]
    seen = brief(entries)
    steps = [e for e in seen if e[0] in {"batch", "progress"}]
    done = len(steps) // 2
    assert 1 <= done < STEPS
    batches = [
        b for b in await simulator(platform, "/vertica/batches") if b["modelRequestId"] == mid
    ]
    assert steps == trained(job, batches[:done])
    assert [e for e in seen if e[0] not in {"batch", "progress"}] == [
        state("requested", "test"),
        state("approved", "admin", "requested"),
        state("inProgress", "core", "approved", step=1, totalSteps=STEPS, progress=25),
        ("state", "requestCanceled", "test", "wrong data", {"previousState": "inProgress"}),
        ("job", "canceled", "core", "wrong data", {"jobId": job}),
    ]
    assert not [e for e in seen if e[1] == "completed" or e[0] == "check"]
    assert seen.index(steps[-1]) < len(seen) - 1  # no step after the job stopped
