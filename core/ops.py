"""core's failed things for the admin's re-drive API: failed jobs and LMS sends.

A re-drive is the job's own ``redrive`` transition (failed → queued) with a fresh
round of attempts, the same number a new job of its kind gets; the job resumes from
the step it reached. An lms job re-sends with the same idempotency key, so MIDAS
makes one send per target however often it is re-driven.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from core import metrics
from core.domain import Job, Kind, State
from core.handlers import JobPolicy
from core.repository import CoreUnitOfWork
from servicekit.http import NotFound
from servicekit.ops import Stuck

log = structlog.get_logger(__name__)


def stuck(job: Job) -> Stuck:
    return Stuck(
        id=job.id,
        kind=job.kind.value,
        subject=f"{job.event_type} request {job.request_id}: {job.name}",
        state=job.state.value,
        error=job.reason or job.last_error,
        attempts=job.attempts,
        redrives=job.redrives,
        since=job.finished_at or job.updated_at,
    )


class FailedJobs:
    kinds = tuple(k.value for k in Kind)

    def __init__(self, uow_factory: Callable[[], CoreUnitOfWork], policy: JobPolicy) -> None:
        self.uow_factory = uow_factory
        self.policy = policy

    async def failed(self, kind: str | None, ids: list[int] | None, limit: int) -> list[Stuck]:
        chosen = Kind(kind) if kind else None
        async with self.uow_factory() as uow:
            jobs = await uow.jobs.list(State.FAILED, chosen, 10_000 if ids else limit, 0)
        return [stuck(j) for j in jobs if not ids or j.id in ids][:limit]

    async def redrive(self, id: int) -> Stuck:
        async with self.uow_factory() as uow:
            job = await uow.jobs.get(id)
            if job is None:
                raise NotFound("job", id)
            budget = self.policy.attempts(job.kind)
            job.redrive(datetime.now(UTC), budget)
            await uow.jobs.requeue(job)
            uow.after_commit(metrics.JOBS.labels(job.kind.value, "redriven").inc)
            await uow.commit()
        log.info("job re-driven", job_id=job.id, kind=job.kind.value, request_id=job.request_id)
        return stuck(job)
