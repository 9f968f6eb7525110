"""Stalled sagas: found from the read model once they stood still for the configured
time, counted in a gauge, listed for admins and by ``nocode status``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from contracts import model, target
from mypage_cqrs.bootstrap import build
from mypage_cqrs.settings import MypageCqrsSettings
from nocode import status
from tests.connected.services import running, settings_for
from tests.support import bearer, eventually, publish

pytestmark = pytest.mark.connected

STALL_AFTER_S = 3.0


def m(id: int, name: str) -> dict[str, Any]:
    return {"id": id, "user_id": "test", "model_name": name}


def in_training(id: int, name: str, step: int) -> model.StateChanged:
    return model.StateChanged(
        **m(id, name), state="inProgress", previous_state="approved", step=step, total_steps=3
    )


async def gauge(client: httpx.AsyncClient) -> dict[tuple[str, str], float]:
    found = {}
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith("saga_stalled_requests{"):
            labels, value = line.rsplit(" ", 1)
            flow = labels.split('flow="')[1].split('"')[0]
            reason = labels.split('reason="')[1].split('"')[0]
            found[(flow, reason)] = float(value)
    return found


async def test_sagas_standing_still_past_the_configured_time_are_stalled(
    mypage_db: str, topics: str
) -> None:
    settings = settings_for(
        MypageCqrsSettings,
        mypage_db,
        topics,
        saga_stall_after_s=STALL_AFTER_S,
        stall_check_interval_s=0.2,
    )
    t = {"user_id": "test", "type": "vip"}
    async with running(build, settings) as (client, _):
        # 4: waits on an admin (requested): never stalled. Also: the consumer is running.
        await publish(topics, model.Requested(**m(4, "Waiting"), state="requested"))
        await eventually(lambda: _rows(client, 1), what="the consumer", timeout_s=20)
        started = time.monotonic()
        await publish(
            topics,
            # 1: approved, no job ever starts.
            model.Requested(**m(1, "NoJob"), state="requested"),
            model.Approved(**m(1, "NoJob"), state="approved", previous_state="requested"),
            # 2: every step done, no outcome.
            model.Requested(**m(2, "NoOutcome"), state="requested"),
            model.Approved(**m(2, "NoOutcome"), state="approved", previous_state="requested"),
            in_training(2, "NoOutcome", 3),
            # 3: completed; its target 10 approved and never extracted.
            model.Requested(**m(3, "Done"), state="requested"),
            model.StateChanged(
                **m(3, "Done"),
                state="completed",
                previous_state="inProgress",
                step=3,
                total_steps=3,
                progress=100,
            ),
            target.TargetRequested(id=10, model_request_id=3, state="requested", **t),
            target.TargetApproved(
                id=10, model_request_id=3, state="approved", previous_state="requested", **t
            ),
            # 5: approved, and will complete before the time runs out.
            model.Requested(**m(5, "Moving"), state="requested"),
            model.Approved(**m(5, "Moving"), state="approved", previous_state="requested"),
        )
        await eventually(
            lambda: _rows(client, 6), what="the six requests in the view", timeout_s=20
        )
        early = (await client.get("/myRequests/ops/stalls")).json()
        early_s = time.monotonic() - started
        await asyncio.sleep(STALL_AFTER_S / 2)
        await publish(
            topics,
            model.StateChanged(
                **m(5, "Moving"),
                state="completed",
                previous_state="approved",
                step=3,
                total_steps=3,
                progress=100,
            ),
        )

        async def three_stalled() -> list[dict[str, Any]] | None:
            found = (await client.get("/myRequests/ops/stalls")).json()
            return found if len(found) >= 3 else None

        stalls = await eventually(three_stalled, what="the stalls", timeout_s=20)
        await asyncio.sleep(0.5)  # the watch has counted them by now
        counted = await gauge(client)
        as_user = await client.get("/myRequests/ops/stalls", headers=bearer("test"))
        # What `nocode status` gathers and prints (its own token, the platform's URLs).
        token = bearer()["Authorization"].removeprefix("Bearer ")
        snapshot = await status.gather({"mypage_cqrs": str(client.base_url)}, stall_token=token)
        screen = status.render(snapshot)

    assert early_s < STALL_AFTER_S and early == []  # not before the configured time
    by_id = {s["id"]: s["reason"] for s in stalls}
    print(f"stalled: {by_id}; gauge: {counted}")
    assert by_id == {
        "model-1": "approved_no_job",
        "model-2": "job_finished_no_outcome",
        "target-10": "target_not_moving",
    }
    assert all(s["stalledForS"] >= STALL_AFTER_S for s in stalls)
    assert counted[("model", "approved_no_job")] == 1
    assert counted[("model", "job_finished_no_outcome")] == 1
    assert counted[("target", "target_not_moving")] == 1
    assert counted[("model", "job_silent")] == 0 and counted[("target", "lms_no_outcome")] == 0
    assert as_user.status_code == 403
    assert "3 sagas stalled" in screen
    for id, reason in by_id.items():
        assert f"{id} {reason}" in screen


async def _rows(client: httpx.AsyncClient, n: int) -> bool:
    return len((await client.get("/myRequests")).json()) == n
