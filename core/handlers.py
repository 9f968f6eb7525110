"""What core does with the events it consumes, and the queries behind its API.

Event handlers run inside the consumer's unit of work (the runtime commits it, with
the inbox row that makes a redelivery a no-op); the ``(kind, request_id)`` unique key
makes a second Approved for the same request a no-op too. Metrics count a change once
that transaction committed, so a retried event is not counted twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

import structlog

from contracts import Event
from contracts import model as model_events
from contracts import target as target_events
from core import metrics
from core.domain import Job, Kind, State
from servicekit.domain import AbstractUnitOfWork
from servicekit.http import NotFound

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class JobPolicy:
    """How new jobs are sized: steps and attempts, from settings."""

    training_steps: int
    extraction_steps: int
    max_attempts: int
    lms_max_attempts: int

    def attempts(self, kind: Kind) -> int:
        """A fresh round of attempts for a job of ``kind`` (new or re-driven)."""
        return self.lms_max_attempts if kind == Kind.LMS else self.max_attempts


class Jobs(Protocol):
    async def next_id(self) -> int: ...
    async def enqueue(self, job: Job) -> bool: ...
    async def get(self, id: int, *, for_update: bool = True) -> Job | None: ...
    async def get_for_request(
        self, kind: Kind, request_id: str, *, for_update: bool = True
    ) -> Job | None: ...
    async def list(
        self,
        state: State | None,
        kind: Kind | None,
        limit: int,
        offset: int,
        *,
        user_id: str | None = None,
    ) -> list[Job]: ...
    async def save(self, job: Job) -> None: ...


class CoreUow(AbstractUnitOfWork, Protocol):
    """The unit of work handlers need: ``repository.CoreUnitOfWork``, or a fake in tests."""

    jobs: Jobs


def _now() -> datetime:
    return datetime.now(UTC)


async def _enqueue(uow: CoreUow, job: Job) -> None:
    added = await uow.jobs.enqueue(job)
    if added:
        uow.after_commit(metrics.JOBS.labels(job.kind.value, "enqueued").inc)
    log.info(
        "job enqueued" if added else "job already enqueued",
        job_id=job.id if added else None,
        kind=job.kind.value,
        request_id=job.request_id,
    )


async def on_approved(uow: CoreUow, event: model_events.Approved, policy: JobPolicy) -> None:
    job = Job.new(
        await uow.jobs.next_id(),
        Kind.MODEL,
        str(event.id),
        event.user_id,
        event.model_name,
        total_steps=policy.training_steps,
        max_attempts=policy.max_attempts,
    )
    await _enqueue(uow, job)


async def on_target_approved(
    uow: CoreUow, event: target_events.TargetApproved, policy: JobPolicy
) -> None:
    job = Job.new(
        await uow.jobs.next_id(),
        Kind.TARGET,
        str(event.id),
        event.user_id,
        event.type,
        total_steps=policy.extraction_steps,
        max_attempts=policy.max_attempts,
        params={"modelRequestId": event.model_request_id, "type": event.type},
    )
    await _enqueue(uow, job)


async def on_request_canceled(uow: CoreUow, event: model_events.RequestCanceled) -> None:
    reason = event.reason or f"model request {event.id} was cancelled"
    await _cancel(uow, Kind.MODEL, str(event.id), reason)


async def on_target_canceled(uow: CoreUow, event: target_events.TargetCanceled) -> None:
    reason = event.reason or f"target request {event.id} was cancelled"
    await _cancel(uow, Kind.TARGET, str(event.id), reason)


async def _cancel(uow: CoreUow, kind: Kind, request_id: str, reason: str) -> None:
    job = await uow.jobs.get_for_request(kind, request_id)
    if job is None:
        # Cancelled before approval: there never was a job.
        log.info("cancel for a request without a job", kind=kind.value, request_id=request_id)
        return
    outcome = job.request_cancel(reason, _now())
    if outcome != "ignored":
        await uow.jobs.save(job)
    if outcome == "canceled":
        # A running job ends at its next write instead; the runner counts it there.
        uow.after_commit(metrics.JOBS.labels(kind.value, "canceled").inc)
        uow.after_commit(metrics.SAGA_COMPENSATIONS.labels("core", "job_canceled").inc)
    log.info(
        "job cancel", job_id=job.id, request_id=request_id, outcome=outcome, state=job.state.value
    )


async def on_completion_refused(uow: CoreUow, event: model_events.CompletionRefused) -> None:
    """Model refused the completion this job announced (a cancel raced it): compensate."""
    job = await uow.jobs.get(event.job_id)
    if job is None or job.kind != Kind.MODEL or job.request_id != str(event.id):
        job = await uow.jobs.get_for_request(Kind.MODEL, str(event.id))
    if job is None:
        log.warning("completion refused for an unknown job", job_id=event.job_id)
        return
    if job.compensate(f"cancelled after completing: {event.reason}", _now()):
        await uow.jobs.save(job)
        uow.after_commit(metrics.JOBS.labels(job.kind.value, "compensated").inc)
        uow.after_commit(metrics.SAGA_COMPENSATIONS.labels("core", "job_compensated").inc)
        log.warning("job compensated", job_id=job.id, request_id=job.request_id, why=event.reason)
    else:
        log.info("completion refused changes nothing", job_id=job.id, state=job.state.value)


Handler = Callable[[Any, Any], Awaitable[None]]


def event_handlers(policy: JobPolicy) -> dict[type[Event], Handler]:
    return {
        model_events.Approved: partial(on_approved, policy=policy),
        model_events.RequestCanceled: on_request_canceled,
        model_events.CompletionRefused: on_completion_refused,
        target_events.TargetApproved: partial(on_target_approved, policy=policy),
        target_events.TargetCanceled: on_target_canceled,
    }


# Queries behind the API.


async def get(uow: CoreUow, id: int) -> Job:
    async with uow:
        job = await uow.jobs.get(id, for_update=False)
    if job is None:
        raise NotFound("job", id)
    return job


async def list_jobs(
    uow: CoreUow,
    user_id: str | None,
    state: State | None,
    kind: Kind | None,
    limit: int,
    offset: int,
) -> list[Job]:
    async with uow:
        return await uow.jobs.list(state, kind, limit, offset, user_id=user_id)
