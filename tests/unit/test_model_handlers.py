"""Model handlers against a fake unit of work: what is stored and what is announced."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from contracts import Event
from contracts.core import ModelCompleted, ModelFailed, ModelProgressed
from model import handlers
from model.domain import ModelRequest, State
from servicekit.db import EventSource
from servicekit.http import NotFound
from servicekit.statemachine import IllegalTransition
from tests.unit.fakes import AfterCommit


class FakeRepository:
    def __init__(self, track: Callable[[EventSource], None]) -> None:
        self.rows: dict[int, ModelRequest] = {}
        self.track = track

    async def next_id(self) -> int:
        return len(self.rows) + 1

    async def get(self, id: int, *, for_update: bool = True) -> ModelRequest | None:
        req = self.rows.get(id)
        if req is not None:
            self.track(req)
        return req

    async def list(self, user_id: str | None, limit: int, offset: int) -> list[ModelRequest]:
        return list(self.rows.values())[offset : offset + limit]

    async def save(self, req: ModelRequest) -> None:
        self.track(req)
        self.rows[req.id] = req


class FakeUnitOfWork(AfterCommit):
    """Keeps rows in memory; ``outbox`` holds what a real commit would have written."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[EventSource] = []
        self.requests = FakeRepository(self.seen.append)
        self.outbox: list[Event] = []
        self.commits = 0

    async def __aenter__(self) -> FakeUnitOfWork:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.seen.clear()
        self.callbacks.clear()

    async def commit(self) -> None:
        self.committing()
        for aggregate in self.seen:
            self.outbox.extend(aggregate.pull_events())
        self.commits += 1
        self.committed()


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


async def test_request_then_approve_announces_both(uow: FakeUnitOfWork) -> None:
    req = await handlers.request_model(uow, "test", "TestModel10")
    await handlers.approve(uow, req.id)
    assert uow.requests.rows[req.id].state == State.APPROVED
    assert [e.event_type() for e in uow.outbox] == ["Requested", "Approved"]
    assert uow.commits == 2


async def test_approve_reject_and_cancel_name_who_did_it(uow: FakeUnitOfWork) -> None:
    one = await handlers.request_model(uow, "test", "A")
    two = await handlers.request_model(uow, "test", "B")
    await handlers.approve(uow, one.id, "boss")
    await handlers.cancel(uow, one.id, "not needed", "test")
    await handlers.reject(uow, two.id, "no budget", "boss")
    said = [(e.event_type(), getattr(e, "actor", None)) for e in uow.outbox[2:]]
    assert said == [("Approved", "boss"), ("RequestCanceled", "test"), ("Rejected", "boss")]


async def test_unknown_request_is_not_found_and_nothing_committed(uow: FakeUnitOfWork) -> None:
    with pytest.raises(NotFound, match="model request 42 not found"):
        await handlers.cancel(uow, 42)
    assert uow.commits == 0 and uow.outbox == []


async def test_illegal_action_commits_nothing(uow: FakeUnitOfWork) -> None:
    req = await handlers.request_model(uow, "test", "m")
    await handlers.reject(uow, req.id, "no budget")
    with pytest.raises(IllegalTransition, match="cannot approve model request 1: it is rejected"):
        await handlers.approve(uow, req.id)
    assert [e.event_type() for e in uow.outbox] == ["Requested", "Rejected"]
    assert uow.commits == 2


async def test_core_completion_of_a_cancelled_request_is_refused(uow: FakeUnitOfWork) -> None:
    req = await handlers.request_model(uow, "test", "m")
    await handlers.approve(uow, req.id)
    await handlers.on_progress(uow, ModelProgressed(id=1, request_id="1", step=1, total_steps=3))
    await handlers.cancel(uow, req.id)
    before = len(uow.outbox)

    await handlers.on_completed(uow, ModelCompleted(id=1, request_id="1"))
    await uow.commit()  # the consumer runtime commits after the handler

    assert uow.requests.rows[1].state == State.CANCELED
    compensation = uow.outbox[before:]
    assert [e.event_type() for e in compensation] == ["CompletionRefused"]
    assert compensation[0].to_value() | {"timestamp": 0} == {
        "eventType": "CompletionRefused",
        "timestamp": 0,
        "id": 1,
        "state": "requestCanceled",
        "userId": "test",
        "modelName": "m",
        "jobId": 1,
        "reason": "completion refused: model request 1 is requestCanceled",
    }


async def test_a_late_failure_of_a_cancelled_request_announces_nothing(
    uow: FakeUnitOfWork,
) -> None:
    req = await handlers.request_model(uow, "test", "m")
    await handlers.cancel(uow, req.id)
    before = len(uow.outbox)
    await handlers.on_failed(uow, ModelFailed(id=1, request_id="1", reason="boom"))
    await uow.commit()
    assert uow.requests.rows[1].state == State.CANCELED and len(uow.outbox) == before


async def test_core_event_for_an_unknown_request_changes_nothing(uow: FakeUnitOfWork) -> None:
    await handlers.on_completed(uow, ModelCompleted(id=1, request_id="99"))
    assert uow.requests.rows == {} and uow.outbox == []
