"""Target handlers against a fake unit of work: what is stored and what is announced."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import pytest

from contracts import Event
from contracts import model as model_events
from contracts.core import TargetCompleted, TargetFailed
from servicekit.db import EventSource
from servicekit.http import NotFound
from servicekit.statemachine import IllegalTransition
from target import handlers
from target.domain import ModelGone, ModelNotCompleted, ModelRecord, State, TargetRequest
from target.model_view import ModelAnswer
from tests.unit.fakes import AfterCommit


class FakeTargets:
    def __init__(self, track: Callable[[EventSource], None]) -> None:
        self.rows: dict[int, TargetRequest] = {}
        self.track = track

    async def next_id(self) -> int:
        return len(self.rows) + 1

    async def get(self, id: int, *, for_update: bool = True) -> TargetRequest | None:
        req = self.rows.get(id)
        if req is not None:
            self.track(req)
        return req

    async def list(self, user_id: str | None, limit: int, offset: int) -> list[TargetRequest]:
        found = [r for r in self.rows.values() if user_id is None or r.user_id == user_id]
        return found[offset : offset + limit]

    async def open_for_model(self, model_request_id: int) -> list[TargetRequest]:
        found = [
            r
            for r in self.rows.values()
            if r.model_request_id == model_request_id
            and r.state in (State.REQUESTED, State.APPROVED)
        ]
        for r in found:
            self.track(r)
        return found

    async def save(self, req: TargetRequest) -> None:
        self.track(req)
        self.rows[req.id] = req


class FakeModels:
    def __init__(self) -> None:
        self.rows: dict[int, ModelRecord] = {}
        self.locks: list[tuple[int, bool]] = []

    async def lock(self, model_request_id: int, *, shared: bool = False) -> None:
        self.locks.append((model_request_id, shared))

    async def get(self, model_request_id: int) -> ModelRecord | None:
        row = self.rows.get(model_request_id)
        return dataclasses.replace(row) if row else None

    async def states(self, model_request_ids: Iterable[int]) -> dict[int, str]:
        return {i: self.rows[i].state for i in model_request_ids if i in self.rows}

    async def save(self, record: ModelRecord) -> None:
        self.rows[record.model_request_id] = record


class FakeUnitOfWork(AfterCommit):
    """Keeps rows in memory; ``outbox`` holds what a real commit would have written."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[EventSource] = []
        self.targets = FakeTargets(self.seen.append)
        self.models = FakeModels()
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
        self.seen.clear()
        self.commits += 1
        self.committed()


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


def model_event(
    kind: type[model_events.ModelRequestEvent], id: int, state: str, **extra: object
) -> model_events.ModelRequestEvent:
    return kind(id=id, state=state, user_id="test", model_name="M", **extra)


async def consume(uow: FakeUnitOfWork, event: Event) -> None:
    """What the consumer runtime does: the handler, then the unit of work's commit."""
    await handlers.HANDLERS[type(event)](uow, event)
    await uow.commit()


async def completed_model(uow: FakeUnitOfWork, id: int = 1) -> None:
    await consume(uow, model_event(model_events.Requested, id, "requested"))
    await consume(uow, model_event(model_events.Approved, id, "approved"))
    await consume(
        uow, model_event(model_events.StateChanged, id, "completed", previous_state="inProgress")
    )


def types(events: list[Event]) -> list[str]:
    return [e.event_type() for e in events]


async def test_a_target_is_accepted_while_its_model_is_unknown(uow: FakeUnitOfWork) -> None:
    view = await handlers.request_target(uow, "test", "vip", 1, any_model=True)
    assert view.model_state is None and view.target.state == State.REQUESTED
    assert types(uow.outbox) == ["TargetRequested"]
    assert uow.models.locks == [(1, True)]


async def test_a_user_asks_for_targets_of_their_own_models_only(uow: FakeUnitOfWork) -> None:
    await completed_model(uow, 1)  # test's model (model_event names user "test")
    assert uow.models.rows[1].user_id == "test"
    mine = await handlers.request_target(uow, "test", "vip", 1)
    assert (mine.target.user_id, mine.model_state) == ("test", "completed")
    outbox = list(uow.outbox)

    with pytest.raises(NotFound) as foreign:
        await handlers.request_target(uow, "bob", "vip", 1)
    with pytest.raises(NotFound) as missing:
        await handlers.request_target(uow, "bob", "vip", 99)
    assert (str(foreign.value), str(missing.value)) == (
        "model request 1 not found",
        "model request 99 not found",
    )
    assert len(uow.targets.rows) == 1 and uow.outbox == outbox


@pytest.mark.parametrize("state", ["requestCanceled", "rejected", "failed"])
async def test_another_users_gone_model_tells_nothing_of_its_state(
    uow: FakeUnitOfWork, state: str
) -> None:
    uow.models.rows[1] = ModelRecord(1, state, user_id="alice")
    with pytest.raises(NotFound, match="model request 1 not found"):
        await handlers.request_target(uow, "bob", "vip", 1)
    with pytest.raises(ModelGone):  # alice herself learns why
        await handlers.request_target(uow, "alice", "vip", 1)


async def test_a_model_recorded_without_its_owner_learns_it_from_the_next_event(
    uow: FakeUnitOfWork,
) -> None:
    uow.models.rows[1] = ModelRecord(1, "completed")  # recorded before owners were kept
    with pytest.raises(NotFound):
        await handlers.request_target(uow, "test", "vip", 1)
    late = model_event(model_events.StateChanged, 1, "completed", previous_state="inProgress")
    await consume(uow, late)
    assert (uow.models.rows[1].user_id, uow.models.rows[1].state) == ("test", "completed")
    assert (await handlers.request_target(uow, "test", "vip", 1)).model_state == "completed"


@pytest.mark.parametrize("state", ["requestCanceled", "rejected", "failed"])
async def test_a_target_of_a_model_that_will_never_complete_is_refused(
    uow: FakeUnitOfWork, state: str
) -> None:
    uow.models.rows[1] = ModelRecord(1, state)
    with pytest.raises(ModelGone, match=f"model request 1: the model request is {state}"):
        await handlers.request_target(uow, "test", "vip", 1, any_model=True)
    assert uow.targets.rows == {} and uow.outbox == [] and uow.commits == 0


async def test_approval_is_refused_until_the_model_completed(uow: FakeUnitOfWork) -> None:
    id = (await handlers.request_target(uow, "test", "vip", 1, any_model=True)).target.id
    with pytest.raises(ModelNotCompleted, match="model request 1 is unknown to target yet"):
        await handlers.approve(uow, id)

    await consume(uow, model_event(model_events.Requested, 1, "requested"))
    await consume(uow, model_event(model_events.Approved, 1, "approved"))
    await consume(
        uow,
        model_event(model_events.StateChanged, 1, "inProgress", previous_state="approved"),
    )
    with pytest.raises(
        ModelNotCompleted,
        match="cannot approve target request 1: its model request 1 is inProgress, not completed",
    ):
        await handlers.approve(uow, id)
    assert uow.targets.rows[id].state == State.REQUESTED

    await consume(
        uow, model_event(model_events.StateChanged, 1, "completed", previous_state="inProgress")
    )
    view = await handlers.approve(uow, id)
    assert (view.target.state, view.model_state) == (State.APPROVED, "completed")
    assert types(uow.outbox) == ["TargetRequested", "TargetApproved"]


def model_answers(state: str | None) -> handlers.AskModel:
    """model's answer to ``GET /models/{id}`` (None: no answer), and who asked."""

    async def ask(model_request_id: int) -> ModelAnswer | None:
        asked.append(model_request_id)
        return None if state is None else ModelAnswer(state, "test")

    asked: list[int] = []
    ask.asked = asked  # type: ignore[attr-defined]
    return ask


async def test_an_approval_ahead_of_the_events_takes_models_completed_answer(
    uow: FakeUnitOfWork,
) -> None:
    await consume(uow, model_event(model_events.Requested, 1, "requested"))
    id = (await handlers.request_target(uow, "test", "vip", 1)).target.id
    view = await handlers.approve(uow, id, "admin", model_answers("completed"))
    assert (view.target.state, view.model_state) == (State.APPROVED, "completed")
    assert uow.models.rows[1].state == "completed"  # recorded: the late event changes nothing
    assert types(uow.outbox) == ["TargetRequested", "TargetApproved"]


async def test_an_approval_asks_model_only_while_its_record_is_behind(
    uow: FakeUnitOfWork,
) -> None:
    id = (await handlers.request_target(uow, "test", "vip", 1, any_model=True)).target.id
    for answer in (None, "inProgress"):  # no answer, or not completed: refused as before
        ask = model_answers(answer)
        with pytest.raises(ModelNotCompleted):
            await handlers.approve(uow, id, "admin", ask)
        assert ask.asked == [1]  # type: ignore[attr-defined]
    assert uow.targets.rows[id].state == State.REQUESTED and 1 not in uow.models.rows

    await consume(
        uow,
        model_event(model_events.RequestCanceled, 1, "requestCanceled", previous_state="requested"),
    )
    ask = model_answers("completed")  # target knows the model is gone: model is not asked
    with pytest.raises(ModelGone):
        await handlers.request_target(uow, "test", "vip", 1)
    with pytest.raises(IllegalTransition):  # cancelled by compensation
        await handlers.approve(uow, id, "admin", ask)
    assert ask.asked == []  # type: ignore[attr-defined]


async def test_compensation_cancels_the_open_targets_of_that_model_only(
    uow: FakeUnitOfWork,
) -> None:
    await completed_model(uow, 1)
    requested = (await handlers.request_target(uow, "a", "t", 1, any_model=True)).target.id
    approved = (await handlers.request_target(uow, "b", "t", 1, any_model=True)).target.id
    completed = (await handlers.request_target(uow, "c", "t", 1, any_model=True)).target.id
    other_model = (await handlers.request_target(uow, "d", "t", 2, any_model=True)).target.id
    await handlers.approve(uow, approved)
    await handlers.approve(uow, completed)
    await consume(uow, TargetCompleted(id=9, request_id=str(completed)))
    # Model's states cannot leave completed; force one that does, to see compensation alone.
    uow.models.rows[1] = ModelRecord(1, "inProgress")
    before = len(uow.outbox)

    await consume(
        uow,
        model_event(model_events.RequestCanceled, 1, "requestCanceled", previous_state="approved"),
    )

    rows = uow.targets.rows
    assert [rows[i].state for i in (requested, approved, completed, other_model)] == [
        State.CANCELED,
        State.CANCELED,
        State.COMPLETED,
        State.REQUESTED,
    ]
    assert rows[requested].reason == "model request 1 was requestCanceled"
    cancelled = uow.outbox[before:]
    assert types(cancelled) == ["TargetCanceled", "TargetCanceled"]
    assert [(e.id, e.previous_state, e.reason) for e in cancelled] == [
        (requested, "requested", "model request 1 was requestCanceled"),
        (approved, "approved", "model request 1 was requestCanceled"),
    ]
    assert {e.actor for e in cancelled} == {"target"}  # the saga's compensation, not a user


@pytest.mark.parametrize(
    ("kind", "state", "extra"),
    [
        (model_events.Rejected, "rejected", {"reason": "no budget"}),
        (model_events.StateChanged, "failed", {"previous_state": "inProgress", "reason": "x"}),
        (
            model_events.CompletionRefused,
            "requestCanceled",
            {"job_id": 3, "reason": "completion refused"},
        ),
    ],
)
async def test_every_model_that_will_never_complete_compensates(
    uow: FakeUnitOfWork, kind: type[model_events.ModelRequestEvent], state: str, extra: dict
) -> None:
    id = (await handlers.request_target(uow, "a", "t", 1, any_model=True)).target.id
    await consume(uow, model_event(kind, 1, state, **extra))
    assert uow.targets.rows[id].state == State.CANCELED
    assert uow.targets.rows[id].reason == f"model request 1 was {state}"
    assert uow.models.rows[1].state == state


async def test_a_late_progress_event_does_not_revive_a_cancelled_model(
    uow: FakeUnitOfWork,
) -> None:
    await consume(
        uow,
        model_event(
            model_events.RequestCanceled, 1, "requestCanceled", previous_state="inProgress"
        ),
    )
    await consume(
        uow, model_event(model_events.StateChanged, 1, "inProgress", previous_state="approved")
    )
    assert uow.models.rows[1].state == "requestCanceled"


async def test_a_late_completion_of_a_cancelled_target_changes_nothing(
    uow: FakeUnitOfWork,
) -> None:
    await completed_model(uow)
    id = (await handlers.request_target(uow, "a", "t", 1, any_model=True)).target.id
    await handlers.approve(uow, id)
    await handlers.cancel(uow, id, "not needed")
    before = len(uow.outbox)
    refused = handlers.CORE_EVENTS_REFUSED.labels("TargetCompleted", "canceled")
    count = refused._value.get()

    await consume(uow, TargetCompleted(id=9, request_id=str(id)))

    req = uow.targets.rows[id]
    assert (req.state, req.reason) == (State.CANCELED, "not needed")
    assert uow.outbox[before:] == []
    assert refused._value.get() == count + 1


async def test_core_completion_and_failure_announce_state_changed(uow: FakeUnitOfWork) -> None:
    await completed_model(uow)
    done = (await handlers.request_target(uow, "a", "t", 1, any_model=True)).target.id
    failed = (await handlers.request_target(uow, "a", "t", 1, any_model=True)).target.id
    for id in (done, failed):
        await handlers.approve(uow, id)
    before = len(uow.outbox)

    await consume(uow, TargetCompleted(id=9, request_id=str(done)))
    await consume(uow, TargetFailed(id=10, request_id=str(failed), reason="vertica down"))

    assert [(e.event_type(), e.state, e.reason) for e in uow.outbox[before:]] == [
        ("TargetStateChanged", "completed", None),
        ("TargetStateChanged", "failed", "vertica down"),
    ]
    assert uow.targets.rows[failed].reason == "vertica down"


@pytest.mark.parametrize("request_id", ["99", "not-a-number"])
async def test_core_event_for_an_unknown_target_changes_nothing(
    uow: FakeUnitOfWork, request_id: str
) -> None:
    refused = handlers.CORE_EVENTS_REFUSED.labels("TargetCompleted", "unknown")
    count = refused._value.get()
    await consume(uow, TargetCompleted(id=1, request_id=request_id))
    assert uow.targets.rows == {} and uow.outbox == []
    assert refused._value.get() == count + 1


async def test_unknown_target_is_not_found_and_nothing_committed(uow: FakeUnitOfWork) -> None:
    with pytest.raises(NotFound, match="target request 42 not found"):
        await handlers.cancel(uow, 42)
    assert uow.commits == 0 and uow.outbox == []


async def test_illegal_action_commits_nothing(uow: FakeUnitOfWork) -> None:
    id = (await handlers.request_target(uow, "a", "t", 1, any_model=True)).target.id
    await handlers.reject(uow, id, "no budget")
    with pytest.raises(IllegalTransition, match="cannot cancel target request 1: it is rejected"):
        await handlers.cancel(uow, id)
    assert types(uow.outbox) == ["TargetRequested", "TargetRejected"]
    assert uow.commits == 2


async def test_list_shows_each_target_with_its_model_state(uow: FakeUnitOfWork) -> None:
    await completed_model(uow, 1)
    await handlers.request_target(uow, "a", "t", 1, any_model=True)
    await handlers.request_target(uow, "b", "t", 2, any_model=True)
    views = await handlers.list_targets(uow, None, 10, 0)
    assert [(v.target.user_id, v.model_state) for v in views] == [("a", "completed"), ("b", None)]
    assert [v.target.user_id for v in await handlers.list_targets(uow, "b", 10, 0)] == ["b"]
