"""Core's event handlers against a fake unit of work: which jobs exist, what is announced."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from contracts import Event
from contracts import model as model_events
from contracts import target as target_events
from core import handlers
from core.domain import Job, Kind, State
from servicekit.db import EventSource
from servicekit.http import NotFound
from servicekit.sql import ConditionFailed
from tests.unit.fakes import AfterCommit

POLICY = handlers.JobPolicy(
    training_steps=5, extraction_steps=2, max_attempts=3, lms_max_attempts=4
)


class FakeJobs:
    def __init__(self, track: Callable[[EventSource], None]) -> None:
        self.rows: dict[int, Job] = {}
        self.track = track
        self.ids = 0
        self.condition: tuple[Job, str, datetime] | None = None

    async def next_id(self) -> int:
        self.ids += 1
        return self.ids

    async def enqueue(self, job: Job) -> bool:
        if any((j.kind, j.request_id) == (job.kind, job.request_id) for j in self.rows.values()):
            return False
        self.rows[job.id] = job
        self.track(job)
        return True

    async def get(self, id: int, *, for_update: bool = True) -> Job | None:
        job = self.rows.get(id)
        if job is not None:
            self.track(job)
        return job

    async def get_for_request(
        self, kind: Kind, request_id: str, *, for_update: bool = True
    ) -> Job | None:
        found = [j for j in self.rows.values() if (j.kind, j.request_id) == (kind, request_id)]
        for job in found:
            self.track(job)
        return found[0] if found else None

    async def list(
        self,
        state: State | None,
        kind: Kind | None,
        limit: int,
        offset: int,
        *,
        user_id: str | None = None,
    ) -> list[Job]:
        return [
            j
            for j in self.rows.values()
            if (state is None or j.state == state)
            and (kind is None or j.kind == kind)
            and (user_id is None or j.user_id == user_id)
        ][offset : offset + limit]

    async def save(self, job: Job) -> None:
        self.track(job)
        self.rows[job.id] = job

    async def save_unchanged(self, job: Job, held_by: str, written_at: datetime) -> None:
        """Stored at the commit if the row is still as ``held_by`` wrote it (a condition)."""
        self.track(job)
        self.condition = (job, held_by, written_at)

    def store_if_unchanged(self) -> bool:
        if self.condition is None:
            return True
        (job, held_by, written_at), self.condition = self.condition, None
        row = self.rows.get(job.id)
        if row is None or row.state != State.RUNNING or row.lease_owner != held_by:
            return False
        if row.cancel_requested or row.updated_at != written_at:
            return False
        self.rows[job.id] = job
        return True


class FakeUnitOfWork(AfterCommit):
    """Rows in memory; ``outbox`` holds what a real commit would have written."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[EventSource] = []
        self.jobs = FakeJobs(self.seen.append)
        self.outbox: list[Event] = []

    async def __aenter__(self) -> FakeUnitOfWork:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.seen.clear()
        self.callbacks.clear()

    async def commit(self) -> None:
        self.committing()
        events = [event for aggregate in self.seen for event in aggregate.pull_events()]
        if not self.jobs.store_if_unchanged():
            raise ConditionFailed("the job changed")  # nothing stored, its events dropped
        self.outbox.extend(events)
        self.committed()


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


HANDLERS = handlers.event_handlers(POLICY)


async def deliver(uow: FakeUnitOfWork, event: Event) -> None:
    """What the consumer runtime does: the handler, then the commit."""
    await HANDLERS[type(event)](uow, event)
    await uow.commit()


def approved(id: int = 15) -> model_events.Approved:
    return model_events.Approved(id=id, state="approved", user_id="test", model_name="TestModel5")


def canceled(id: int = 15, reason: str | None = "changed my mind") -> model_events.RequestCanceled:
    return model_events.RequestCanceled(
        id=id,
        state="requestCanceled",
        user_id="test",
        model_name="TestModel5",
        previous_state="inProgress",
        reason=reason,
    )


async def test_approved_queues_one_training_job_even_when_delivered_twice(
    uow: FakeUnitOfWork,
) -> None:
    await deliver(uow, approved())
    await deliver(uow, approved())  # a redelivery under another event id
    [job] = uow.jobs.rows.values()
    assert (job.kind, job.request_id, job.user_id, job.name) == (
        Kind.MODEL,
        "15",
        "test",
        "TestModel5",
    )
    assert (job.state, job.total_steps, job.max_attempts, job.attempts) == (
        State.QUEUED,
        5,
        3,
        0,
    )
    assert uow.outbox == []


async def test_target_approved_queues_an_extraction_job(uow: FakeUnitOfWork) -> None:
    event = target_events.TargetApproved(
        id=4, state="approved", user_id="test", type="vip", model_request_id=15
    )
    await deliver(uow, event)
    [job] = uow.jobs.rows.values()
    assert (job.kind, job.request_id, job.name, job.total_steps) == (Kind.TARGET, "4", "vip", 2)
    assert job.params == {"modelRequestId": 15, "type": "vip"}


async def test_cancel_of_a_queued_job_ends_it_at_once(uow: FakeUnitOfWork) -> None:
    await deliver(uow, approved())
    await deliver(uow, canceled())
    [job] = uow.jobs.rows.values()
    assert (job.state, job.reason) == (State.CANCELED, "changed my mind")
    assert [(e.event_type(), e.reason) for e in uow.outbox] == [("JobCanceled", "changed my mind")]


async def test_cancel_of_a_running_job_is_left_for_its_next_step(uow: FakeUnitOfWork) -> None:
    await deliver(uow, approved())
    [job] = uow.jobs.rows.values()
    job.claim("w", job.created_at, 10)
    await deliver(uow, canceled(reason=None))
    assert (job.state, job.cancel_requested) == (State.RUNNING, True)
    assert job.reason == "model request 15 was cancelled"
    assert uow.outbox == []


async def test_cancel_without_a_job_and_cancel_of_a_finished_job_change_nothing(
    uow: FakeUnitOfWork,
) -> None:
    await deliver(uow, canceled(id=99))
    assert uow.jobs.rows == {} and uow.outbox == []

    await deliver(uow, approved())
    [job] = uow.jobs.rows.values()
    job.claim("w", job.created_at, 10)
    job.complete(job.created_at)
    job.pull_events()
    await deliver(uow, canceled())
    assert job.state == State.COMPLETED and uow.outbox == []


async def test_target_canceled_cancels_the_extraction(uow: FakeUnitOfWork) -> None:
    common = {"id": 4, "user_id": "test", "type": "vip", "model_request_id": 15}
    await deliver(uow, target_events.TargetApproved(state="approved", **common))
    await deliver(
        uow,
        target_events.TargetCanceled(
            state="canceled", previous_state="approved", reason="model cancelled", **common
        ),
    )
    [job] = uow.jobs.rows.values()
    assert (job.state, job.reason) == (State.CANCELED, "model cancelled")
    assert [(e.event_type(), e.type) for e in uow.outbox] == [("JobCanceled", "target")]


async def test_a_refused_completion_turns_the_completed_job_into_a_cancelled_one(
    uow: FakeUnitOfWork,
) -> None:
    await deliver(uow, approved())
    [job] = uow.jobs.rows.values()
    job.claim("w", job.created_at, 10)
    job.complete(job.created_at)
    job.pull_events()
    refused = model_events.CompletionRefused(
        id=15,
        state="requestCanceled",
        user_id="test",
        model_name="TestModel5",
        job_id=job.id,
        reason="completion refused: model request 15 is requestCanceled",
    )
    await deliver(uow, refused)
    await deliver(uow, refused)
    assert (job.state, job.reason) == (
        State.CANCELED,
        f"cancelled after completing: {refused.reason}",
    )
    assert [e.event_type() for e in uow.outbox] == ["JobCanceled"]


async def test_queries_answer_jobs_and_not_found(uow: FakeUnitOfWork) -> None:
    await deliver(uow, approved(1))
    await deliver(uow, approved(2))
    assert [j.request_id for j in await handlers.list_jobs(uow, None, None, Kind.MODEL, 10, 1)] == [
        "2"
    ]
    assert (await handlers.get(uow, 1)).request_id == "1"
    with pytest.raises(NotFound, match="job 42 not found"):
        await handlers.get(uow, 42)
