"""The MyRequest view on a real broker and database: built only from the three topics.

Events are published the way the services publish them (CloudEvents headers, keyed
by request id); what is asserted is what ``GET /myRequests`` answers and the rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from contracts import Event, core, model, target
from contracts.base import new_event_id
from mypage_cqrs.bootstrap import build
from mypage_cqrs.handlers import HANDLERS
from mypage_cqrs.settings import MypageCqrsSettings
from mypage_cqrs.tables import inbox, my_requests
from mypage_cqrs.view import MyRequest, event_time
from servicekit import metrics
from servicekit.consumer import applies
from servicekit.db import make_engine
from servicekit.runtime import ServiceRuntime
from tests.connected.services import running, settings_for
from tests.support import eventually, publish

pytestmark = pytest.mark.connected

T0 = 1_795_000_000_000  # ms
Json = dict[str, Any]


def at(s: int) -> int:
    return T0 + s * 1000


def m(cls: type[Event], id: int, s: int, state: str, name: str, **kw: Any) -> Event:
    kw.setdefault("user_id", "test")
    return cls(id=id, timestamp=at(s), state=state, model_name=name, **kw)


def changed(id: int, s: int, previous: str, state: str, step: int, name: str) -> Event:
    progress = 100 if state == "completed" else step * 100 // 3
    return model.StateChanged(
        id=id,
        timestamp=at(s),
        state=state,
        user_id="test",
        model_name=name,
        previous_state=previous,
        step=step,
        total_steps=3,
        progress=progress,
    )


def c(cls: type[Event], job: int, s: int, request: int, **kw: Any) -> Event:
    return cls(id=job, timestamp=at(s), request_id=str(request), **kw)


def tg(cls: type[Event], id: int, s: int, state: str, **kw: Any) -> Event:
    return cls(
        id=id,
        timestamp=at(s),
        state=state,
        user_id="test",
        type="segment",
        model_request_id=1,
        **kw,
    )


def trained(id: int, s: int, name: str) -> list[Event]:
    """A model request trained to completion in 3 steps (core's progress interleaved)."""
    return [
        m(model.Requested, id, s, "requested", name),
        m(model.Approved, id, s + 1, "approved", name),
        c(core.ModelProgressed, 10 + id, s + 2, id, step=1, total_steps=3),
        changed(id, s + 3, "approved", "inProgress", 1, name),
        c(core.ModelProgressed, 10 + id, s + 4, id, step=2, total_steps=3),
        changed(id, s + 5, "inProgress", "inProgress", 2, name),
        c(core.ModelProgressed, 10 + id, s + 6, id, step=3, total_steps=3),
        changed(id, s + 7, "inProgress", "inProgress", 3, name),
        c(core.ModelCompleted, 10 + id, s + 8, id),
        changed(id, s + 9, "inProgress", "completed", 3, name),
    ]


def saga_stream() -> list[Event]:
    cancelled = "requestCanceled"
    refusal = "completion refused: model request 4 is requestCanceled"
    return [
        *trained(1, 0, "TestModel5"),
        # Model 2: cancelled mid-training; core stops the job.
        m(model.Requested, 2, 10, "requested", "TestModel6"),
        m(model.Approved, 2, 11, "approved", "TestModel6"),
        c(core.ModelProgressed, 12, 12, 2, step=1, total_steps=3),
        changed(2, 13, "approved", "inProgress", 1, "TestModel6"),
        m(
            model.RequestCanceled,
            2,
            14,
            cancelled,
            "TestModel6",
            previous_state="inProgress",
            reason="no longer needed",
        ),
        c(core.JobCanceled, 12, 15, 2, type="model", reason="request cancelled"),
        # Target 1 on model 1: extracted, LMS sent.
        tg(target.TargetRequested, 1, 20, "requested"),
        tg(target.TargetApproved, 1, 21, "approved"),
        c(core.TargetCompleted, 13, 22, 1),
        tg(target.TargetStateChanged, 1, 23, "completed", previous_state="approved"),
        c(core.LmsSent, 13, 24, 1, midas_send_id="send-1"),
        # Model 4: the cancel raced core's completion; model refused the completion.
        m(model.Requested, 4, 30, "requested", "TestModel7"),
        m(model.Approved, 4, 31, "approved", "TestModel7"),
        c(core.ModelProgressed, 14, 32, 4, step=1, total_steps=3),
        changed(4, 33, "approved", "inProgress", 1, "TestModel7"),
        m(model.RequestCanceled, 4, 34, cancelled, "TestModel7", previous_state="inProgress"),
        c(core.ModelCompleted, 14, 35, 4),
        m(model.CompletionRefused, 4, 36, cancelled, "TestModel7", job_id=14, reason=refusal),
        c(core.JobCanceled, 14, 37, 4, type="model", reason=refusal),
        # Model 3: someone else's.
        m(model.Requested, 3, 40, "requested", "OtherModel", user_id="other"),
    ]


def row(id: str, s: int, updated: int, **kw: Any) -> Json:
    kind, request_id = id.split("-")
    base = {"id": id, "kind": kind, "requestId": int(request_id), "userId": "test"}
    base |= {"modelRequestId": None, "progress": 0, "step": 0, "totalSteps": 0}
    base |= {"reason": None, "lmsStatus": None}
    times = {"createdAt": event_time(at(s)), "updatedAt": event_time(at(updated))}
    return base | kw | times


EXPECTED = [
    row("model-1", 0, 9, name="TestModel5", state="completed", progress=100, step=3, totalSteps=3),
    row(
        "model-2",
        10,
        14,
        name="TestModel6",
        state="requestCanceled",
        progress=33,
        step=1,
        totalSteps=3,
        reason="no longer needed",
    ),
    row(
        "target-1",
        20,
        24,
        name="segment",
        modelRequestId=1,
        state="completed",
        progress=100,
        lmsStatus="sent",
    ),
    row(
        "model-4",
        30,
        36,
        name="TestModel7",
        state="requestCanceled",
        progress=33,
        step=1,
        totalSteps=3,
        reason="completion refused: model request 4 is requestCanceled",
    ),
]


def applied(events: list[Event]) -> int:
    """How many inbox rows these events leave: the ones mypage handles (row or timeline),
    not model's training steps (core's ModelProgressed brings them)."""
    return len(
        {e.event_id for e in events if type(e) in HANDLERS and applies(HANDLERS[type(e)], e)}
    )


async def caught_up(runtime: ServiceRuntime, inbox_rows: int) -> None:
    async def count() -> bool:
        async with runtime.engine.connect() as conn:
            return await conn.scalar(select(func.count()).select_from(inbox)) == inbox_rows

    await eventually(count, what=f"{inbox_rows} events applied")


def normalized(rows: list[Json]) -> list[Json]:
    return [
        r
        | {"createdAt": datetime.fromisoformat(r["createdAt"])}
        | {"updatedAt": datetime.fromisoformat(r["updatedAt"])}
        for r in rows
    ]


async def listed(client: httpx.AsyncClient, **params: Any) -> list[Json]:
    response = await client.get("/myRequests", params=params)
    assert response.status_code == 200, response.text
    return normalized(response.json())


async def view_rows(database_url: str) -> list[MyRequest]:
    """Every row of the live table, all columns, by id."""
    engine = make_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(my_requests))).mappings().all()
    finally:
        await engine.dispose()
    return sorted((MyRequest(**r) for r in rows), key=lambda r: r.id)


def mypage_settings(db: str, bootstrap: str) -> MypageCqrsSettings:
    return settings_for(MypageCqrsSettings, db, bootstrap)


async def test_the_view_shows_each_request_as_its_events_say(mypage_db: str, topics: str) -> None:
    async with running(build, mypage_settings(mypage_db, topics)) as (client, runtime):
        stream = saga_stream()
        await publish(topics, *stream)
        await caught_up(runtime, applied(stream))

        assert await listed(client, userId="test") == EXPECTED
        everyone = await listed(client)
        assert [r["id"] for r in everyone] == [
            "model-1",
            "model-2",
            "target-1",
            "model-4",
            "model-3",
        ]
        assert [r["id"] for r in await listed(client, limit=2, offset=1)] == ["model-2", "target-1"]
        one = await client.get("/myRequests/model-2")
        assert one.status_code == 200 and normalized([one.json()]) == [EXPECTED[1]]
        missing = await client.get("/myRequests/model-99")
        assert missing.status_code == 404
        assert missing.json() == {"detail": "my request model-99 not found"}
        assert (await client.get("/myRequests", params={"limit": 0})).status_code == 422


async def test_the_same_event_twice_changes_nothing(mypage_db: str, topics: str) -> None:
    async with running(build, mypage_settings(mypage_db, topics)) as (client, runtime):
        stream = saga_stream()
        await publish(topics, *stream)
        await caught_up(runtime, applied(stream))
        before = await view_rows(mypage_db)

        # Redelivered as is (same event ids): the inbox skips them.
        duplicates_before = duplicates_seen()
        await publish(topics, *stream)
        await eventually(
            lambda: _async(duplicates_seen() - duplicates_before == applied(stream)),
            what="redeliveries skipped",
        )
        # Published again under new ids (a producer resending): applied, and change nothing.
        again = [e.model_copy(update={"event_id": new_event_id()}) for e in stream]
        await publish(topics, *again)
        await caught_up(runtime, applied(stream) + applied(again))

        assert await view_rows(mypage_db) == before
        assert await listed(client, userId="test") == EXPECTED


async def test_events_out_of_order_end_in_the_same_row(mypage_db: str, topics: str) -> None:
    in_order, shuffled = trained(5, 50, "Same"), trained(6, 50, "Same")
    core_first = [e for e in shuffled if isinstance(e, core.CoreJobEvent)]
    rest_reversed = [e for e in reversed(shuffled) if e not in core_first]
    async with running(build, mypage_settings(mypage_db, topics)) as (client, runtime):
        await publish(topics, *in_order)
        # Core's progress before any of model's events: known, but not served yet.
        await publish(topics, *core_first)
        await caught_up(runtime, applied(in_order) + applied(core_first))
        assert (await client.get("/myRequests/model-6")).status_code == 404

        await publish(topics, *rest_reversed)  # completed first, Requested last
        await caught_up(runtime, applied(in_order) + applied(shuffled))
        five = normalized([(await client.get("/myRequests/model-5")).json()])[0]
        six = normalized([(await client.get("/myRequests/model-6")).json()])[0]

    assert six == five | {"id": "model-6", "requestId": 6}
    assert six == row(
        "model-6", 50, 59, name="Same", state="completed", progress=100, step=3, totalSteps=3
    )


def duplicates_seen() -> float:
    samples = metrics.EVENTS_CONSUMED.collect()[0].samples
    return sum(
        s.value
        for s in samples
        if s.name.endswith("_total")
        and s.labels["service"] == "mypage_cqrs"
        and s.labels["outcome"] == "duplicate"
    )


async def _async(value: bool) -> bool:
    return value
