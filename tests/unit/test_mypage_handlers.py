"""mypage handlers against a fake unit of work: what is written, what is served."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from contracts import Event, core, model
from contracts.topics import EVENT_TOPICS
from mypage_cqrs import handlers
from mypage_cqrs.timeline import Entry
from mypage_cqrs.view import MyRequest
from servicekit.http import NotFound


class FakeRepository:
    def __init__(self) -> None:
        self.rows: dict[str, MyRequest] = {}
        self.writes = 0

    async def get(self, id: str, *, for_update: bool = False) -> MyRequest | None:
        return self.rows.get(id)

    async def add_if_absent(self, row: MyRequest) -> bool:
        if row.id in self.rows:
            return False
        self.rows[row.id] = row
        self.writes += 1
        return True

    async def update(self, row: MyRequest) -> None:
        self.rows[row.id] = row
        self.writes += 1

    async def list(self, user_id: str | None, limit: int, offset: int) -> list[MyRequest]:
        rows = [r for r in self.rows.values() if r.visible]
        rows = [r for r in rows if user_id is None or r.user_id == user_id]
        return sorted(rows, key=lambda r: (r.created_at, r.id))[offset : offset + limit]


class FakeTimeline:
    def __init__(self) -> None:
        self.entries: dict[tuple[str, int], Entry] = {}

    async def add(self, entries: Iterable[Entry]) -> None:
        for e in entries:
            self.entries.setdefault(e.key, e)

    async def of(self, request: str) -> list[Entry]:
        return [e for e in self.entries.values() if e.request == request]


class FakeUnitOfWork:
    def __init__(self) -> None:
        self.requests = FakeRepository()
        self.timeline = FakeTimeline()

    async def __aenter__(self) -> FakeUnitOfWork:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def commit(self) -> None:
        pass


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


def requested(id: int, user: str = "test", ts: int = 1_000) -> model.Requested:
    return model.Requested(id=id, timestamp=ts, state="requested", user_id=user, model_name="M")


async def test_first_event_inserts_then_events_merge(uow: FakeUnitOfWork) -> None:
    await handlers.on_event(uow, requested(1))
    approved = model.Approved(
        id=1, timestamp=2_000, state="approved", user_id="test", model_name="M"
    )
    await handlers.on_event(uow, approved)
    row = await handlers.get(uow, "model-1")
    assert (row.state, row.user_id, row.name) == ("approved", "test", "M")
    assert uow.requests.writes == 2


async def test_a_duplicate_or_stale_event_writes_nothing(uow: FakeUnitOfWork) -> None:
    event = requested(1)
    await handlers.on_event(uow, event)
    await handlers.on_event(uow, event)
    await handlers.on_event(uow, event.model_copy(update={"event_id": "again"}))
    assert uow.requests.writes == 1


async def test_core_completions_change_no_row_but_enter_the_timeline(uow: FakeUnitOfWork) -> None:
    await handlers.on_event(uow, core.ModelCompleted(id=5, request_id="1"))
    await handlers.on_event(uow, core.JobCanceled(id=5, type="model", request_id="1", reason="x"))
    assert uow.requests.writes == 0 and uow.requests.rows == {}
    kinds = sorted((e.event_type, e.kind) for e in uow.timeline.entries.values())
    assert kinds == [("JobCanceled", "job"), ("ModelCompleted", "check")]


async def test_timeline_of_a_served_request_in_order_and_404_otherwise(
    uow: FakeUnitOfWork,
) -> None:
    approved = model.Approved(
        id=1, timestamp=2_000, state="approved", user_id="test", model_name="M", actor="boss"
    )
    await handlers.on_event(uow, approved)  # before its Requested: order does not matter
    await handlers.on_event(uow, requested(1))
    await handlers.on_event(uow, approved)  # twice: one entry
    row, entries = await handlers.request_timeline(uow, "model", 1)
    assert row.state == "approved"
    assert [(e.state, e.actor) for e in entries] == [("requested", "test"), ("approved", "boss")]
    await handlers.on_event(uow, core.ModelProgressed(id=5, request_id="2", step=1, total_steps=4))
    for kind, id in [("model", 2), ("target", 1), ("model", 9)]:
        with pytest.raises(NotFound, match=f"my request {kind}-{id} not found"):
            await handlers.request_timeline(uow, kind, id)


async def test_a_row_known_only_from_core_is_not_served(uow: FakeUnitOfWork) -> None:
    await handlers.on_event(uow, core.ModelProgressed(id=5, request_id="1", step=1, total_steps=4))
    assert "model-1" in uow.requests.rows
    with pytest.raises(NotFound, match="my request model-1 not found"):
        await handlers.get(uow, "model-1")
    assert await handlers.list_requests(uow, None, 10, 0) == []


async def test_list_is_per_user_oldest_first(uow: FakeUnitOfWork) -> None:
    for id, user, ts in [(3, "test", 3_000), (1, "test", 1_000), (2, "other", 2_000)]:
        await handlers.on_event(uow, requested(id, user, ts))
    mine = await handlers.list_requests(uow, "test", 10, 0)
    assert [r.id for r in mine] == ["model-1", "model-3"]
    everyone = await handlers.list_requests(uow, None, 2, 1)
    assert [r.id for r in everyone] == ["model-2", "model-3"]


def test_handlers_cover_every_event_type_of_the_three_topics() -> None:
    names = {c.event_type() for c in handlers.HANDLERS}
    assert {"Requested", "StateChanged", "CompletionRefused", "TargetStateChanged"} <= names
    assert {"ModelProgressed", "LmsSent", "LmsFailed", "ModelCompleted", "JobCanceled"} <= names
    topics = {c.event_type() for c in Event.registry.values() if c.topic in EVENT_TOPICS}
    assert names == topics
